"""The must-show SMPP test: the real ``smpplib`` client against a local SMSC (``tests/support/smpp_server.py``).

The SMSC receives exactly the approved message for the audience minus opt-outs, once each, spaced by at
least 1/rate, and nothing to anyone else; a retry sends nothing new; an SMSC that goes down mid-run
fails the delivery naming the setting, and a resume sends the rest only.
"""

from __future__ import annotations

import json
import socket

import pytest

from node.channels import ChannelDownError, ChannelSettings, DeliveryJournal, SmppChannel, deliver
from tests.node.channels.conftest import WallClock
from tests.support.smpp_server import SmppServer

AUDIENCE = [f"1380013{i:04d}" for i in range(12)]
OPTED_OUT = {AUDIENCE[2], AUDIENCE[7], "13900000000"}
TEMPLATE = "【{bank_name}】下载手机银行App，开户礼等你领：{app_link} {optout}"
VALUES = {"bank_name": "示例银行", "app_link": "https://b.example/app", "optout": "拒收请回复R"}
RATE = 10.0


def _settings(server: SmppServer, tmp_path, **over: object) -> ChannelSettings:
    secret = tmp_path / "smpp-password"
    secret.write_text(server.password + "\n")
    optout = tmp_path / "optout.txt"
    if not optout.exists():
        optout.write_text("# 退订\n" + "\n".join(["+86 " + AUDIENCE[2], AUDIENCE[7], "13900000000"]) + "\n")
    base: dict[str, object] = dict(kind="smpp", smpp_host="127.0.0.1", smpp_port=server.port,
                                   smpp_system_id=server.system_id, smpp_password_file=secret,
                                   smpp_source_addr="95588", rate_per_s=RATE, quiet_hours="", optout_path=optout,
                                   receipt_wait_s=3.0, smpp_backoff_s=0.0, smpp_reconnect_attempts=2)
    base.update(over)
    return ChannelSettings(**base)


def test_smsc_receives_exactly_the_approved_messages_minus_optouts_at_the_rate(tmp_path, state_dir):
    expected = sorted(set(AUDIENCE) - OPTED_OUT)
    with SmppServer(undeliverable=frozenset({AUDIENCE[5]})) as server:
        settings = _settings(server, tmp_path)
        audience = [*AUDIENCE, AUDIENCE[0], "+86" + AUDIENCE[1]]  # the same people twice: messaged once
        report = deliver("41", audience, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                         clock=WallClock())

        got = server.received
        assert sorted(r.destination for r in got) == expected  # each once, nobody else
        text = TEMPLATE.format(**VALUES)
        assert {r.text for r in got} == {text} and {r.data_coding for r in got} == {8}  # UCS-2
        assert {r.source for r in got} == {"95588"}
        gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
        # the limiter's spacing, as the SMSC sees it: the whole run spans at least (n-1)/rate, and each gap is at
        # least 1/rate less the SMSC thread's scheduling jitter on a loaded machine
        assert got[-1].at - got[0].at >= (len(got) - 1) / RATE - 0.01, gaps
        assert min(gaps) >= 1 / RATE - 0.03, gaps
        assert report.counts.as_dict() == {"submitted": 10, "delivered": 9, "failed": 1, "opted_out": 2,
                                           "rate_limited": 0, "quiet_hours": 0, "unconfirmed": 0, "sent_now": 10}

        again = deliver("41", audience, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                        clock=WallClock())
        assert server.submits == 10 and len(server.received) == 10  # the retry sent nothing
        assert again.counts.sent_now == 0 and again.counts.submitted == 10 and again.counts.delivered == 9


def test_smsc_down_mid_run_fails_naming_the_setting_and_resume_sends_the_rest(tmp_path, state_dir):
    expected = sorted(set(AUDIENCE) - OPTED_OUT)
    with SmppServer(down_after=4) as server:
        settings = _settings(server, tmp_path)
        with pytest.raises(ChannelDownError, match=r"smpp channel down for job 42 after 4 messages this run .*"
                                                    r"retry the job to send the rest only.*TANDEM_CHANNEL_SMPP_HOST"):
            deliver("42", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                    clock=WallClock())
        assert len(server.received) == 4
        journal = DeliveryJournal(state_dir)
        try:
            assert sum(journal.counts("42").values()) == 4  # the journal says what was sent, nothing half-written
        finally:
            journal.close()

        server.start()  # the SMSC is back
        report = deliver("42", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                         clock=WallClock())
    assert sorted(r.destination for r in server.received) == expected  # the rest, and nobody twice
    assert report.counts.sent_now == len(expected) - 4 and report.counts.submitted == len(expected)


def test_long_messages_are_split_and_reassembled(tmp_path, state_dir):
    chinese = "尊敬的客户，" + "理财产品年化收益稳健，" * 14 + "{optout}"
    latin = "Dear customer, " + "our app makes saving simple. " * 8 + "{optout}"
    with SmppServer() as server:
        settings = _settings(server, tmp_path)
        deliver("43", [AUDIENCE[0]], chinese, state_dir=state_dir, channel_settings=settings, clock=WallClock())
        deliver("44", [AUDIENCE[1]], latin, values={"optout": "STOP to 1"}, state_dir=state_dir,
                channel_settings=settings.model_copy(update={"recipient_limit": 5}), clock=WallClock())
    by_dest = {r.destination: r for r in server.received}
    zh, en = by_dest[AUDIENCE[0]], by_dest[AUDIENCE[1]]
    assert zh.text == chinese.format(optout="拒收请回复R") and zh.data_coding == 8 and zh.parts == 3
    assert en.text == latin.format(optout="STOP to 1") and en.data_coding == 0 and en.parts == 2


def test_wrong_password_refuses_naming_the_credentials_and_sends_nothing(tmp_path, state_dir):
    with SmppServer(password="right") as server:
        settings = _settings(server, tmp_path)  # writes the server's password...
        (tmp_path / "smpp-password").write_text("wrong\n")  # ...then the operator mistypes it
        with pytest.raises(ChannelDownError, match="refused the bind.*TANDEM_CHANNEL_SMPP_PASSWORD_FILE"):
            deliver("45", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                    clock=WallClock())
        assert server.received == []
    journal = DeliveryJournal(state_dir)
    try:
        assert journal.counts("45") == {}  # nothing journaled: a fixed password sends to everyone
    finally:
        journal.close()


def test_unreachable_smsc_names_host_and_port_after_backoff(tmp_path, state_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here
    slept: list[float] = []
    channel = SmppChannel(host="127.0.0.1", port=port, system_id="x", password="y", attempts=3, backoff_s=0.5,
                          sleep=slept.append)
    server = SmppServer()
    settings = _settings(server, tmp_path, smpp_port=port)
    with pytest.raises(ChannelDownError, match=r"unreachable after 3 attempts.*TANDEM_CHANNEL_SMPP_HOST"):
        deliver("46", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                channel=channel, clock=WallClock())
    assert slept == [0.5, 1.0]  # doubling back-off between attempts


def test_numbers_go_to_the_smsc_only_and_the_caller_gets_counts(tmp_path, state_dir, monkeypatch):
    connects: list[object] = []
    real_connect = socket.socket.connect

    def recording(sock: socket.socket, address: object) -> None:
        connects.append(address)
        real_connect(sock, address)

    with SmppServer() as server:
        settings = _settings(server, tmp_path)
        monkeypatch.setattr(socket.socket, "connect", recording)
        report = deliver("47", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                         clock=WallClock())
        monkeypatch.undo()
    assert set(connects) == {("127.0.0.1", server.port)}  # the telco's SMSC, nothing else
    outputs = json.dumps(report.outputs())
    assert not any(number[-8:] in outputs for number in AUDIENCE)
    assert set(json.loads(outputs)["delivery"].values()) <= set(range(len(AUDIENCE) + 1))  # counts only
