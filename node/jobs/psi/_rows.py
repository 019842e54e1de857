"""A party's PSI inputs from its own rows: key columns, filter, consent, record ids and labels.

Pure functions over pandas frames; the node (``_node.load_rows``) and the local two-file mode
(``local``) both read a frame and call :func:`party_rows`, so they select exactly the same rows.
Nothing here leaves the party: these are the raw identifiers the sessions normalise and blind.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from protocols.wire.control import KeyType
from protocols.wire.errors import ConfigError
from protocols.wire.filters import Predicate, parse_filter

__all__ = ["KeyColumn", "PartyRows", "filter_mask", "infer_key_type", "party_rows"]

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_TRUE = frozenset({"1", "1.0", "true", "t", "yes", "y"})


@dataclass(frozen=True)
class KeyColumn:
    """A column used as a PSI key and the identifier kind its values are."""

    field: str
    key_type: KeyType


@dataclass(frozen=True)
class PartyRows:
    """The rows one party puts into a PSI job (after its filter and consent), as raw strings.

    Attributes:
        keys: Raw identifiers per key type, in priority order; ``None`` where a row has none.
        record_ids: The party's own record ids (e.g. customer_id), or row numbers when it has none.
        labels: The label column (e.g. the telco's msisdn) when one was asked for.
        total_rows: Rows in the source.
        filtered_out: Rows the job filter excluded.
        no_consent: Rows excluded because the consent field was not set.
    """

    keys: dict[KeyType, list[str | None]]
    record_ids: list[str]
    labels: list[str | None] | None
    total_rows: int
    filtered_out: int = 0
    no_consent: int = 0

    @property
    def size(self) -> int:
        """Rows that take part."""
        return len(self.record_ids)


def infer_key_type(field: str) -> KeyType:
    """Key type of a column named after it (``msisdn`` and ``phone`` are mobile numbers); for local files.

    Raises:
        ConfigError: If the name is not a key type.
    """
    name = field.lower()
    if name in ("msisdn", "phone", "mobile"):
        return KeyType.MOBILE
    try:
        return KeyType(name)
    except ValueError:
        raise ConfigError(f"column {field!r} is not a known key type ({', '.join(KeyType)})") from None


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        raise ConfigError(f"column {name!r} is not in the dataset (columns: {', '.join(map(str, frame.columns))})")
    return frame[name]


def filter_mask(frame: pd.DataFrame, predicates: Sequence[Predicate]) -> pd.Series:
    """Rows satisfying every predicate; a missing or unparseable cell never satisfies one."""
    mask = pd.Series(True, index=frame.index)
    for pred in predicates:
        col = _column(frame, pred.field)
        if isinstance(pred.value, str):
            values = col.astype("string")
        else:
            values = pd.to_numeric(col, errors="coerce")
        present = values.notna()
        hit = _OPS[pred.op](values.where(present), pred.value)
        mask &= present & pd.Series(hit, index=frame.index).fillna(False).astype(bool)
    return mask


def _consent_mask(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().str.lower().isin(_TRUE).fillna(False).astype(bool)


def _strings(series: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in series.tolist()]


def party_rows(
    frame: pd.DataFrame,
    keys: Sequence[KeyColumn],
    *,
    id_field: str | None = None,
    label_field: str | None = None,
    filter_text: str | None = None,
    consent_field: str | None = None,
) -> PartyRows:
    """Select the rows that take part and pull out their key, id and label columns.

    Args:
        frame: The party's rows (any dtypes; values are read as text).
        keys: Key columns, in priority order.
        id_field: Column holding the party's own record id (row numbers when ``None``).
        label_field: Column holding labels (the sender's msisdn for recovery).
        filter_text: A job filter (``protocols.wire.filters`` grammar), applied first.
        consent_field: Rows take part only if this column is 1/true (applied after the filter).

    Raises:
        ConfigError: If a named column is missing. ``FilterSyntaxError`` for a bad filter.
    """
    total = len(frame)
    if filter_text:
        frame = frame[filter_mask(frame, parse_filter(filter_text))]
    after_filter = len(frame)
    if consent_field:
        frame = frame[_consent_mask(_column(frame, consent_field))]
    ids = _strings(_column(frame, id_field)) if id_field else [str(i) for i in frame.index]
    return PartyRows(
        keys={k.key_type: _strings(_column(frame, k.field)) for k in keys},
        record_ids=[v or "" for v in ids],
        labels=_strings(_column(frame, label_field)) if label_field else None,
        total_rows=total,
        filtered_out=total - after_filter,
        no_consent=after_filter - len(frame),
    )
