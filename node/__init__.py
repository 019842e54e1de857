"""The one node runtime both nodes run on (DESIGN.md §2-§3, STYLE.md "There is one node runtime").

Modules: ``settings`` (NodeSettings), ``keys`` (signing, sealing, TLS), ``ledger`` (egress ledger),
``node_state`` (local dataset registry, job journal), ``adapters`` (CSV/Parquet/SQL sources),
``governance`` (governance files, catalog entries without row values), ``coordinator_client``,
``approval`` (sign / verify own approval), ``peer`` (pinned mutual-TLS data plane), ``app`` (the node's
HTTPS app and server), ``runner`` (job runner), ``runtime`` (wiring), ``cli`` (shared command line).
"""

from node.adapters import CsvSource, DataSource, ParquetSource, SqlSource, open_source, redact_uri
from node.app import NodeServer, build_node_app
from node.approval import ApprovalRefused, recompute_digest, sign_approval, verify_own_approval
from node.cli import build_cli
from node.coordinator_client import CoordinatorClient, CoordinatorError, CoordinatorUnavailable
from node.governance import FieldRule, Governance, coerce_types, describe, load_governance
from node.keys import NodeKeys, init_keys, load_keys, tls_fingerprint
from node.ledger import COORDINATOR_PEER, EgressLedger, LedgerTotals
from node.node_state import JobJournal, JobRecord, LocalDataset, LocalDatasets
from node.peer import (
    PeerClient,
    PeerError,
    PeerHandler,
    PeerInbox,
    PeerMessage,
    PeerRefused,
    PinnedPeers,
)
from node.runner import JobContext, JobHandler, JobOutcome, JobRunner
from node.runtime import NodeRuntime
from node.settings import NodeSettings

__all__ = [
    "COORDINATOR_PEER",
    "ApprovalRefused",
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
