"""The arbiter round loop, the wire format and the ClientApp shim, without Flower processes."""

from __future__ import annotations

import json

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.proto.node_pb2 import NodeInfo
from flwr.supercore.task_identity import TaskIdentity

from coordinator.flower.arbiter import ArbiterContext, ArbiterError, build_arbiter, load_arbiter_factory, run_rounds
from coordinator.flower.server_app import (
    GridExchange,
    RoundFailedError,
    RunSettings,
    resolve_parties,
    with_relayed_bytes,
)
from demo.flower_toy import SumArbiter, ToyService, adder
from node.flower.client_app import ShimError, forward_round
from protocols.wire.flower_round import (
    Instruction,
    instruction_content,
    read_instruction,
    read_reply,
    reply_content,
    service_round_url,
)

PARTIES = ("bank", "telco")


def test_toy_arbiter_sums_over_rounds() -> None:
    sent: list[tuple[int, dict[str, bytes]]] = []

    def exchange(round_: int, payloads: dict[str, bytes]) -> dict[str, bytes]:
        sent.append((round_, payloads))
        return {p: json.dumps({"value": 10 if p == "bank" else 1}).encode() for p in payloads}

    outcome = run_rounds(SumArbiter(PARTIES, 3), exchange, PARTIES, max_rounds=10)
    assert outcome.rounds == 3
    assert json.loads(outcome.result)["total"] == 33
    assert [json.loads(p["bank"])["total"] for _, p in sent] == [0, 11, 22]
    assert [r for r, _ in sent] == [1, 2, 3]


class _Scripted:
    def __init__(self, rounds: list[dict[str, bytes] | None]) -> None:
        self._rounds = rounds

    def start(self) -> dict[str, bytes] | None:
        return self._rounds.pop(0)

    def handle(self, replies: dict[str, bytes]) -> dict[str, bytes] | None:
        return self._rounds.pop(0)

    def result(self) -> bytes:
        return b"done"


def _echo(round_: int, payloads: dict[str, bytes]) -> dict[str, bytes]:
    return dict(payloads)


def test_subset_rounds_and_immediate_finish() -> None:
    assert run_rounds(_Scripted([None]), _echo, PARTIES, 5).rounds == 0  # type: ignore[arg-type]
    outcome = run_rounds(_Scripted([{"bank": b"a"}, {"telco": b"b"}, None]), _echo, PARTIES, 5)  # type: ignore[arg-type]
    assert (outcome.rounds, outcome.result) == (2, b"done")


@pytest.mark.parametrize(
    "script",
    [[{"mallory": b"x"}], [{}], [{"bank": "not bytes"}], [{"bank": b"x"}] * 3],
)
def test_protocol_violations_are_refused(script: list[dict[str, object]]) -> None:
    with pytest.raises(ArbiterError):
        run_rounds(_Scripted(list(script)), _echo, PARTIES, max_rounds=2)  # type: ignore[arg-type]


def test_replies_must_come_from_addressed_parties() -> None:
    with pytest.raises(ArbiterError, match="replies from"):
        run_rounds(SumArbiter(PARTIES, 1), lambda r, p: {"bank": b'{"value": 1}'}, PARTIES, 5)


def test_arbiter_factory_loading() -> None:
    context = ArbiterContext(job_id="j", run_id=1, parties=PARTIES, config={"rounds": 2})
    assert isinstance(build_arbiter("demo.flower_toy:sum_arbiter", context), SumArbiter)
    for bad in ("demo.flower_toy", "demo.flower_toy:nope", "demo.flower_toy:json"):
        with pytest.raises(ArbiterError):
            build_arbiter(bad, context) if bad.endswith("json") else load_arbiter_factory(bad)


def test_wire_round_trip() -> None:
    instruction = Instruction(job_id="j", party="bank", round=7, payload=b"\x00\xffpayload")
    assert read_instruction(instruction_content(instruction)) == instruction
    of_attempt = Instruction(job_id="j", party="bank", round=7, payload=b"p", attempt=2)
    assert read_instruction(instruction_content(of_attempt)) == of_attempt
    for bad in (0, -1, True, "2"):
        content = instruction_content(instruction)
        content.config_records["tandem"]["attempt"] = bad
        with pytest.raises(ValueError, match="attempt"):
            read_instruction(content)
    assert read_reply(reply_content(b"\x01answer")) == b"\x01answer"
    with pytest.raises(ValueError):
        read_instruction(RecordDict())
    assert service_round_url("http://h:1/", 5, 2) == "http://h:1/flower/v1/5/2"


def test_run_settings_parse_and_refuse() -> None:
    settings = RunSettings.from_run_config(
        {"arbiter": "m:f", "parties": "bank, telco", "arbiter-config": '{"a": 1}', "round-timeout": 5}
    )
    assert settings.parties == PARTIES and settings.arbiter_config == {"a": 1} and settings.round_timeout == 5.0
    assert settings.attempt is None  # a run outside a coordinator job
    assert RunSettings.from_run_config({"arbiter": "m:f", "attempt": 3}).attempt == 3
    bad_configs: tuple[dict[str, object], ...] = (
        {},
        {"arbiter": "m:f", "parties": "bank,bank"},
        {"arbiter": "m:f", "parties": " , "},
        {"arbiter": "m:f", "arbiter-config": "[1]"},
        {"arbiter": "m:f", "attempt": -1},
    )
    for bad in bad_configs:
        with pytest.raises(ValueError):
            RunSettings.from_run_config(bad)


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps new messages with the process's task identity, which a real ClientApp has."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 42)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def _message(party: str, round_: int, payload: bytes) -> Message:
    return Message(
        content=instruction_content(Instruction("job-9", party, round_, payload)),
        dst_node_id=1,
        message_type="query.tandem_round",
    )


def _context(party: str, url: str) -> Context:
    return Context(
        run_id=42,
        node_id=1,
        node_config={"party": party, "service-url": url},
        state=RecordDict(),
        run_config={"service-timeout": 10.0},
    )


def test_shim_forwards_bytes_and_returns_the_answer_verbatim() -> None:
    with ToyService(adder(5)) as service:
        answer = forward_round(_message("bank", 3, b'{"round": 3}'), _context("bank", service.url))
    assert answer == b'{"value": 8}'
    (call,) = service.calls
    assert call.path == "/flower/v1/42/3" and call.body == b'{"round": 3}'
    assert call.headers["X-Tandem-Job-Id"] == "job-9" and call.headers["X-Tandem-Party"] == "bank"
    assert "X-Tandem-Attempt" not in call.headers  # a run outside a coordinator job names no attempt


def test_shim_refuses_misrouted_instruction_and_service_errors() -> None:
    with ToyService(adder(5)) as service:
        with pytest.raises(ShimError, match="reached the 'telco' node"):
            forward_round(_message("bank", 1, b"{}"), _context("telco", service.url))
        with pytest.raises(ShimError, match="answered 500"):
            forward_round(_message("bank", 1, b"not json"), _context("bank", service.url))
        assert not service.calls


class _FakeGrid:
    """Answers every pushed round message through ``answer(party, instruction) -> reply``."""

    def __init__(self, names: dict[int, str], answer: object) -> None:
        self.names = names
        self.answer = answer
        self.pending: dict[str, Message] = {}

    def get_nodes(self) -> list[NodeInfo]:
        return [NodeInfo(node_id=n, name=name) for n, name in self.names.items()]

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for i, msg in enumerate(messages):
            msg.metadata.__dict__["_message_id"] = f"m{len(self.pending)}-{i}"
            self.pending[msg.metadata.message_id] = msg
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, ids: list[str]) -> list[Message]:
        replies = []
        for message_id in ids:
            msg = self.pending.pop(message_id)
            reply = self.answer(self.names[msg.metadata.dst_node_id], msg)  # type: ignore[operator]
            reply.metadata.__dict__["_src_node_id"] = msg.metadata.dst_node_id
            replies.append(reply)
        return replies


def _settings(**extra: object) -> RunSettings:
    return RunSettings.from_run_config({"arbiter": "demo.flower_toy:sum_arbiter", "job-id": "j", **extra})


def test_grid_exchange_maps_parties_and_payloads() -> None:
    def answer(party: str, msg: Message) -> Message:
        return Message(reply_content(party.encode() + read_instruction(msg.content).payload), reply_to=msg)

    grid = _FakeGrid({11: "bank", 22: "telco", 33: "other"}, answer)
    nodes = resolve_parties(grid, _settings())  # type: ignore[arg-type]
    assert nodes == {"bank": 11, "telco": 22}
    exchange = GridExchange(grid, nodes, _settings())  # type: ignore[arg-type]
    replies = exchange(1, {"bank": b"-x", "telco": b"-y"})
    assert replies == {"bank": b"bank-x", "telco": b"telco-y"}
    exchange(2, {"bank": b"-xyz"})
    assert (exchange.bytes_to, exchange.bytes_from) == ({"bank": 6, "telco": 2}, {"bank": 14, "telco": 7})


def test_every_instruction_of_a_run_names_the_jobs_attempt() -> None:
    seen: list[int | None] = []

    def answer(party: str, msg: Message) -> Message:
        seen.append(read_instruction(msg.content).attempt)
        return Message(reply_content(b"ok"), reply_to=msg)

    grid = _FakeGrid({11: "bank", 22: "telco"}, answer)
    GridExchange(grid, {"bank": 11, "telco": 22}, _settings(attempt=2))(1, {"bank": b"x", "telco": b"y"})  # type: ignore[arg-type]
    GridExchange(grid, {"bank": 11}, _settings())(1, {"bank": b"x"})  # type: ignore[arg-type]
    assert seen == [2, 2, None]


def test_report_adds_relayed_bytes_to_a_json_result_only() -> None:
    to, from_ = {"bank": 6, "telco": 2}, {"bank": 14, "telco": 7}
    summary = json.loads(with_relayed_bytes(b'{"rounds": 2}', to, from_))
    assert summary == {"rounds": 2, "relayed_bytes": {"to": to, "from": from_, "total": 29}}
    assert with_relayed_bytes(b"done", to, from_) == b"done"
    assert with_relayed_bytes(b"[1]", to, from_) == b"[1]"


def test_grid_exchange_surfaces_party_errors() -> None:
    def answer(party: str, msg: Message) -> Message:
        if party == "telco":
            return Message(Error(code=0, reason="service said no"), reply_to=msg)
        return Message(reply_content(b"ok"), reply_to=msg)

    grid = _FakeGrid({11: "bank", 22: "telco"}, answer)
    with pytest.raises(RoundFailedError, match="telco failed: service said no"):
        GridExchange(grid, {"bank": 11, "telco": 22}, _settings())(3, {"bank": b"", "telco": b""})  # type: ignore[arg-type]


class _RestartingGrid(_FakeGrid):
    """The telco's SuperNode is down for ``down`` pulls: the SuperLink stands in with NODE_UNAVAILABLE replies."""

    def __init__(self, names: dict[int, str], answer: object, down: int) -> None:
        super().__init__(names, answer)
        self.down = down
        self.stand_in = ErrorCode.NODE_UNAVAILABLE

    def pull_messages(self, ids: list[str]) -> list[Message]:
        replies = []
        for message_id in ids:
            msg = self.pending.get(message_id)
            if msg is None:  # as Flower's SuperLink: an instruction it no longer holds
                gone = Message(Error(code=ErrorCode.MESSAGE_UNAVAILABLE, reason="Error: Message Unavailable"),
                               reply_to=Message(reply_content(b""), dst_node_id=22, message_type="query"))
                gone.metadata.__dict__["_reply_to_message_id"] = message_id
                gone.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
                replies.append(gone)
                continue
            if self.names[msg.metadata.dst_node_id] != "telco" or self.down <= 0:
                replies += super().pull_messages([message_id])
                continue
            self.down -= 1
            # as Flower's SuperLink: a stand-in reply, and the instruction it answers is deleted with it
            del self.pending[message_id]
            stand_in = Message(Error(code=self.stand_in, reason="Error: Node Unavailable"), reply_to=msg)
            stand_in.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
            replies.append(stand_in)
        return replies


def test_a_restarting_supernode_is_waited_for_not_taken_for_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("coordinator.flower.server_app.RESEND_AFTER_S", 0.02)
    received: list[tuple[str, bytes]] = []

    def answer(party: str, msg: Message) -> Message:
        received.append((party, read_instruction(msg.content).payload))
        return Message(reply_content(party.encode()), reply_to=msg)

    nodes = {"bank": 11, "telco": 22}
    back = _RestartingGrid({11: "bank", 22: "telco"}, answer, down=3)
    replies = GridExchange(back, nodes, _settings(**{"grid-poll-interval": 0.01}))(1, {"bank": b"b", "telco": b"t"})  # type: ignore[arg-type]
    assert replies == {"bank": b"bank", "telco": b"telco"}
    # the SuperLink dropped the telco's message with each of its 3 stand-ins: sent again each time, answered once
    assert sorted(received) == [("bank", b"b"), ("telco", b"t")] and back.down == 0
    lost = _RestartingGrid({11: "bank", 22: "telco"}, answer, down=1)
    lost.stand_in = ErrorCode.MESSAGE_UNAVAILABLE  # any other stand-in fails the round, naming the party and error
    with pytest.raises(RoundFailedError, match="for telco's SuperNode with error 3: Error: Node Unavailable"):
        GridExchange(lost, nodes, _settings())(1, {"bank": b"", "telco": b""})  # type: ignore[arg-type]
    gone = _RestartingGrid({11: "bank", 22: "telco"}, answer, down=10**6)
    with pytest.raises(RoundFailedError, match="telco's SuperNode has been unavailable"):
        GridExchange(gone, nodes, _settings(**{"grid-poll-interval": 0.01, "nodes-timeout": 0.05}))(  # type: ignore[arg-type]
            1, {"bank": b"", "telco": b""})


def test_missing_party_times_out_clearly() -> None:
    grid = _FakeGrid({11: "bank"}, None)
    with pytest.raises(RoundFailedError, match=r"\['telco'\] have no SuperNode"):
        resolve_parties(grid, _settings(**{"nodes-timeout": 0.01}))  # type: ignore[arg-type]


def test_fastpoll_caps_only_the_supernode_loop_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from flwr.supernode import start_client_internal

    from node.flower.fastpoll import CappedTime, patch_supernode_loop

    slept: list[float] = []
    monkeypatch.setattr(start_client_internal, "time", time)
    monkeypatch.setattr(time, "sleep", slept.append)
    loop = patch_supernode_loop(0.05)
    assert isinstance(loop.time, CappedTime)
    loop.time.sleep(3)
    loop.time.sleep(0.01)
    assert slept == [0.05, 0.01]
    assert loop.time.monotonic is time.monotonic
    with pytest.raises(RuntimeError, match="no longer uses"):
        patch_supernode_loop(0.05)  # already patched: the patch point is not the time module any more


def test_parties_map_only_to_registered_names_never_to_a_nodes_claim() -> None:
    # Prepare: two online SuperNodes without party names, each ready to claim a party if asked
    def claim(party: str, msg: Message) -> Message:
        return Message(RecordDict(), reply_to=msg)

    unnamed = _FakeGrid({11: "", 22: "mallory"}, claim)
    doubled = _FakeGrid({11: "bank", 22: "telco", 33: "telco"}, claim)

    # Execute + Assert: no discovery round; a party without its registered name is missing; a name held twice fails
    with pytest.raises(RoundFailedError, match=r"\['bank', 'telco'\] have no SuperNode"):
        resolve_parties(unnamed, _settings(**{"nodes-timeout": 0.01}))  # type: ignore[arg-type]
    assert unnamed.pending == {}
    with pytest.raises(RoundFailedError, match="two SuperNodes are registered as 'telco'"):
        resolve_parties(doubled, _settings())  # type: ignore[arg-type]
