"""The coordinator's FastAPI application factory.

``create_app(settings)`` checks that the state directories are private, opens the store (creating
tables), loads the policy and the audit key, checks that the audit log still extends its last signed
head (``coordinator.audit.heads``), records ``policy.loaded`` in the audit log, and wires routers, the
body-size limit and the error catalog. The app holds no other global state.
"""

from __future__ import annotations

import logging
from functools import partial

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from coordinator.api.access import known_caller
from coordinator.api.deps import ContextDep, install_state
from coordinator.api.error_catalog import install_error_handlers
from coordinator.api.middleware import BodySizeLimit, ClientRateLimit
from coordinator.api.routes import (
    audit,
    audit_pages,
    budgets,
    catalog,
    console_pages,
    disclosure,
    jobs,
    lineage_pages,
    report_pages,
)
from coordinator.api.schemas import Health
from coordinator.audit import log as audit_log
from coordinator.audit.heads import AuditHeads, flush_pending_heads
from coordinator.context import Context
from coordinator.keys import load_or_create_signing_key
from coordinator.policy import Policy, load_policy
from coordinator.settings import Settings, get_settings
from coordinator.store import SqlStore, Store
from protocols.crypto.signing import SigningKey
from protocols.wire.errors import ConfigError

__all__ = ["API_PREFIX", "build_context", "create_app", "routers"]

API_PREFIX = "/api/v1"
logger = logging.getLogger(__name__)


def _open_store(settings: Settings, key: SigningKey) -> tuple[SqlStore, AuditHeads | None]:
    """The store of ``settings.database_url``, storing each new signed audit head in ``settings.heads_path``."""
    interval = settings.audit_head_interval_ms / 1000
    heads = AuditHeads(settings.heads_path, key, interval=interval) if settings.heads_path else None
    return SqlStore.from_url(settings.database_url, on_audit_commit=heads.save if heads else None), heads


def build_context(settings: Settings, store: Store | None = None, *, announce: bool = True,
                  worker: bool = False, policy: Policy | None = None) -> Context:
    """Open the store, load policy and audit key, check the audit tail, and (if ``announce``) record ``policy.loaded``.

    A given ``store`` is used as it is (tests): no state directories, no signed-head file. ``announce`` is
    what a serving coordinator does: it refuses an audit log that does not extend its last signed head.
    The CLI leaves it off and only warns, so that ``audit export`` still works to investigate such a log
    (its events are then not signed into the heads file, which keeps the evidence). A ``worker`` process
    of ``serve --workers N`` checks and records nothing: the ``serve`` process that started it did both
    before any worker started; the worker still signs the heads of what it appends. ``policy`` is used instead
    of loading ``settings.policy_path`` (a worker enforces the policy ``serve`` loaded and recorded, even when
    the file was edited or broken since).

    Raises:
        ConfigError: a state directory others can access, or (``announce``) an audit log that does not
            extend its last signed head; the message names what is wrong and how to investigate.
    """
    policy = policy if policy is not None else load_policy(settings.policy_path)
    if store is None:
        settings.check_state_dirs()
    key = load_or_create_signing_key(settings.signing_key_path)
    store, heads = (store, None) if store is not None else _open_store(settings, key)
    ctx = Context(store=store, policy=policy, audit_key=key)
    if worker:
        if heads is not None:
            heads.checked_elsewhere()  # serve checked the tail before it started this worker
        return ctx
    try:
        unchecked = heads is not None and heads.check_tail(ctx.store)
    except ConfigError as exc:
        if announce:
            raise
        logger.warning("%s", exc)
        return ctx
    if not announce:
        return ctx
    if unchecked:
        audit_log.record_alone(ctx, "coordinator", "audit.heads_started", "audit", {"heads_file": "missing"})
    audit_log.record_alone(ctx, "coordinator", "policy.loaded", "policy",
                           {"version": policy.version, "digest": policy.digest})
    logger.info("policy %s loaded (digest %s)", policy.version, policy.digest[:16])
    return ctx


_HEALTH = APIRouter(tags=["health"])


@_HEALTH.get("/healthz", response_model=Health)
async def healthz(ctx: ContextDep) -> Health:
    """Liveness (no authentication). ``async``: it does no I/O, so it needs no thread-pool hop."""
    return Health(status="ok", policy_version=ctx.policy.version)


def _operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route names, the keys of the access table."""
    return route.name


def routers() -> list[APIRouter]:
    """Every router the app mounts under ``API_PREFIX``."""
    return [_HEALTH, catalog.router, jobs.router, disclosure.router, budgets.router, audit.router,
            lineage_pages.api_router]


def create_app(settings: Settings | None = None, *, store: Store | None = None, worker: bool = False,
               policy: Policy | None = None) -> FastAPI:
    """Build the coordinator app.

    Args:
        settings: configuration; default ``get_settings()`` (the environment). When given, it is
            also what the settings dependency (``deps.app_settings``) returns inside this app.
        store: use this store instead of opening ``settings.database_url`` (tests).
        worker: one of ``serve``'s worker processes (``build_context``): no start-up check or record.
        policy: enforce this policy instead of loading ``settings.policy_path`` (``serve``'s workers).

    The app does not close the store on shutdown (an ASGI lifespan may run more than once, and an
    in-memory database would be lost); whoever owns the process calls ``app.state.context.store.close()``.
    """
    settings = settings or get_settings()
    ctx = build_context(settings, store, worker=worker, policy=policy)

    app = FastAPI(title="Tandem coordinator", version="1",
                  generate_unique_id_function=_operation_id)
    app.state.context = ctx
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ClientRateLimit, burst=settings.auth_failure_burst,  # outermost: before the body is read
                       refill_seconds=settings.auth_failure_refill_seconds, trusted=partial(known_caller, app))
    install_state(app, settings)
    install_error_handlers(app)
    for router in routers():
        app.include_router(router, prefix=API_PREFIX)
    audit_pages.install(app)
    app.router.add_event_handler("shutdown", flush_pending_heads)  # before uvicorn re-raises SIGTERM
    report_pages.install(app)
    console_pages.install(app)
    app.include_router(lineage_pages.router)
    return app
