"""App promotion at the telco, the parts with no I/O.

Streaming scoring and install screening, the treatment/holdout split, and the k-suppressed (optionally
ε-noised) sizes the bank receives.

Everything here runs at the telco over its own subscribers; nothing here sends anything. What leaves the
node is decided by :mod:`node.jobs.marketing.app_promotion` from :func:`released_sizes` only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from node.jobs.sites.demand import two_sided_geometric_noise
from protocols.vfl.standalone import StandalonePart, score_standalone
from protocols.wire.control import KeyType
from psi.identifiers import normalise_column

__all__ = ["SUPPRESSED", "Candidates", "ScreenSpec", "installed_mask", "released_sizes", "screen", "split_arms"]

SUPPRESSED = "suppressed (< k)"
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True)
class ScreenSpec:
    """Which telco columns the screening reads and the threshold it applies.

    Attributes:
        threshold: least telco-alone score of a candidate, in [0, 1].
        features: the model's telco feature columns, in the card's order.
        installed: the boolean column "the bank's app is installed".
        key: the identifier column PSI excludes bank customers on.
        key_type: its key type.
        contact: the mobile-number column outreach uses (None in count mode).
        segment: the column whose values name each candidate's segment (None: one segment ``all``).
        usage: app-usage columns (days used in 30); each candidate notes which were used at all.
    """

    threshold: float
    features: tuple[str, ...]
    installed: str
    key: str
    key_type: KeyType
    contact: str | None = None
    segment: str | None = None
    usage: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """Every column to read, once each."""
        wanted = [self.key, self.installed, *self.features, self.contact, self.segment, *self.usage]
        return list(dict.fromkeys(c for c in wanted if c is not None))


@dataclass
class Candidates:
    """The screened candidate audience (at the telco only) and counts of what screening dropped.

    Attributes:
        keys: each candidate's canonical identifier (the PSI key).
        contacts: each candidate's mobile number as read (``None`` in count mode).
        segments: each candidate's segment label.
        uses: per candidate, whether each ``usage`` column was above 0.
        rows: subscribers read.
        over_threshold: subscribers whose score reached the threshold.
        installed: of those, dropped because the bank's app is installed (or unknown).
        invalid: of those, dropped because the key is missing or invalid, by reason.
    """

    keys: list[str] = field(default_factory=list)
    contacts: list[str | None] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    uses: list[tuple[bool, ...]] = field(default_factory=list)
    rows: int = 0
    over_threshold: int = 0
    installed: int = 0
    invalid: Counter[str] = field(default_factory=Counter)


def installed_mask(values: pd.Series) -> npt.NDArray[np.bool_]:
    """True where the app is installed *or unknown* (missing, unreadable): only a clear false is screened in."""
    text = values.astype("string").str.strip().str.lower()
    known_false: npt.NDArray[np.bool_] = text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)
    return ~known_false


def _segment_labels(frame: pd.DataFrame, column: str | None) -> list[str]:
    if column is None:
        return ["all"] * len(frame)
    return ["missing" if pd.isna(v) else str(v).strip().lower() for v in frame[column]]


def screen(part: StandalonePart, batches: Iterable[pd.DataFrame], spec: ScreenSpec) -> Candidates:
    """Score every subscriber at the telco alone and keep those over the threshold without the bank's app.

    Streams: one batch of rows and its scores in memory at a time; only candidates are kept. A missing
    feature value scores as the standalone scorer defines (training mean for LR, right branch for trees).
    """
    out = Candidates()
    for frame in batches:
        out.rows += len(frame)
        x = frame[list(spec.features)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        over = score_standalone(part, x) >= spec.threshold
        out.over_threshold += int(over.sum())
        keep = over & ~installed_mask(frame[spec.installed])
        out.installed += int(over.sum() - keep.sum())
        chosen = frame.loc[keep]
        column = normalise_column(spec.key_type, [None if pd.isna(v) else str(v) for v in chosen[spec.key]])
        for (_, reason), n in column.invalid.items():
            out.invalid[reason] += n
        segments = _segment_labels(chosen, spec.segment)
        used = chosen[list(spec.usage)].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
        contacts = (list(chosen[spec.contact].astype("string").fillna(""))
                    if spec.contact is not None else [None] * len(chosen))
        for value, index in zip(column.values, column.indices, strict=True):
            out.keys.append(value)
            out.contacts.append(contacts[index] or None)
            out.segments.append(segments[index])
            out.uses.append(tuple(bool(u) for u in used[index]))
    return out


def split_arms(n: int, holdout_share: float, seed: int) -> npt.NDArray[np.bool_]:
    """Which of ``n`` audience members (in audience order) are held out.

    ``round(n * share)`` of them, drawn uniformly without replacement by a generator seeded with ``seed``
    (reproducible).
    """
    if not 0.0 <= holdout_share < 1.0:
        raise ValueError("holdout_share must be in [0, 1)")
    held = np.zeros(n, dtype=bool)
    size = int(round(n * holdout_share))
    if size:
        held[np.random.default_rng(seed).choice(n, size=size, replace=False)] = True
    return held


def released_sizes(counts: Mapping[str, int], k: int, epsilon: float | None, rng: np.random.Generator, *,
                   sensitivity: int = 1) -> dict[str, int | str]:
    """What may leave the telco of per-cell counts: noised when ε is set, then suppressed below k.

    ``sensitivity`` is how many cells one person can add 1 to (1 when the cells partition people); the
    noise is calibrated to it, so the whole vector is ε-DP. A released count is never negative. Cells come
    out in sorted order.
    """
    cells = sorted(counts)
    values = np.array([counts[c] for c in cells], dtype=np.int64)
    if epsilon is not None and len(cells):
        values = np.maximum(values + two_sided_geometric_noise(epsilon, len(cells), rng, float(sensitivity)), 0)
    return {c: int(v) if v >= k else SUPPRESSED for c, v in zip(cells, values, strict=True)}
