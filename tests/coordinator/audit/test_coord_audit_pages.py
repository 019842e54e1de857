"""The compliance pages over TestClient: login and sessions, filters, pagination, escaping, tampering, export."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from datetime import timedelta

import pytest

from coordinator.accounts import EXPIRED
from coordinator.api.web_sessions import COOKIE, IDLE
from coordinator.app import create_app
from coordinator.audit.chain import verify_export
from tests.support.coordinator import API, TestClient, World, app_settings

XSS = '<script>alert("x")</script>'


@pytest.fixture
def file_world(tmp_path) -> World:
    """A populated world over a SQLite file (so a test can edit rows behind the coordinator's back)."""
    settings = app_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/coord.db")
    with TestClient(create_app(settings)) as c:
        yield World(c).populate()


def _login(world: World, who: str, **kw):
    return world.c.post("/login", data={"token": world.tokens[who], **kw}, follow_redirects=False)


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r"<tr><td>(\d+)</td>", html)]


def _failed_logins(world: World) -> list[dict]:
    return [e for e in world.events() if e["action"] == "auth.failed"]


def test_login_sets_a_strict_httponly_opaque_cookie_and_redirects(world):
    r = _login(world, "auditor", next="/audit?actor=bank")

    assert r.status_code == 303 and r.headers["location"] == "/audit?actor=bank"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert world.tokens["auditor"] not in cookie and world.tokens["auditor"] not in r.headers["location"]
    page = world.c.get("/audit")
    assert page.status_code == 200 and "Chain verified" in page.text and "signed in as auditor" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert world.events()[-1]["action"] == "web.login"


def test_anonymous_page_shows_the_login_form_with_401(world):
    r = world.c.get("/audit/jobs/1?page=2")
    assert r.status_code == 401 and 'name="token"' in r.text and 'value="/audit/jobs/1?page=2"' in r.text


@pytest.mark.parametrize("target", ["https://evil.example/audit", "//evil.example/audit", "/api/v1/users", "/\\evil"])
def test_login_never_redirects_off_the_audit_pages(world, target):
    assert _login(world, "auditor", next=target).headers["location"] == "/audit"


def test_every_login_failure_is_audited_and_refused(world):
    before = len(_failed_logins(world))
    unknown = world.c.post("/login", data={"token": "no-such-token-0123456789abcdef"}, follow_redirects=False)
    empty = world.c.post("/login", data={"token": "  "}, follow_redirects=False)
    boot = _login(world, "bootstrap")

    assert (unknown.status_code, empty.status_code, boot.status_code) == (401, 401, 403)
    assert COOKIE not in world.c.cookies
    failures = _failed_logins(world)[before:]
    assert [f["details"]["channel"] for f in failures] == ["web"] * 3
    assert "no-such" not in str(failures)


def test_cross_site_login_post_is_refused(world):
    r = world.c.post("/login", data={"token": world.tokens["auditor"]}, headers={"Origin": "https://evil.example"},
                     follow_redirects=False)
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")


def test_logout_ends_the_session(world):
    _login(world, "auditor")
    cookie = world.c.cookies[COOKIE]
    assert world.c.post("/logout", follow_redirects=False).status_code == 303
    world.c.cookies.clear()

    assert world.c.get("/audit", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code == 401
    assert world.events()[-1]["action"] == "web.logout"


def test_session_ends_when_idle_or_when_the_token_expires(world):
    app = world.c.app
    now = app.state.context.clock()
    _login(world, "auditor")
    app.state.context = dataclasses.replace(app.state.context, clock=lambda: now + IDLE + timedelta(seconds=1))
    assert world.c.get("/audit").status_code == 401

    app.state.context = dataclasses.replace(app.state.context, clock=lambda: now)
    r = world.c.post(f"{API}/users", json={"name": "short", "role": "auditor", "expires_in_days": 1},
                     headers=world.h("bootstrap"))
    world.tokens["short"] = r.json()["token"]
    app.state.context = dataclasses.replace(app.state.context, clock=lambda: now + timedelta(days=1, minutes=-5))
    _login(world, "short")
    assert world.c.get("/audit").status_code == 200
    app.state.context = dataclasses.replace(app.state.context, clock=lambda: now + timedelta(days=1))
    r = world.c.get("/audit")
    assert r.status_code == 401 and EXPIRED in r.text


def test_filters_and_job_page(world):
    job = world.submit()
    other = world.submit()
    _login(world, "auditor")

    by_job = world.c.get("/audit", params={"job": job["id"]}).text
    by_action = world.c.get("/audit", params={"action": "job.sub"}).text
    by_actor = world.c.get("/audit", params={"actor": "telco_admin", "object": "party:telco"}).text
    job_page = world.c.get(f"/audit/jobs/{other['id']}").text

    assert set(re.findall(r">job:(\d+)<", by_job)) == {str(job["id"])} and "job.submitted" in by_job
    assert re.findall(r"<td>(job\.[a-z_.]+)</td>", by_action) == ["job.submitted", "job.submitted"]
    assert re.findall(r"<td>(party\.[a-z]+)</td>", by_actor) == ["party.registered"]
    assert other["digest"] in job_page and "policy.decided" in job_page
    assert set(re.findall(r">job:(\d+)<", job_page)) == {str(other["id"])}


def test_bad_filters_and_unknown_job_are_html_errors(world):
    _login(world, "auditor")
    bad = world.c.get("/audit", params={"job": "1 or 1=1"})
    missing = world.c.get("/audit/jobs/999")
    page0 = world.c.get("/audit", params={"page": 0})
    assert (bad.status_code, missing.status_code, page0.status_code) == (400, 404, 422)
    assert all(r.headers["content-type"].startswith("text/html") for r in (bad, missing, page0))


def test_pagination_is_oldest_first_and_stable(world):
    _login(world, "auditor")
    total = len(world.events())
    first = world.c.get("/audit", params={"per_page": 10}).text
    second = world.c.get("/audit", params={"per_page": 10, "page": 2}).text

    assert _seqs(first) == list(range(10)) and _seqs(second) == list(range(10, min(20, total)))
    assert "page 2 of" in second and "per_page" not in second  # links keep filters, not page size


def test_everything_is_escaped(world):
    body = {**world.job_body(), "title": XSS}
    job = world.c.post(f"{API}/jobs", json=body, headers=world.h("bank_analyst")).json()
    _login(world, "auditor")

    job_page = world.c.get(f"/audit/jobs/{job['id']}").text
    reflected = world.c.get("/audit", params={"actor": XSS, "action": '"><b>'}).text

    for html in (job_page, reflected):
        assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in job_page


def test_export_download_verifies_with_the_shown_key(world):
    _login(world, "auditor")
    page = world.c.get("/audit").text
    key = re.search(r'<code id="key">([0-9a-f]{64})</code>', page).group(1)
    command = re.search(r'<pre id="verify">([^<]+)</pre>', page).group(1)

    export = world.c.get("/audit/export.jsonl")

    assert export.headers["content-disposition"] == 'attachment; filename="audit.jsonl"'
    report = verify_export(export.text.splitlines(keepends=True), key)
    assert report.ok, report.reason
    assert command == f"python -m coordinator.audit.chain verify audit.jsonl --key {key}"
    assert world.c.get(f"{API}/audit/public-key").json()["public_key"] == key


def test_an_edited_row_shows_tampered_at_its_seq_and_no_signed_head(file_world, tmp_path):
    world = file_world
    job = world.submit()
    seq = next(e["seq"] for e in world.events() if e["action"] == "job.submitted" and e["object"] == f"job:{job['id']}")
    _login(world, "auditor")
    assert "Chain verified" in world.c.get("/audit").text

    with sqlite3.connect(tmp_path / "coord.db") as db:
        db.execute("DROP TRIGGER audit_event_no_update")  # the file's owner can
        db.execute("UPDATE audit_event SET body = replace(body, 'bank_analyst', 'mallory') WHERE seq = ?", (seq,))
    page = world.c.get("/audit?verify=full").text  # a view re-hashes only new events; the link re-hashes all

    assert f"Chain TAMPERED at seq {seq}" in page and "row was edited" in page
    assert 'id="key"' not in page and "Download" not in page


def test_an_unreadable_row_is_reported_not_a_server_error(file_world, tmp_path):
    world = file_world
    _login(world, "auditor")
    with sqlite3.connect(tmp_path / "coord.db") as db:
        db.execute("DROP TRIGGER audit_event_no_update")  # the file's owner can
        db.execute("UPDATE audit_event SET body = '{not json' WHERE seq = 3")
    r = world.c.get("/audit")
    assert r.status_code == 200 and "Chain TAMPERED at seq 3" in r.text and "cannot be read" in r.text
