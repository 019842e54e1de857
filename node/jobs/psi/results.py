"""Row-level results that stay at the bank node: matched customer ids, recovered numbers.

They are written into the job's directory on the node (``<state>/jobs/<job id>/``, mode 0600 files,
which the runner renames from ``<id>.partial`` only when the whole job succeeded, so a failed job
keeps nothing). The coordinator never receives them; it gets counts. Every listing masks numbers
(``138****1234``); the full number is in the file, for the bank's contact process to use.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .outreach import mask_msisdn

__all__ = ["MATCHED_IDS_FILE", "RECOVERED_FILE", "list_results", "write_rows"]

MATCHED_IDS_FILE = "matched_customer_ids.csv"
RECOVERED_FILE = "recovered_contacts.csv"
_MASKED_COLUMNS = frozenset({"msisdn"})


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


def list_results(job_dir: Path, *, limit: int = 20) -> list[str]:
    """Printable lines of a job's row-level results, numbers masked; empty if the job kept none."""
    lines: list[str] = []
    for name in (RECOVERED_FILE, MATCHED_IDS_FILE):
        path = job_dir / name
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
        lines.append(f"{name}: {len(rows)} rows")
        for row in rows[:limit]:
            shown = {k: (mask_msisdn(v) if k in _MASKED_COLUMNS else v) for k, v in row.items()}
            lines.append("  " + "  ".join(f"{k}={v}" for k, v in shown.items()))
    return lines
