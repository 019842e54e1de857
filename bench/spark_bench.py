"""Recovery preparation and balanced overlap on the process pool and on Spark, side by side.

    python bench/spark_bench.py [--sizes 1000000,10000000] [--overlap 10000000x1000000] [--master local[2]]
                                [--data DIR] [--json PATH]

For every size ``n`` the telco's labeled-PSI preparation for recovery (normalise ``n`` raw ID numbers
and numbers, group, OPRF, seal, sort, write the table file) runs once with the pool engine (the
reference: ``psi.engine.ProcessPoolMapper``, 2 workers, records in the driver) and once with Spark
(``node.spark.build_table`` over the Parquet file, Spark ``--master``), each in a fresh process so
that peak memory is that run's own. The two table files must be byte-identical (``identical``).
``--overlap SxR`` runs a cardinality PSI of S telco and R bank identifiers (half of R are telco
subscribers): the telco's sender on each engine (Spark: its whole set blinded ahead in one Spark job
and streamed out in the data-plane chunks, ``SparkMapper.blind_ahead``), the bank's receiver on a
2-worker pool in both runs. A last run calibrates the scaling model (``docs/SCALING.md``): Spark's
per-task overhead, its fixed cost per build, the pipeline's throughput per core in one partition and
the driver's append rate; from them it prints the PROJECTION for 3.3 × 10⁸ subscribers on 16 × 4 and
64 × 4 executors (also in the JSON under ``projection``).

Reported per run: ``wall_s``; ``cpu_driver_s`` (this process) and ``cpu_children_s`` (pool workers,
or the Spark JVM and its Python workers); ``peak_driver_rss_mb`` (this Python process: the driver);
``peak_jvm_rss_mb`` (Spark's JVM, where local-mode executors live) and ``peak_worker_rss_mb`` (the
largest Python worker), sampled every 0.2 s; ``load_avg`` before and after (on 2 shared cores a
loaded machine slows everything: compare engines at the same load). Spark's start-up is timed apart
(``spark_start_s``), as a node starts its session once, and so is a first build of 1,000 subscribers
(``warmup_s``: the JVM's JIT and the Python workers warm up once per node process, not per job).
Also: ``records_per_s`` (throughput), ``table_bytes`` / ``wire_bytes``, Spark's ``stage_s`` (group,
seal_sort, append) and ``spark_jobs``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo._synthetic_ids import ascii_digits, gb11643_check_digits  # noqa: E402
from protocols.wire.control import KeyType  # noqa: E402

REGION = 110101


def _id_numbers(start: int, stop: int) -> list[str]:
    """Distinct valid 18-character ID numbers for indices ``start..stop`` (region, birth date, sequence)."""
    i = np.arange(start, stop, dtype=np.int64)
    days = np.datetime64("1950-01-01") + (i // 1000) % 20000
    ymd = days.astype("datetime64[D]").astype(str).astype("U10")
    date = np.char.replace(ymd, "-", "").astype("S8").view(np.uint8).reshape(-1, 8)
    region = ascii_digits(REGION + i // 20_000_000, 6)
    first17 = np.hstack([region, date, ascii_digits(i % 1000, 3)])
    check = gb11643_check_digits(first17.astype(np.int64) - 48)
    return np.hstack([first17, check[:, None]]).view("S18").ravel().astype(str).tolist()


def _subscribers(n: int, data: Path) -> Path:
    """A Parquet file of ``n`` subscribers (``id_number``, ``msisdn``), generated once and cached."""
    path = data / f"subscribers-{n}.parquet"
    if not path.exists():
        writer = None
        for start in range(0, n, 1_000_000):
            stop = min(n, start + 1_000_000)
            numbers = (np.char.add("138", ascii_digits(np.arange(start, stop), 8).view("S8").ravel().astype(str)))
            table = pa.table({"id_number": _id_numbers(start, stop), "msisdn": numbers.tolist()})
            writer = writer or pq.ParquetWriter(str(path) + ".tmp", table.schema)
            writer.write_table(table, row_group_size=131072)
        assert writer is not None
        writer.close()
        os.replace(str(path) + ".tmp", path)
    return path


class _Sampler(threading.Thread):
    """Peak RSS of the JVM and of the largest Python child, and CPU of every child seen (even after it exits).

    CPU is counted from the sampler's creation: a child already running (Spark's JVM after its start
    and warm-up) counts only what it uses during the measurement.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.jvm_mb = self.worker_mb = 0.0
        self._cpu: dict[int, float] = {}
        self._base: dict[int, float] = {}  # CPU a child had already used when the measurement began
        for child in psutil.Process().children(recursive=True):
            try:
                times = child.cpu_times()
                self._base[child.pid] = times.user + times.system
            except psutil.Error:
                continue
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.2)

    def sample(self) -> None:
        for child in psutil.Process().children(recursive=True):
            try:
                rss = child.memory_info().rss / 2**20
                times = child.cpu_times()
                self._cpu[child.pid] = times.user + times.system
                if "java" in child.name():
                    self.jvm_mb = max(self.jvm_mb, rss)
                else:
                    self.worker_mb = max(self.worker_mb, rss)
            except psutil.Error:
                continue

    def stop(self) -> float:
        self.sample()
        self._stop.set()
        return sum(cpu - self._base.get(pid, 0.0) for pid, cpu in self._cpu.items())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _spark(master: str) -> Any:
    from node.spark import SparkConfig, spark_session

    return spark_session(SparkConfig(master, {"spark.driver.memory": "3g", "spark.sql.shuffle.partitions": "8"}))


def _recovery(engine: str, n: int, data: Path, master: str, out: Path) -> dict[str, Any]:
    from psi.group import Scalar

    source, key = _subscribers(n, data), Scalar.from_int(20261205)
    table_path = out / f"{engine}-{n}.table"
    extra: dict[str, Any] = {}
    if engine == "spark":
        t = time.perf_counter()
        spark = _spark(master)
        extra["spark_start_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()  # a node's session is long-lived: JIT and Python workers warm after its first job
        from node.spark import build_table

        build_table(spark.read.parquet(str(source)).limit(1000), key_type=KeyType.ID_NUMBER, key=key,
                    path=out / "warmup.table", workdir=out, key_column="id_number", label_column="msisdn")
        extra["warmup_s"] = round(time.perf_counter() - t, 1)
    sampler, load0 = _Sampler(), os.getloadavg()[0]
    sampler.start()
    t0, c0 = time.perf_counter(), time.process_time()
    if engine == "spark":
        from node.spark import build_table

        built = build_table(spark.read.parquet(str(source)), key_type=KeyType.ID_NUMBER, key=key, path=table_path,
                            workdir=out, key_column="id_number", label_column="msisdn")
        count = built.count
        extra["stage_s"] = {k: round(v, 2) for k, v in built.timings.items()}
    else:
        count = _pool_table(source, key, table_path)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    children = sampler.stop()
    return {"task": "recovery", "engine": engine, "n": n, "records": count, "wall_s": round(wall, 2),
            "records_per_s": round(n / wall), "table_bytes": table_path.stat().st_size,
            "cpu_driver_s": round(cpu, 2), "cpu_children_s": round(children, 2),
            "peak_driver_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_jvm_rss_mb": round(sampler.jvm_mb, 1), "peak_worker_rss_mb": round(sampler.worker_mb, 1),
            "table_sha256": _sha256(table_path), "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)],
            **extra}


def _pool_table(source: Path, key: Any, table_path: Path) -> int:
    """The pool engine's preparation, as ``recovery_sender_job`` with a ``TableStore`` runs it."""
    from node.jobs.psi.recovery import normalise_labels, pair_records
    from psi.engine import ProcessPoolMapper, save_table
    from psi.labeled import prepare_sender_table, refuse_shared_keys

    frame = pq.read_table(source)
    bad: Counter[tuple[str, str]] = Counter()
    labels = normalise_labels(frame.column("msisdn").to_pylist(), bad)
    records = pair_records(frame.column("id_number").to_pylist(), KeyType.ID_NUMBER, labels, bad)
    del frame, labels
    kept, _ = refuse_shared_keys(records)
    with ProcessPoolMapper(2) as pool:
        table = prepare_sender_table(kept, key_type=KeyType.ID_NUMBER, key=key, mapper=pool)
    save_table(table, table_path)
    return table.count


def _drive(receiver: Any, sender: Any) -> int:
    """Run one session through the wire codec; the data-plane bytes exchanged."""
    from protocols.wire.psi import decode_frame, encode_frame

    sent, message = 0, receiver.start()
    while message is not None:
        frame = encode_frame(message)
        reply = sender.handle(decode_frame(frame))
        sent += len(frame)
        if reply is None:
            break
        frame = encode_frame(reply)
        sent += len(frame)
        message = receiver.handle(decode_frame(frame))
    return sent


def _overlap(engine: str, sizes: str, master: str, out: Path) -> dict[str, Any]:
    """Cardinality PSI: the telco's sender on ``engine``, the bank's receiver on a 2-worker pool in both runs."""
    from psi.cardinality import CardinalityReceiver, CardinalitySender
    from psi.engine import ProcessPoolMapper

    telco_n, bank_n = (int(float(x)) for x in sizes.split("x"))
    telco = _id_numbers(0, telco_n)
    bank = telco[: bank_n // 2] + _id_numbers(telco_n, telco_n + bank_n - bank_n // 2)
    extra: dict[str, Any] = {}
    bank_pool = ProcessPoolMapper(2)
    if engine == "spark":
        from node.spark import SparkMapper

        t = time.perf_counter()
        telco_mapper: Any = SparkMapper(_spark(master), workdir=out)
        extra["spark_start_s"] = round(time.perf_counter() - t, 1)
    else:
        telco_mapper = bank_pool
    common: dict[str, Any] = {"key_type": KeyType.ID_NUMBER, "job_id": "bench"}
    sampler, load0 = _Sampler(), os.getloadavg()[0]
    sampler.start()
    t0, c0 = time.perf_counter(), time.process_time()
    receiver = CardinalityReceiver(bank, mapper=bank_pool, **common)
    sender = CardinalitySender(telco, mapper=telco_mapper, **common)
    if engine == "spark":
        telco_mapper.blind_ahead(sender)  # the telco's whole set: one Spark job, streamed out in chunks
    wire_bytes = _drive(receiver, sender)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bank_pool.close()
    children = sampler.stop()
    if engine == "spark":
        extra["spark_jobs"] = telco_mapper.jobs
    return {"task": "overlap", "engine": engine, "n": f"{telco_n}x{bank_n}", "wall_s": round(wall, 2),
            "intersection": receiver.result().intersection_size, "cpu_driver_s": round(cpu, 2),
            "cpu_children_s": round(children, 2), "wire_bytes": wire_bytes,
            "records_per_s": round((telco_n + bank_n) / wall),
            "peak_driver_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_jvm_rss_mb": round(sampler.jvm_mb, 1), "peak_worker_rss_mb": round(sampler.worker_mb, 1),
            "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)], **extra}


def _calibrate(master: str, data: Path, out: Path, n: int) -> dict[str, Any]:
    """The scaling model's figures, measured on this machine (``docs/SCALING.md``).

    ``task_overhead_ms``: wall per task of 400 empty ``mapInPandas`` tasks, times the cores;
    ``fixed_s``: a whole ``build_table`` of 1,000 subscribers (all fixed cost: jobs, stages, files);
    ``records_per_core_s``: ``n`` subscribers through the whole pipeline in one partition on one core
    (normalise, shuffle, group, seal, sort, write), its fixed cost included (so the model, which adds
    ``fixed_s`` again, is on the safe side); ``driver_append_mb_s``: the
    driver's copy of the sorted Parquet output into the table file.
    """
    from node.spark import build_table
    from psi.group import Scalar

    spark = _spark(master)
    cores = spark.sparkContext.defaultParallelism

    def passthrough(batches: Any) -> Any:
        yield from batches

    spark.range(0, 8, numPartitions=8).mapInPandas(passthrough, "id long").count()  # warm the workers
    tasks = 400
    t = time.perf_counter()
    spark.range(0, tasks, numPartitions=tasks).mapInPandas(passthrough, "id long").count()
    overhead_ms = (time.perf_counter() - t) * 1000 * cores / tasks
    source = spark.read.parquet(str(_subscribers(n, data)))
    common: dict[str, Any] = {"key_type": KeyType.ID_NUMBER, "key": Scalar.from_int(7), "workdir": out,
                              "key_column": "id_number", "label_column": "msisdn"}
    build_table(source.limit(1000), path=out / "warm.table", partitions=cores, **common)
    t = time.perf_counter()
    build_table(source.limit(1000), path=out / "fixed.table", partitions=cores, **common)
    fixed_s = time.perf_counter() - t
    t = time.perf_counter()
    built = build_table(source.coalesce(1), path=out / "cal.table", partitions=1, **common)
    one_core = time.perf_counter() - t
    table_bytes = built.path.stat().st_size
    return {"task": "calibrate", "engine": "spark", "cores": cores, "task_overhead_ms": round(overhead_ms, 1),
            "fixed_s": round(fixed_s, 2), "records_per_core_s": round(n / one_core),
            "one_core_wall_s": round(one_core, 2),
            "one_core_stage_s": {k: round(v, 2) for k, v in built.timings.items()},
            "record_size": built.record_size, "calibration_records": n,
            "driver_append_mb_s": round(table_bytes / 2**20 / max(built.timings["append"], 1e-3), 1),
            "load_avg": [round(os.getloadavg()[0], 2)]}


PROJECTED_N = 330_000_000
PROJECTED_CLUSTERS = ((16, 4), (64, 4))
TASKS_PER_CORE = 4


def projection(cal: dict[str, Any], n: int = PROJECTED_N) -> list[dict[str, Any]]:
    """``T = N/(E·C·r) + ⌈P/(E·C)⌉·o + S + N·record/w`` from the calibration, for 16×4 and 64×4 executors.

    r, o, S and w are this machine's measured figures; P = 4·E·C partitions. Not included: reading
    the source from the operator's storage, shuffle traffic crossing the network (on one machine it is
    inside r), session start, other jobs on the cluster.
    """
    rows = []
    for executors, cores in PROJECTED_CLUSTERS:
        slots = executors * cores
        compute = n / (slots * cal["records_per_core_s"])
        overhead = -(-TASKS_PER_CORE * slots // slots) * cal["task_overhead_ms"] / 1000
        append = n * cal["record_size"] / 2**20 / cal["driver_append_mb_s"]
        total = compute + overhead + cal["fixed_s"] + append
        rows.append({"executors": executors, "cores": cores, "n": n, "compute_s": round(compute, 1),
                     "task_overhead_s": round(overhead, 2), "fixed_s": cal["fixed_s"],
                     "driver_append_s": round(append, 1), "projected_wall_s": round(total, 1),
                     "projected_wall_min": round(total / 60, 1)})
    return rows


def _child(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.one == "recovery":
        result = _recovery(args.engine, args.n, Path(args.data), args.master, out)
    elif args.one == "overlap":
        result = _overlap(args.engine, args.pair, args.master, out)
    else:
        result = _calibrate(args.master, Path(args.data), out, args.n)
    (out / "result.json").write_text(json.dumps(result))


def _run_child(work: Path, *extra: str, data: Path, master: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "--data", str(data), "--master", master, "--out", str(work), *extra]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    for table in work.glob("*.table"):
        table.unlink()
    return result


def _pair(runs: dict[str, dict[str, Any]], n: Any) -> dict[str, Any]:
    ours, ref = runs["spark"], runs["pool"]
    row = {"n": n, "ours_wall_s": ours["wall_s"], "reference_wall_s": ref["wall_s"],
           "wall_ratio": round(ours["wall_s"] / ref["wall_s"], 3),
           "ours_peak_driver_rss_mb": ours["peak_driver_rss_mb"],
           "reference_peak_driver_rss_mb": ref["peak_driver_rss_mb"], "ours_peak_jvm_rss_mb": ours["peak_jvm_rss_mb"],
           "ours_cpu_s": round(ours["cpu_driver_s"] + ours["cpu_children_s"], 1),
           "reference_cpu_s": round(ref["cpu_driver_s"] + ref["cpu_children_s"], 1),
           "ours_spark_start_s": ours.get("spark_start_s"), "load_avg": [ref["load_avg"], ours["load_avg"]]}
    if "table_sha256" in ours:
        row["identical"] = ours["table_sha256"] == ref["table_sha256"]
    else:
        row["identical"] = ours["intersection"] == ref["intersection"]
    return row


def main() -> None:
    """Run every measurement in its own process and print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--overlap", default="10000000x1000000", help="SxR, or 'none'")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "tandem-spark-bench"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-calibrate", action="store_true")
    parser.add_argument("--calibration-records", type=int, default=200_000)
    parser.add_argument("--one", choices=["recovery", "overlap", "calibrate"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=["pool", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pair", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _child(args)
        return
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"master": args.master, "cpus": os.cpu_count(), "recovery": [], "overlap": [], "runs": []}
    print(f"{'task':<9}{'n':>18}{'pool wall s':>13}{'spark wall s':>14}{'ratio':>7}{'pool drv MB':>13}"
          f"{'spark drv MB':>14}{'spark JVM MB':>14}{'identical':>11}")
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        work = Path(tmp)
        jobs = [("recovery", int(float(s)), ["--one", "recovery", "--n", str(int(float(s)))])
                for s in args.sizes.split(",") if s]
        if args.overlap != "none":
            jobs.append(("overlap", args.overlap, ["--one", "overlap", "--pair", args.overlap]))
        for task, n, extra in jobs:
            runs = {e: _run_child(work, *extra, "--engine", e, data=data, master=args.master)
                    for e in ("pool", "spark")}
            report["runs"] += list(runs.values())
            row = _pair(runs, n)
            report[task].append(row)
            print(f"{task:<9}{n!s:>18}{row['reference_wall_s']:>13}{row['ours_wall_s']:>14}{row['wall_ratio']:>7}"
                  f"{row['reference_peak_driver_rss_mb']:>13}{row['ours_peak_driver_rss_mb']:>14}"
                  f"{row['ours_peak_jvm_rss_mb']:>14}{row['identical']!s:>11}", flush=True)
            for engine, run in runs.items():
                detail = {k: run[k] for k in ("wall_s", "cpu_driver_s", "cpu_children_s", "peak_driver_rss_mb",
                                              "peak_jvm_rss_mb", "peak_worker_rss_mb", "records_per_s",
                                              "table_bytes", "wire_bytes", "spark_jobs", "spark_start_s", "warmup_s",
                                              "stage_s", "load_avg") if k in run}
                print(f"    {engine:<6}{detail}", flush=True)
        if not args.no_calibrate:
            report["calibration"] = _run_child(work, "--one", "calibrate", "--n", str(args.calibration_records),
                                               data=data, master=args.master)
            cal = report["calibration"]
            print(f"calibration (load {cal['load_avg'][0]}): per-task overhead {cal['task_overhead_ms']} ms; "
                  f"fixed cost {cal['fixed_s']} s; {cal['records_per_core_s']} records/s per core per partition; "
                  f"driver append {cal['driver_append_mb_s']} MB/s")
            report["projection"] = projection(cal)
            print(f"PROJECTION (model from the figures above, not measured): {PROJECTED_N:.2e} subscribers")
            for row in report["projection"]:
                print(f"  PROJECTION {row['executors']}x{row['cores']} executors: compute {row['compute_s']} s + "
                      f"tasks {row['task_overhead_s']} s + fixed {row['fixed_s']} s + driver append "
                      f"{row['driver_append_s']} s = {row['projected_wall_s']} s ({row['projected_wall_min']} min)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
