"""The driver reads Parquet in bounded memory, whatever the row-group size (issue 11: driver memory flat).

Spark writes 128 MB row groups; with Arrow's defaults a reader holds a whole column chunk before its
first batch. Each test writes a file in one process and reads it in a fresh one, which reports the peak
of Arrow's memory pool (``max_memory``: every byte the Parquet reader allocates goes through it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
RECORD = 64
ROWS = 500_000  # 32 MB of records, in one row group

_READ = """
import json, sys
from pathlib import Path
import pyarrow as pa
sys.path.insert(0, {root!r})
from node.spark._tables import iter_part_records
total = sum(len(block) for block in iter_part_records(Path({parts!r}), 1, batch_rows=4096))
print(json.dumps({{"bytes": total, "peak": pa.default_memory_pool().max_memory()}}))
"""


def _spark_shaped_part(directory: Path) -> bytes:
    """One sorted part of ROWS records in a single row group, as Spark writes them (no compression, no dictionary)."""
    raw = np.random.default_rng(3).integers(0, 256, size=(ROWS, RECORD), dtype=np.uint8)
    raw = raw[np.lexsort(raw.T[::-1])]
    offsets = pa.py_buffer((np.arange(ROWS + 1, dtype=np.int32) * RECORD).tobytes())
    column = pa.Array.from_buffers(pa.binary(), ROWS, [None, offsets, pa.py_buffer(raw.tobytes())])
    (directory / "part=0").mkdir(parents=True)
    pq.write_table(pa.table({"record": column}), directory / "part=0" / "part-00000.parquet", compression="none",
                   use_dictionary=False, row_group_size=ROWS)
    return raw.tobytes()


def test_the_sorted_parts_are_appended_in_pages_not_row_groups(tmp_path: Path) -> None:
    expected = _spark_shaped_part(tmp_path / "sorted")
    out = subprocess.run([sys.executable, "-c", _READ.format(root=str(ROOT), parts=str(tmp_path / "sorted"))],
                         capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout)
    assert figures["bytes"] == len(expected) == ROWS * RECORD
    # the whole row group is 32 MB; streamed, Arrow holds a 1 MiB buffer, a few pages and one 256 KiB batch
    assert figures["peak"] < 8 << 20, f"Arrow peaked at {figures['peak'] >> 20} MB reading a 32 MB row group"


def test_the_appended_bytes_are_the_records_in_order(tmp_path: Path) -> None:
    from node.spark._tables import iter_part_records

    expected = _spark_shaped_part(tmp_path / "sorted")
    assert b"".join(iter_part_records(tmp_path / "sorted", 1, batch_rows=4096)) == expected
