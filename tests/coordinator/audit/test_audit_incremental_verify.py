"""Attack 6 of issue 9, the reading side: every view of /audit used to re-hash the whole chain.

Against a real uvicorn coordinator, an auditor's views re-hash only the events appended since the last
verified head (``coordinator.audit.review.VerifiedChain``); the page shows how many it re-hashed
(``#hashed``), which the test reads instead of timing anything. ``?verify=full`` re-hashes every event.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.coordinator.api.conftest import LiveCoordinator, live_coordinator
from tests.support.coordinator import World


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveCoordinator]:
    yield from live_coordinator(tmp_path)


def _view(client: httpx.Client, query: str = "") -> tuple[int, int]:
    """(events verified, events re-hashed by this view) as the page states them."""
    page = client.get(f"/audit{query}")
    assert page.status_code == 200 and "Chain verified" in page.text, page.text[:500]
    total = re.search(r"Chain verified</strong>: (\d+) events", page.text)
    hashed = re.search(r'<span id="hashed">(\d+)</span>', page.text)
    assert total and hashed, "the page states how many events it verified and re-hashed"
    return int(total[1]), int(hashed[1])


def test_repeated_views_hash_only_new_events(live: LiveCoordinator) -> None:
    with live.client() as api:
        world = World(api).populate()
        with live.client() as browser:
            assert browser.post("/login", data={"token": world.tokens["auditor"]}).status_code == 303

            first = _view(browser)
            again = _view(browser)
            world.submit()
            after_job = _view(browser)
            filtered = _view(browser, "?action=job.")  # a filtered view walks every record, hashes none again
            full = _view(browser, "?verify=full")
            per_job = after_job[0] - again[0]
            print(f"views of {first[0]}, {again[0]}, {after_job[0]}, {full[0]} events re-hashed "
                  f"{first[1]}, {again[1]}, {after_job[1]}, {full[1]}")

    assert first == (first[0], first[0])  # the first view after start re-hashes everything
    assert again == (first[0], 0)
    assert per_job > 0 and after_job == (first[0] + per_job, per_job)
    assert filtered == (after_job[0], 0)
    assert full == (after_job[0], after_job[0])


@pytest.mark.parametrize(("tamper", "reason"), [
    ("DELETE FROM audit_event WHERE seq >= ?", "missing"),
    ("UPDATE audit_event SET hash = replace(hash, substr(hash, 1, 1), 'x') WHERE seq = ?", "rewritten"),
])
def test_an_incremental_view_still_sees_a_cut_or_rewritten_verified_head(
        live: LiveCoordinator, tmp_path: Path, tamper: str, reason: str) -> None:
    with live.client() as api:
        world = World(api).populate()
        with live.client() as browser:
            browser.post("/login", data={"token": world.tokens["auditor"]})
            count, _ = _view(browser)
            with sqlite3.connect(tmp_path / "coord.db") as db:  # the file's owner can drop the guards
                for op in ("update", "delete"):
                    db.execute(f"DROP TRIGGER IF EXISTS audit_event_no_{op}")
                db.execute(tamper, (count - 1,))
            page = browser.get("/audit").text

    assert "Chain TAMPERED" in page and reason in page and 'id="key"' not in page
