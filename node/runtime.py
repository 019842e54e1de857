"""``NodeRuntime``: one node's parts wired together from its settings (keys, node.db, clients, server)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from node.app import NodeServer, PeerCall, build_node_app
from node.coordinator_client import CoordinatorClient
from node.keys import NodeKeys, init_keys, load_keys
from node.ledger import EgressLedger
from node.node_db import NODE_DB
from node.node_state import JobJournal, LocalDatasets
from node.peer import PeerClient, PeerInbox, PinnedPeers
from node.runner import JobHandler, JobRunner
from node.settings import NodeSettings
from protocols.wire.control import JobKind, PartyCreate

__all__ = ["NodeRuntime"]


@dataclass
class NodeRuntime:
    """Everything a node process holds; build it with ``NodeRuntime.open``."""

    settings: NodeSettings
    keys: NodeKeys
    ledger: EgressLedger
    datasets: LocalDatasets
    journal: JobJournal
    coordinator: CoordinatorClient
    pins: PinnedPeers
    inbox: PeerInbox
    calls: dict[str, PeerCall] = field(default_factory=dict)
    """Handlers of ``/peer/v1/calls/{name}`` (services register them; read at request time)."""

    @classmethod
    def open(
        cls, settings: NodeSettings, *, create_keys: bool = False, transport: httpx.BaseTransport | None = None
    ) -> NodeRuntime:
        """Load (or, with ``create_keys``, create) the node's keys and open its state and clients.

        Raises:
            ConfigError: if the keys are missing and ``create_keys`` is False.
        """
        state = settings.state_path
        keys = init_keys(state, settings.party, settings.certificate_names()) if create_keys else load_keys(state)
        ledger = EgressLedger(state / NODE_DB, capture_dir=settings.egress_capture_dir)
        coordinator = CoordinatorClient(settings.coordinator_url, settings.api_token, ledger,
                                        verify=settings.coordinator_verify(), transport=transport,
                                        settings_prefix=str(settings.model_config.get("env_prefix", "")))
        return cls(
            settings=settings,
            keys=keys,
            ledger=ledger,
            datasets=LocalDatasets(state / NODE_DB),
            journal=JobJournal(state / NODE_DB),
            coordinator=coordinator,
            pins=PinnedPeers(state / "peers", keys, own_party=settings.party),
            inbox=PeerInbox(max_chunk_bytes=settings.chunk_bytes, max_message_bytes=settings.max_message_bytes,
                            max_pending_messages=settings.max_pending_messages,
                            max_pending_bytes=settings.max_pending_bytes),
        )

    def party_create(self) -> PartyCreate:
        """The node's registry entry: public keys, certificate fingerprint, URL."""
        return PartyCreate(
            name=self.settings.party,
            kind=self.settings.kind,
            signing_key=self.keys.signing.public_hex,
            sealing_key=self.keys.sealing_public_hex,
            tls_fingerprint=self.keys.tls_fingerprint,
            node_url=self.settings.public_url,
        )

    def peer(self, party: str) -> PeerClient:
        """A pinned mutual-TLS client to ``party``, looked up in the coordinator's registry."""
        return PeerClient(self.settings.party, self.coordinator.party(party), self.keys, self.pins, self.ledger,
                          chunk_bytes=self.settings.chunk_bytes)

    def refresh_pins(self) -> list[str]:
        """Pin every other registered party that is reachable."""
        return self.pins.refresh(self.coordinator.parties())

    def runner(self, handlers: Mapping[JobKind, JobHandler] | None = None) -> JobRunner:
        """A job runner over this runtime."""
        return JobRunner(self.settings, self.keys, self.coordinator, self.ledger, self.datasets, self.journal,
                         handlers=handlers, inbox=self.inbox, peer_factory=self.peer)

    def server(self, *, port: int | None = None) -> NodeServer:
        """The mutual-TLS node server (not started)."""
        app = build_node_app(self.settings.party, self.inbox, self.pins, self.ledger, calls=self.calls)
        return NodeServer(app, self.keys, self.pins, self.settings.listen_host,
                          self.settings.listen_port if port is None else port)

    def close(self) -> None:
        """Close clients and database connections."""
        self.coordinator.close()
        self.ledger.close()
        self.datasets.close()
        self.journal.close()
