"""Data plane: real uvicorn servers on loopback with pinned mutual TLS."""

from __future__ import annotations

import hashlib

import pytest

from node.app import NodeServer, build_node_app
from node.peer import PeerClient, PeerError, PeerInbox, PeerMessage, PeerRefused, PinnedPeers


class Node:
    """One party's server side: inbox, pins and a running server on a free port."""

    def __init__(self, party, *, chunk=1024, max_message=1 << 20):
        self.party = party
        self.pins = PinnedPeers(party.state_dir / "peers", party.keys, own_party=party.name)
        self.inbox = PeerInbox(max_chunk_bytes=chunk, max_message_bytes=max_message)
        app = build_node_app(party.name, self.inbox, self.pins, party.ledger)
        self.server = NodeServer(app, party.keys, self.pins, "127.0.0.1", 0)
        self.server.start()

    @property
    def public(self):
        return self.party.public(self.server.port)

    def client_to(self, other: Node, **kw) -> PeerClient:
        kw.setdefault("chunk_bytes", 1024)
        kw.setdefault("retries", 1)
        return PeerClient(self.party.name, other.public, self.party.keys, self.pins, self.party.ledger, **kw)


@pytest.fixture
def nodes(make_party):
    bank, telco = Node(make_party("bank")), Node(make_party("telco"))
    bank.pins.refresh([telco.public])
    telco.pins.refresh([bank.public])
    yield bank, telco
    bank.server.stop()
    telco.server.stop()


def _echo_upper(calls):
    def handler(msg: PeerMessage) -> bytes:
        calls.append(msg)
        return msg.body.upper() * 3

    return handler


def test_exchange_chunks_both_ways_and_records_every_byte(nodes):
    bank, telco = nodes
    calls = []
    telco.inbox.register_handler("echo", _echo_upper(calls))
    telco.inbox.activate(7)
    body = bytes(range(97, 123)) * 200  # 5200 bytes -> 6 chunks of 1024

    with bank.client_to(telco) as client:
        answer = client.exchange(7, "echo", 1, body, kind="test")

    assert answer == body.upper() * 3
    assert len(calls) == 1 and calls[0].sender == "bank" and calls[0].body == body
    sent = [r.body for r in bank.party.ledger.records() if r.body["job_id"] == 7]
    assert sum(r["bytes"] for r in sent) == len(body)
    assert all(r["peer"] == "telco" for r in sent)
    replies = [r.body for r in telco.party.ledger.records() if r.body["kind"] == "test.response"]
    assert sum(r["bytes"] for r in replies) == len(answer)
    assert bank.party.ledger.verify().ok and telco.party.ledger.verify().ok


def test_exchange_is_idempotent_per_message(nodes):
    bank, telco = nodes
    calls = []
    telco.inbox.register_handler("echo", _echo_upper(calls))
    telco.inbox.activate(7)
    with bank.client_to(telco) as client:
        first = client.exchange(7, "echo", 1, b"hello")
        again = client.exchange(7, "echo", 1, b"hello")
    assert first == again == b"HELLO" * 3
    assert len(calls) == 1


def test_resume_sends_only_missing_chunks(nodes):
    bank, telco = nodes
    calls = []
    telco.inbox.register_handler("echo", _echo_upper(calls))
    telco.inbox.activate(3)
    body = b"x" * 3000
    digest = hashlib.sha256(body).hexdigest()
    with bank.client_to(telco) as client:
        client._post_chunk(3, "echo", 0, "data", 0, 3, digest, body[:1024])  # then the sender "crashed"
        assert client.received(3, "echo", 0) == {"complete": False, "received": [0]}
        before = len(list(bank.party.ledger.records()))
        assert client.exchange(3, "echo", 0, body) == b"X" * 9000
    chunk_records = [r for r in list(bank.party.ledger.records())[before:] if r.body["kind"] == "data"]
    assert [r.body["ref"] for r in chunk_records] == ["echo/0/2of3", "echo/0/3of3"]


def test_inactive_job_and_unknown_channel_are_refused(nodes):
    bank, telco = nodes
    telco.inbox.register_handler("echo", _echo_upper([]))
    with bank.client_to(telco) as client:
        with pytest.raises(PeerError, match="not running"):
            client.exchange(99, "echo", 0, b"x")
        telco.inbox.activate(99)
        with pytest.raises(PeerError, match="no handler"):
            client.exchange(99, "nothing", 0, b"x")


def test_handler_failure_is_opaque_to_the_sender(nodes):
    bank, telco = nodes

    def boom(msg):
        raise ValueError("secret row value 13800138000")

    telco.inbox.register_handler("boom", boom)
    telco.inbox.activate(1)
    with bank.client_to(telco) as client, pytest.raises(PeerError) as err:
        client.exchange(1, "boom", 0, b"x")
    assert "ValueError" in str(err.value) and "13800138000" not in str(err.value)


def test_oversized_chunk_is_refused(make_party):
    bank, telco = Node(make_party("bank")), Node(make_party("telco"), chunk=1024)
    try:
        bank.pins.refresh([telco.public])
        telco.pins.refresh([bank.public])
        telco.inbox.register_handler("echo", _echo_upper([]))
        telco.inbox.activate(1)
        with bank.client_to(telco, chunk_bytes=4096) as client, pytest.raises(PeerError, match="413"):
            client.exchange(1, "echo", 0, b"y" * 4096)
    finally:
        bank.server.stop()
        telco.server.stop()


def test_third_party_with_unpinned_certificate_cannot_connect(nodes, make_party):
    bank, telco = nodes
    calls = []
    telco.inbox.register_handler("echo", _echo_upper(calls))
    telco.inbox.activate(7)
    eve = make_party("eve")
    eve_pins = PinnedPeers(eve.state_dir / "peers", eve.keys, own_party="eve")
    # Eve even knows telco's genuine registry entry, so she trusts telco; telco does not trust her.
    client = PeerClient("eve", telco.public, eve.keys, eve_pins, eve.ledger, retries=1)
    with client, pytest.raises(PeerError):
        client.exchange(7, "echo", 0, b"let me in")
    assert calls == []


def test_client_refuses_server_whose_certificate_is_not_the_registered_one(nodes, make_party):
    bank, telco = nodes
    impostor = Node(make_party("impostor"))
    try:
        impostor.pins.refresh([bank.public])
        # The registry says "telco" is at the impostor's URL with telco's genuine fingerprint.
        forged = telco.party.public(impostor.server.port)
        fresh_pins = PinnedPeers(bank.party.state_dir / "fresh-pins", bank.party.keys, own_party="bank")
        with pytest.raises(PeerRefused):
            PeerClient("bank", forged, bank.party.keys, fresh_pins, bank.party.ledger, retries=1)
        # Even with telco's certificate already pinned, the TLS handshake itself fails.
        client = PeerClient("bank", forged, bank.party.keys, bank.pins, bank.party.ledger, retries=1)
        with client, pytest.raises(PeerError):
            client.exchange(1, "echo", 0, b"x")
    finally:
        impostor.server.stop()


def test_pins_learned_after_start_are_trusted_by_a_running_server(make_party):
    bank, telco = Node(make_party("bank")), Node(make_party("telco"))
    try:
        bank.pins.refresh([telco.public])
        telco.inbox.register_handler("echo", _echo_upper([]))
        telco.inbox.activate(1)
        with bank.client_to(telco) as client:
            with pytest.raises(PeerError):
                client.exchange(1, "echo", 0, b"x")  # telco has not pinned bank yet
            telco.pins.refresh([bank.public])
            assert client.exchange(1, "echo", 0, b"x") == b"XXX"
            assert client.healthz() == {"status": "ok", "party": "telco"}
    finally:
        bank.server.stop()
        telco.server.stop()
