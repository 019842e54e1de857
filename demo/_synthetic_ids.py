"""Identifier building blocks for the synthetic population (see demo/SYNTHETIC.md).

Everything here is vectorised over numpy arrays and deterministic: randomness comes in from the
caller. Strings are built as fixed-width ASCII byte matrices (one row per person) and turned into
Arrow string arrays without a Python loop, which is what makes 10M-person runs feasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# --- Regions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class District:
    """A county-level division (GB/T 2260 code) with its approximate centre and a population weight."""

    code: int
    name: str
    lon: float
    lat: float
    weight: float


# Residence districts of the telco's subscribers (current address). Weights are rough population
# shares in units of 100k residents; coordinates are approximate district centres.
DISTRICTS: tuple[District, ...] = tuple(District(*row) for row in (
    (110101, "Beijing Dongcheng", 116.416, 39.928, 7),
    (110102, "Beijing Xicheng", 116.366, 39.912, 11),
    (110105, "Beijing Chaoyang", 116.443, 39.921, 34),
    (110106, "Beijing Fengtai", 116.286, 39.858, 20),
    (110108, "Beijing Haidian", 116.298, 39.959, 31),
    (110114, "Beijing Changping", 116.231, 40.221, 22),
    (110115, "Beijing Daxing", 116.341, 39.727, 20),
    (120101, "Tianjin Heping", 117.215, 39.117, 4),
    (120103, "Tianjin Hexi", 117.223, 39.109, 8),
    (120104, "Tianjin Nankai", 117.150, 39.138, 9),
    (310101, "Shanghai Huangpu", 121.490, 31.222, 7),
    (310104, "Shanghai Xuhui", 121.437, 31.179, 11),
    (310105, "Shanghai Changning", 121.424, 31.220, 7),
    (310106, "Shanghai Jing'an", 121.448, 31.229, 10),
    (310107, "Shanghai Putuo", 121.396, 31.250, 12),
    (310109, "Shanghai Hongkou", 121.505, 31.265, 8),
    (310110, "Shanghai Yangpu", 121.526, 31.260, 12),
    (310112, "Shanghai Minhang", 121.382, 31.112, 26),
    (310115, "Shanghai Pudong", 121.544, 31.221, 57),
    (320102, "Nanjing Xuanwu", 118.798, 32.049, 5),
    (320104, "Nanjing Qinhuai", 118.795, 32.039, 7),
    (320106, "Nanjing Gulou", 118.770, 32.066, 9),
    (330102, "Hangzhou Shangcheng", 120.171, 30.250, 13),
    (330106, "Hangzhou Xihu", 120.130, 30.260, 11),
    (330108, "Hangzhou Binjiang", 120.212, 30.208, 5),
    (410102, "Zhengzhou Zhongyuan", 113.613, 34.748, 9),
    (410105, "Zhengzhou Jinshui", 113.686, 34.776, 16),
    (420102, "Wuhan Jiang'an", 114.309, 30.600, 9),
    (420103, "Wuhan Jianghan", 114.271, 30.601, 6),
    (420106, "Wuhan Wuchang", 114.316, 30.554, 11),
    (420111, "Wuhan Hongshan", 114.344, 30.500, 16),
    (430102, "Changsha Furong", 112.988, 28.193, 6),
    (430104, "Changsha Yuelu", 112.932, 28.235, 15),
    (440103, "Guangzhou Liwan", 113.244, 23.126, 11),
    (440104, "Guangzhou Yuexiu", 113.267, 23.129, 10),
    (440105, "Guangzhou Haizhu", 113.318, 23.084, 18),
    (440106, "Guangzhou Tianhe", 113.361, 23.125, 22),
    (440111, "Guangzhou Baiyun", 113.273, 23.158, 37),
    (440113, "Guangzhou Panyu", 113.384, 22.938, 28),
    (440303, "Shenzhen Luohu", 114.131, 22.548, 11),
    (440304, "Shenzhen Futian", 114.055, 22.522, 15),
    (440305, "Shenzhen Nanshan", 113.930, 22.533, 18),
    (440306, "Shenzhen Bao'an", 113.884, 22.555, 45),
    (440307, "Shenzhen Longgang", 114.247, 22.720, 40),
    (500103, "Chongqing Yuzhong", 106.569, 29.553, 6),
    (500105, "Chongqing Jiangbei", 106.574, 29.606, 9),
    (500106, "Chongqing Shapingba", 106.457, 29.541, 15),
    (510104, "Chengdu Jinjiang", 104.083, 30.657, 9),
    (510105, "Chengdu Qingyang", 104.062, 30.674, 10),
    (510107, "Chengdu Wuhou", 104.043, 30.642, 12),
    (510108, "Chengdu Chenghua", 104.104, 30.660, 14),
    (610102, "Xi'an Xincheng", 108.960, 34.266, 6),
    (610103, "Xi'an Beilin", 108.934, 34.230, 8),
    (610113, "Xi'an Yanta", 108.949, 34.222, 12),
))

# Extra household-registration (hukou) districts that appear only inside ID numbers (place of birth
# registration), so that ID regions are more varied than where people now live.
HUKOU_EXTRA: tuple[int, ...] = (
    130102, 140105, 150102, 210102, 220102, 230102, 341302, 350102, 350203, 360102, 370102, 410302,
    411302, 421002, 430602, 450102, 510302, 522601, 530102, 620102,
)
HUKOU_CODES: np.ndarray = np.array([d.code for d in DISTRICTS] + list(HUKOU_EXTRA), dtype=np.int64)

# 1 km national grid: x, y in km east/north of (73°E, 18°N), equirectangular at 30°N.
_KM_PER_DEG_LAT = 110.57
_KM_PER_DEG_LON = 111.32 * math.cos(math.radians(30.0))
DISTRICT_X: np.ndarray = np.array([(d.lon - 73.0) * _KM_PER_DEG_LON for d in DISTRICTS])
DISTRICT_Y: np.ndarray = np.array([(d.lat - 18.0) * _KM_PER_DEG_LAT for d in DISTRICTS])
DISTRICT_CODES: np.ndarray = np.array([d.code for d in DISTRICTS], dtype=np.int64)
DISTRICT_P: np.ndarray = np.array([d.weight for d in DISTRICTS]) / sum(d.weight for d in DISTRICTS)
# City of each district = first 4 digits of the code; the city centre is the mean of its districts.
_CITY = DISTRICT_CODES // 100
CITY_X: np.ndarray = np.array([DISTRICT_X[_CITY == c].mean() for c in _CITY])
CITY_Y: np.ndarray = np.array([DISTRICT_Y[_CITY == c].mean() for c in _CITY])

# --- Mobile prefixes ----------------------------------------------------------------------------

CHINA_MOBILE = (134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 157, 158, 159, 172, 178, 182, 183, 184, 187, 188,
                195, 198)
CHINA_UNICOM = (130, 131, 132, 145, 155, 156, 166, 175, 176, 185, 186, 196)
CHINA_TELECOM = (133, 149, 153, 173, 177, 180, 181, 189, 190, 191, 193, 199)
ALL_PREFIXES = CHINA_MOBILE + CHINA_UNICOM + CHINA_TELECOM

# --- Devices ------------------------------------------------------------------------------------

BRANDS = ("Apple", "Huawei", "Xiaomi", "OPPO", "vivo", "Honor", "Samsung")
# TAC-like 8-digit IMEI prefixes per brand (the "35" block is GSMA/BABT-issued, "86" is TAF-issued
# as for Chinese makers). Each brand has >= 4, i.e. >= 4M distinct IMEIs.
TACS: dict[str, tuple[int, ...]] = {
    "Apple": (35332811, 35391110, 35407115, 35296311, 35883409, 35674108),
    "Huawei": (86753904, 86699603, 86888804, 86461005, 86012105),
    "Xiaomi": (86769504, 86244103, 86891703, 86593104),
    "OPPO": (86226204, 86843603, 86695404, 86118805),
    "vivo": (86498704, 86053703, 86317205, 86976504),
    "Honor": (86781405, 86264605, 86550405, 86410006),
    "Samsung": (35274810, 35608611, 35369511, 35921610),
}
# IEEE OUI prefixes registered to each vendor.
OUIS: dict[str, tuple[int, ...]] = {
    "Apple": (0x001CB3, 0xA483E7, 0xF01898, 0x3C22FB),
    "Huawei": (0x00E0FC, 0x4846FB, 0xACE215, 0xF4C714),
    "Xiaomi": (0x640980, 0x286C07, 0xF8A45F, 0x3480B3),
    "OPPO": (0x2C5BB8, 0xA43D78, 0xE8BBA8, 0xC8F230),
    "vivo": (0x3CA616, 0xDC31D1, 0x18E29F, 0x5C1D16),
    "Honor": (0xFCAB90, 0x1C1386, 0x48D539, 0x7C1CF1),
    "Samsung": (0x0012FB, 0x5C0A5B, 0x8C7712, 0x3423BA),
}

# --- Check digits -------------------------------------------------------------------------------

_GB_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_GB_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)


def gb11643_check_digits(first17: np.ndarray) -> np.ndarray:
    """GB 11643-1999 (ISO 7064 MOD 11-2) check characters.

    Args:
        first17: int array (m, 17) of the first 17 digits.

    Returns:
        uint8 ASCII codes (m,) of the check character ('0'-'9' or 'X').
    """
    return _GB_CHECK[(first17 @ _GB_WEIGHTS) % 11]


def luhn_check_digits(body: np.ndarray) -> np.ndarray:
    """Luhn check digits for 14-digit IMEI bodies.

    Args:
        body: int array (m, L) of digits, most significant first.

    Returns:
        int array (m,) of check digits.
    """
    d = body[:, ::-1].copy()  # position 0 is rightmost; it is doubled because the check digit follows it
    dbl = d[:, 0::2] * 2
    d[:, 0::2] = dbl // 10 + dbl % 10
    return (10 - d.sum(axis=1) % 10) % 10


# --- Vectorised string building -----------------------------------------------------------------

_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def digits(values: np.ndarray, width: int) -> np.ndarray:
    """Decimal digits of non-negative ints, zero-padded: int array (m, width), most significant first."""
    v = np.asarray(values, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (v[:, None] // powers) % 10


def ascii_digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal ASCII bytes (m, width) of non-negative ints."""
    return (digits(values, width) + 48).astype(np.uint8)


def hex_bytes(values: np.ndarray, n_bytes: int, upper: bool = False) -> np.ndarray:
    """Hex ASCII (m, 2*n_bytes) of ints (or of a uint8 matrix (m, n_bytes))."""
    if values.ndim == 2:
        raw = values.astype(np.int64)
    else:
        shifts = np.arange(n_bytes - 1, -1, -1, dtype=np.int64) * 8
        raw = (values.astype(np.int64)[:, None] >> shifts) & 0xFF
    table = _HEX_UPPER if upper else _HEX_LOWER
    out = np.empty((raw.shape[0], 2 * n_bytes), dtype=np.uint8)
    out[:, 0::2] = table[raw >> 4]
    out[:, 1::2] = table[raw & 0xF]
    return out


def const(text: str, m: int) -> np.ndarray:
    """A literal repeated on m rows, as an ASCII matrix (m, len(text))."""
    return np.broadcast_to(np.frombuffer(text.encode(), dtype=np.uint8), (m, len(text)))


def to_arrow(matrix: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Fixed-width ASCII matrix (m, w) -> Arrow string array; rows where ``valid`` is False are null."""
    mat = np.ascontiguousarray(matrix, dtype=np.uint8)
    m, w = mat.shape
    offsets = np.arange(0, (m + 1) * w, w, dtype=np.int32) if m else np.zeros(1, dtype=np.int32)
    bitmap = None
    null_count = 0
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid.astype(np.uint8), bitorder="little"))
        null_count = int((~valid).sum())
    return pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(mat.tobytes()), bitmap, null_count)


def categorical(labels: tuple[str, ...], index: np.ndarray) -> pa.Array:
    """Arrow string array taking ``labels[index]``."""
    return pa.array(labels, type=pa.string()).take(pa.array(index.astype(np.int32)))


# --- Bijections and running counters ------------------------------------------------------------


def affine_perm(j: np.ndarray, modulus: int, mult: int, add: int) -> np.ndarray:
    """A bijection of [0, modulus): ``(mult * j + add) mod modulus`` (mult coprime to modulus)."""
    assert math.gcd(mult, modulus) == 1
    return (np.asarray(j, dtype=np.int64) * mult + add) % modulus


def running_rank(keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Occurrence number of each key over everything seen so far, in order; updates ``counts`` in place.

    The i-th occurrence (0-based) of key k across all calls gets rank i, so results do not depend on
    how the stream is chunked.
    """
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    uniq, start, cnt = np.unique(sk, return_index=True, return_counts=True)
    within = np.arange(sk.size, dtype=np.int64) - np.repeat(start, cnt)
    rank = np.empty(sk.size, dtype=np.int64)
    rank[order] = within + counts[sk]
    counts[uniq] += cnt.astype(counts.dtype)
    return rank
