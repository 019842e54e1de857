"""Coordinator API benchmark: job submissions, audited writes, and verifying a 1M-event audit export.

Starts the real coordinator (uvicorn, SQLite file) on loopback in a subprocess, drives it with httpx
async clients, and prints p50/p99 latency and throughput; then generates a chain of
``--verify-events`` records directly with ``protocols.crypto.hashchain``, signs its head, and times
``coordinator.audit.chain.verify_export`` over the file.

    python bench/api_bench.py [--json PATH] [--n N] [--concurrency C] [--verify-events E]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coordinator.audit.chain import export_lines, sign_head, verify_export  # noqa: E402
from protocols.crypto.hashchain import next_record  # noqa: E402
from protocols.crypto.signing import SigningKey  # noqa: E402
from protocols.wire.canonical import canonical_json  # noqa: E402

API = "/api/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "TANDEM_COORD_DATABASE_URL": f"sqlite:///{workdir}/coordinator.db",
           "TANDEM_COORD_SIGNING_KEY_PATH": str(workdir / "audit.key"), "TANDEM_COORD_BOOTSTRAP_TOKEN": token}
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}{API}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited: {(workdir / 'server.log').read_text()[-2000:]}")
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("coordinator did not become healthy")


def field(name: str, category: str = "identifier", key_type: str | None = "mobile") -> dict:
    return {"name": name, "type": "string", "category": category, "security_level": 3 if key_type else 2,
            "key_type": key_type, "purposes": ["marketing"]}


async def setup(c: httpx.AsyncClient, token: str) -> dict:
    boot = {"Authorization": f"Bearer {token}"}
    keys = {"bank": SigningKey.generate(), "telco": SigningKey.generate()}
    tokens = {}
    for name, role, party in [("bank_admin", "admin", "bank"), ("telco_admin", "admin", "telco"),
                              ("bank_analyst", "analyst", "bank"), ("telco_op", "operator", "telco")]:
        r = await c.post(f"{API}/users", json={"name": name, "role": role, "party": party}, headers=boot)
        tokens[name] = {"Authorization": f"Bearer {r.raise_for_status().json()['token']}"}
    datasets = {}
    for party in ("bank", "telco"):
        body = {"name": party, "kind": party, "signing_key": keys[party].public_hex, "sealing_key": "b" * 64,
                "tls_fingerprint": "c" * 64, "node_url": f"https://{party}.local:8443"}
        (await c.post(f"{API}/parties", json=body, headers=tokens[f"{party}_admin"])).raise_for_status()
        key = "mobile" if party == "bank" else "msisdn"
        ds = {"name": f"{party}_data", "row_count": 10**6, "fields": [field(key), field("f1", "feature", None)]}
        r = await c.post(f"{API}/datasets", json=ds, headers=tokens[f"{party}_admin"])
        datasets[party] = r.raise_for_status().json()["id"]
    job_body = {"kind": "audience_overlap", "purpose": "marketing", "title": "bench",
                "inputs": [{"dataset_id": datasets["bank"], "key_fields": ["mobile"]},
                           {"dataset_id": datasets["telco"], "key_fields": ["msisdn"]}],
                "params": {"output_mode": "count"}}
    return {"tokens": tokens, "keys": keys, "job_body": job_body}


async def approved_job(c: httpx.AsyncClient, env: dict) -> int:
    t = env["tokens"]
    job = (await c.post(f"{API}/jobs", json=env["job_body"], headers=t["bank_analyst"])).raise_for_status().json()
    for party in ("bank", "telco"):
        body = {"approver": f"party:{party}", "signature": env["keys"][party].sign_approval(job["digest"])}
        r = await c.post(f"{API}/jobs/{job['id']}/approvals", json=body, headers=t[f"{party}_admin"])
        r.raise_for_status()
    return int(job["id"])


async def drive(n: int, concurrency: int, call: Callable[[int], Awaitable[httpx.Response]]) -> dict:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            start = time.perf_counter()
            r = await call(i)
            latencies.append(time.perf_counter() - start)
            if r.status_code >= 400:
                raise RuntimeError(f"request {i} failed: {r.status_code} {r.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "per_s": n / wall}


async def api_bench(base: str, token: str, n: int, concurrency: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
        env = await setup(c, token)
        submit = await drive(n, concurrency, lambda i: c.post(f"{API}/jobs", json=env["job_body"],
                                                              headers=env["tokens"]["bank_analyst"]))
        job_id = await approved_job(c, env)
        progress = await drive(n, concurrency, lambda i: c.post(
            f"{API}/jobs/{job_id}/progress", json={"stage": "psi", "fraction": i / n},
            headers=env["tokens"]["telco_op"]))
    return {"submit": submit, "audit": progress}


def write_chain(path: Path, events: int) -> tuple[str, float]:
    """Write an export of ``events`` records (built with protocols.crypto.hashchain) plus its signed head."""
    key = SigningKey.generate()
    start = time.perf_counter()
    last = None
    with path.open("wb") as fh:
        for i in range(events):
            last = next_record(last, "2025-01-01T00:00:00+00:00",
                               {"actor": "user:bench", "action": "job.progress", "object": f"job:{i % 977}",
                                "details": {"fraction": i / events, "stage": "psi"}})
            fh.write(canonical_json(last.to_dict()) + b"\n")
        assert last is not None
        fh.write(list(export_lines([last], sign_head(key, last)))[-1].encode("utf-8"))
    return key.public_hex, time.perf_counter() - start


def verify_bench(workdir: Path, events: int) -> dict:
    path = workdir / "chain.jsonl"
    public, gen_s = write_chain(path, events)
    start = time.perf_counter()
    with path.open("rb") as fh:
        report = verify_export(fh, public)
    verify_s = time.perf_counter() - start
    if not report.ok or report.count != events:
        raise RuntimeError(f"verification failed: {report}")
    return {"generate_s": gen_s, "verify_s": verify_s, "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--n", type=int, default=500, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    args = parser.parse_args()

    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        workdir = Path(tmp)
        proc, base = start_server(workdir, token)
        try:
            api = asyncio.run(api_bench(base, token, args.n, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        chain = verify_bench(workdir, args.verify_events)

    result = {
        "n": args.n, "concurrency": args.concurrency,
        "submit_p50_ms": api["submit"]["p50_ms"], "submit_p99_ms": api["submit"]["p99_ms"],
        "submit_per_s": api["submit"]["per_s"],
        "audit_p50_ms": api["audit"]["p50_ms"], "audit_p99_ms": api["audit"]["p99_ms"],
        "audit_per_s": api["audit"]["per_s"],
        "verify_events": args.verify_events, "verify_1m_s": chain["verify_s"],
        "verify_events_per_s": args.verify_events / chain["verify_s"], "chain_generate_s": chain["generate_s"],
        "chain_bytes": chain["bytes"],
    }
    print(f"{'phase':<32}{'p50 ms':>10}{'p99 ms':>10}{'per s':>12}")
    for label, key in (("POST /jobs (policy + 3 events)", "submit"), ("POST /progress (audited)", "audit")):
        print(f"{label:<32}{api[key]['p50_ms']:>10.1f}{api[key]['p99_ms']:>10.1f}{api[key]['per_s']:>12.1f}")
    print(f"verify {args.verify_events:,} events: {chain['verify_s']:.1f} s "
          f"({result['verify_events_per_s']:,.0f} events/s, {chain['bytes'] / 1e6:.0f} MB; "
          f"generated in {chain['generate_s']:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
