"""Audited writes under concurrency, through the real HTTP server, on SQLite and on PostgreSQL.

``CLIENTS`` async clients each create ``PER_CLIENT`` users at once (every creation is one ``user.created``
event) against a real ``coordinator.cli serve`` process, with the signed head written by group commit
(``audit_head_interval_ms``, the production default). Afterwards: one event per write, none lost, none
duplicated; sequence numbers gap-free and unique; the export verifies offline (every hash and link, so the
chain has no fork); and, after a clean stop, the signed heads file names the log's last record and is
signed by the coordinator's key. Nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coordinator.audit.chain import SignedHead, verify_export, verify_head
from tests.support.coordinator import BOOT, PG_URL
from tests.support.live_coordinator import LiveCoordinator

API = "/api/v1"
CLIENTS = 16
PER_CLIENT = 8


class Coordinator(LiveCoordinator):
    """``LiveCoordinator`` over any database URL (PostgreSQL in a scratch schema, or the SQLite file)."""

    def __init__(self, state_dir: Path, database_url: str | None) -> None:
        super().__init__(state_dir)
        self.database_url = database_url or f"sqlite:///{self.db}"

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "TANDEM_COORD_DATABASE_URL": self.database_url}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Coordinator]:
    url = None
    if request.param == "postgres":
        schema = request.getfixturevalue("pg_schema")
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    coordinator = Coordinator(state, url)
    assert coordinator.start() is None, coordinator.output()
    yield coordinator
    coordinator.stop()


async def _create_users(base: str) -> list[str]:
    """``CLIENTS`` clients, each creating ``PER_CLIENT`` users one after another; all clients at once."""
    boot = {"Authorization": f"Bearer {BOOT}"}

    async def client(k: int) -> list[str]:
        names = []
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:
            for i in range(PER_CLIENT):
                name = f"u{k:02d}x{i:03d}"
                r = await c.post(f"{API}/users", json={"name": name, "role": "auditor"}, headers=boot)
                assert r.status_code == 201, r.text
                names.append(name)
        return names

    made = await asyncio.gather(*(client(k) for k in range(CLIENTS)))
    return [n for names in made for n in names]


def _export(live: Coordinator, token: str) -> list[bytes]:
    with live.client() as c:
        r = c.get(f"{API}/audit/export", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        key = c.get(f"{API}/audit/public-key").json()["public_key"]
    lines = r.content.splitlines(keepends=True)
    report = verify_export(lines, key)
    assert report.ok, report.reason
    assert report.count == len(lines) - 1
    return lines


def test_concurrent_audited_writes_lose_nothing_and_keep_one_chain(live: Coordinator) -> None:
    # Prepare: an auditor to read the export
    with live.client() as c:
        r = c.post(f"{API}/users", json={"name": "reader", "role": "auditor"},
                   headers={"Authorization": f"Bearer {BOOT}"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        key = c.get(f"{API}/audit/public-key").json()["public_key"]

    # Execute: CLIENTS x PER_CLIENT audited writes at once
    names = asyncio.run(_create_users(live.url))
    lines = _export(live, token)
    live.stop()  # a clean stop writes the newest signed head

    # Check: one event per write, gap-free seqs, and a heads file naming the last record
    records = [json.loads(line) for line in lines[:-1]]
    assert [r["seq"] for r in records] == list(range(len(records)))
    created = Counter(r["body"]["object"] for r in records if r["body"]["action"] == "user.created")
    assert created == Counter([f"user:{n}" for n in [*names, "reader"]])
    assert len(names) == CLIENTS * PER_CLIENT
    head = SignedHead(**json.loads((live.state_dir / "audit_heads.json").read_text()))
    verify_head(head, key)
    assert (head.seq, head.hash) == (records[-1]["seq"], records[-1]["hash"])  # audit.exported, the last write
    print(f"{len(names)} concurrent writes by {CLIENTS} clients -> {len(records)} events, seqs 0..{head.seq} "
          f"gap-free, export verified, signed head {head.hash[:16]}… names the last record")


def test_the_log_restarts_clean_after_concurrent_writes(live: Coordinator) -> None:
    asyncio.run(_create_users(live.url))
    live.stop()
    assert live.start() is None, live.output()  # the stored head is in the log: start-up check passes
    if live.database_url.startswith("sqlite"):
        with sqlite3.connect(live.db) as db:
            (count, top), = db.execute("SELECT count(*), max(seq) FROM audit_event")
        assert count == top + 1
