"""``site_selection`` between two real nodes: one release over the data plane, maps at the bank, k held.

The telco releases k-suppressed, ε-noised demand per H3 cell; the bank ranks sites over it with its
own branches and writes the maps. Checked: the results and files, no released cell below k (against
exact counts recomputed from the telco's table), one message each way and nothing per person or of
the branches on the wire, bad params failing with the field named and nothing kept, a stranger's
release refused, and a telco that cannot release aborting the bank at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from node.jobs.sites import assign_km_cells, parent_cells
from node.jobs.sites.job import RELEASE_CHANNEL, BankSiteSelection, SitePatience, TelcoSiteSelection
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from protocols.wire.errors import ProtocolError
from tests.node.jobs.sites._population import population
from tests.support.world import World

K = 50
TELCO_GOVERNANCE = """dataset: telco_subscribers
fields:
  home_cell: {type: string, category: sensitive, security_level: 4, purposes: [site_selection]}
  work_cell: {type: string, category: sensitive, security_level: 4, purposes: [site_selection]}
  score: {type: float, category: feature, security_level: 3, purposes: [site_selection]}
  age: {type: integer, category: feature, security_level: 2, purposes: [site_selection]}
"""
BRANCH_GOVERNANCE = """dataset: bank_branches
fields:
  branch_id: {type: string, category: feature, security_level: 2, purposes: [site_selection]}
  lat: {type: float, category: feature, security_level: 2, purposes: [site_selection]}
  lng: {type: float, category: feature, security_level: 2, purposes: [site_selection]}
  capacity: {type: integer, category: feature, security_level: 2, purposes: [site_selection]}
"""
BRANCHES = [("B1", 31.2213, 121.4712, 3000), ("B2", 31.2456, 121.5023, 2500), ("B3", 31.1987, 121.4431, 4000)]


@pytest.fixture
def world(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    subscribers = population(seed=3, n=8000, spread_km=1.5)
    subscribers["age"] = 30
    subscribers.to_csv(data / "telco_subscribers.csv", index=False)
    pd.DataFrame(BRANCHES, columns=["branch_id", "lat", "lng", "capacity"]).to_csv(data / "bank_branches.csv",
                                                                                     index=False)
    (data / "telco.yaml").write_text(TELCO_GOVERNANCE)
    (data / "branches.yaml").write_text(BRANCH_GOVERNANCE)
    patience = SitePatience(release=30.0, ready=30.0, status_every=1.0)
    w = World(tmp_path, handlers={
        "bank": BankSiteSelection(patience=patience).handlers(),
        "telco": TelcoSiteSelection(patience=patience, rng=lambda: np.random.default_rng(11)).handlers()})
    w.register(1, "telco", data / "telco_subscribers.csv", data / "telco.yaml")
    w.register(2, "bank", data / "bank_branches.csv", data / "branches.yaml")
    w.subscribers = subscribers  # type: ignore[attr-defined]
    yield w
    w.close()


def _submit(world: World, job_id: int, *, n_sites: int = 5, min_cell: int = K,
            telco_fields: tuple[str, ...] = ("home_cell", "work_cell")) -> None:
    inputs = [JobInput(dataset_id=1, feature_fields=list(telco_fields)),
              JobInput(dataset_id=2, feature_fields=["lat", "lng", "capacity"])]
    params = JobParams(output_mode="count", min_cell=min_cell, epsilon=1.0, n_sites=n_sites, radius_km=1.5)
    world.submit(job_id, JobKind.SITE_SELECTION, Purpose.SITE_SELECTION, inputs, params, title="sites")


def _sites_dir(world: World, job_id: int) -> Path:
    return world.runtimes["bank"].settings.state_path / "sites" / str(job_id)


def _nothing_kept(world: World, job_id: int, parties: tuple[str, ...] = ("bank", "telco")) -> None:
    assert not _sites_dir(world, job_id).exists()
    for party in parties:
        jobs = world.runtimes[party].settings.state_path / "jobs"
        assert not (jobs / str(job_id)).exists() and not (jobs / f"{job_id}.partial").exists()


def _exact_people(cells: pd.Series) -> Counter[str]:
    """Exact people per fine H3 cell."""
    assignment = assign_km_cells(cells)
    return Counter({c: int(n) for c, n in zip(assignment.cells, assignment.counts, strict=True)})


def _assert_k_held(subscribers: pd.DataFrame, geojson: dict) -> None:
    """Every released fine cell holds >= k people; every released parent pools >= k people of unreleased cells."""
    for measure, column in (("residents", "home_cell"), ("workers", "work_cell")):
        fine = _exact_people(subscribers[column])
        rows = [f["properties"] for f in geojson["features"] if measure in f["properties"]]
        released_fine = {r["cell"] for r in rows if r["resolution"] == 8}
        pooled: Counter[str] = Counter()
        for cell, people in fine.items():
            if cell not in released_fine:
                pooled[parent_cells([cell], 6)[0]] += people
        assert rows, measure
        for r in rows:
            held = fine[r["cell"]] if r["resolution"] == 8 else pooled[r["cell"]]
            assert held >= K, (measure, r)


def test_site_selection_runs_between_the_nodes_and_keeps_k(world: World) -> None:
    _submit(world, 1)
    world.run(timeout=120)
    reports = world.coordinator.results[1]
    assert reports["telco"].status == "succeeded", reports["telco"].detail
    assert reports["bank"].status == "succeeded", reports["bank"].detail
    bank, telco = reports["bank"].outputs, reports["telco"].outputs
    assert len(bank["sites"]) == 5 and [s["rank"] for s in bank["sites"]] == [1, 2, 3, 4, 5]
    assert 0 <= bank["coverage_before"] <= bank["coverage_after"] <= 1 and bank["existing_branches"] == 3
    assert bank["k"] == telco["k"] == K and bank["epsilon_spent"] == telco["epsilon_spent"] == 1.0
    assert bank["resolutions"] == {"cells": 8, "pooled": 6}
    assert bank["cells_released"] == sum(telco["cells_released"].values())
    assert bank["cells_pooled"] == sum(telco["cells_pooled"].values())
    # the telco's report (which the bank reads at the coordinator) holds nothing exact about people: with a
    # small study area, rows refused as outside it would give the exact number inside it
    assert "refusal_reasons" in telco and "sites" not in telco
    assert not {"rows", "rows_refused", "cells_suppressed", "people_suppressed"} & set(telco)
    assert bank["milp"] is not None and bank["milp"]["greedy_gap"] >= 0
    state = world.runtimes["bank"].settings.state_path
    for name in ("map.png", "map.html", "release.geojson"):
        assert (_sites_dir(world, 1) / name).stat().st_size > 0
    assert sorted(bank["files"].values()) == sorted(f"sites/1/{n}" for n in ("map.html", "map.png",
                                                                             "release.geojson"))
    assert (state / bank["files"]["map_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _assert_k_held(world.subscribers, json.loads((_sites_dir(world, 1) / "release.geojson").read_text()))


def test_one_message_each_way_and_nothing_per_person_or_of_the_branches(world: World) -> None:
    _submit(world, 1)
    world.run(timeout=120)
    assert world.coordinator.results[1]["bank"].status == "succeeded"
    peer = {party: [r.body for r in world.runtimes[party].ledger.records() if r.body["peer"] != "coordinator"]
            for party in ("telco", "bank")}
    assert [(b["kind"], b["ref"]) for b in peer["telco"]] == [("sites.demand_release", "sites.release/1/1of1")]
    replies = [b for b in peer["bank"] if b["kind"] != "status"]  # status: which chunks arrived (none yet)
    assert [(b["kind"], b["ref"]) for b in replies] == [("sites.demand_release.response", "sites.release/1/r1of1")]
    wire = b"".join(world.sent["telco"] + world.sent["bank"])
    km_cells = set(world.subscribers["home_cell"]) | set(world.subscribers["work_cell"])
    assert not [c for c in km_cells if c.encode() in wire]
    for _, lat, lng, _ in BRANCHES:
        assert str(lat).encode() not in wire and str(lng).encode() not in wire


def test_too_many_sites_fails_naming_n_sites_and_keeps_nothing(world: World) -> None:
    _submit(world, 2, n_sites=1000, min_cell=400)  # a high k: a few hundred eligible cells
    world.run(timeout=120)
    bank, telco = world.coordinator.results[2]["bank"], world.coordinator.results[2]["telco"]
    assert bank.status == "failed"
    assert "n_sites" in bank.detail and "eligible candidate cells" in bank.detail and "lower n_sites" in bank.detail
    assert telco.status == "succeeded"  # the release was sent (and its ε spent); only the bank's plan failed
    _nothing_kept(world, 2, ("bank",))


def test_a_telco_without_a_cell_field_aborts_the_bank_at_once(world: World) -> None:
    _submit(world, 3, telco_fields=("age",))
    world.run(timeout=120)
    reports = world.coordinator.results[3]
    assert reports["telco"].status == "failed" and "feature_fields" in reports["telco"].detail
    assert "home cell field" in reports["telco"].detail
    # the bank failed on the telco's abort (its reason), not on the patience running out
    assert reports["bank"].status == "failed" and "the telco did not release" in reports["bank"].detail
    assert "home cell field" in reports["bank"].detail and "no release from the telco" not in reports["bank"].detail
    _nothing_kept(world, 3)


def _stranger_release(world: World, job_id: int, seen: list[ProtocolError]) -> None:
    """Deliver a release from party 'mallory' through the bank's inbox, retrying until the job is open."""
    inbox = world.runtimes["bank"].inbox
    body = json.dumps({"kind": "sites.demand_release"}).encode()
    digest = hashlib.sha256(body).hexdigest()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            inbox.receive(("mallory", job_id, RELEASE_CHANNEL, 1), "sites.demand_release", 0, 1, digest, body)
        except ProtocolError as exc:
            if exc.status_hint == 409 and "(yet)" in str(exc):
                time.sleep(0.1)
                continue
            seen.append(exc)
            return
    raise AssertionError("the bank never opened the job")


def test_a_strangers_release_is_refused_and_the_telcos_still_lands(world: World) -> None:
    seen: list[ProtocolError] = []
    telco = world.handlers["telco"][JobKind.SITE_SELECTION]

    def stranger_first(ctx):  # noqa: ANN001, ANN202
        thread = threading.Thread(target=_stranger_release, args=(world, ctx.job.id, seen))
        thread.start()
        thread.join(40)
        return telco(ctx)

    _submit(world, 4)
    world.run({"bank": world.handlers["bank"], "telco": {JobKind.SITE_SELECTION: stranger_first}}, timeout=120)
    (refusal,) = seen
    # the inbox, bound by the runner to the job's signed peer, refuses it before the sites handler sees it
    assert refusal.status_hint == 403 and "party mallory is not the counterparty of job 4" in str(refusal)
    assert world.coordinator.results[4]["bank"].status == "succeeded"
