"""Shared fixtures for the node runtime tests: parties with real keys on disk."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.keys import NodeKeys, init_keys
from node.ledger import EgressLedger
from protocols.wire.control import PartyKind, PartyPublic


@dataclass
class Party:
    name: str
    keys: NodeKeys
    ledger: EgressLedger
    state_dir: Path

    def public(self, port: int, *, fingerprint: str | None = None) -> PartyPublic:
        return PartyPublic(
            id=1,
            name=self.name,
            kind=PartyKind.BANK if self.name == "bank" else PartyKind.TELCO,
            signing_key=self.keys.signing.public_hex,
            sealing_key=self.keys.sealing_public_hex,
            tls_fingerprint=fingerprint or self.keys.tls_fingerprint,
            node_url=f"https://localhost:{port}",
            created_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        )


@pytest.fixture
def make_party(tmp_path):
    ledgers = []

    def make(name: str) -> Party:
        state = tmp_path / name
        keys = init_keys(state, name)
        ledger = EgressLedger(state / "node.db")
        ledgers.append(ledger)
        return Party(name, keys, ledger, state)

    yield make
    for ledger in ledgers:
        ledger.close()
