"""Attacks on outreach delivery through the real SMPP channel (smpplib against the local SMSC).

Each test performs an attack that worked before its fix: an opted-out subscriber reached by writing the
number in full-width digits, two concurrent drains of one job messaging the same person twice, and a
signed template long enough to bomb every recipient with dozens of SMS parts.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from node.channels import ChannelSettings, TemplateError, deliver
from protocols.wire.message_template import check_template
from tests.node.channels.conftest import WallClock
from tests.support.smpp_server import SmppServer

VALUES = {"bank_name": "示例银行", "app_link": "https://b.example/app", "optout": "拒收请回复R"}
TEMPLATE = "【{bank_name}】下载手机银行App：{app_link} {optout}"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _settings(server: SmppServer, tmp_path, optout: list[str]) -> ChannelSettings:
    secret = tmp_path / "smpp-password"
    secret.write_text(server.password + "\n")
    path = tmp_path / "optout.txt"
    path.write_text("\n".join(optout) + "\n")
    return ChannelSettings(kind="smpp", smpp_host="127.0.0.1", smpp_port=server.port, smpp_system_id=server.system_id,
                           smpp_password_file=secret, smpp_source_addr="95588", rate_per_s=100.0, quiet_hours="",
                           optout_path=path, receipt_wait_s=1.0, smpp_backoff_s=0.0, smpp_reconnect_attempts=1)


def test_attack_full_width_digits_do_not_bypass_the_optout_list_or_the_cap(tmp_path, state_dir):
    opted_out, other = "13800130002", "13800130003"
    with SmppServer() as server:
        settings = _settings(server, tmp_path, ["+86 " + opted_out])
        audience = [opted_out.translate(FULL_WIDTH), "+86 " + other, other.translate(FULL_WIDTH)]
        report = deliver("a1", audience, TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                         clock=WallClock())
        got = [r.destination for r in server.received]
        assert got == [other]  # the opted-out subscriber got nothing; the other one exactly once, in ASCII digits
        assert report.counts.opted_out == 1 and report.counts.sent_now == 1
        # and a later job cannot reach the capped recipient by switching digit forms
        again = deliver("a2", [other.translate(FULL_WIDTH)], TEMPLATE, values=VALUES, state_dir=state_dir,
                        channel_settings=settings, clock=WallClock())
        assert again.counts.rate_limited == 1 and len(server.received) == 1


class _RendezvousClock(WallClock):
    """Real time; each thread's first ``now()`` inside a recipient's check waits for the other drain."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        self.local = threading.local()

    def now(self) -> dt.datetime:
        if not getattr(self.local, "met", False):
            self.local.met = True
            self.barrier.wait(timeout=10)
        return super().now()


def test_attack_two_concurrent_drains_of_one_job_send_each_message_once(tmp_path, state_dir):
    barrier = threading.Barrier(2)
    clock = _RendezvousClock(barrier)
    errors: list[BaseException] = []
    with SmppServer() as server:
        settings = _settings(server, tmp_path, [])

        def drain() -> None:
            try:
                deliver("c1", ["13800130009"], TEMPLATE, values=VALUES, state_dir=state_dir, channel_settings=settings,
                        clock=clock)
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=drain) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        assert server.submits == 1 and [r.destination for r in server.received] == ["13800130009"]


def test_attack_segment_bomb_template_is_refused_before_anything_is_sent(tmp_path, state_dir):
    bomb = "{bank_name}" + "优惠" * 2000 + " {optout}"
    with pytest.raises(TemplateError, match="params.message_template"):
        check_template(bomb)
    with SmppServer() as server:
        settings = _settings(server, tmp_path, [])
        with pytest.raises(TemplateError, match="characters"):
            deliver("b1", ["13800130001"], bomb, values=VALUES, state_dir=state_dir, channel_settings=settings,
                    clock=WallClock())
        # a long bank name cannot turn a short approved template into a bomb either
        long_values = {**VALUES, "app_link": "https://b.example/" + "x" * 180}
        with pytest.raises(TemplateError, match="rendered"):
            deliver("b2", ["13800130001"], "{app_link}" * 3, values=long_values, state_dir=state_dir,
                    channel_settings=settings, clock=WallClock())
        assert server.submits == 0
