"""A served coordinator does not access-log nodes' idle polls; writes and refusals are still logged."""

from __future__ import annotations

import httpx

from tests.support.coordinator import BOOT
from tests.support.live_coordinator import LiveCoordinator


def test_idle_polls_leave_no_access_lines_but_writes_and_refusals_do(tmp_path):
    live = LiveCoordinator(tmp_path / "coord")
    live.state_dir.mkdir(mode=0o700)
    assert live.start() is None, live.output()
    try:
        with live.client() as c:
            created = c.post("/api/v1/users", json={"name": "bank-admin", "role": "admin", "party": "bank"},
                             headers={"Authorization": f"Bearer {BOOT}"})
            auth = {"Authorization": f"Bearer {created.json()['token']}"}
            polls = [c.get("/api/v1/nodes/jobs", params={"status": "approved"}, headers=auth) for _ in range(5)]
            polls += [c.get("/api/v1/parties", headers=auth), c.get("/api/v1/healthz")]
            refused = c.get("/api/v1/nodes/jobs", headers={"Authorization": "Bearer wrong-token"})
    finally:
        live.stop()
    log = live.output()

    assert created.status_code == 201 and all(isinstance(p, httpx.Response) and p.status_code == 200 for p in polls)
    assert refused.status_code == 401
    assert f"state: database sqlite:///{live.db}, audit key {live.state_dir / 'coord.key'}" in log  # said on start
    assert '"POST /api/v1/users HTTP/1.1" 201' in log
    assert '"GET /api/v1/nodes/jobs HTTP/1.1" 401' in log
    assert "GET /api/v1/nodes/jobs?status=approved" not in log and "GET /api/v1/parties" not in log
    assert "GET /api/v1/healthz" not in log.split("POST /api/v1/users", 1)[1]
