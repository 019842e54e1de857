"""The lineage and cross-check pages over a TestClient: uploads, refusals (audited), escaping, access."""

from __future__ import annotations

from pathlib import Path

from tests.coordinator.lineage.federation import audit_export, nodes, run_overlap
from tests.support.coordinator import API, World


def _sign_in(world: World, who: str = "auditor") -> None:
    r = world.c.post("/login", data={"token": world.tokens[who], "next": "/console/crosscheck"},
                     follow_redirects=False)
    assert r.status_code == 303, r.text


def _files(world: World, tmp_path: Path) -> dict[str, Path]:
    pair = nodes(world, tmp_path, transport=world.c._transport)
    world.job = run_overlap(world, pair)
    return {"audit": audit_export(world, tmp_path / "audit.jsonl"), "bank": pair["bank"].export(tmp_path / "b.jsonl"),
            "telco": pair["telco"].export(tmp_path / "t.jsonl")}


def _post(world: World, files: dict[str, tuple[str, bytes]], data: dict[str, str] | None = None):
    return world.c.post("/console/crosscheck", files=files, data=data or {})


def _refusals(world: World) -> list[dict]:
    return [e for e in world.events() if e["action"] == "crosscheck.refused"]


def test_an_upload_without_the_audit_export_is_refused_and_audited(world, tmp_path):
    f = _files(world, tmp_path)
    _sign_in(world)

    r = _post(world, {"ledger_1": ("b.jsonl", f["bank"].read_bytes())})

    assert r.status_code == 422 and "no audit export uploaded" in r.text and "Fix:" in r.text
    assert [(e["actor"], e["details"]["field"]) for e in _refusals(world)] == [("user:auditor", "audit")]


def test_a_file_name_is_escaped_and_a_clean_upload_passes(world, tmp_path):
    f = _files(world, tmp_path)
    _sign_in(world)

    r = _post(world, {"audit": ("audit.jsonl", f["audit"].read_bytes()),
                      "ledger_1": ("<b>bank</b>.jsonl", f["bank"].read_bytes()),
                      "ledger_2": ("t.jsonl", f["telco"].read_bytes())})

    assert r.status_code == 200 and "Cross-check passed" in r.text
    assert "<b>bank</b>" not in r.text and "&lt;b&gt;bank&lt;/b&gt;.jsonl" in r.text
    ran = [e["details"] for e in world.events() if e["action"] == "crosscheck.ran"]
    assert len(ran) == 1 and ran[0]["ok"] is True and set(ran[0]["ledgers"]) == {"bank", "telco"}


def test_a_cross_site_post_and_a_non_multipart_post_are_refused(world):
    _sign_in(world)

    cross = world.c.post("/console/crosscheck", files={"audit": ("a", b"x")}, headers={"Origin": "https://evil.example"})
    plain = world.c.post("/console/crosscheck", data={"audit": "x"})

    assert cross.status_code == 403 and "cross-site" in cross.text
    assert plain.status_code == 400 and "multipart/form-data" in plain.text
    assert [e["details"]["field"] for e in _refusals(world)] == ["header.origin", "header.content-type"]


def test_the_pages_are_for_auditors(world):
    r = world.c.get("/console/crosscheck")
    assert r.status_code == 401 and "token" in r.text  # the login form
    assert world.c.get(f"{API}/jobs/1/lineage", headers=world.h("telco_op")).status_code == 403
