"""Every (role, endpoint) pair of the app: refused exactly when the access table says so.

API routes (under /api/v1, from the OpenAPI schema) are called with bearer tokens; the compliance pages
(outside the schema) with a browser session obtained through the login form.
"""

from __future__ import annotations

import itertools

import pytest
from fastapi.routing import APIRoute

from coordinator.accounts import hash_token
from coordinator.api.access import ACCESS, PUBLIC, ROLES
from coordinator.api.web_sessions import COOKIE
from coordinator.app import create_app, routers
from coordinator.settings import Settings
from tests.support.coordinator import API, TestClient, World, party_create

PRINCIPALS = {"anonymous": None, "bootstrap": "bootstrap", "admin": "bank_admin", "analyst": "bank_analyst",
              "operator": "telco_op", "auditor": "auditor"}
_names = itertools.count()


@pytest.fixture(scope="module")
def matrix_world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("matrix")
    settings = Settings(database_url="sqlite://", signing_key_path=tmp / "k", bootstrap_token="b" * 40)
    world = World(TestClient(create_app(settings)))
    world.tokens["bootstrap"] = "b" * 40
    return world.populate()


def _operations(app) -> list[tuple[str, str, str]]:
    """(method, path, route name) of every operation the app serves under /api/v1, from its OpenAPI."""
    return [(method.upper(), path, op["operationId"])
            for path, item in app.openapi()["paths"].items() if path.startswith(API)
            for method, op in item.items()]


def _page_operations(app) -> list[tuple[str, str, str]]:
    """(method, path, route name) of every compliance page (mounted at the root, left out of the OpenAPI schema)."""
    assert app.state.web_sessions is not None  # the pages are installed on this app
    return [(method, route.path, route.name) for route in _page_routes(app) for method in route.methods]


def _page_routes(app) -> list[APIRoute]:
    """Every page route of the app: the routes of routers mounted outside the OpenAPI schema (audit, console...)."""
    routers = [r.original_router for r in app.routes if hasattr(r, "original_router")]
    return [route for router in routers if not router.include_in_schema
            for route in router.routes if isinstance(route, APIRoute)]


def _allowed_roles(route: APIRoute) -> set[str] | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if hasattr(dep.call, "allowed_roles"):
            return set(dep.call.allowed_roles)
        stack.extend(dep.dependencies)
    return None


def _body(world: World, name: str, role: str, job: dict) -> dict | None:
    approver = "auditor" if role == "auditor" else "party:bank"
    key = world.auditor_key if role == "auditor" else world.keys["bank"]
    return {
        "create_user": {"name": f"u{next(_names)}", "role": "analyst", "party": "bank"},
        "register_party": party_create("bank", "bank", world.keys["bank"]).model_dump(mode="json"),
        "register_dataset": {"name": "matrix", "row_count": 1, "fields": [{"name": "x", "type": "integer",
                                                                           "category": "feature",
                                                                           "security_level": 1}]},
        "submit_job": world.job_body(),
        "approve_job": {"approver": approver, "signature": key.sign_approval(job["digest"])},
        "report_progress": {"stage": "psi", "fraction": 0.5},
        "report_result": {"status": "succeeded"},
    }.get(name)


def _call(world: World, operation: tuple[str, str, str], role: str, job: dict):
    method, path, name = operation
    path = path.format(job_id=job["id"], dataset_id=world.datasets["bank"], name="bank")
    who = PRINCIPALS[role]
    headers = world.h(who) if who else {}
    return world.c.request(method, path, json=_body(world, name, role, job), headers=headers)


def test_every_route_is_in_the_access_table(matrix_world):
    operations = _operations(matrix_world.c.app) + _page_operations(matrix_world.c.app)
    names = [name for _, _, name in operations]
    assert sorted(names) == sorted(set(ACCESS) | PUBLIC)
    routes = [r for router in routers() for r in router.routes if isinstance(r, APIRoute)]
    routes += _page_routes(matrix_world.c.app)
    assert sorted(r.name for r in routes) == sorted(names)
    for route in routes:
        expected = None if route.name in PUBLIC else set(ACCESS[route.name])
        assert _allowed_roles(route) == expected, route.name


def test_role_matrix(matrix_world):
    world = matrix_world
    job = world.submit()
    failures = []
    for operation, role in itertools.product(_operations(world.c.app), ["anonymous", *ROLES]):
        name = operation[2]
        r = _call(world, operation, role, job)
        if name in PUBLIC:
            ok = r.status_code == 200
        elif role == "anonymous":
            ok = r.status_code == 401
        elif role in ACCESS[name]:
            ok = r.status_code not in (401, 403) and r.status_code < 500
        else:
            ok = r.status_code == 403 and "may not call this endpoint" in r.json()["detail"][0]["message"]
        if not ok:
            failures.append((name, role, r.status_code, r.text[:200]))
    assert failures == []


def _login(world: World, who: str | None) -> tuple[int, str | None]:
    """POST the login form as ``who``; the status and the session cookie it set (if any)."""
    r = world.c.post("/login", data={"token": world.tokens[who] if who else ""}, follow_redirects=False)
    cookie = r.cookies.get(COOKIE)
    world.c.cookies.clear()
    return r.status_code, cookie


def _get_page(world: World, operation: tuple[str, str, str], cookie: str | None, job: dict):
    method, path, _ = operation
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    path = path.format(job_id=job["id"], dataset_id=world.datasets["bank"])
    return world.c.request(method, path, headers=headers, follow_redirects=False)


def test_page_role_matrix(matrix_world):
    world = matrix_world
    job = world.submit()
    pages = [op for op in _page_operations(world.c.app) if op[2] in ACCESS and op[0] == "GET"]
    assert {"audit_page", "audit_job_page", "audit_page_export", "console_approvals_page"} <= {n for _, _, n in pages}
    failures = []
    for role in ["anonymous", *ROLES]:
        status, cookie = _login(world, PRINCIPALS[role])
        may_sign_in = role in {*ACCESS["audit_page"], *ACCESS["console_my_jobs_page"]}
        if (status == 303 and cookie is not None) != may_sign_in:
            failures.append(("login_submit", role, status))
        for operation in pages:
            r = _get_page(world, operation, cookie, job)
            allowed = role in ACCESS[operation[2]]
            refused = 401 if cookie is None else 403  # no session: the login form; a session of another role: 403
            if (r.status_code == 200) != allowed or (not allowed and r.status_code != refused):
                failures.append((operation[2], role, r.status_code))
    assert failures == []


def test_page_gate_refuses_a_session_of_another_role(matrix_world):
    """A session of a party role is refused (403) by every page its role is not in the access table for."""
    world = matrix_world
    job = world.submit()
    sessions = world.c.app.state.web_sessions
    for role in ("admin", "analyst", "operator"):
        who = PRINCIPALS[role]
        cookie = sessions.open(hash_token(world.tokens[who]), who, world.c.app.state.context.clock())
        for operation in _page_operations(world.c.app):
            if operation[2] in ACCESS and role not in ACCESS[operation[2]]:
                r = _get_page(world, operation, cookie, job)
                assert r.status_code == 403 and "may not call this endpoint" in r.text, (role, operation)


def test_public_pages_answer_everyone(matrix_world):
    c = matrix_world.c
    assert c.get("/login").status_code == 200
    assert c.post("/logout", follow_redirects=False).status_code == 303
    assert c.post("/login", data={"token": ""}, follow_redirects=False).status_code == 401
