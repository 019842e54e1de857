"""Desensitisation: the one set of rules every output path applies before a person sees a value.

Each catalog field carries a JR/T 0197 security level (1 public … 5 most sensitive) and a rule
(``mask``, ``generalise``, ``drop``, ``none``). Each viewer has a *clearance*: the highest level their
role sees unmasked (policy as data: the ``clearance`` section of ``coordinator/policy.yaml``). A value
whose field's level is above the viewer's clearance gets its field's rule; a ``drop`` field is dropped
for every viewer below the full clearance (5), whatever its level. The coordinator applies this to job
outputs (API, pages); the node applies it to row-level results (``psi-results``, CSV/JSONL exports).
Pure functions, no I/O.

The exact forms (``mask``):

* mobile numbers keep the first 3 and last 4 digits: ``13812345534`` → ``138****5534``;
* Chinese ID numbers keep the 6-digit region code and the last character (the check character):
  ``110105199001011234`` → ``110105***********4`` (18 characters in, 18 out; 15-digit legacy numbers
  likewise keep 6 + 1);
* any other identifier keeps 2 leading and 2 trailing characters (``C000123456`` → ``C0******56``);
* anything shorter than 8 characters is masked in full (``*`` per character).

``generalise``: an age becomes its 10-year band (``37`` → ``"30-39"``); an H3 cell becomes its parent
two resolutions coarser (resolution 8, about 0.7 km², → resolution 6, about 36 km²), a grid cell
``<lat>_<lng>`` in 1 km steps becomes its 10 km cell; an amount becomes a range on a 1-5-10 log scale
(``1234.5`` → ``"1,000-4,999"``, ``7000`` → ``"5,000-9,999"``, negatives as ``"-(1,000-4,999)"``); a
latitude or longitude is cut to 1 decimal (about 10 km); any other text keeps its first 2 characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from protocols.wire.control import DatasetPublic, Desensitisation, FieldSpec, JobInput, KeyType

__all__ = ["AGGREGATE", "COUNT_MAPS", "DROPPED", "FULL_CLEARANCE", "Clearance", "ClearanceError", "Disclosure",
           "ExportReceipt", "ExportRecord", "FieldRule", "ValueKind", "apply_rule", "desensitise", "desensitise_row",
           "field_rule", "generalise", "job_field_rules", "mask", "parse_clearance", "party_outputs"]


class ValueKind(StrEnum):
    """What a value is, which decides the exact form of its mask or generalisation."""

    MOBILE = "mobile"
    ID_NUMBER = "id_number"
    IDENTIFIER = "identifier"
    AGE = "age"
    CELL = "cell"
    COORDINATE = "coordinate"
    AMOUNT = "amount"
    TEXT = "text"
    AGGREGATE = "aggregate"


@dataclass(frozen=True)
class FieldRule:
    """A field's security level, its desensitisation rule and the kind of value it holds."""

    level: int
    rule: Desensitisation
    kind: ValueKind


AGGREGATE = FieldRule(1, Desensitisation.NONE, ValueKind.AGGREGATE)
"""Counts, ε, k, bytes: an output that derives from no single field (outputs are aggregates by contract)."""


FULL_CLEARANCE = 5
"""The clearance that sees every level, ``drop`` fields included (compliance, by the shipped policy)."""


class ClearanceError(ValueError):
    """A clearance section that cannot be used; the message names the key and the fix."""


# ---------------------------------------------------------------- the rules


def _stars(text: str, keep_head: int, keep_tail: int) -> str:
    if len(text) < 8:
        return "*" * len(text)
    return text[:keep_head] + "*" * (len(text) - keep_head - keep_tail) + text[len(text) - keep_tail:]


def mask(value: object, kind: ValueKind = ValueKind.IDENTIFIER) -> str:
    """The masked form of ``value`` (see the module docstring for each kind's exact form).

    Args:
        value: the value; anything but a string is masked through its ``str``.
        kind: ``mobile`` keeps 3 + 4, ``id_number`` keeps the region code and the last character,
            anything else keeps 2 + 2. Shorter than 8 characters: fully masked.
    """
    text = str(value)
    if kind == ValueKind.MOBILE:
        return _stars(text, 3, 4)
    if kind == ValueKind.ID_NUMBER:
        return _stars(text, 6, 1)
    return _stars(text, 2, 2)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(str(value).replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _age_band(value: object) -> str:
    number = _number(value)
    if number is None or number < 0:
        return "unknown"
    low = int(number // 10) * 10
    return f"{low}-{low + 9}"


def _amount_range(value: object) -> str:
    number = _number(value)
    if number is None:
        return "unknown"
    magnitude = abs(number)
    if magnitude < 1:
        return "<1"
    exponent = math.floor(math.log10(magnitude))
    base = 10 ** exponent
    low, high = (base, 5 * base - 1) if magnitude < 5 * base else (5 * base, 10 * base - 1)
    text = f"{low:,}-{high:,}"
    return f"-({text})" if number < 0 else text


_GRID = re.compile(r"^(-?\d+)_(-?\d+)$")


def _coarser_cell(value: object) -> str:
    text = str(value)
    grid = _GRID.match(text)
    if grid:  # 1 km grid index pairs → the 10 km cell holding them
        return f"{int(grid.group(1)) // 10 * 10}_{int(grid.group(2)) // 10 * 10}"
    try:
        import h3  # noqa: PLC0415 - optional: only H3 cells need it

        if h3.is_valid_cell(text):
            resolution = h3.get_resolution(text)
            return str(h3.cell_to_parent(text, max(0, resolution - 2)))
    except ImportError:  # pragma: no cover - h3 ships with the node runtime
        pass
    return mask(text)


def generalise(value: object, kind: ValueKind = ValueKind.TEXT) -> str:
    """The generalised form of ``value``: a band, a range or a coarser cell (module docstring).

    Args:
        value: the value.
        kind: ``age``, ``amount``, ``cell``, ``coordinate``; anything else keeps its first 2 characters.
    """
    if kind == ValueKind.AGE:
        return _age_band(value)
    if kind == ValueKind.AMOUNT:
        return _amount_range(value)
    if kind == ValueKind.CELL:
        return _coarser_cell(value)
    if kind == ValueKind.COORDINATE:
        number = _number(value)
        return "unknown" if number is None else f"{math.trunc(number * 10) / 10:.1f}"
    text = str(value)
    return text[:2] + "*" * max(0, len(text) - 2) if len(text) > 2 else "*" * len(text)


class _Dropped:
    """The marker ``apply_rule`` returns for a value that must not appear at all."""

    def __repr__(self) -> str:
        return "DROPPED"


DROPPED: Any = _Dropped()


def apply_rule(value: Any, rule: FieldRule, clearance: int) -> Any:
    """``value`` as a viewer of ``clearance`` may see it: unchanged at or below the clearance, else ruled.

    A ``drop`` field is left out for every viewer below ``FULL_CLEARANCE``, whatever its level: the
    governance file says it never appears in an output.

    Returns:
        The value, its masked or generalised form, or ``DROPPED`` (leave the field out). ``None``
        stays ``None`` (nothing to hide). A ``none`` rule above the clearance is treated as ``mask``:
        a field the catalog forgot to rule is never shown above the viewer's clearance.
    """
    if rule.rule == Desensitisation.DROP and clearance < FULL_CLEARANCE:
        return DROPPED
    if value is None or rule.level <= clearance:
        return value
    if isinstance(value, list | tuple):
        shown = [apply_rule(v, rule, clearance) for v in value]
        return [v for v in shown if v is not DROPPED]
    if isinstance(value, dict):
        return {k: v for k, v in ((k, apply_rule(v, rule, clearance)) for k, v in value.items()) if v is not DROPPED}
    if rule.rule == Desensitisation.GENERALISE:
        return generalise(value, rule.kind)
    return mask(value, rule.kind)


COUNT_MAPS = frozenset({"queried_by_key", "hits_by_key", "conflicts_by_key", "invalid_identifiers",
                        "shared_key_values", "refusal_reasons", "tables"})
"""Output keys whose value maps key types or reasons (``mobile``, ``imei:placeholder``) to counts: their
keys name no field, so they are not ruled as fields (their values are still walked)."""


def _is_count_map(key: str) -> bool:
    return key in COUNT_MAPS or key.endswith("_by_key")


def desensitise(data: Any, rules: Mapping[str, FieldRule], clearance: int) -> Any:
    """Apply ``rules`` (by key name, at any depth) to a JSON-like ``data`` for a viewer of ``clearance``.

    A key named after a field gets that field's rule for its whole value; a key without a rule is an
    aggregate (level 1) and its value is walked for keys that have one. The keys of a count map
    (``COUNT_MAPS``, ``*_by_key``) are key types and reasons, not fields; their values are walked.
    """
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            rule = rules.get(str(key))
            if rule is not None:
                shown = apply_rule(value, rule, clearance)
            elif isinstance(value, dict) and _is_count_map(str(key)):
                shown = {k: desensitise(v, rules, clearance) for k, v in value.items()}
            else:
                shown = desensitise(value, rules, clearance)
            if shown is not DROPPED:
                out[key] = shown
        return out
    if isinstance(data, list | tuple):
        return [desensitise(v, rules, clearance) for v in data]
    return data


def desensitise_row(row: Mapping[str, Any], rules: Mapping[str, FieldRule], clearance: int) -> dict[str, Any]:
    """One row-level record (a CSV row) as a viewer of ``clearance`` may see it; dropped columns left out."""
    result = desensitise(dict(row), rules, clearance)
    assert isinstance(result, dict)  # noqa: S101 - a dict in, a dict out
    return result


# ---------------------------------------------------------------- where rules come from


_KEY_KINDS = {KeyType.MOBILE: ValueKind.MOBILE, KeyType.ID_NUMBER: ValueKind.ID_NUMBER}


def _kind_of(spec: FieldSpec) -> ValueKind:
    name = spec.name.lower()
    if spec.key_type is not None:
        return _KEY_KINDS.get(spec.key_type, ValueKind.IDENTIFIER)
    if spec.category.value == "identifier":
        return ValueKind.IDENTIFIER
    if name == "age" or name.endswith("_age"):
        return ValueKind.AGE
    if name.endswith("_cell") or name == "cell":
        return ValueKind.CELL
    if name in ("lat", "lng", "latitude", "longitude"):
        return ValueKind.COORDINATE
    if spec.type in ("integer", "float"):
        return ValueKind.AMOUNT
    return ValueKind.TEXT


def field_rule(spec: FieldSpec) -> FieldRule:
    """The rule a catalog field gives every output value taken from it."""
    return FieldRule(spec.security_level, spec.desensitisation, _kind_of(spec))


def _stricter(a: FieldRule | None, b: FieldRule) -> FieldRule:
    return b if a is None or b.level > a.level else a


def job_field_rules(inputs: Iterable[JobInput], datasets: Mapping[int, DatasetPublic]) -> dict[str, FieldRule]:
    """Output key name → rule, from every field of the job's input datasets (strictest on a name clash).

    Derived outputs carry their source's level: a site's ``cell``, ``lat`` and ``lng`` (site selection)
    derive from the job's cell fields, so they get the strictest cell field's level, generalised.
    """
    rules: dict[str, FieldRule] = {}
    for inp in inputs:
        dataset = datasets.get(inp.dataset_id)
        for spec in dataset.fields if dataset is not None else ():
            rules[spec.name] = _stricter(rules.get(spec.name), field_rule(spec))
    cells = [r for r in rules.values() if r.kind == ValueKind.CELL]
    if cells:
        level = max(r.level for r in cells)
        rules["cell"] = _stricter(rules.get("cell"), FieldRule(level, Desensitisation.GENERALISE, ValueKind.CELL))
        for name in ("lat", "lng"):
            rules[name] = _stricter(rules.get(name), FieldRule(level, Desensitisation.GENERALISE,
                                                               ValueKind.COORDINATE))
    return rules


def party_outputs(outputs: Mapping[str, Any], party: str | None, *, everyone: bool) -> dict[str, Any]:
    """The per-party outputs a viewer may read: all of them for ``everyone`` (auditors), else its own party's."""
    if everyone:
        return dict(outputs)
    return {party: outputs[party]} if party is not None and party in outputs else {}


# ---------------------------------------------------------------- clearance (policy as data)


@dataclass(frozen=True)
class Clearance:
    """Per role, the highest security level it sees unmasked; which (role, purpose) may export in full."""

    levels: Mapping[str, int] = field(default_factory=dict)
    full_export: frozenset[tuple[str, str]] = frozenset()

    def level(self, role: str) -> int:
        """The role's clearance; 0 (everything ruled) for a role the policy does not name."""
        return self.levels.get(str(role), 0)

    def may_export_full(self, role: str, purpose: str) -> bool:
        """Whether ``role`` may export a ``purpose`` job's row-level results unmasked."""
        return (str(role), str(purpose)) in self.full_export


def parse_clearance(raw: object) -> Clearance:
    """Parse the ``clearance`` section: ``{levels: {role: 1-5}, full_export: [{role, purpose}]}``.

    Raises:
        ClearanceError: naming the key and the fix.
    """
    if not isinstance(raw, Mapping):
        raise ClearanceError("clearance must be a mapping with 'levels' and 'full_export' "
                             "(fix: e.g. clearance: {levels: {analyst: 3}, full_export: []})")
    unknown = sorted(set(raw) - {"levels", "full_export"})
    if unknown:
        raise ClearanceError(f"clearance.{unknown[0]}: unknown key (fix: keep only 'levels' and 'full_export')")
    levels = raw.get("levels", {})
    if not isinstance(levels, Mapping):
        raise ClearanceError("clearance.levels must map each role to a level (fix: e.g. levels: {analyst: 3})")
    for role, level in levels.items():
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 5:
            raise ClearanceError(f"clearance.levels.{role}: {level!r} is not a level (fix: a whole number 0 to 5)")
    grants: set[tuple[str, str]] = set()
    for i, grant in enumerate(raw.get("full_export", []) or []):
        if not isinstance(grant, Mapping) or set(grant) != {"role", "purpose"}:
            raise ClearanceError(f"clearance.full_export.{i}: {grant!r} (fix: give {{role: ROLE, purpose: PURPOSE}})")
        grants.add((str(grant["role"]), str(grant["purpose"])))
    return Clearance(levels={str(k): int(v) for k, v in levels.items()}, full_export=frozenset(grants))


# ---------------------------------------------------------------- wire models (node ↔ coordinator)


class Disclosure(BaseModel):
    """What the caller may see of one job's results: its clearance and the rule of each field."""

    job_id: int
    role: str
    party: str | None
    purpose: str
    clearance: int = Field(ge=0, le=5)
    full_export: bool = Field(description="whether this role may export this job's row-level results unmasked")
    fields: dict[str, FieldRule]

    def rules(self) -> dict[str, FieldRule]:
        """The field rules, by name."""
        return dict(self.fields)


class ExportRecord(BaseModel):
    """A node's notice of one export of row-level results, audited at the coordinator before it is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1, max_length=300, description="where the node writes the export")
    rows: int = Field(ge=0)
    columns: list[str] = Field(max_length=50)
    full: bool = Field(description="unmasked: needs the policy's full_export grant for this role and purpose")
    reason: str = Field(default="", max_length=500, description="why: required for a full export")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="digest of the exported bytes")


class ExportReceipt(BaseModel):
    """The coordinator's answer: the export is recorded under this audit sequence number."""

    job_id: int
    audit_seq: int
    full: bool
