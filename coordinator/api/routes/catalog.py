"""Users, parties and datasets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from coordinator import accounts, registry
from coordinator.accounts import Principal
from coordinator.api.access import required
from coordinator.api.deps import ContextDep
from coordinator.store import MAX_DB_INT
from protocols.wire.control import (
    DatasetPublic,
    DatasetRegister,
    PartyCreate,
    PartyPublic,
    UserCreate,
    UserCreated,
    UserPublic,
)

router = APIRouter()
DatasetId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
PartyName = Annotated[str, Path(min_length=1, max_length=63)]
UserName = Annotated[str, Path(min_length=1, max_length=63)]


@router.post("/users", status_code=status.HTTP_201_CREATED, tags=["users"])
def create_user(
    body: UserCreate, ctx: ContextDep, actor: Annotated[Principal, Depends(required("create_user"))]
) -> UserCreated:
    """Create a user and return its API token (shown once)."""
    return accounts.create_user(ctx, actor, body)


@router.post("/users/{name}/revoke", tags=["users"])
def revoke_user(
    name: UserName, ctx: ContextDep, actor: Annotated[Principal, Depends(required("revoke_user"))]
) -> UserPublic:
    """End a user's API token now (an admin: users of its own party; an auditor: anyone)."""
    return accounts.revoke_user(ctx, actor, name)


@router.get("/users/me", tags=["users"])
def read_me(ctx: ContextDep, actor: Annotated[Principal, Depends(required("read_me"))]) -> UserPublic:
    """The calling user."""
    return registry.read_catalog(ctx, lambda catalog: catalog.get_user(actor.name))


@router.post("/parties", tags=["parties"])
def register_party(
    body: PartyCreate, ctx: ContextDep, actor: Annotated[Principal, Depends(required("register_party"))]
) -> PartyPublic:
    """Register or update the caller's own party."""
    return registry.register_party(ctx, actor, body)


@router.get("/parties", tags=["parties"])
def list_parties(ctx: ContextDep, _: Annotated[Principal, Depends(required("list_parties"))]) -> list[PartyPublic]:
    """All parties."""
    return registry.list_parties(ctx)


@router.get("/parties/{name}", tags=["parties"])
def get_party(
    name: PartyName, ctx: ContextDep, _: Annotated[Principal, Depends(required("get_party"))]
) -> PartyPublic:
    """One party by name."""
    return registry.get_party(ctx, name)


@router.post("/datasets", tags=["datasets"])
def register_dataset(
    body: DatasetRegister, ctx: ContextDep, actor: Annotated[Principal, Depends(required("register_dataset"))]
) -> DatasetPublic:
    """Register or update a dataset schema of the caller's party."""
    return registry.register_dataset(ctx, actor, body)


@router.get("/datasets", tags=["datasets"])
def list_datasets(
    ctx: ContextDep, _: Annotated[Principal, Depends(required("list_datasets"))]
) -> list[DatasetPublic]:
    """All dataset schemas."""
    return registry.list_datasets(ctx)


@router.get("/datasets/{dataset_id}", tags=["datasets"])
def get_dataset(
    dataset_id: DatasetId, ctx: ContextDep, _: Annotated[Principal, Depends(required("get_dataset"))]
) -> DatasetPublic:
    """One dataset schema."""
    return registry.get_dataset(ctx, dataset_id)
