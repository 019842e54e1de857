"""Audit log: events, signed head, streamed export, and the public key that verifies them.

Who sees what: an auditor reads every event and the export (the whole chain, which only a complete log
lets anyone verify); a party admin reads only events about its own party (``coordinator.audit.review``
decides per event from stored fields) and the signed head (a sequence number and a hash, which say how
long the log is but nothing of what is in it). Reading first chains the counts of closed
failed-login windows (``AuthFailureLog.flush``), so what is read is up to date.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from coordinator.accounts import Principal
from coordinator.api.access import audit_scope, required
from coordinator.api.deps import ContextDep, FailuresDep
from coordinator.api.schemas import PublicKey, SignedHeadPublic
from coordinator.audit import log as audit_log
from coordinator.audit.scope import scoped_events
from coordinator.store import MAX_DB_INT
from protocols.wire.control import AuditEventPublic

router = APIRouter(prefix="/audit", tags=["audit"])


_EVENT_LIST = TypeAdapter(list[AuditEventPublic])


@router.get("/events", response_model=list[AuditEventPublic])
def audit_events(
    ctx: ContextDep, failures: FailuresDep, reader: Annotated[Principal, Depends(required("audit_events"))],
    after_seq: Annotated[int, Query(ge=-1, le=MAX_DB_INT)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Events with ``seq > after_seq`` that the caller may see (a party admin: its own party's), oldest first.

    Serialised here once (the events are already models; FastAPI would validate them again first).
    """
    failures.flush(ctx)
    return Response(_EVENT_LIST.dump_json(scoped_events(ctx, audit_scope(reader), after_seq, limit)),
                    media_type="application/json")


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "JSONL export"}})
def audit_export(
    ctx: ContextDep, failures: FailuresDep, actor: Annotated[Principal, Depends(required("audit_export"))]
) -> StreamingResponse:
    """The whole log as JSON Lines with a freshly signed head (verify with ``audit verify``); auditors only."""
    failures.flush(ctx)
    lines = audit_log.export(ctx, actor.actor)
    return StreamingResponse(lines, media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'})


@router.get("/head")
def audit_head(ctx: ContextDep, _: Annotated[Principal, Depends(required("audit_head"))]) -> SignedHeadPublic:
    """The current head, signed now."""
    return SignedHeadPublic(**audit_log.signed_head(ctx).to_dict())


@router.get("/public-key")
def audit_public_key(ctx: ContextDep) -> PublicKey:
    """The coordinator's Ed25519 public key (no authentication)."""
    return PublicKey(public_key=ctx.audit_key.public_hex)
