"""Relay-mode recovery sends through the same engine: the telco's SMSC gets the matched numbers, nobody else does.

A real relay job between two nodes (pinned mutual TLS on loopback) with the telco's channel set to SMPP
against a local SMSC: the SMSC receives the approved message for exactly the matched subscribers minus
the opt-outs; no number appears in any byte either node sent (to the peer or to the coordinator); the
coordinator gets delivery counts. And the outbox drain resumes after the SMSC went down, sending the
rest only.
"""

from __future__ import annotations

import json

import pytest

from demo.synthetic import generate
from node.channels import ChannelDownError, ChannelSettings
from node.jobs.psi import Patience, PsiReceiver, PsiSender
from node.jobs.psi.outreach import OutboxChannel
from protocols.wire.control import JobInput, JobKind, JobParams, Purpose
from tests.node.jobs.psi.test_wire_capture import KEYS, _capture, _expected_recovery, _forms, _rows
from tests.support.leaks import Needles, search
from tests.support.smpp_server import SmppServer
from tests.support.world import psi_world

TEMPLATE = "{bank_name}提醒：您有一笔业务需要确认，请致电95588。{optout}"


@pytest.fixture(scope="module")
def relayed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("relay-world")
    paths = generate(tmp / "data", n=600, seed=5, progress=False)
    data = {"bank_customers": paths.bank_customers, "bank_lost_contacts": paths.bank_lost_contacts,
            "telco_subscribers": paths.telco_subscribers}
    telco = PsiSender(patience=Patience(start=60, idle=30)).handlers()
    world = psi_world(tmp, data, handlers={"bank": PsiReceiver().handlers(), "telco": telco})
    world.data = data
    expected = sorted({number for _, number in _expected_recovery(world).values()})
    opted_out = expected[0]
    (tmp / "optout.txt").write_text(f"+86{opted_out}\n")
    (tmp / "smpp-password").write_text("secret1\n")
    with SmppServer() as smsc, pytest.MonkeyPatch.context() as mp:
        for name, value in {"KIND": "smpp", "SMPP_PORT": str(smsc.port), "SMPP_SYSTEM_ID": "tandem",
                            "SMPP_PASSWORD_FILE": str(tmp / "smpp-password"), "OPTOUT_PATH": str(tmp / "optout.txt"),
                            "QUIET_HOURS": "", "RATE_PER_S": "500", "BANK_NAME": "示例银行"}.items():
            mp.setenv(f"TANDEM_CHANNEL_{name}", value)
        ds = world.dataset_ids
        world.submit(1, JobKind.RECOVERY, Purpose.RECOVERY,
                     [JobInput(dataset_id=ds["bank_lost_contacts"], key_fields=KEYS, consent_field="consent_recovery"),
                      JobInput(dataset_id=ds["telco_subscribers"], key_fields=KEYS)],
                     JobParams(output_mode="relay", match_cap=5000, message_template=TEMPLATE))
        for _ in range(3):
            world.run()
    world.smsc, world.expected, world.opted_out = smsc, expected, opted_out
    yield world
    world.close()


def test_the_smsc_gets_exactly_the_matched_subscribers_minus_optouts(relayed):
    results = relayed.coordinator.results[1]
    assert {p: r.status for p, r in results.items()} == {"bank": "succeeded", "telco": "succeeded"}, {
        p: r.detail for p, r in results.items()}
    wanted = sorted(set(relayed.expected) - {relayed.opted_out})
    assert len(wanted) >= 10
    assert sorted(r.destination for r in relayed.smsc.received) == wanted
    assert {r.text for r in relayed.smsc.received} == {TEMPLATE.format(bank_name="示例银行", optout="拒收请回复R")}
    delivery = results["telco"].outputs["delivery"]
    assert delivery["submitted"] == delivery["delivered"] == len(wanted) and delivery["opted_out"] == 1
    assert results["bank"].outputs["relayed"] == len(relayed.expected)  # the bank learns a count


def test_no_number_leaves_either_node_but_to_the_smsc(relayed):
    numbers = {row["msisdn"] for row in _rows(relayed.data["telco_subscribers"])}
    needles = Needles({form: f"msisdn={n}" for n in numbers for form in _forms("msisdn", n)})
    capture = _capture(relayed)
    results = relayed.coordinator.results[1]
    capture["outputs"] = [(p, json.dumps(r.outputs).encode()) for p, r in results.items()]
    assert sum(len(blob) for _, blob in capture["telco"]) > 10_000  # the telco did talk
    planted = next(iter(numbers))
    assert search(needles, [("planted", b"x" + planted.encode() + b"x")])  # the search can fail
    for name, blobs in capture.items():
        leaked = search(needles, blobs)
        assert leaked == [], f"{name} sent {len(leaked)} number forms, e.g. {leaked[:3]}"


def test_a_drain_stopped_by_a_down_smsc_resumes_with_the_rest_only(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    numbers = [f"1370000{i:04d}" for i in range(8)]
    outbox = OutboxChannel(state / "node.db")
    try:
        assert outbox.send("9", numbers, "请致电95588 {optout}") == 8
        with SmppServer(down_after=3) as smsc:
            (tmp_path / "pw").write_text("secret1")
            settings = ChannelSettings(kind="smpp", smpp_port=smsc.port, smpp_system_id="tandem",
                                       smpp_password_file=tmp_path / "pw", quiet_hours="", rate_per_s=500.0,
                                       smpp_backoff_s=0.0, smpp_reconnect_attempts=1, receipt_wait_s=1.0)
            with pytest.raises(ChannelDownError, match="after 3 messages this run.*TANDEM_CHANNEL_SMPP_HOST"):
                outbox.drain("9", state_dir=state, channel_settings=settings)
            assert [r.status for r in outbox.rows("9")] == ["queued"] * 8  # nothing marked done
            smsc.start()
            report = outbox.drain("9", state_dir=state, channel_settings=settings)
            assert outbox.drain("9", state_dir=state, channel_settings=settings).counts.sent_now == 0
        assert sorted(r.destination for r in smsc.received) == numbers  # each exactly once
        assert report.counts.sent_now == 5 and report.counts.submitted == 8
        assert {r.status for r in outbox.rows("9")} == {"handed_over"}
    finally:
        outbox.close()


def test_the_outbox_command_drains_a_stopped_relay(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from telco_node.cli import main

    state = tmp_path / "telco"
    state.mkdir(mode=0o700)
    outbox = OutboxChannel(state / "node.db")
    outbox.send("12", ["13700001111", "13700002222"], "请致电95588 {optout}")
    outbox.close()
    for name, value in {"TANDEM_TELCO_STATE_DIR": str(state), "TANDEM_TELCO_API_TOKEN": "tok-4b1f0c9e7a",
                        "TANDEM_CHANNEL_QUIET_HOURS": ""}.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    refused = runner.invoke(main, ["outbox", "--drain"])
    assert refused.exit_code == 2 and "--drain needs --job N" in refused.output
    done = runner.invoke(main, ["outbox", "--drain", "--job", "12"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.splitlines()[0])["delivery"]["sent_now"] == 2
    assert "137****1111\thanded_over" in done.output
    again = runner.invoke(main, ["outbox", "--drain", "--job", "12"])
    assert json.loads(again.output.splitlines()[0])["delivery"]["sent_now"] == 0


def test_a_drain_at_night_keeps_the_rows_queued_for_the_morning(tmp_path):
    import datetime as dt

    from tests.node.channels.conftest import SHANGHAI, FakeClock

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    outbox = OutboxChannel(state / "node.db")
    try:
        outbox.send("13", ["13700003333", "13700004444"], "请致电95588 {optout}")
        clock = FakeClock(dt.datetime(2026, 12, 5, 23, 30, tzinfo=SHANGHAI))
        night = outbox.drain("13", state_dir=state, channel_settings=ChannelSettings(), clock=clock)
        assert night.counts.quiet_hours == 2 and {r.status for r in outbox.rows("13")} == {"queued"}
        clock.current = dt.datetime(2026, 12, 6, 9, 0, tzinfo=SHANGHAI)
        morning = outbox.drain("13", state_dir=state, channel_settings=ChannelSettings(), clock=clock)
        assert morning.counts.sent_now == 2 and {r.status for r in outbox.rows("13")} == {"handed_over"}
    finally:
        outbox.close()
