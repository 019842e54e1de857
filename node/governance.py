"""Governance files and the catalog entry built from them: schema and coarse statistics, never a row value.

A governance file is the data owner's statement about each column (YAML)::

    dataset: bank_customers
    description: Retail customers of the bank (synthetic)
    fields:
      customer_id: {type: string, category: identifier, security_level: 3, desensitisation: mask,
                    purposes: [marketing, recovery], key_type: customer_id}
      balance: {type: float, category: feature, security_level: 3, desensitisation: generalise,
                purposes: [risk]}

``type`` is one of string, integer, float, boolean, date; ``category`` one of identifier, feature,
label, sensitive; ``security_level`` 1–5 (JR/T 0197); ``desensitisation`` one of mask, generalise,
drop, none (default none); ``purposes`` from ``protocols.wire.control.Purpose``; ``key_type``
(PSI key kind) only for identifiers.

``describe`` checks that governance and source name exactly the same columns and that every value
parses as its declared type, then computes what the catalog may hold: the row count and, per field,
the share of nulls (rounded to 0.01) and a distinct-count bucket. It never returns min, max, samples,
top values or any other value read from a row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from node.adapters import DEFAULT_BATCH_SIZE, DataSource, redact_uri
from protocols.wire.control import (
    DatasetRegister,
    Desensitisation,
    FieldCategory,
    FieldSpec,
    FieldStats,
    KeyType,
    Purpose,
)
from protocols.wire.errors import ConfigError

__all__ = ["DISTINCT_CAP", "FieldRule", "Governance", "coerce_types", "describe", "distinct_bucket", "load_governance"]

DISTINCT_CAP = 1_000_000
FieldType = Literal["string", "integer", "float", "boolean", "date"]
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class FieldRule(BaseModel):
    """The data owner's rule for one column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FieldType
    category: FieldCategory
    security_level: int = Field(ge=1, le=5)
    desensitisation: Desensitisation = Desensitisation.NONE
    purposes: list[Purpose] = Field(default_factory=list)
    key_type: KeyType | None = None


class Governance(BaseModel):
    """A parsed governance file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,62}$")]
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    fields: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")], FieldRule] = Field(
        min_length=1, max_length=500
    )


def load_governance(path: Path) -> Governance:
    """Read and validate a governance YAML file.

    Raises:
        ConfigError: naming the file and the first offending entry (e.g. ``fields.balance.security_level``).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read governance file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"governance file {path} is not valid YAML{where}") from exc
    try:
        return Governance.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"governance file {path}: {loc}: {err['msg']}") from exc


def distinct_bucket(distinct: int) -> Literal["1", "<10", "<100", "<10k", "<1M", ">=1M"]:
    """Map a distinct count to the catalog's coarse bucket (0 distinct, an all-null field, is ``<10``)."""
    if distinct == 1:
        return "1"
    for limit, label in ((10, "<10"), (100, "<100"), (10_000, "<10k"), (DISTINCT_CAP, "<1M")):
        if distinct < limit:
            return label  # type: ignore[return-value]
    return ">=1M"


def _coerce_series(series: pd.Series, ftype: FieldType) -> pd.Series:
    if ftype == "string":
        return series.astype("string")
    if ftype in ("integer", "float"):
        numbers = pd.to_numeric(series, errors="coerce")
        if ftype == "float":
            return numbers.astype("float64")
        whole = numbers.where(numbers.isna() | (numbers == np.floor(numbers)))
        return whole.astype("Int64")
    if ftype == "boolean":
        if pd.api.types.is_bool_dtype(series):
            return series.astype("boolean")
        text = series.astype("string").str.strip().str.lower()
        return text.map(lambda v: True if v in _TRUE else False if v in _FALSE else pd.NA).astype("boolean")
    return pd.to_datetime(series, errors="coerce", format="ISO8601")


def coerce_types(frame: pd.DataFrame, governance: Governance) -> pd.DataFrame:
    """Convert each governed column of ``frame`` to its declared type; unparseable cells become null."""
    out = frame.copy()
    for name in frame.columns:
        if name in governance.fields:
            out[name] = _coerce_series(frame[name], governance.fields[name].type)
    return out


def _check_columns(source: DataSource, governance: Governance, gov_path: str) -> None:
    columns = source.columns
    for col in columns:
        if col not in governance.fields:
            raise ConfigError(
                f"column {col!r} of {redact_uri(source.uri)} has no entry in governance file {gov_path}: add "
                f"`fields.{col}: {{type: ..., category: ..., security_level: ...}}` or leave the column out of "
                "the source (for SQL, select columns with #query=SELECT ...)"
            )
    for name in governance.fields:
        if name not in columns:
            raise ConfigError(
                f"governance file {gov_path} declares field {name!r}, which is not a column of "
                f"{redact_uri(source.uri)} (columns: {', '.join(columns)}); fix the name or remove the entry"
            )


class _FieldScan:
    """Running null count, parse failures and distinct hashes (hashes only, capped) of one column."""

    def __init__(self, ftype: FieldType) -> None:
        self.ftype = ftype
        self.nulls = 0
        self.bad = 0
        self.hashes = np.empty(0, dtype=np.uint64)

    def add(self, series: pd.Series) -> None:
        missing = series.isna()
        self.nulls += int(missing.sum())
        self.bad += int((_coerce_series(series, self.ftype).isna() & ~missing).sum())
        if len(self.hashes) <= DISTINCT_CAP:
            present = series[~missing]
            new = pd.util.hash_pandas_object(present, index=False).to_numpy(dtype=np.uint64)
            self.hashes = np.union1d(self.hashes, new)


def _scan(
    source: DataSource, governance: Governance, batch_size: int, progress: Callable[[int], None] | None
) -> tuple[int, dict[str, _FieldScan]]:
    scans = {name: _FieldScan(rule.type) for name, rule in governance.fields.items()}
    rows = 0
    for batch in source.iter_batches(list(governance.fields), batch_size):
        rows += len(batch)
        for name, scan in scans.items():
            scan.add(batch[name])
        if progress is not None:
            progress(len(batch))
    return rows, scans


def describe(
    source: DataSource,
    governance: Governance,
    *,
    governance_path: str = "governance file",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> DatasetRegister:
    """Build the catalog entry for ``source`` under ``governance``: schema, row count, coarse stats.

    Args:
        source: the data source (read once, in batches).
        governance: the parsed governance file.
        governance_path: how to name the governance file in error messages.
        batch_size: rows per batch.
        progress: called with the number of rows of each batch scanned (for a progress bar).

    Raises:
        ConfigError: if a source column has no governance entry, a governance field is not in the source,
            or values do not parse as the declared type (the message gives counts, never values).
    """
    _check_columns(source, governance, governance_path)
    rows, scans = _scan(source, governance, batch_size, progress)
    fields = []
    for name, rule in governance.fields.items():
        scan = scans[name]
        if scan.bad:
            raise ConfigError(
                f"field {name!r} is declared {rule.type} in {governance_path} but {scan.bad} of {rows} values "
                "do not parse as that type; fix the declared type or clean the column"
            )
        stats = FieldStats(
            null_fraction=round(scan.nulls / rows, 2) if rows else 0.0,
            distinct_bucket=distinct_bucket(len(scan.hashes)),
        )
        fields.append(FieldSpec(name=name, stats=stats, **rule.model_dump()))
    return DatasetRegister(name=governance.dataset, description=governance.description, row_count=rows, fields=fields)
