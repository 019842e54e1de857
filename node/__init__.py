"""The one node runtime both nodes run on (DESIGN.md §2-§3, STYLE.md "There is one node runtime").

Modules: ``settings`` (NodeSettings), ``keys`` (signing, sealing, TLS), ``ledger`` (egress ledger),
``node_state`` (local dataset registry, job journal), ``adapters`` (CSV/Parquet/SQL sources),
``governance`` (governance files, catalog entries without row values), ``coordinator_client``,
``approval`` (sign / verify own approval), ``peer`` (pinned mutual-TLS data plane), ``app`` (the node's
HTTPS app and server), ``runner`` (job runner), ``runtime`` (wiring), ``cli`` (shared command line).

The names below load on first use: the Flower processes import ``node.flower`` modules, which must not
pull in the HTTP app, the runner and their dependencies through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "ApprovalRefused": "node.approval",
    "COORDINATOR_PEER": "node.ledger",
    "CoordinatorClient": "node.coordinator_client",
    "CoordinatorError": "node.coordinator_client",
    "CoordinatorUnavailable": "node.coordinator_client",
    "CsvSource": "node.adapters",
    "DataSource": "node.adapters",
    "EgressLedger": "node.ledger",
    "FieldRule": "node.governance",
    "Governance": "node.governance",
    "JobContext": "node.runner",
    "JobHandler": "node.runner",
    "JobJournal": "node.node_state",
    "JobOutcome": "node.runner",
    "JobRecord": "node.node_state",
    "JobRunner": "node.runner",
    "LedgerTotals": "node.ledger",
    "LocalDataset": "node.node_state",
    "LocalDatasets": "node.node_state",
    "NodeKeys": "node.keys",
    "NodeRuntime": "node.runtime",
    "NodeServer": "node.app",
    "NodeSettings": "node.settings",
    "ParquetSource": "node.adapters",
    "PeerClient": "node.peer",
    "PeerError": "node.peer",
    "PeerHandler": "node.peer",
    "PeerInbox": "node.peer",
    "PeerMessage": "node.peer",
    "PeerRefused": "node.peer",
    "PinnedPeers": "node.peer",
    "SqlSource": "node.adapters",
    "build_cli": "node.cli",
    "build_node_app": "node.app",
    "coerce_types": "node.governance",
    "describe": "node.governance",
    "init_keys": "node.keys",
    "load_governance": "node.governance",
    "load_keys": "node.keys",
    "open_source": "node.adapters",
    "recompute_digest": "node.approval",
    "redact_uri": "node.adapters",
    "sign_approval": "node.approval",
    "tls_fingerprint": "node.keys",
    "verify_own_approval": "node.approval",
}

__all__ = [
    "ApprovalRefused",
    "COORDINATOR_PEER",
    "CoordinatorClient",
    "CoordinatorError",
    "CoordinatorUnavailable",
    "CsvSource",
    "DataSource",
    "EgressLedger",
    "FieldRule",
    "Governance",
    "JobContext",
    "JobHandler",
    "JobJournal",
    "JobOutcome",
    "JobRecord",
    "JobRunner",
    "LedgerTotals",
    "LocalDataset",
    "LocalDatasets",
    "NodeKeys",
    "NodeRuntime",
    "NodeServer",
    "NodeSettings",
    "ParquetSource",
    "PeerClient",
    "PeerError",
    "PeerHandler",
    "PeerInbox",
    "PeerMessage",
    "PeerRefused",
    "PinnedPeers",
    "SqlSource",
    "build_cli",
    "build_node_app",
    "coerce_types",
    "describe",
    "init_keys",
    "load_governance",
    "load_keys",
    "open_source",
    "recompute_digest",
    "redact_uri",
    "sign_approval",
    "tls_fingerprint",
    "verify_own_approval",
]


def __getattr__(name: str) -> Any:
    """Load a runtime name from its module on first use."""
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module 'node' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
