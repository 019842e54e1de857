"""The person model behind demo/synthetic.py: latent traits, both parties' features, labels, identifiers.

Chunk invariance: every random quantity has its own named numpy stream (a ``Generator`` seeded by
``(seed, crc32(name))``) and is drawn once per person, in person order. Element-wise samplers
consume their stream sequentially, so drawing people 0..k-1 and then k..n-1 yields exactly what one
draw of 0..n-1 yields. Values that must be unique (ID-number sequence codes, IMEI/MAC serials,
customer numbers) come from bijections of running counters carried across chunks in ``State``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from demo import _synthetic_ids as ids
from demo import _synthetic_marketing as mk

AS_OF = np.datetime64("2025-06-30", "D")  # the date ages and tenures are measured at
MIN_AGE, MAX_AGE = 18, 80
_MAX_DAYS = (MAX_AGE + 1) * 366 + 1  # birth-day offsets (days before AS_OF) lie in [0, _MAX_DAYS)
_STALE_OFFSET = 50_000_000  # stale numbers use suffix slots disjoint from any current number
MAX_PEOPLE = 20_000_000  # IMEI space: >= 4M devices per brand

PAY_PREFS = ("wechat", "alipay", "unionpay", "cash")
SHOP_PREFS = ("electronics", "apparel", "groceries", "travel", "luxury")


@dataclass(frozen=True)
class SynthConfig:
    """Population parameters (defaults are the documented ones).

    Attributes:
        p_bank: probability a person is a bank customer.
        p_telco: probability a person is a telco subscriber (every person is at least one).
        stale_share: share of bank customers whose mobile on file is an old, stale number.
        uncontactable_other: probability a customer with a current number is still not contactable.
        uncontactable_if_stale: probability a customer with a stale number is not contactable.
        consent_recovery: probability a customer consented to recovery outreach.
    """

    p_bank: float = 0.6
    p_telco: float = 0.7
    stale_share: float = 0.08
    uncontactable_if_stale: float = 0.85
    uncontactable_other: float = 0.035
    consent_recovery: float = 0.7

    def __post_init__(self) -> None:
        if not (0 < self.p_bank <= 1 and 0 < self.p_telco <= 1 and self.p_bank + self.p_telco >= 1):
            raise ValueError("need 0 < p_bank, p_telco <= 1 and p_bank + p_telco >= 1 (everyone is in one)")


class Streams:
    """One independent numpy Generator per named random quantity."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._gens: dict[str, np.random.Generator] = {}

    def __getitem__(self, name: str) -> np.random.Generator:
        gen = self._gens.get(name)
        if gen is None:
            gen = np.random.default_rng(np.random.SeedSequence([self._seed, zlib.crc32(name.encode())]))
            self._gens[name] = gen
        return gen


@dataclass
class State:
    """Everything carried from one chunk to the next."""

    streams: Streams
    config: SynthConfig
    next_person: int = 0
    n_customers: int = 0
    id_counts: np.ndarray = field(
        default_factory=lambda: np.zeros(len(ids.HUKOU_CODES) * _MAX_DAYS * 2, dtype=np.int16)
    )
    device_counts: np.ndarray = field(default_factory=lambda: np.zeros(2 * len(ids.BRANDS), dtype=np.int64))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gumbel_choice(s: Streams, name: str, logits: np.ndarray) -> np.ndarray:
    """Sample a category per row from unnormalised logits (m, k) via the Gumbel-max trick."""
    return np.argmax(logits + s[name].gumbel(size=logits.shape), axis=1)


def _choice(s: Streams, name: str, p: np.ndarray, m: int) -> np.ndarray:
    cdf = np.cumsum(p)
    return np.minimum(np.searchsorted(cdf / cdf[-1], s[name].random(m), side="right"), len(p) - 1)


# --- Latent traits ------------------------------------------------------------------------------


def _people(s: Streams, cfg: SynthConfig, m: int) -> dict[str, np.ndarray]:
    both = cfg.p_bank + cfg.p_telco - 1.0
    u = s["membership"].random(m)
    is_bank = u < cfg.p_bank
    is_telco = u >= cfg.p_bank - both
    days = np.floor((MIN_AGE + (MAX_AGE + 1 - MIN_AGE) * s["age"].beta(2.0, 3.2, m)) * 365.2425).astype(np.int64)
    birth = AS_OF - days
    by, bm, bd = _ymd(birth)
    ay, am, ad = _ymd(np.array([AS_OF]))
    age = ay[0] - by - ((bm > am[0]) | ((bm == am[0]) & (bd > ad[0])))
    agez = (age - 42.0) / 14.0
    male = s["gender"].random(m) < 0.5
    rb, rt_raw = s["risk_bank"].standard_normal(m), s["risk_telco"].standard_normal(m)
    return {
        "is_bank": is_bank, "is_telco": is_telco, "days": days, "by": by, "bm": bm, "bd": bd,
        "age": age, "agez": agez, "male": male,
        "W": s["wealth"].standard_normal(m) + 0.35 * np.clip((age - 25) / 20.0, -1, 1.5),
        "Rb": rb, "Rt": 0.3 * rb + np.sqrt(1 - 0.09) * rt_raw,
        "D": s["digital"].standard_normal(m) - 0.6 * agez,
        "Pw": s["wealth_interest"].standard_normal(m),
    }


def _ymd(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = dates.astype("datetime64[Y]")
    mo = dates.astype("datetime64[M]")
    year = y.astype(np.int64) + 1970
    month = (mo - y.astype("datetime64[M]")).astype(np.int64) + 1
    day = (dates - mo.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


# --- Features -----------------------------------------------------------------------------------


def _bank_features(s: Streams, p: dict[str, np.ndarray], m: int) -> dict[str, np.ndarray]:
    w, rb, d = p["W"], p["Rb"], p["D"]
    txn_count = s["txn_count"].poisson(np.exp(2.7 + 0.45 * d + 0.15 * w))
    return {
        "balance": np.round(np.exp(8.8 + 1.0 * w - 0.35 * rb + 0.6 * s["balance"].standard_normal(m)), 2),
        "products_held": np.clip(1 + s["products"].poisson(np.exp(0.2 + 0.35 * w + 0.15 * d)), 1, 8),
        "monthly_txn_count": txn_count,
        "monthly_txn_amount": np.round(
            txn_count * np.exp(5.2 + 0.45 * w + 0.4 * s["txn_amount"].standard_normal(m)), 2),
        "repay_overdue_12m": np.minimum(s["overdue"].poisson(np.exp(-1.7 + 0.95 * rb)), 12),
        "credit_limit": 1000 * np.maximum(np.round(
            np.exp(9.9 + 0.55 * w - 0.25 * rb + 0.3 * s["limit"].standard_normal(m)) / 1000), 2).astype(np.int64),
    }


def _telco_features(s: Streams, p: dict[str, np.ndarray], m: int) -> dict[str, np.ndarray]:
    w, rt, d, pw, agez = p["W"], p["Rt"], p["D"], p["Pw"], p["agez"]
    brand_logits = np.stack([
        -0.3 + 0.8 * w - 0.3 * agez, 0.2 + 0.25 * agez, 0.0 - 0.3 * w, -0.1 - 0.3 * w,
        -0.1 - 0.3 * w, -0.4 + 0.0 * w, -1.3 + 0.1 * w], axis=1)
    brand = _gumbel_choice(s, "brand", brand_logits)
    pay = _gumbel_choice(s, "pay_pref", np.stack([
        1.0 + 0.3 * d, 0.8 + 0.4 * d, -0.2 + 0.3 * agez, -1.2 - 0.8 * d + 0.5 * agez], axis=1))
    shop = _gumbel_choice(s, "shop_pref", np.stack([
        0.3 * d + 0.4 * p["male"], 0.3 - 0.4 * p["male"], 0.2 + 0.3 * agez - 0.3 * w, -0.5 + 0.4 * w + 0.3 * pw,
        -1.8 + 0.7 * w + 0.6 * pw], axis=1))
    district = _choice(s, "district", ids.DISTRICT_P, m)
    hx = ids.DISTRICT_X[district] + s["home_x"].normal(0, 2.5, m)
    hy = ids.DISTRICT_Y[district] + s["home_y"].normal(0, 2.5, m)
    # Commute: distance grows with the telco-visible instability Rt; a third work next to home.
    dist = np.exp(1.5 + 0.55 * rt + 0.6 * s["commute"].standard_normal(m)) * (s["wfh"].random(m) > 0.3 - 0.1 * rt)
    ang = s["commute_dir"].random(m) * 2 * np.pi
    wx, wy = hx + dist * np.cos(ang), hy + dist * np.sin(ang)
    tenure = np.clip(np.round(np.exp(3.9 - 0.45 * rt + 0.25 * agez + 0.5 * s["tenure"].standard_normal(m))), 1, 300)
    return {
        "district": district, "brand": brand, "pay": pay, "shop": shop,
        "hx": np.floor(hx).astype(np.int64), "hy": np.floor(hy).astype(np.int64),
        "wx": np.floor(wx).astype(np.int64), "wy": np.floor(wy).astype(np.int64),
        "tenure_months": tenure.astype(np.int64),
        "arpu": np.round(np.exp(4.1 + 0.35 * w + 0.2 * d + 0.3 * s["arpu"].standard_normal(m)), 2),
        "data_usage_gb": np.round(np.exp(2.6 + 0.6 * d + 0.4 * s["data"].standard_normal(m)), 2),
        "night_usage_ratio": np.round(
            _sigmoid(-1.6 + 0.55 * rt - 0.25 * agez + 0.35 * s["night"].standard_normal(m)), 3),
        "app_bank": s["app_bank"].random(m) < _sigmoid(-2.6 + 0.9 * d + 1.6 * p["is_bank"]),
        "app_competitor": s["app_competitor"].random(m) < _sigmoid(-0.7 + 0.8 * rt + 0.3 * d),
        "app_wealth": s["app_wealth"].random(m) < _sigmoid(-1.8 + 0.9 * pw + 0.4 * w + 0.3 * d),
        "app_shopping": s["app_shopping"].random(m) < _sigmoid(0.6 + 0.8 * d),
        "business_trips_90d": np.minimum(s["trips"].poisson(np.exp(-0.8 + 0.6 * w + 0.5 * pw)), 40),
    }


# --- Labels -------------------------------------------------------------------------------------

# Telco contributions are centred by these means and have these standard deviations (measured on 1M
# people); a person who is not a telco subscriber gets an independent normal of the same spread
# instead, so base rates match across the two groups.
_TELCO_MEAN = {"default": 0.62, "wealth": 0.48, "app": 0.89}
_TELCO_SD = {"default": 1.20, "wealth": 0.70, "app": 0.83}


def _labels(s: Streams, p: dict[str, np.ndarray], b: dict[str, np.ndarray], t: dict[str, np.ndarray],
            m: int) -> dict[str, np.ndarray]:
    tel = p["is_telco"]
    km = np.hypot(t["hx"] - t["wx"], t["hy"] - t["wy"])
    bank_def = (0.6 * np.minimum(b["repay_overdue_12m"], 6) - 0.45 * (np.log(b["balance"]) - 8.8)
                - 0.25 * (np.log(b["credit_limit"]) - 9.9))
    telco_def = (-0.6 * (np.log(t["tenure_months"]) - 3.9) + 6.0 * (t["night_usage_ratio"] - 0.18)
                 + 0.6 * t["app_competitor"] + 0.3 * np.log1p(km) - 0.3 * (np.log(t["arpu"]) - 4.1))
    bank_w = (0.55 * (np.log(b["balance"]) - 8.8) + 0.25 * (b["products_held"] - 2)
              + 0.2 * (np.log1p(b["monthly_txn_amount"]) - 8.0))
    telco_w = (1.2 * t["app_wealth"] + 0.5 * (np.log(t["arpu"]) - 4.1) + 0.8 * (t["shop"] == 4)
               + 0.12 * t["business_trips_90d"] + 0.3 * (t["brand"] == 0))
    bank_a = -0.025 * (p["age"] - 42) + 0.35 * (np.log1p(b["monthly_txn_count"]) - 2.7)
    telco_a = (1.0 * t["app_bank"] + 0.5 * t["app_competitor"] + 0.5 * (np.log(t["data_usage_gb"]) - 2.6)
               + 0.4 * t["app_shopping"] + 0.3 * (t["pay"] <= 1))

    def label(name: str, intercept: float, bank: np.ndarray, telco: np.ndarray) -> np.ndarray:
        sd = _TELCO_SD[name]
        other = s[f"{name}_other"].normal(0, sd, m)
        centred = telco - _TELCO_MEAN[name]
        z = intercept + bank + np.where(tel, centred, other) + 0.5 * s[f"{name}_noise"].standard_normal(m)
        return (s[f"{name}_draw"].random(m) < _sigmoid(z)).astype(np.int64)

    return {
        "default_flag": label("default", -2.6, bank_def, telco_def),
        "wealth_purchase": label("wealth", -2.8, bank_w, telco_w),
        "app_adopted": label("app", -1.3, bank_a, telco_a),
    }



# --- Identifiers --------------------------------------------------------------------------------

_CUSTOMER_MULT, _CUSTOMER_ADD = 387_420_489, 104_729_023  # 3**18 is coprime to 10**9
_MSISDN_MULT, _MSISDN_ADD = 40_353_607, 31_415_926  # 7**9 is coprime to 10**8
_DEVICE_MULT = 999_983  # prime, coprime to every device capacity below


def _id_numbers(state: State, p: dict[str, np.ndarray], t: dict[str, np.ndarray], m: int) -> np.ndarray:
    s = state.streams
    elsewhere = s["hukou_elsewhere"].random(m) < 0.45
    other = np.minimum((s["hukou_region"].random(m) * len(ids.HUKOU_CODES)).astype(np.int64), len(ids.HUKOU_CODES) - 1)
    region = np.where(elsewhere, other, t["district"])
    male = p["male"].astype(np.int64)
    key = (region * _MAX_DAYS + p["days"]) * 2 + male
    rank = ids.running_rank(key, state.id_counts)
    if rank.size and rank.max() >= 500:
        raise RuntimeError("ID-number sequence codes exhausted for one region/birth date/gender")
    seq = 2 * ((rank + key * 7919) % 500) + male
    first17 = np.concatenate([
        ids.digits(ids.HUKOU_CODES[region], 6), ids.digits(p["by"], 4), ids.digits(p["bm"], 2),
        ids.digits(p["bd"], 2), ids.digits(seq, 3)], axis=1)
    return np.concatenate([(first17 + 48).astype(np.uint8), ids.gb11643_check_digits(first17)[:, None]], axis=1)


def _mobiles(s: Streams, idx: np.ndarray, is_telco: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Current numbers (China Mobile for subscribers, other operators otherwise) and older numbers."""
    cm, other = np.array(ids.CHINA_MOBILE), np.array(ids.CHINA_UNICOM + ids.CHINA_TELECOM)
    u = s["prefix"].random(m)
    prefix = np.where(is_telco, cm[(u * len(cm)).astype(np.int64)], other[(u * len(other)).astype(np.int64)])
    current = prefix * 10**8 + ids.affine_perm(idx, 10**8, _MSISDN_MULT, _MSISDN_ADD)
    all_p = np.array(ids.ALL_PREFIXES)
    old_prefix = all_p[(s["old_prefix"].random(m) * len(all_p)).astype(np.int64)]
    old = old_prefix * 10**8 + ids.affine_perm(idx + _STALE_OFFSET, 10**8, _MSISDN_MULT, _MSISDN_ADD)
    return ids.ascii_digits(current, 11), ids.ascii_digits(old, 11)


def _devices(state: State, brand: np.ndarray, old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IMEI (m, 15) and MAC (m, 17) ASCII of each person's device; ``old`` marks a second, older device.

    Current devices fill a brand's slots from the bottom (slot = rank), older devices from the top
    (slot = capacity - 1 - rank); slots map through a bijection onto (TAC, serial) and (OUI, NIC)
    pairs, so no two devices share an IMEI or a MAC.
    """
    m = brand.size
    rank = ids.running_rank(brand * 2 + old, state.device_counts)
    imei_body, mac_val = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
    for b, name in enumerate(ids.BRANDS):
        sel = brand == b
        if not sel.any():
            continue
        tacs, ouis = np.array(ids.TACS[name]), np.array(ids.OUIS[name])
        cap_imei, cap_mac = len(tacs) * 10**6, len(ouis) << 24
        if state.device_counts[2 * b] + state.device_counts[2 * b + 1] > cap_imei:
            raise RuntimeError(f"IMEI space of {name} exhausted")
        j = np.where(old[sel] == 1, cap_imei - 1 - rank[sel], rank[sel])
        v = ids.affine_perm(j, cap_imei, _DEVICE_MULT, 7_919_117 * (b + 1) % cap_imei)
        imei_body[sel] = tacs[v // 10**6] * 10**6 + v % 10**6
        w = ids.affine_perm(j, cap_mac, _DEVICE_MULT, 9_733_211 * (b + 1) % cap_mac)
        mac_val[sel] = (ouis[w >> 24] << 24) | (w & 0xFFFFFF)
    body = ids.digits(imei_body, 14)
    imei = np.concatenate([body, ids.luhn_check_digits(body)[:, None]], axis=1).astype(np.uint8) + 48
    hexes = ids.hex_bytes(mac_val, 6)
    mac = np.full((m, 17), ord(":"), dtype=np.uint8)
    for k in range(6):
        mac[:, 3 * k:3 * k + 2] = hexes[:, 2 * k:2 * k + 2]
    return imei, mac


def _idfas(s: Streams, name: str, m: int) -> np.ndarray:
    raw = np.frombuffer(s[name].bytes(16 * m), dtype=np.uint8).reshape(m, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = ids.hex_bytes(raw, 16, upper=True)
    dash = ids.const("-", m)
    return np.concatenate([h[:, :8], dash, h[:, 8:12], dash, h[:, 12:16], dash, h[:, 16:20], dash, h[:, 20:]], axis=1)


def _cells(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.concatenate([ids.const("G", x.size), ids.ascii_digits(x, 4), ids.ascii_digits(y, 4)], axis=1)


# --- Assembling one chunk -----------------------------------------------------------------------


def _int(a: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(a).astype(np.int64))


def build_chunk(state: State, m: int) -> dict[str, pa.Table]:
    """Generate the next ``m`` people and return their rows of the three tables."""
    s, cfg = state.streams, state.config
    idx = state.next_person + np.arange(m, dtype=np.int64)
    p = _people(s, cfg, m)
    b = _bank_features(s, p, m)
    t = _telco_features(s, p, m)
    lab = _labels(s, p, b, t, m)
    lat = mk.latent_interests(s, p)
    tm = mk.telco_marketing(s, p, t, lat)
    bm = mk.bank_marketing(s, p, b, t, tm, lat)
    id_number = _id_numbers(state, p, t, m)
    current, old_number = _mobiles(s, idx, p["is_telco"], m)

    stale = p["is_bank"] & (s["stale"].random(m) < cfg.stale_share)
    lost_p = np.where(stale, cfg.uncontactable_if_stale, cfg.uncontactable_other)
    contactable = ~(s["contactable"].random(m) < lost_p)
    consent = s["consent"].random(m) < cfg.consent_recovery
    # A customer whose number went stale often changed phone too: the app then recorded the old one.
    old_device = stale & (s["old_device"].random(m) < 0.5)
    brand = t["brand"]
    imei, mac = _devices(state, brand, np.zeros(m, dtype=np.int64))
    idfa, idfa_old = _idfas(s, "idfa", m), _idfas(s, "idfa_old", m)
    b_imei, b_mac = imei.copy(), mac.copy()
    b_imei[old_device], b_mac[old_device] = _devices(state, brand[old_device], np.ones(int(old_device.sum()), np.int64))
    b_idfa = np.where(old_device[:, None], idfa_old, idfa)

    apple = brand == 0
    app_user = s["bank_app_user"].random(m) < _sigmoid(0.8 + p["D"])
    has_b = {
        "imei": app_user & ~apple & (s["bank_has_imei"].random(m) < 0.55),
        "idfa": app_user & apple & (s["bank_has_idfa"].random(m) < 0.7),
        "mac": app_user & ~apple & (s["bank_has_mac"].random(m) < 0.45),
    }
    has_t = {"idfa": apple & (s["telco_has_idfa"].random(m) < 0.5), "mac": s["telco_has_mac"].random(m) < 0.6}
    lost_draws = (s["lost_pick"].random((m, 4)), s["lost_fallback"].random(m), s["lost_messy"].random((m, 3)))

    bank = p["is_bank"]
    n_bank = int(bank.sum())
    cust = ids.affine_perm(state.n_customers + np.arange(n_bank), 10**9, _CUSTOMER_MULT, _CUSTOMER_ADD)
    customer_id = np.concatenate([ids.const("C", n_bank), ids.ascii_digits(cust, 9)], axis=1)
    mobile = np.where(stale[:, None], old_number, current)
    bank_tbl = pa.table({
        "customer_id": ids.to_arrow(customer_id),
        "id_number": ids.to_arrow(id_number[bank]),
        "mobile": ids.to_arrow(mobile[bank]),
        "imei": ids.to_arrow(b_imei[bank], has_b["imei"][bank]),
        "idfa": ids.to_arrow(b_idfa[bank], has_b["idfa"][bank]),
        "mac": ids.to_arrow(b_mac[bank], has_b["mac"][bank]),
        "age": _int(p["age"][bank]),
        "gender": ids.categorical(("F", "M"), p["male"][bank].astype(np.int64)),
        **{k: pa.array(v[bank]) for k, v in b.items()},
        "contactable": _int(contactable[bank]),
        "consent_recovery": _int(consent[bank]),
        **{k: _int(v[bank]) for k, v in lab.items()},
        **{k: _int(bm[k][bank]) for k in mk.BANK_COLUMNS},
    })
    lost = bank & ~contactable
    lost_tbl = _lost_contacts(
        customer_id[~contactable[bank]],
        {"id_number": id_number[lost], "imei": b_imei[lost], "idfa": b_idfa[lost], "mac": b_mac[lost]},
        {"id_number": np.ones(int(lost.sum()), dtype=bool), **{k: v[lost] for k, v in has_b.items()}},
        tuple(d[lost] for d in lost_draws),
        consent[lost],
    )

    tel = p["is_telco"]
    telco_tbl = pa.table({
        "msisdn": ids.to_arrow(current[tel]),
        "id_number": ids.to_arrow(id_number[tel]),
        "imei": ids.to_arrow(imei[tel]),
        "idfa": ids.to_arrow(idfa[tel], has_t["idfa"][tel]),
        "mac": ids.to_arrow(mac[tel], has_t["mac"][tel]),
        "age": _int(p["age"][tel]),
        "gender": ids.categorical(("F", "M"), p["male"][tel].astype(np.int64)),
        "region_code": ids.to_arrow(ids.ascii_digits(ids.DISTRICT_CODES[t["district"][tel]], 6)),
        "tenure_months": _int(t["tenure_months"][tel]),
        "arpu": pa.array(t["arpu"][tel]),
        "data_usage_gb": pa.array(t["data_usage_gb"][tel]),
        "night_usage_ratio": pa.array(t["night_usage_ratio"][tel]),
        **{k: _int(t[k][tel]) for k in ("app_bank", "app_competitor", "app_wealth", "app_shopping")},
        "pay_pref": ids.categorical(PAY_PREFS, t["pay"][tel]),
        "shop_pref": ids.categorical(SHOP_PREFS, t["shop"][tel]),
        "device_brand": ids.categorical(ids.BRANDS, brand[tel]),
        "home_cell": ids.to_arrow(_cells(t["hx"][tel], t["hy"][tel])),
        "work_cell": ids.to_arrow(_cells(t["wx"][tel], t["wy"][tel])),
        "business_trips_90d": _int(t["business_trips_90d"][tel]),
        **{k: pa.array(tm[k][tel]) if k in mk.INTEREST_TRAITS else _int(tm[k][tel]) for k in mk.TELCO_COLUMNS},
    })
    state.next_person += m
    state.n_customers += n_bank
    return {"bank_customers": bank_tbl, "bank_lost_contacts": lost_tbl, "telco_subscribers": telco_tbl}


_LOST_KEYS = ("id_number", "imei", "idfa", "mac")


def _lost_contacts(customer_id: np.ndarray, values: dict[str, np.ndarray], avail: dict[str, np.ndarray],
                   draws: tuple[np.ndarray, ...], consent: np.ndarray) -> pa.Table:
    """Lost-contact rows: a random non-empty subset of the available identifiers, some in messy raw form."""
    pick_u, fallback_u, messy_u = draws
    have = np.stack([avail[k] for k in _LOST_KEYS], axis=1)
    pick = have & (pick_u < 0.65)
    none = ~pick.any(axis=1)
    # Fall back to one available identifier chosen uniformly (id_number is always available).
    n_avail = have.sum(axis=1)
    nth = np.minimum((fallback_u * n_avail).astype(np.int64), n_avail - 1)
    first = np.argmax(np.cumsum(have, axis=1) > nth[:, None], axis=1)
    pick[none, first[none]] = True
    cols: dict[str, pa.Array] = {"customer_id": ids.to_arrow(customer_id)}
    for k, key in enumerate(_LOST_KEYS):
        text = [bytes(row).decode() for row in values[key]]
        out: list[str | None] = []
        for i, v in enumerate(text):
            out.append(_messy(key, v, messy_u[i]) if pick[i, k] else None)
        cols[key] = pa.array(out, type=pa.string())
    cols["consent_recovery"] = _int(consent)
    return pa.table(cols)


def _messy(key: str, value: str, u: np.ndarray) -> str:
    """Raw formats seen in legacy records: lowercase ID check 'x', spaced IMEIs, dashed/upper-case MACs."""
    if key == "id_number" and u[0] < 0.5:
        return value.replace("X", "x")
    if key == "imei" and u[0] < 0.3:
        return f"{value[:2]} {value[2:8]} {value[8:14]} {value[14]}"
    if key == "mac":
        if u[0] < 0.25:
            value = value.replace(":", "-")
        if u[1] < 0.25:
            value = value.upper()
    return value
