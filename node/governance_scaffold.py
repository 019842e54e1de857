"""A starting governance file from a source's columns (``register-dataset --scaffold``), for a person to review.

Each column gets a type inferred from a sample of its values, and a category, security level,
desensitisation and PSI key kind guessed from its name (``mobile`` → identifier, level 4, key kind
``mobile``; ``*_flag`` → label; ``*_cell``, ``lat``, ``lng`` → sensitive location, level 4). These are
guesses, marked ``# inferred: review``; the purposes (what the data owner allows each column to be
used for) cannot be guessed and are left as ``TODO``, as is the description. ``register-dataset``
refuses the file while a TODO marker remains.

Nothing here leaves the node: the sample is read to infer types only and no value is written.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import yaml

from node.adapters import DataSource, redact_uri
from node.governance import Governance
from protocols.wire.control import KeyType

__all__ = ["SAMPLE_ROWS", "governance_json_schema", "infer_rule", "scaffold_governance"]

SAMPLE_ROWS = 10_000
_KEYS: tuple[tuple[str, KeyType], ...] = (
    (r"^(mobile|msisdn|phone|phone_number|mobile_number)$", KeyType.MOBILE),
    (r"^(id_number|id_no|national_id|id_card)$", KeyType.ID_NUMBER),
    (r"^imei$", KeyType.IMEI), (r"^idfa$", KeyType.IDFA), (r"^(mac|mac_address)$", KeyType.MAC),
    (r"^(customer_id|cust_id|client_id)$", KeyType.CUSTOMER_ID),
)
_REAL_NAME = frozenset({KeyType.MOBILE, KeyType.ID_NUMBER})
_LABEL = re.compile(r"(_flag|_label|^label|^target|_adopted|_purchase)$")
_LOCATION = re.compile(r"(_cell|^lat|^lng|^lon|latitude|longitude|_location|_address)$")
_CONSENT = re.compile(r"^consent")


def _type_of(series: pd.Series) -> str:
    """The narrowest declared type every non-null sampled value parses as (CSV columns arrive as text)."""
    values = series.dropna()
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    text = values.astype("string").str.strip()
    if not len(text):
        return "string"
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return "integer" if (numbers == numbers.round()).all() and not text.str.contains(r"[.eE]").any() else "float"
    if text.str.lower().isin(["true", "false"]).all():
        return "boolean"
    if text.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?").all():
        return "date"
    return "string"


def infer_rule(name: str, series: pd.Series) -> dict[str, object]:
    """The guessed governance rule of one column (purposes left to the reviewer as ``TODO``)."""
    ftype = _type_of(series)
    key = next((k for pattern, k in _KEYS if re.match(pattern, name.lower())), None)
    rule: dict[str, object] = {"type": "string" if key is not None else ftype}
    if key is not None:
        rule |= {"category": "identifier", "security_level": 4 if key in _REAL_NAME else 3,
                 "desensitisation": "mask", "key_type": key.value}
    elif _LABEL.search(name.lower()):
        rule |= {"category": "label", "security_level": 3, "desensitisation": "drop"}
    elif _LOCATION.search(name.lower()):
        rule |= {"category": "sensitive", "security_level": 4, "desensitisation": "generalise"}
    elif _CONSENT.match(name.lower()):
        rule |= {"category": "sensitive", "security_level": 2, "desensitisation": "drop"}
    else:
        rule |= {"category": "feature", "security_level": 2, "desensitisation": "generalise"}
    return {**rule, "purposes": ["TODO"]}


def _flow(rule: dict[str, object]) -> str:
    return str(yaml.safe_dump(rule, default_flow_style=True, sort_keys=False, width=10_000)).strip()


def scaffold_governance(source: DataSource, *, dataset: str | None = None) -> str:
    """The text of a governance file for ``source``: one line per column, guesses marked, TODO where a person decides.

    Args:
        source: the data source; its first ``SAMPLE_ROWS`` rows are read to infer types.
        dataset: the dataset name; default the source file's stem (lowercased, ``_`` for other characters).
    """
    sample = next(source.iter_batches(source.columns, SAMPLE_ROWS), pd.DataFrame(columns=source.columns))
    stem = redact_uri(source.uri).rsplit("/", 1)[-1].split(".", 1)[0].split("#", 1)[0]
    name = dataset or re.sub(r"[^a-z0-9_\-]", "_", stem.lower()).lstrip("_-0123456789") or "TODO"
    lines = [f"# Governance of {redact_uri(source.uri)}, scaffolded by register-dataset --scaffold.",
             "# Schema: docs/GOVERNANCE.md (JSON Schema: docs/governance.schema.json).",
             "# Review every inferred rule; replace each TODO (purposes: see docs/GOVERNANCE.md).",
             f"dataset: {name}", "description: TODO describe the dataset", "fields:"]
    for column in source.columns:
        lines.append(f"  {column}: {_flow(infer_rule(column, sample[column]))}  # inferred: review")
    return "\n".join(lines) + "\n"


def governance_json_schema() -> str:
    """The JSON Schema of a governance file (``docs/governance.schema.json``), generated from ``Governance``.

    Regenerate with ``python -m node.governance_scaffold > docs/governance.schema.json``.
    """
    schema = Governance.model_json_schema()
    schema = {**schema, "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Tandem governance file"}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(governance_json_schema(), end="")
