"""Seeded synthetic bank and telco populations for the Tandem demo.

``generate`` streams ``n`` people in chunks through the person model in
:mod:`demo._synthetic_model` and writes three tables (schemas and distributions: demo/SYNTHETIC.md):

- ``bank_customers``: the bank's customers with features and labels,
- ``bank_lost_contacts``: the customers the bank can no longer reach, with partial, messy identifiers,
- ``telco_subscribers``: the telco's subscribers with identifiers, usage and location features.

``simulate_conversions`` (pure, seeded) gives the bank's app registrations after a campaign, with the
true per-arm rates and uplift; ``write_conversions`` writes them as the bank's ``bank_conversions``.

The same seed gives byte-identical CSV files whatever the chunk size; memory is bounded by the chunk.

CLI::

    python -m demo.synthetic --n 100000 --seed 7 --out DIR [--format csv|parquet]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm import tqdm

from demo._synthetic_conversions import Conversions, simulate_conversions, write_conversions
from demo._synthetic_model import MAX_PEOPLE, State, Streams, SynthConfig, build_chunk

__all__ = ["DATASETS", "Conversions", "GeneratedPaths", "SynthConfig", "generate", "main", "simulate_conversions",
           "write_conversions"]

DATASETS = ("bank_customers", "bank_lost_contacts", "telco_subscribers")
MIN_PEOPLE = 1


@dataclass(frozen=True)
class GeneratedPaths:
    """Where ``generate`` wrote each table, and how many rows each has."""

    bank_customers: Path
    bank_lost_contacts: Path
    telco_subscribers: Path
    rows: dict[str, int]
    seconds: float

    def as_dict(self) -> dict[str, Path]:
        """Dataset name -> file path."""
        return {name: getattr(self, name) for name in DATASETS}


class _Writer(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class _CsvWriter:
    """Appends Arrow tables as CSV: unquoted (no value contains a comma or quote), nulls as empty fields."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._fh = path.open("wb")
        self._fh.write((",".join(schema.names) + "\n").encode())
        self._opts = pacsv.WriteOptions(include_header=False, quoting_style="none")

    def write(self, table: pa.Table) -> None:
        pacsv.write_csv(table, self._fh, self._opts)

    def close(self) -> None:
        self._fh.close()


class _ParquetWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._w = pq.ParquetWriter(path, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self._w.write_table(table)

    def close(self) -> None:
        self._w.close()


def generate(
    out_dir: Path,
    n: int = 100_000,
    seed: int = 7,
    fmt: Literal["csv", "parquet"] = "csv",
    chunk: int = 200_000,
    progress: bool = True,
    config: SynthConfig | None = None,
) -> GeneratedPaths:
    """Generate the synthetic population and write the three tables to ``out_dir``.

    Args:
        out_dir: directory to write to (created if missing).
        n: number of people (bank customers ~60%, telco subscribers ~70%).
        seed: seed of every random stream; the same seed gives the same files.
        fmt: ``"csv"`` (default) or ``"parquet"`` (zstd).
        chunk: people generated and written per step; bounds memory, does not change the output.
        progress: show a tqdm progress bar.
        config: population parameters (overlap, stale-number share, ...); defaults if None.

    Returns:
        The written paths, row counts and elapsed seconds.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}; use 'csv' or 'parquet'")
    if not MIN_PEOPLE <= n <= MAX_PEOPLE:
        raise ValueError(f"n must be in [{MIN_PEOPLE}, {MAX_PEOPLE}]")
    if chunk < 1:
        raise ValueError("chunk must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.{fmt}" for name in DATASETS}
    state = State(Streams(seed), config or SynthConfig())
    writers: dict[str, _Writer] = {}
    rows = dict.fromkeys(DATASETS, 0)
    start = time.perf_counter()
    try:
        with tqdm(total=n, unit="people", unit_scale=True, disable=not progress, desc="synthetic") as bar:
            done = 0
            while done < n:
                m = min(chunk, n - done)
                for name, table in build_chunk(state, m).items():
                    if name not in writers:
                        cls = _CsvWriter if fmt == "csv" else _ParquetWriter
                        writers[name] = cls(paths[name], table.schema)
                    writers[name].write(table)
                    rows[name] += table.num_rows
                done += m
                bar.update(m)
    finally:
        for w in writers.values():
            w.close()
    return GeneratedPaths(**paths, rows=rows, seconds=time.perf_counter() - start)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m demo.synthetic",
        description="Generate a seeded synthetic bank + telco population (see demo/SYNTHETIC.md).",
    )
    ap.add_argument("--n", type=int, default=100_000, help="number of people (default 100000)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--format", dest="fmt", choices=("csv", "parquet"), default="csv", help="file format")
    ap.add_argument("--chunk", type=int, default=200_000, help="people per chunk (memory bound; default 200000)")
    ap.add_argument("--stale-share", type=float, default=SynthConfig.stale_share,
                    help="share of bank customers whose mobile on file is stale (default 0.08)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    out = generate(args.out, n=args.n, seed=args.seed, fmt=args.fmt, chunk=args.chunk,
                   progress=not args.no_progress, config=SynthConfig(stale_share=args.stale_share))
    for name in DATASETS:
        print(f"{name}: {out.rows[name]} rows -> {getattr(out, name)}")
    print(f"{args.n} people in {out.seconds:.1f} s ({args.n / max(out.seconds, 1e-9):,.0f} people/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
