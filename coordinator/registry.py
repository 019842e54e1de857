"""Party registry and dataset catalog: who takes part, and what their data looks like (never rows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from coordinator.accounts import Principal
from coordinator.audit import log as audit_log
from coordinator.context import Context
from coordinator.errors import BadRequest, Conflict, Forbidden, NotFound
from coordinator.store import CatalogStore
from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.control import DatasetPublic, DatasetRegister, FieldSpec, PartyCreate, PartyPublic

__all__ = ["get_dataset", "get_party", "list_datasets", "list_parties", "read_catalog", "register_dataset",
           "register_party", "schema_digest"]

_T = TypeVar("_T")


def schema_digest(fields: list[FieldSpec]) -> str:
    """SHA-256 of the canonical JSON of a dataset's field list (order matters)."""
    return sha256_hex(canonical_json([f.model_dump(mode="json") for f in fields]))


def register_party(ctx: Context, actor: Principal, body: PartyCreate) -> PartyPublic:
    """Register or update the caller's own party (keys, fingerprint, URL).

    Raises:
        Forbidden: the caller is not an admin of ``body.name``.
        Conflict: the party exists with another kind.
    """
    if actor.party != body.name:
        raise Forbidden(f"you may register only your own party {actor.party!r}", field="body.name")
    with ctx.store.write() as tx:
        existing = next((p for p in tx.catalog.list_parties() if p.name == body.name), None)
        if existing and existing.kind != body.kind:
            raise Conflict(f"party {body.name!r} is registered as {existing.kind}", field="body.kind")
        party, created = tx.catalog.upsert_party(body, ctx.clock())
        audit_log.record(ctx, tx, actor.actor, "party.registered" if created else "party.updated",
                         f"party:{party.name}", {"kind": party.kind.value, "signing_key": party.signing_key,
                                                 "sealing_key": party.sealing_key,
                                                 "tls_fingerprint": party.tls_fingerprint, "node_url": party.node_url})
    return party


def _check_unique_fields(fields: list[FieldSpec]) -> None:
    seen: set[str] = set()
    for i, f in enumerate(fields):
        if f.name in seen:
            raise BadRequest(f"field {f.name!r} is listed twice", field=f"body.fields.{i}.name",
                             fix="give every field one entry")
        seen.add(f.name)


def register_dataset(ctx: Context, actor: Principal, body: DatasetRegister) -> DatasetPublic:
    """Register (or re-register, updating the schema) a dataset of the caller's party.

    Raises:
        BadRequest: duplicate field names.
        NotFound: the caller's party is not registered yet.
    """
    _check_unique_fields(body.fields)
    assert actor.party is not None
    digest = schema_digest(body.fields)
    with ctx.store.write() as tx:
        if not any(p.name == actor.party for p in tx.catalog.list_parties()):
            raise NotFound(f"party {actor.party!r} is not registered", fix="POST /api/v1/parties first")
        dataset, created = tx.catalog.upsert_dataset(actor.party, body, digest, ctx.clock())
        audit_log.record(ctx, tx, actor.actor, "dataset.registered" if created else "dataset.updated",
                         f"dataset:{dataset.id}", {"party": dataset.party, "name": dataset.name,
                                                   "row_count": dataset.row_count, "fields": len(dataset.fields),
                                                   "schema_digest": digest})
    return dataset


def read_catalog(ctx: Context, query: Callable[[CatalogStore], _T]) -> _T:
    """``query`` over the catalog in one read transaction."""
    with ctx.store.read() as tx:
        return query(tx.catalog)


def list_parties(ctx: Context) -> list[PartyPublic]:
    """All registered parties."""
    return read_catalog(ctx, lambda catalog: catalog.list_parties())


def get_party(ctx: Context, name: str) -> PartyPublic:
    """One party by name (``NotFound`` names it)."""
    return read_catalog(ctx, lambda catalog: catalog.get_party(name))


def list_datasets(ctx: Context) -> list[DatasetPublic]:
    """All catalogued datasets (schemas only)."""
    return read_catalog(ctx, lambda catalog: catalog.list_datasets())


def get_dataset(ctx: Context, dataset_id: int) -> DatasetPublic:
    """One dataset by id."""
    return read_catalog(ctx, lambda catalog: catalog.get_dataset(dataset_id))
