"""The three organisations' compose files, run as processes in three network namespaces (deploy/netns_harness.py).

The topology comes up once for the module, the way the READMEs tell each operator to set it up
(deploy/three_orgs.py), with tcpdump on every organisation's veth from before the first service starts.
Then: a PSI job and a training job across the namespaces, a capture check (only TLS 1.3 between
organisations), the audit chain and both egress ledgers. Teardown must leave no namespace, veth, bridge
or process behind.

Needs root and ``ip`` (skipped otherwise, but FAILS when ``CI`` is set), tcpdump and tshark for the
capture test, and the PostgreSQL at 127.0.0.1:5432 (a fresh database per run stands in for the
coordinator's ``postgres`` service). Run with ``-s`` to see what the closing note shows.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import three_orgs
from deploy.netns_harness import BRIDGE, GATEWAY, ORGS, Topology, preflight
from deploy.tls_capture import TLS13, analyse
from protocols.wire.control import JobStatus

pytestmark = pytest.mark.postgres


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the namespace harness: {reason}")
    pytest.skip(reason)


def _leftovers() -> list[str]:
    found = [f"namespace {o.netns}" for o in ORGS
             if o.netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()]
    for link in [BRIDGE, *(o.veth for o in ORGS)]:
        if subprocess.run(["ip", "link", "show", link], capture_output=True).returncode == 0:
            found.append(f"link {link}")
    return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[three_orgs.Deployment, list[Path]]]:
    why = preflight()
    if why is None and (shutil.which("tcpdump") is None or shutil.which("tshark") is None):
        why = "tcpdump and tshark are needed (apt-get install -y tcpdump tshark)"
    if why:
        _unavailable(why)
    workdir = tmp_path_factory.mktemp("netns")
    topo = Topology(workdir)
    pids: list[int] = []

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a CI timeout's SIGTERM still tears the topology down

    previous = signal.signal(signal.SIGTERM, interrupted)
    with topo:
        files = topo.start_capture(workdir / "capture")
        dep = three_orgs.bring_up(topo, n=2000, seed=7, test_key_bits=512)
        yield dep, files
        pids = [r.proc.pid for r in topo.running]
    signal.signal(signal.SIGTERM, previous)
    alive = [p for p in pids if Path(f"/proc/{p}").exists()
             and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[0]]
    assert not _leftovers() and not alive, f"left behind: {_leftovers()}, processes {alive}"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_service_started_from_its_compose_file(deployment: tuple[three_orgs.Deployment, list[Path]]) -> None:
    dep, _ = deployment
    for org in ("coordinator", "bank", "telco"):
        project = dep.topo.project(org)
        for name, svc in project.services.items():
            if svc.one_shot:
                assert dep.topo._completed(org, name), f"{org}/{name} did not complete"  # noqa: SLF001
            else:
                assert dep.topo.healthy(org, name, project), f"{org}/{name} is not healthy"
    node = dep.topo.exec("bank", "node", ["tandem-bank", "status", "--min-free-gb", "0"]).stdout
    assert "coordinator https://tandem-coord:8600: reachable" in node and "peer telco" in node
    print("\nbank status:\n" + node)


def test_psi_overlap_count_across_namespaces(deployment: tuple[three_orgs.Deployment, list[Path]]) -> None:
    dep, _ = deployment
    from demo.scenario import demo_jobs

    body = next(b for _, b in demo_jobs(dep.datasets) if b["kind"] == "audience_overlap")
    job = three_orgs.run_job(dep, body)
    assert job.status == JobStatus.SUCCEEDED, job.status_detail
    bank_ids = {r["id_number"] for r in _rows(dep.topo.project_dirs["bank"] / "data" / "bank_customers.csv")}
    telco = _rows(dep.topo.project_dirs["telco"] / "data" / "telco_subscribers.csv")
    wanted = {r["id_number"] for r in telco if r["app_bank"] == "0" and 25 <= int(r["age"]) <= 45}
    truth = len(bank_ids & wanted)
    assert truth >= 50, "the synthetic population is too small for an unsuppressed count"
    assert job.outputs["bank"]["overlap"] == truth
    print(f"\nPSI job {job.id} (audience_overlap, count): overlap {job.outputs['bank']['overlap']} "
          f"(= the plaintext intersection {truth}), bytes to/from peer {job.outputs['bank']['bytes_to_peer']}/"
          f"{job.outputs['bank']['bytes_from_peer']}")


def test_training_job_across_namespaces(deployment: tuple[three_orgs.Deployment, list[Path]]) -> None:
    dep, _ = deployment
    from demo.scenario import demo_jobs

    body = next(b for _, b in demo_jobs(dep.datasets) if b["kind"] == "train_risk")
    job = three_orgs.run_job(dep, body)
    assert job.status == JobStatus.SUCCEEDED, job.status_detail
    metrics = next(o for o in job.outputs.values() if "auc_federated" in o)
    assert metrics["auc_federated"] > metrics["auc_bank_only"]
    for party in ("bank", "telco"):
        assert (dep.topo.volume(party, f"{party}-state") / "models" / str(job.id)).is_dir()
    with dep.api("compliance") as c:
        actions = [e["action"] for e in c.get("/audit/events", params={"after_seq": -1, "limit": 1000}).json()
                   if e["object"] == f"job:{job.id}"]
    assert "training.run_started" in actions
    print(f"\ntraining job {job.id} (train_risk, 512-bit TEST keys): AUC federated {metrics['auc_federated']:.3f} "
          f"vs bank-only {metrics['auc_bank_only']:.3f}, {metrics.get('flower_rounds_here')} Flower rounds; "
          f"model parts at both nodes")


def test_only_tls13_between_organisations(deployment: tuple[three_orgs.Deployment, list[Path]]) -> None:
    dep, files = deployment
    from demo.scenario import demo_jobs

    body = next(b for _, b in demo_jobs(dep.datasets) if b["kind"] == "audience_overlap")
    assert three_orgs.run_job(dep, body).status == JobStatus.SUCCEEDED  # a full job while the capture runs
    dep.topo.stop_capture()
    names = {o.address: o.name for o in ORGS}
    summary = analyse(files, names)
    print("\n" + summary.table())
    assert summary.problems() == []
    links = {(names[s.client[0]], names[s.server[0]], s.server[1]) for s in summary.between_orgs()}
    assert {("bank", "coordinator", 8600), ("telco", "coordinator", 8600), ("bank", "coordinator", 9092),
            ("telco", "coordinator", 9092)} <= links
    assert ("bank", "telco", 8443) in links or ("telco", "bank", 8443) in links
    assert all(s.versions == {TLS13} for s in summary.between_orgs())
    # the check can fail: the coordinator's PostgreSQL (same organisation, through the proxy) is plaintext
    assert any(s.server == (GATEWAY, 5432) and not s.tls_ok for s in summary.streams)


def test_audit_chain_and_both_egress_ledgers(deployment: tuple[three_orgs.Deployment, list[Path]]) -> None:
    dep, _ = deployment
    check = three_orgs.verify_audit(dep)
    print("\n" + check.text)
    assert check.ok, check.text
    assert check.text.count("ledger ok:") == 2
