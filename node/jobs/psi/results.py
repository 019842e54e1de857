"""Row-level results that stay at the bank node: matched customer ids, recovered numbers.

They are written into the job's directory on the node (``<state>/jobs/<job id>/``, mode 0600 files,
which the runner renames from ``<id>.partial`` only when the whole job succeeded, so a failed job
keeps nothing). The coordinator never receives them; it gets counts.

Every listing and export is desensitised (``protocols.wire.desensitise``) to the clearance of the
token the node runs with, which the coordinator states per job (``GET /jobs/{id}/disclosure``): each
column gets its source field's rule (``msisdn`` → ``138****1234`` for a clearance below its level); a
column the catalog does not know is masked as a level-5 identifier (fail closed). A full, unmasked
export needs the policy's grant for the role and the job's purpose and a reason; the coordinator
audits every export before the node writes it (``output.exported``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from protocols.wire.control import Desensitisation
from protocols.wire.desensitise import AGGREGATE, FieldRule, ValueKind, desensitise_row

__all__ = ["MATCHED_IDS_FILE", "RECOVERED_FILE", "ROW_LEVEL_FILES", "Export", "export_results", "list_results",
           "read_results", "write_rows"]

MATCHED_IDS_FILE = "matched_customer_ids.csv"
RECOVERED_FILE = "recovered_contacts.csv"
ROW_LEVEL_FILES = (RECOVERED_FILE, MATCHED_IDS_FILE)
_UNKNOWN = FieldRule(5, Desensitisation.MASK, ValueKind.IDENTIFIER)
_NAMES = {"matched_by": AGGREGATE}  # the key type a row matched on: a name, not a value


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Write a CSV readable by its owner only; return the number of rows."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    count = 0
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def read_results(job_dir: Path) -> dict[str, list[dict[str, str]]]:
    """Each row-level file a job kept (``ROW_LEVEL_FILES``) → its rows; empty if it kept none."""
    found: dict[str, list[dict[str, str]]] = {}
    for name in ROW_LEVEL_FILES:
        path = job_dir / name
        if path.exists():
            with path.open(newline="", encoding="utf-8") as handle:
                found[name] = list(csv.DictReader(handle))
    return found


def _rules(columns: Iterable[str], rules: Mapping[str, FieldRule]) -> dict[str, FieldRule]:
    return {c: rules.get(c) or _NAMES.get(c) or _UNKNOWN for c in columns}


def _shown(rows: list[dict[str, str]], rules: Mapping[str, FieldRule], clearance: int) -> list[dict[str, str]]:
    if not rows:
        return []
    column_rules = _rules(rows[0], rules)
    return [{k: str(v) for k, v in desensitise_row(row, column_rules, clearance).items()} for row in rows]


def list_results(job_dir: Path, *, rules: Mapping[str, FieldRule] | None = None, clearance: int = 0,
                 limit: int = 20) -> list[str]:
    """Printable lines of a job's row-level results as a viewer of ``clearance`` may see them.

    Args:
        job_dir: the job's directory on the node.
        rules: column → rule (from the coordinator's ``Disclosure``); unknown columns are level-5 masked.
        clearance: the viewer's clearance (0: every ruled column desensitised).
        limit: rows printed per file.
    """
    lines: list[str] = []
    for name, rows in read_results(job_dir).items():
        lines.append(f"{name}: {len(rows)} rows")
        for row in _shown(rows[:limit], rules or {}, clearance):
            lines.append("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return lines


@dataclass(frozen=True)
class Export:
    """One export's bytes and what the audit record says of it."""

    content: bytes
    rows: int
    columns: list[str]


def export_results(job_dir: Path, fmt: Literal["csv", "jsonl"], *, rules: Mapping[str, FieldRule] | None = None,
                   clearance: int = 0, full: bool = False) -> Export:
    """Every row-level result of the job as CSV or JSONL (one object per row, with its ``file``).

    Args:
        job_dir: the job's directory on the node.
        fmt: ``csv`` (one header: ``file`` plus the union of columns) or ``jsonl``.
        rules: column → rule; unknown columns are level-5 masked.
        clearance: the viewer's clearance; ignored when ``full``.
        full: unmasked. WARNING: only after the coordinator recorded a granted full export; the caller checks.
    """
    shown: list[dict[str, str]] = []
    for name, rows in read_results(job_dir).items():
        values = rows if full else _shown(rows, rules or {}, clearance)
        shown.extend({"file": name, **row} for row in values)
    columns = list(dict.fromkeys(c for row in shown for c in row))
    if fmt == "jsonl":
        content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in shown)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(shown)
        content = buffer.getvalue()
    return Export(content.encode("utf-8"), len(shown), columns)
