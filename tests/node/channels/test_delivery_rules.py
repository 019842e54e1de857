"""The delivery engine's rules over the embedded outbox: template, opt-out, quiet hours, caps, idempotence."""

from __future__ import annotations

import datetime as dt

import pytest

from node.channels import (
    ChannelOutreach,
    ChannelSettings,
    DeliveryJournal,
    OptOutError,
    OutboxFileChannel,
    QuietHours,
    TemplateError,
    deliver,
    load_channel_settings,
)
from protocols.wire.errors import ConfigError
from protocols.wire.message_template import check_template
from tests.node.channels.conftest import SHANGHAI, FakeClock

AUDIENCE = [f"1860000{i:04d}" for i in range(5)]
TEMPLATE = "{bank_name}邀您体验手机银行 {app_link} {optout}"
VALUES = {"bank_name": "示例银行", "app_link": "https://b.example/app"}


def _outbox(state_dir) -> list[tuple[str, str, str]]:
    box = OutboxFileChannel(state_dir / "channel_outbox.db")
    try:
        return box.messages()
    finally:
        box.close()


def _journal(state_dir, job_id: str) -> dict[str, int]:
    journal = DeliveryJournal(state_dir)
    try:
        return journal.counts(job_id)
    finally:
        journal.close()


def _settings(**over: object) -> ChannelSettings:
    return ChannelSettings(**{"rate_per_s": 1000.0, "receipt_wait_s": 0.0, **over})


def test_outbox_default_writes_each_message_once_and_counts_deliveries(state_dir, noon):
    report = deliver("61", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(),
                     clock=noon)
    rows = _outbox(state_dir)
    assert sorted(r for _, r, _ in rows) == AUDIENCE
    assert {t for _, _, t in rows} == {"示例银行邀您体验手机银行 https://b.example/app 拒收请回复R"}
    assert report.outputs() == {"channel": "outbox", "delivery": {
        "submitted": 5, "delivered": 5, "failed": 0, "opted_out": 0, "rate_limited": 0, "quiet_hours": 0,
        "unconfirmed": 0, "sent_now": 5}}
    deliver("61", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(), clock=noon)
    assert len(_outbox(state_dir)) == 5


@pytest.mark.parametrize(("template", "named"), [
    ("Hi {customer_name}, {app_link}", "{customer_name}"),
    ("{bank_name.__class__}", "{bank_name.__class__}"),
    ("{0} {app_link}", "{0}"),
    ("{app_link!r}", "{app_link!r}"),
    ("{bank_name:>30}", "{bank_name:>30}"),
])
def test_unapproved_placeholders_are_refused_naming_them_before_anything_is_sent(state_dir, noon, template, named):
    with pytest.raises(TemplateError, match=f"placeholder {named.replace('{', '[{]').replace('}', '[}]')}"
                                            ".*not approved; use only [{]app_link[}], [{]bank_name[}], [{]optout[}]"):
        deliver("62", AUDIENCE, template, values=VALUES, state_dir=state_dir, channel_settings=_settings(), clock=noon)
    assert not (state_dir / "channel_outbox.db").exists() and not (state_dir / "node.db").exists()


def test_a_placeholder_without_a_value_names_the_setting(state_dir, noon):
    with pytest.raises(TemplateError, match=r"uses \{app_link\} but no value.*TANDEM_CHANNEL_APP_LINK"):
        deliver("63", AUDIENCE, TEMPLATE, values={"bank_name": "B"}, state_dir=state_dir,
                channel_settings=_settings(), clock=noon)


def test_check_template_accepts_literal_braces_and_returns_the_placeholders():
    assert check_template("{{literal}} {optout}") == frozenset({"optout"})


@pytest.mark.parametrize("problem", ["missing", "directory", "binary", "garbage"])
def test_an_unreadable_optout_list_fails_clearly_and_sends_nothing(tmp_path, state_dir, noon, problem):
    path = tmp_path / "optout.txt"
    if problem == "directory":
        path.mkdir()
    elif problem == "binary":
        path.write_bytes(b"\xff\xfe\x00\x81")
    elif problem == "garbage":
        path.write_text("13800000000\nnot a number\n")
    with pytest.raises(OptOutError, match=f"opt-out list {path}.*nothing was sent.*TANDEM_CHANNEL_OPTOUT_PATH"):
        deliver("64", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir,
                channel_settings=_settings(optout_path=path), clock=noon)
    assert not (state_dir / "channel_outbox.db").exists()


def test_optouts_are_honoured_in_any_number_format(state_dir, noon):
    (state_dir / "optout.txt").write_text(f"+86 {AUDIENCE[0]}  # 退订 2026-11-30\n0086{AUDIENCE[3]}\n")
    report = deliver("65", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(),
                     clock=noon)
    assert sorted(r for _, r, _ in _outbox(state_dir)) == [AUDIENCE[1], AUDIENCE[2], AUDIENCE[4]]
    assert report.counts.opted_out == 2


def test_an_optout_list_saved_with_a_byte_order_mark_is_read_not_refused(state_dir, noon):
    (state_dir / "optout.txt").write_bytes(b"\xef\xbb\xbf" + f"{AUDIENCE[0]}\r\n".encode())
    report = deliver("67", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(),
                     clock=noon)
    assert AUDIENCE[0] not in [r for _, r, _ in _outbox(state_dir)] and report.counts.opted_out == 1


def test_quiet_hours_skip_then_a_retry_in_the_morning_sends(state_dir):
    clock = FakeClock(dt.datetime(2026, 12, 5, 22, 30, tzinfo=SHANGHAI))
    night = deliver("66", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(),
                    clock=clock)
    assert night.counts.quiet_hours == 5 and night.counts.sent_now == 0 and _outbox(state_dir) == []
    clock.current = dt.datetime(2026, 12, 6, 8, 0, tzinfo=SHANGHAI)
    morning = deliver("66", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(),
                      clock=clock)
    assert morning.counts.sent_now == 5 and len(_outbox(state_dir)) == 5


def test_quiet_hours_wait_mode_sleeps_until_the_window_ends(state_dir):
    clock = FakeClock(dt.datetime(2026, 12, 5, 23, 0, tzinfo=dt.UTC))  # 07:00 in Shanghai
    report = deliver("67", AUDIENCE[:2], TEMPLATE, values=VALUES, state_dir=state_dir,
                     channel_settings=_settings(quiet_mode="wait"), clock=clock)
    assert report.counts.sent_now == 2 and clock.slept[0] == 3600.0
    assert clock.now().astimezone(SHANGHAI).time() >= dt.time(8, 0)


def test_quiet_hours_window_arithmetic():
    window = QuietHours.parse("21:00-08:00")
    assert window.is_quiet(dt.time(21, 0)) and window.is_quiet(dt.time(3, 0)) and not window.is_quiet(dt.time(8, 0))
    assert window.seconds_until_open(dt.datetime(2026, 1, 1, 21, 30)) == 10.5 * 3600
    day = QuietHours.parse("12:00-13:00")
    assert day.is_quiet(dt.time(12, 59)) and not day.is_quiet(dt.time(13, 0))
    with pytest.raises(ConfigError, match="setting quiet_hours: '9pm-8am' is not a window like 21:00-08:00"):
        QuietHours.parse("9pm-8am")


def test_per_recipient_cap_holds_across_jobs_within_the_window(state_dir, noon):
    settings = _settings(recipient_limit=1, recipient_window_s=86_400.0)
    deliver("68", AUDIENCE[:2], TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings, clock=noon)
    second = deliver("69", AUDIENCE[:3], TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                     clock=noon)
    assert second.counts.rate_limited == 2 and second.counts.sent_now == 1
    noon.sleep(86_401)
    third = deliver("69", AUDIENCE[:3], TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                    clock=noon)
    assert third.counts.sent_now == 2 and third.counts.submitted == 3


def test_overall_rate_paces_submissions_on_the_clock(state_dir, noon):
    deliver("70", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(rate_per_s=4.0),
            clock=noon)
    assert noon.slept == [0.25] * 4


def test_the_journal_holds_digests_not_numbers(state_dir, noon):
    deliver("71", AUDIENCE, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=_settings(), clock=noon)
    raw = b"".join(p.read_bytes() for p in state_dir.glob("node.db*"))
    assert not any(n.encode() in raw for n in AUDIENCE)
    assert _journal(state_dir, "71") == {"delivered": 5}


def test_settings_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("TANDEM_CHANNEL_QUIET_HOURS", "late")
    with pytest.raises(ConfigError, match="setting TANDEM_CHANNEL_QUIET_HOURS: 'late' is not a window"):
        load_channel_settings()
    monkeypatch.delenv("TANDEM_CHANNEL_QUIET_HOURS")
    monkeypatch.setenv("TANDEM_CHANNEL_KIND", "smpp")
    with pytest.raises(ConfigError, match="kind smpp needs TANDEM_CHANNEL_SMPP_SYSTEM_ID"):
        load_channel_settings()


def test_channel_outreach_is_the_seam_job_families_hold(state_dir, noon):
    outreach = ChannelOutreach(state_dir, values=VALUES, channel_settings=_settings(), clock=noon)
    counts = outreach.deliver("72", AUDIENCE[:3], TEMPLATE)
    outreach.close()
    assert counts["sent_now"] == counts["delivered"] == 3 and len(_outbox(state_dir)) == 3


def test_the_package_exports_what_it_documents():
    import node.channels as channels

    public = {name for name in dir(channels) if not name.startswith("_")} - {"annotations"}
    assert set(channels.__all__) == {n for n in public if not isinstance(getattr(channels, n), type(channels))}
