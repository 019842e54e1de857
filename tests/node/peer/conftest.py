"""Three parties' data-plane servers on loopback with pinned mutual TLS: bank, telco and a rogue bank.

Every party pins every other (the telco pins every registered party, as ``refresh_pins`` does), so the
rogue completes the TLS handshake with the telco: only the job binding can keep it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from node.app import NodeServer, build_node_app
from node.peer import PeerClient, PeerInbox, PinnedPeers
from tests.node.conftest import Party

CHUNK = 1024


class Node:
    """One party's server side: inbox, pins and a running server on a free port."""

    def __init__(self, party: Party, **inbox: Any) -> None:
        self.party = party
        self.pins = PinnedPeers(party.state_dir / "peers", party.keys, own_party=party.name)
        inbox.setdefault("max_message_bytes", 1 << 20)
        self.inbox = PeerInbox(max_chunk_bytes=CHUNK, **inbox)
        self.server = NodeServer(build_node_app(party.name, self.inbox, self.pins, party.ledger), party.keys,
                                 self.pins, "127.0.0.1", 0)
        self.server.start()

    @property
    def name(self) -> str:
        return self.party.name

    def client_to(self, other: Node) -> PeerClient:
        """A pinned client from this party to ``other`` (one attempt per request)."""
        return PeerClient(self.name, other.party.public(other.server.port), self.party.keys, self.pins,
                          self.party.ledger, chunk_bytes=CHUNK, retries=1)


@pytest.fixture
def make_nodes(make_party: Any) -> Iterator[Any]:
    """``make_nodes(**inbox_limits)`` -> bank, telco (with those inbox limits) and rogue, all pinned mutually."""
    started: list[Node] = []

    def make(**inbox: Any) -> tuple[Node, Node, Node]:
        bank, telco, rogue = Node(make_party("bank")), Node(make_party("telco"), **inbox), Node(make_party("rogue"))
        started.extend([bank, telco, rogue])
        for node in (bank, telco, rogue):
            node.pins.refresh([o.party.public(o.server.port) for o in (bank, telco, rogue) if o is not node])
        return bank, telco, rogue

    yield make
    for node in started:
        node.server.stop()
