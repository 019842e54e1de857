"""Recovery (labeled PSI, reveal mode) through the job drivers: telco preparation, bank online time, bytes.

    python bench/recovery_bench.py [--lost 10000] [--n 1000000] [--keys id_number] [--workers 2] [--json PATH]

Runs ``node.jobs.psi.local.run_local_job``'s parts — the same drivers, frames and sender
registry as two nodes, with the data plane replaced by an in-process transport — on synthetic data:
``n`` subscribers with unique valid ID numbers (and IMEIs with ``--keys id_number,imei``) and a
current number each; ``lost`` bank customers, half of them subscribers. Reports:

* ``prepare_s``: the telco builds its labeled table(s) for a fresh key epoch (normalise, OPRF,
  AES-GCM seal, sort, save); ``reuse_s``: a second job finds them in the epoch's cache;
* ``online_s``: the bank's wall time from hello to close (the telco's online OPRF evaluation of
  the bank's queries runs inside it, in the same process);
* ``bytes_bank_to_telco`` / ``bytes_telco_to_bank``: frame bytes each way (the table dominates);
* ``peak_rss_mb``: peak resident memory of this process (both roles); ``peak_rss_worker_mb``: of the
  largest pool worker;
* ``prepare_cpu_main_s`` / ``prepare_cpu_workers_s``: CPU seconds of this process and of the pool
  workers during ``prepare_s``, and ``prepare_idle_2core_estimate_s`` = main + workers / 2, the
  preparation's wall time on an otherwise idle 2-core machine; ``cpu_workers_s``: CPU seconds of
  the pool workers over the whole run (preparation, online, reuse);
* ``load_avg``: the 1-minute load average before and after the preparation (other work on the
  machine slows it down: on 2 cores, ``prepare_s`` is only meaningful near a load of 0).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.jobs.psi._link import LocalFrameTransport, SessionLink  # noqa: E402
from node.jobs.psi._rows import PartyRows  # noqa: E402
from node.jobs.psi._sender import SenderRegistry  # noqa: E402
from node.jobs.psi.outreach import OutboxChannel  # noqa: E402
from node.jobs.psi.recovery import recovery_sender_job, recovery_terms, run_recovery_receiver  # noqa: E402
from node.jobs.psi.tables import TableStore  # noqa: E402
from protocols.wire.control import JobParams, KeyType  # noqa: E402
from psi.engine import ProcessPoolMapper  # noqa: E402
from psi.identifiers import gb11643_check_digit, luhn_check_digit  # noqa: E402

_DAYS = 20_000
_BIRTH_DATES = [f"{dt.date(1950, 1, 1) + dt.timedelta(days=d):%Y%m%d}" for d in range(_DAYS)]


def _id_number(i: int) -> str:
    first17 = f"110101{_BIRTH_DATES[i % _DAYS]}{(i // _DAYS) % 1000:03d}"
    return first17 + gb11643_check_digit(first17)


def _imei(i: int) -> str:
    body = f"86{i:012d}"
    return body + luhn_check_digit(body)


_MAKERS = {KeyType.ID_NUMBER: _id_number, KeyType.IMEI: _imei}


def make_rows(n: int, lost: int, keys: list[KeyType], seed: int) -> tuple[PartyRows, PartyRows]:
    """Subscribers 0..n-1; lost customers: half drawn from subscribers, half from outside."""
    rng = random.Random(seed)
    telco = PartyRows(keys={k: [_MAKERS[k](i) for i in range(n)] for k in keys}, record_ids=[str(i) for i in range(n)],
                      labels=[f"13{i:09d}" for i in range(n)], total_rows=n)
    inside = rng.sample(range(n), min(n, lost // 2))
    people = inside + list(range(n, n + lost - len(inside)))
    rng.shuffle(people)
    bank = PartyRows(keys={k: [_MAKERS[k](i) for i in people] for k in keys},
                     record_ids=[f"C{i:09d}" for i in people], labels=None, total_rows=len(people))
    return bank, telco


def _workers_cpu() -> float:
    """User + system CPU seconds of this process's live children (the pool workers)."""
    return sum(sum(child.cpu_times()[:2]) for child in psutil.Process().children(recursive=True))


def run(n: int, lost: int, keys: list[KeyType], workers: int, seed: int) -> dict[str, object]:
    """One measured recovery job (plus a second preparation that reuses the cached tables)."""
    terms = recovery_terms("bench", keys, JobParams(output_mode="reveal", match_cap=10_000_000))
    with tempfile.TemporaryDirectory(prefix="recovery-bench-") as state, ProcessPoolMapper(workers) as mapper:
        mapper(bytes, [(0,)] * workers)  # start the workers now, as a node does, not forked from a 5 GB heap later
        t0 = time.perf_counter()
        bank, telco = make_rows(n, lost, keys, seed)
        generate_s = time.perf_counter() - t0
        tables, outbox = TableStore(Path(state) / "psi"), OutboxChannel(Path(state) / "outbox.db")
        load_before = os.getloadavg()[0]
        t0, c0, w0 = time.perf_counter(), time.process_time(), _workers_cpu()
        job, report = recovery_sender_job(telco, terms, tables=tables, outreach=outbox, mapper=mapper)
        prepare_s, prepare_cpu = time.perf_counter() - t0, time.process_time() - c0
        prepare_workers = _workers_cpu() - w0
        load_after = os.getloadavg()[0]
        registry = SenderRegistry()
        link = SessionLink(LocalFrameTransport(lambda ch, fr: registry.dispatch("bench", ch, fr)), "bench")
        with registry.opened(job):
            t0 = time.perf_counter()
            outputs, recovered = run_recovery_receiver(link, bank, terms, mapper=mapper)
            online_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, again = recovery_sender_job(telco, terms, tables=tables, outreach=outbox, mapper=mapper)
        reuse_s = time.perf_counter() - t0
        outbox.close()
    assert all(t["reused"] for t in again.tables.values())
    pool = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "n": n, "lost": lost, "keys": [str(k) for k in keys], "workers": workers, "generate_s": round(generate_s, 2),
        "prepare_s": round(prepare_s, 2), "reuse_s": round(reuse_s, 2), "online_s": round(online_s, 2),
        "recovered": len(recovered), "expected": min(n, lost // 2),
        "bytes_bank_to_telco": link.stats.bytes_sent, "bytes_telco_to_bank": link.stats.bytes_received,
        "table_records": {k: v["records"] for k, v in report.tables.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(pool.ru_maxrss / 1024, 1), "prepare_cpu_main_s": round(prepare_cpu, 2),
        "prepare_cpu_workers_s": round(prepare_workers, 2),
        "prepare_idle_2core_estimate_s": round(prepare_cpu + prepare_workers / 2, 1),
        "cpu_workers_s": round(pool.ru_utime + pool.ru_stime, 2),
        "hits_by_key": outputs["hits_by_key"], "cpus": os.cpu_count(), "load_avg": [load_before, load_after],
        "python": platform.python_version(),
    }


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lost", type=int, default=10_000)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--keys", default="id_number", help="comma-separated key types: id_number, imei")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="append the result as one JSON line")
    args = p.parse_args()
    keys = [KeyType(k) for k in args.keys.split(",")]
    result = run(args.n, args.lost, keys, args.workers, args.seed)
    line = json.dumps(result)
    print(line)
    if args.json:
        with args.json.open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
