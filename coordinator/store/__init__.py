"""Coordinator storage: the store contract and its in-memory and SQL implementations."""

from coordinator.store._interface import (
    MAX_DB_INT,
    AuditStore,
    BudgetCharge,
    BudgetStore,
    CatalogStore,
    JobStore,
    JobUpdate,
    SessionStore,
    Store,
    Transaction,
    WebSession,
)
from coordinator.store._memory import MemoryStore
from coordinator.store._sql import CATALOG, SqlStore, init_schema, make_engine

__all__ = [
    "CATALOG",
    "MAX_DB_INT",
    "AuditStore",
    "BudgetCharge",
    "BudgetStore",
    "CatalogStore",
    "JobStore",
    "JobUpdate",
    "MemoryStore",
    "SessionStore",
    "SqlStore",
    "Store",
    "Transaction",
    "WebSession",
    "init_schema",
    "make_engine",
]
