"""Issue 9, attack 2 against a real PSI job: a third registered bank drives the telco's open session.

Three real node runtimes on loopback (pinned mutual TLS, one fake coordinator): the bank and the telco
run an approved ``audience_overlap`` job in ``bank_ids`` mode; ``bank2`` is a registered party too, so
the telco has pinned its certificate and the TLS handshake succeeds. Before the bank starts its part,
bank2 (1) runs a full PSI receiver session against the telco's job over the data plane, trying to learn
which of its candidate numbers are telco subscribers, (2) sends one garbage frame on the session channel
and (3) sends an abort on the close channel — either of the last two used to fail the job. Every frame
is refused with 403 (bank2 learns nothing), and the job then runs to success on both sides, with the
telco having evaluated exactly the bank's elements.

The telco refuses at two places: its inbox (bound by the runner to the signed peer) and its PSI sender
registry (bound by the PSI handler to the same signed peer). The second test switches the inbox binding
off, so the registry's check alone stands between bank2 and the session.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.synthetic import generate
from node.jobs.psi import Patience, PsiReceiver, PsiSender
from node.jobs.psi._link import PeerFrameTransport, PsiJobError, SessionLink, drive, session_channel
from node.jobs.psi.audience_overlap import bank_overlap
from node.peer import PeerError
from node.runner import JobContext
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.wire.control import JobInput, JobKind, JobParams, KeyType, PartyKind, PartyPublic, Purpose
from protocols.wire.psi import OutputTo, PsiJobClose
from psi import normalise
from psi.ecdh import EcdhPsiReceiver
from psi.identifiers import gb11643_check_digit
from tests.support.fake_coordinator import NOW
from tests.support.world import World, psi_world

JOB = 1
CHANNEL = session_channel(KeyType.ID_NUMBER)


class Rogue:
    """bank2: a registered bank with its own node, certificate and pins, not a party to the job."""

    def __init__(self, world: World, tmp: Path) -> None:
        settings = NodeSettings(party="bank2", kind="bank", api_token="t0k3n-for-tests", state_dir=tmp / "bank2")
        self.rt = NodeRuntime.open(settings, create_keys=True, transport=world.coordinator.transport("bank2"))
        self.server = self.rt.server(port=0)
        self.server.start()
        world.coordinator.parties["bank2"] = PartyPublic(
            id=3, name="bank2", kind=PartyKind.BANK, signing_key=self.rt.keys.signing.public_hex,
            sealing_key=self.rt.keys.sealing_public_hex, tls_fingerprint=self.rt.keys.tls_fingerprint,
            node_url=f"https://localhost:{self.server.port}", created_at=NOW)
        assert "bank2" in world.runtimes["telco"].refresh_pins()  # the telco pins every registered party
        self.rt.refresh_pins()
        self.errors: list[Exception] = []
        self.learned: frozenset[str] | None = None

    def attack(self, candidates: list[str]) -> None:
        """The three attacks, in order; keeps each refusal (or what it learned)."""
        session = EcdhPsiReceiver(candidates, output_to=OutputTo.RECEIVER, key_type=KeyType.ID_NUMBER,
                                  job_id=str(JOB))
        abort = PsiJobClose(job_id=str(JOB), stage="ABORT", status="abort", reason="bank2 says stop")
        with self.rt.peer("telco") as client:
            client.bind_attempt(1)  # a stranger that knows the job's attempt: only the party check can stop it
            try:
                drive(session, SessionLink(PeerFrameTransport(client, JOB, ready_timeout=60), str(JOB)), CHANNEL)
                self.learned = session.result().intersection
            except PsiJobError as exc:
                self.errors.append(exc)
            for channel, frame in ((CHANNEL, b"\x00\x00\x00\x05{not a frame"),
                                   ("psi.close", abort.model_dump_json().encode())):
                try:
                    client.exchange(JOB, channel, 1, frame, kind="psi")
                except PeerError as exc:
                    self.errors.append(exc)
        print(f"bank2 learned {'nothing' if self.learned is None else len(self.learned)} of {len(candidates)} "
              f"candidates; {len(self.errors)} of its frames were refused")

    def close(self) -> None:
        self.server.stop()
        self.rt.close()


def _ids(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return [row["id_number"] for row in csv.DictReader(f) if row.get("id_number")]


def _fake_id(i: int) -> str:
    first17 = f"65010119990101{i:03d}"
    return first17 + gb11643_check_digit(first17)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, Rogue, list[str]]]:
    paths = generate(tmp_path / "data", n=300, seed=5, progress=False)
    w = psi_world(tmp_path, paths.as_dict(), handlers={"bank": PsiReceiver().handlers(),
                                                       "telco": PsiSender(patience=Patience(60, 30)).handlers()})
    rogue = Rogue(w, tmp_path)
    candidates = [normalise(KeyType.ID_NUMBER, v) for v in _ids(paths.telco_subscribers)[:20]]
    candidates += [_fake_id(i) for i in range(20)]
    yield w, rogue, candidates
    rogue.close()
    w.close()


def _run_attacked_job(w: World, rogue: Rogue, candidates: list[str]) -> dict[str, Any]:
    """The bank's handler lets bank2 attack first, then runs its own part; returns the coordinator's reports."""

    def bank(ctx: JobContext) -> dict[str, Any]:
        rogue.attack(candidates)
        return bank_overlap(ctx)

    ds = w.dataset_ids
    w.submit(JOB, JobKind.AUDIENCE_OVERLAP, Purpose.APP_PROMOTION,
             [JobInput(dataset_id=ds["bank_customers"], key_fields=["id_number"]),
              JobInput(dataset_id=ds["telco_subscribers"], key_fields=["id_number"])],
             JobParams(output_mode="bank_ids"))
    w.run({"bank": {JobKind.AUDIENCE_OVERLAP: bank}, "telco": w.handlers["telco"]}, timeout=120)
    return w.coordinator.results[JOB]


def _assert_refused_and_undisturbed(rogue: Rogue, reports: dict[str, Any]) -> None:
    print(f"bank2: {len(rogue.errors)} frames refused, learned {rogue.learned}; "
          f"bank {reports['bank'].status}, telco {reports['telco'].status}")
    assert rogue.learned is None
    assert len(rogue.errors) == 3 and all("HTTP 403" in str(e) for e in rogue.errors)
    assert all("not the counterparty of" in str(e) for e in rogue.errors)
    bank, telco = reports["bank"], reports["telco"]
    assert bank.status == "succeeded" and telco.status == "succeeded", (bank.detail, telco.detail)
    assert telco.outputs["bank_queries"] == bank.outputs["bank_keys_valid"]  # only the bank's set was evaluated


def test_a_third_bank_cannot_drive_or_fail_the_telcos_psi_session(world: tuple[World, Rogue, list[str]]) -> None:
    w, rogue, candidates = world
    reports = _run_attacked_job(w, rogue, candidates)
    _assert_refused_and_undisturbed(rogue, reports)
    refusals = w.runtimes["telco"].inbox.refusals()
    assert {(r.job_id, r.sender, r.peer) for r in refusals} == {(JOB, "bank2", "bank")}
    assert {r.channel for r in refusals} == {CHANNEL, "psi.close"}


def test_the_psi_sender_refuses_a_stranger_even_when_the_inbox_lets_it_through(
        world: tuple[World, Rogue, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    w, rogue, candidates = world
    inbox = w.runtimes["telco"].inbox
    unbound = inbox.activate
    inbox.activate = lambda job_id, peer=None, attempt=None: unbound(job_id, attempt=attempt)  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="node.jobs.psi._sender")

    reports = _run_attacked_job(w, rogue, candidates)

    _assert_refused_and_undisturbed(rogue, reports)
    assert inbox.refused == 0  # the inbox did not refuse: the sender registry did
    assert f"PSI job {JOB}: refused a frame on {CHANNEL} from party bank2 (the job's peer is bank)" in caplog.text
