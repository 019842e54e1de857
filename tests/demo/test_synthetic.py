"""Tests of the synthetic population generator (demo/synthetic.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from demo import _synthetic_ids as ids
from demo import _synthetic_marketing as mk
from demo.steps import GOVERNANCE
from demo.synthetic import DATASETS, SynthConfig, generate, main
from psi.identifiers import gb11643_check_digit, luhn_check_digit, normalise
from tests.demo.conftest import SYNTHETIC_N

N = SYNTHETIC_N  # the shared population (tests/demo/conftest.py)
AS_OF = date(2025, 6, 30)
STR_COLS = {"customer_id", "id_number", "mobile", "msisdn", "imei", "idfa", "mac", "region_code", "home_cell",
            "work_cell"}
BANK_FEATURES = ["age", "balance", "products_held", "monthly_txn_count", "monthly_txn_amount", "repay_overdue_12m",
                 "credit_limit"]
TELCO_FEATURES = ["tenure_months", "arpu", "data_usage_gb", "night_usage_ratio", "app_bank", "app_competitor",
                  "app_wealth", "app_shopping", "business_trips_90d"]
LABELS = ["default_flag", "wealth_purchase", "app_adopted"]


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    header = path.open().readline().strip().split(",")
    return pd.read_csv(path, dtype={c: str for c in header if c in STR_COLS}, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def pop(synthetic_population: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The ``N``-person population, seed 7 (generated once per session, shared with test_synthetic_marketing)."""
    return synthetic_population


@pytest.fixture(scope="module")
def joined(pop: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pop["bank_customers"].merge(pop["telco_subscribers"], on="id_number", suffixes=("", "_telco"))


# --- independent reference check digits ---------------------------------------------------------


def gb11643_ok(idn: str) -> bool:
    total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(idn[:17]))
    return idn[17] == "10X98765432"[total % 11]


def luhn_ok(number: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_reference_check_digits_agree_with_known_examples():
    assert gb11643_ok("11010519491231002X")
    assert gb11643_ok("440524188001010014")
    assert luhn_ok("490154203237518")  # IMEI example from the GSMA/Wikipedia
    body = np.array([[int(c) for c in "49015420323751"]])
    assert ids.luhn_check_digits(body)[0] == 8
    first17 = np.array([[int(c) for c in "11010519491231002"]])
    assert chr(ids.gb11643_check_digits(first17)[0]) == "X"


def test_vectorised_check_digits_agree_with_psi_identifiers():
    rng = np.random.default_rng(0)
    first17 = rng.integers(0, 10, (2000, 17))
    body = rng.integers(0, 10, (2000, 14))
    got_gb = ids.gb11643_check_digits(first17)
    got_luhn = ids.luhn_check_digits(body)
    for i in range(2000):
        assert chr(got_gb[i]) == gb11643_check_digit("".join(map(str, first17[i])))
        assert str(got_luhn[i]) == luhn_check_digit("".join(map(str, body[i])))


# --- determinism and streaming ------------------------------------------------------------------


def test_same_seed_same_bytes_and_chunking_does_not_matter(tmp_path: Path):
    a = generate(tmp_path / "a", n=3_000, seed=11, chunk=3_000, progress=False)
    b = generate(tmp_path / "b", n=3_000, seed=11, chunk=3_000, progress=False)
    c = generate(tmp_path / "c", n=3_000, seed=11, chunk=437, progress=False)
    d = generate(tmp_path / "d", n=3_000, seed=12, chunk=3_000, progress=False)
    for name in DATASETS:
        ref = getattr(a, name).read_bytes()
        assert getattr(b, name).read_bytes() == ref
        assert getattr(c, name).read_bytes() == ref
        assert getattr(d, name).read_bytes() != ref


def test_parquet_matches_csv(tmp_path: Path):
    csv = generate(tmp_path / "csv", n=2_000, seed=3, progress=False)
    pq = generate(tmp_path / "pq", n=2_000, seed=3, fmt="parquet", chunk=333, progress=False)
    for name in DATASETS:
        got, want = read(getattr(pq, name)), read(getattr(csv, name))
        assert list(got.columns) == list(want.columns)
        pd.testing.assert_frame_equal(got.fillna(-1).astype(str), want.fillna(-1).astype(str))


def test_cli_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["--n", "1000", "--seed", "5", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "bank_customers" in capsys.readouterr().out
    assert all((tmp_path / f"{name}.csv").stat().st_size > 0 for name in DATASETS)


def test_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError):
        generate(tmp_path, n=0, progress=False)
    with pytest.raises(ValueError):
        generate(tmp_path, n=10, fmt="xlsx", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SynthConfig(p_bank=0.2, p_telco=0.3)


# --- schema and proportions ---------------------------------------------------------------------


def test_columns_exact(pop: dict[str, pd.DataFrame]):
    assert list(pop["bank_customers"].columns) == [
        "customer_id", "id_number", "mobile", "imei", "idfa", "mac", "age", "gender", "balance", "products_held",
        "monthly_txn_count", "monthly_txn_amount", "repay_overdue_12m", "credit_limit", "contactable",
        "consent_recovery", *LABELS, *mk.BANK_COLUMNS]
    assert list(pop["bank_lost_contacts"].columns) == [
        "customer_id", "id_number", "imei", "idfa", "mac", "consent_recovery"]
    assert list(pop["telco_subscribers"].columns) == [
        "msisdn", "id_number", "imei", "idfa", "mac", "age", "gender", "region_code", *TELCO_FEATURES[:4],
        *TELCO_FEATURES[4:8], "pay_pref", "shop_pref", "device_brand", "home_cell", "work_cell",
        "business_trips_90d", *mk.TELCO_COLUMNS]


def test_overlap_proportions(pop: dict[str, pd.DataFrame], joined: pd.DataFrame):
    n_bank, n_telco, n_both = len(pop["bank_customers"]), len(pop["telco_subscribers"]), len(joined)
    assert n_bank / N == pytest.approx(0.6, abs=0.015)
    assert n_telco / N == pytest.approx(0.7, abs=0.015)
    assert n_both / N == pytest.approx(0.3, abs=0.015)
    assert n_bank + n_telco - n_both == N  # everybody is in at least one table


def test_identifiers_unique(pop: dict[str, pd.DataFrame]):
    bank, telco = pop["bank_customers"], pop["telco_subscribers"]
    for frame, cols in ((bank, ["customer_id", "id_number", "mobile"]), (telco, ["msisdn", "id_number", "imei"])):
        for col in cols:
            assert frame[col].is_unique, col
    for col in ("idfa", "mac"):
        assert telco[col].dropna().is_unique
    assert bank["customer_id"].str.fullmatch(r"C\d{9}").all()


def test_bank_devices_are_the_persons_own(pop: dict[str, pd.DataFrame], joined: pd.DataFrame):
    telco = pop["telco_subscribers"]
    for col in ("imei", "mac"):
        seen = joined[joined[col].notna() & joined[f"{col}_telco"].notna()]
        same = seen[col] == seen[f"{col}_telco"]
        assert same.mean() > 0.9
        # The rest are old devices (of stale-number customers), which nobody in the telco table has now.
        assert not seen.loc[~same, col].isin(telco[col].dropna()).any()
        assert (seen.loc[~same, "mobile"] != seen.loc[~same, "msisdn"]).all()


def test_id_numbers_valid_and_consistent_with_age_and_gender(pop: dict[str, pd.DataFrame]):
    codes = {str(c) for c in ids.HUKOU_CODES}
    for name in ("bank_customers", "telco_subscribers"):
        df = pop[name]
        assert df["id_number"].str.fullmatch(r"\d{17}[\dX]").all()
        assert all(gb11643_ok(x) for x in df["id_number"])
        assert df["id_number"].str[:6].isin(codes).all()
        for idn, age, gender in zip(df["id_number"][:2000], df["age"][:2000], df["gender"][:2000], strict=True):
            born = date(int(idn[6:10]), int(idn[10:12]), int(idn[12:14]))
            years = AS_OF.year - born.year - ((AS_OF.month, AS_OF.day) < (born.month, born.day))
            assert years == age
            assert (int(idn[16]) % 2 == 1) == (gender == "M")
        assert df["age"].between(18, 80).all()


def test_device_identifiers_valid(pop: dict[str, pd.DataFrame]):
    tacs = {str(t) for v in ids.TACS.values() for t in v}
    ouis = {f"{o:06x}" for v in ids.OUIS.values() for o in v}
    for name in ("bank_customers", "telco_subscribers"):
        df = pop[name]
        imei = df["imei"].dropna()
        assert len(imei) > 0 and imei.str.fullmatch(r"\d{15}").all()
        assert all(luhn_ok(x) for x in imei)
        assert imei.str[:8].isin(tacs).all()
        mac = df["mac"].dropna()
        assert mac.str.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}").all()
        assert mac.str.replace(":", "").str[:6].isin(ouis).all()
        idfa = df["idfa"].dropna()
        assert idfa.str.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}").all()
    telco = pop["telco_subscribers"]
    assert telco["imei"].notna().all()
    assert telco.loc[telco["idfa"].notna(), "device_brand"].eq("Apple").all()


def test_msisdn_prefixes(pop: dict[str, pd.DataFrame]):
    msisdn = pop["telco_subscribers"]["msisdn"]
    assert msisdn.str.fullmatch(r"1\d{10}").all()
    assert msisdn.str[:3].astype(int).isin(ids.CHINA_MOBILE).all()
    mobile = pop["bank_customers"]["mobile"]
    assert mobile.str.fullmatch(r"1\d{10}").all()
    assert mobile.str[:3].astype(int).isin(ids.ALL_PREFIXES).all()


def test_stale_numbers(pop: dict[str, pd.DataFrame], joined: pd.DataFrame):
    stale = joined["mobile"] != joined["msisdn"]
    assert stale.mean() == pytest.approx(0.08, abs=0.015)
    # A stale number never belongs to another subscriber either.
    assert not joined.loc[stale, "mobile"].isin(pop["telco_subscribers"]["msisdn"]).any()
    # Stale numbers are the main reason the bank lost contact.
    assert (joined.loc[stale, "contactable"] == 0).mean() > 0.7
    assert (joined.loc[~stale, "contactable"] == 0).mean() < 0.1


KEY_COLS = ("mobile", "msisdn", "id_number", "imei", "idfa", "mac", "customer_id")


def test_every_identifier_accepted_by_psi_normalise(pop: dict[str, pd.DataFrame]):
    for df in pop.values():
        for col in KEY_COLS:
            if col in df:
                key_type = "mobile" if col == "msisdn" else col
                for value in df[col].dropna()[:1000]:
                    normalise(key_type, value)


def test_lost_contacts_consistent(pop: dict[str, pd.DataFrame]):
    bank, lost = pop["bank_customers"], pop["bank_lost_contacts"]
    assert (bank["contactable"] == 0).mean() == pytest.approx(0.10, abs=0.02)
    assert set(lost["customer_id"]) == set(bank.loc[bank["contactable"] == 0, "customer_id"])
    keys = ["id_number", "imei", "idfa", "mac"]
    assert lost[keys].notna().any(axis=1).all()
    ref = bank.set_index("customer_id")
    assert (lost.set_index("customer_id")["consent_recovery"] == ref.loc[lost["customer_id"], "consent_recovery"]).all()
    messy = 0
    for row in lost.itertuples(index=False):
        for col in keys:
            raw = getattr(row, col)
            if isinstance(raw, str):
                assert normalise(col, raw) == normalise(col, ref.at[row.customer_id, col])
                messy += raw != ref.at[row.customer_id, col]
    assert messy > 0
    assert lost["imei"].dropna().str.contains(" ").any()
    assert lost["mac"].dropna().str.contains("-").any()


def test_telco_fields(pop: dict[str, pd.DataFrame]):
    telco = pop["telco_subscribers"]
    assert telco["region_code"].isin({str(c) for c in ids.DISTRICT_CODES}).all()
    for col in ("home_cell", "work_cell"):
        assert telco[col].str.fullmatch(r"G\d{8}").all()
    for col in TELCO_FEATURES[4:8]:
        assert set(telco[col].unique()) <= {0, 1}
    assert set(telco["pay_pref"]) <= {"wechat", "alipay", "unionpay", "cash"}
    assert set(telco["shop_pref"]) <= {"electronics", "apparel", "groceries", "travel", "luxury"}
    assert telco["night_usage_ratio"].between(0, 1).all()


def test_bank_fields_and_label_rates(pop: dict[str, pd.DataFrame]):
    bank = pop["bank_customers"]
    assert bank["products_held"].between(1, 8).all()
    assert set(bank["gender"]) == {"M", "F"}
    assert 0.10 <= bank["default_flag"].mean() <= 0.20
    assert 0.10 <= bank["wealth_purchase"].mean() <= 0.15
    assert 0.20 <= bank["app_adopted"].mean() <= 0.30


# --- federation uplift --------------------------------------------------------------------------


def auc(frame: pd.DataFrame, features: list[str], label: str) -> float:
    y = frame[label].to_numpy()
    x = frame[features].to_numpy(dtype=float)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_tr, y_tr)
    return float(roc_auc_score(y_te, model.predict_proba(x_te)[:, 1]))


def test_federation_uplift(joined: pd.DataFrame):
    figures = {lab: (auc(joined, BANK_FEATURES, lab), auc(joined, BANK_FEATURES + TELCO_FEATURES, lab))
               for lab in LABELS}
    for lab, (bank_only, both) in figures.items():
        print(f"{lab}: bank-only AUC {bank_only:.3f}, bank+telco AUC {both:.3f}, uplift {both - bank_only:+.3f}")
    assert figures["default_flag"][1] - figures["default_flag"][0] >= 0.03
    for lab in ("wealth_purchase", "app_adopted"):
        assert figures[lab][1] - figures[lab][0] >= 0.015


# --- governance ---------------------------------------------------------------------------------



@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_governance_covers_every_column_and_types_parse(tmp_path: Path, fmt: str):
    from node.adapters import CsvSource, ParquetSource
    from node.governance import describe, load_governance

    out = generate(tmp_path, n=3_000, seed=1, fmt=fmt, progress=False)  # type: ignore[arg-type]
    for name, path in out.as_dict().items():
        gov = load_governance(GOVERNANCE / f"{name}.yaml")
        assert gov.dataset == name
        source = CsvSource(path) if fmt == "csv" else ParquetSource(path)
        with source:
            entry = describe(source, gov)
        assert entry.row_count == out.rows[name]
        for field_ in entry.fields:
            assert (field_.key_type is not None) == (field_.category.value == "identifier"), field_.name
    consent = load_governance(GOVERNANCE / "bank_customers.yaml").fields["consent_recovery"]
    assert (consent.category.value, consent.security_level, [p.value for p in consent.purposes]) == (
        "sensitive", 2, ["recovery"])
