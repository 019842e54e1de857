"""Job ``app_promotion``: the telco finds and reaches likely adopters of the bank's app among non-customers.

No bank data about any person leaves the bank.

Parties: the telco (PSI **sender**, releasing party) and the bank (PSI **receiver**, planning party), each
a ``node.runner.JobFamily`` (:class:`TelcoAppPromotion`, :class:`BankAppPromotion`). Inputs: the telco's
subscribers (``key_fields``: the PSI key, e.g. ``id_number``; ``feature_fields``: the model's telco
features, ``<bank_app>_installed``, the ``<app>_days30`` usage of every named app, and the segment
column if one is named) and the bank's customers (``key_fields``: the same key type; the model's bank
features are read from the same dataset for the release). Params: ``model_job_id`` (a succeeded
``train_propensity`` job of the pair), ``score_threshold``, ``bank_app`` (+ ``peer_apps``,
``competitor_apps``), ``segment_field``, ``holdout_share``, ``arm_seed``, ``channel``, ``min_cell`` (k),
``epsilon`` (optional), ``output_mode`` ``count`` (sizes only) or ``relay`` (outreach sent, with
``message_template``).

Steps (the source solution's five)::

    a  the bank names its app (and peer and competitor apps) in the signed params
    b  the telco reads its app-usage columns for those apps
    c  bank   computes the release of :mod:`protocols.vfl.standalone` from its part of the model and its
              customers' features (one scalar for LR; telco-routable trees for SecureBoost), signs it
              with its party key and sends it on ``app_promotion.release`` (in the egress ledger);
       telco  verifies the signature against the bank's registered key, checks the release against its
              own part, and scores every subscriber alone in streaming batches
    d  telco  keeps those with score >= threshold and the bank's app clearly not installed
              (candidates); ECDH-PSI with output to the sender (the telco) over the candidates' keys
              against the bank's customers' keys; drops the matches (bank customers)
    e  telco  splits the rest into treatment and holdout (seeded by ``arm_seed``; kept at the telco,
              :mod:`node.jobs.marketing.arms`), and in relay mode hands the treatment arm to the
              operator's channel; it reports sizes per segment and channel, app usage among the
              audience and delivery counts, k-suppressed and (with ε) noised, to the coordinator,
              where the bank reads them

What each party learns (semi-honest, DDH in ristretto255):

* telco: the release (see :mod:`protocols.vfl.standalone`: one scalar, or rounded tree aggregates) and,
  from the PSI, which of its own *candidate audience* are bank customers, plus the number of distinct
  bank keys. This is inherent: the telco itself contacts the audience, so knowing its recipients and its
  candidates it knows the difference. It learns nothing about bank customers outside its candidates
  (their blinded keys never match anything it can name), nor any bank feature or label of anyone. In
  count mode a protocol where only the bank learns a count would avoid even this; it is not built here
  (the arms must exist at the telco for the later evaluation, so the telco needs the audience anyway).
  How many candidates it may test is bounded by the signed ``params.match_cap`` (default
  ``DEFAULT_AUDIENCE_CAP``): the telco refuses to start the PSI above it, and the bank's own node refuses
  a larger set at the PSI's first message, before it sends a single key — so a threshold of 0, which would
  make every subscriber a candidate and the exclusion a full intersection, cannot reveal more than the
  bank's data owner signed for.
* bank: the number of the telco's candidates (the PSI set size), k-suppressed in its report, and the
  released sizes; never an identifier, score or feature value of a non-customer, and no list of people.
* coordinator: the counts both report; the release's digest; never a person.

Segments (a design decision, after an attack that named every candidate's number in the cells' labels):
``segment_field`` must be a governance *feature* column without a key type, of type boolean, string or
integer (an identifier, a float or a date column is refused, naming the field); and a segment value held
by fewer than k audience members is released only pooled into ``other (segments < k)``, so no label the
bank reads belongs to fewer than k people, whatever the column's cardinality.

Bad params or inputs fail the job with a reason naming the field and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.channels import ChannelOutreach, load_channel_settings
from node.coordinator_client import CoordinatorUnavailable
from node.governance import Governance
from node.jobs.marketing._screening import Candidates, ScreenSpec, released_sizes, screen, split_arms
from node.jobs.marketing.arms import ArmMember, CampaignArms, save_arms
from node.jobs.psi._link import PeerFrameTransport, drive, session_channel
from node.jobs.psi._node import k_of, key_columns, link_to_peer
from node.jobs.psi._sender import DEFAULT_PATIENCE, EvaluationMeter, Patience, SenderJob, SenderRegistry
from node.model_store import ModelStore
from node.peer import PeerInbox, PeerMessage
from node.runner import JobContext, JobHandler
from protocols.crypto.signing import verify_signature
from protocols.vfl.model_parts import ModelCard
from protocols.vfl.standalone import StandaloneRelease, release_for, standalone_part
from protocols.wire.canonical import canonical_json, sha256_hex
from protocols.wire.control import FieldCategory, JobKind, JobPublic, KeyType
from protocols.wire.errors import ConfigError, ProtocolError, RemoteProtocolError
from protocols.wire.psi import OutputTo, PsiJobSummary
from psi import Session
from psi.ecdh import EcdhPsiReceiver, EcdhPsiSender
from psi.identifiers import normalise_column

logger = logging.getLogger(__name__)

__all__ = ["RELEASE_CHANNEL", "AppPromotionError", "AudienceOutreach", "BankAppPromotion",
           "PromotionTerms", "ReleaseAck", "SignedRelease", "TelcoAppPromotion", "channel_outreach",
           "promotion_terms"]

RELEASE_CHANNEL = "app_promotion.release"
SCORE_BATCH_ROWS = 200_000
_PREFIX = "app_promotion"
DEFAULT_AUDIENCE_CAP = 10_000
"""Most candidates whose bank-customer status one job may test when ``params.match_cap`` is not set."""
OTHER_SEGMENTS = "other (segments < k)"


class AppPromotionError(ConfigError):
    """An app-promotion job cannot run: the message names the field and the fix (reported verbatim)."""

    status_hint = 422


def _error(field_name: str, problem: str, fix: str) -> AppPromotionError:
    return AppPromotionError(f"{field_name}: {problem}; fix: {fix}")


# ---------------------------------------------------------------- terms


@dataclass(frozen=True)
class PromotionTerms:
    """What both sides signed (from the approved job)."""

    job_id: str
    model_job_id: int
    threshold: float
    bank_app: str
    other_apps: tuple[str, ...]
    segment: str | None
    holdout_share: float
    arm_seed: int
    channel: str
    mode: Literal["count", "relay"]
    k: int
    epsilon: float | None
    template: str | None
    cap: int = DEFAULT_AUDIENCE_CAP


def promotion_terms(job: JobPublic) -> PromotionTerms:
    """The terms of an approved ``app_promotion`` job.

    Without ``arm_seed`` a fresh random seed is drawn (and recorded with the arms and in the result).

    Raises:
        AppPromotionError: a param is missing or inconsistent (names it and the fix).
    """
    p = job.params
    mode = p.output_mode or "count"
    if mode not in ("count", "relay"):
        raise _error("params.output_mode", f"app_promotion has no output mode {mode!r}", "use count or relay")
    if p.model_job_id is None:
        raise _error("params.model_job_id", "is missing", "name the train_propensity job whose model scores")
    if p.score_threshold is None:
        raise _error("params.score_threshold", "is missing", "set a threshold in [0, 1], e.g. 0.6")
    if p.bank_app is None:
        raise _error("params.bank_app", "is missing", "name the bank's app as the telco's app usage names it, "
                     "e.g. bank_app")
    if mode == "relay" and not p.message_template:
        raise _error("params.message_template", "is missing in relay mode", "give the approved message text")
    others = tuple(dict.fromkeys([*(p.peer_apps or []), *(p.competitor_apps or [])]))
    return PromotionTerms(str(job.id), p.model_job_id, p.score_threshold, p.bank_app, others, p.segment_field,
                          0.0 if p.holdout_share is None else p.holdout_share,
                          secrets.randbits(62) if p.arm_seed is None else p.arm_seed,
                          p.channel or ("outbox" if mode == "relay" else "none"), mode, k_of(p), p.epsilon,
                          p.message_template, DEFAULT_AUDIENCE_CAP if p.match_cap is None else p.match_cap)


def _model(ctx: JobContext, terms: PromotionTerms, role: str) -> tuple[ModelCard, dict[str, Any]]:
    """Load this node's part of the model, checked to be a propensity model of this pair and role."""
    store = ModelStore(ctx.settings.state_path)
    try:
        card, part = store.load(terms.model_job_id)
    except ConfigError:
        raise _error("params.model_job_id", f"no model of job {terms.model_job_id} on this node",
                     "name a train_propensity job of this bank and telco that succeeded") from None
    if card.kind != JobKind.TRAIN_PROPENSITY:
        raise _error("params.model_job_id", f"job {terms.model_job_id} trained a {card.kind} model, not a "
                     "propensity model", "name a train_propensity job (app adoption label)")
    if card.role != role or card.peer_party != ctx.peer_party():
        raise _error("params.model_job_id", f"the model of job {terms.model_job_id} here is not the {role} part "
                     "shared with this peer", "name a train_propensity job of this bank and telco")
    if not isinstance(part, dict):
        raise _error("params.model_job_id", "the stored part is not a JSON model part", "retrain the model")
    return card, part


# ---------------------------------------------------------------- wire (bank → telco, one message)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignedRelease(_Wire):
    """B→T ``app_promotion.release``: the standalone release, signed by the bank's party key."""

    kind: Literal["app_promotion.release"] = "app_promotion.release"
    job_id: str
    signer: str
    release: StandaloneRelease
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")

    @staticmethod
    def message(job_id: str, signer: str, release: StandaloneRelease) -> bytes:
        """The bytes signed: canonical JSON of job, signer and release."""
        return canonical_json({"job_id": job_id, "signer": signer, "release": release.model_dump(mode="json")})

    def digest(self) -> str:
        """SHA-256 of the signed bytes (what both parties report)."""
        return sha256_hex(self.message(self.job_id, self.signer, self.release))


class ReleaseAck(_Wire):
    """T→B: the release was verified and accepted (its digest)."""

    kind: Literal["app_promotion.release_ack"] = "app_promotion.release_ack"
    job_id: str
    release_sha256: str


# ---------------------------------------------------------------- outreach seam


class AudienceOutreach(Protocol):
    """Hands one message text to the operator's channel for many of its own subscribers.

    Must be idempotent per ``(job_id, recipient)``: a retried job never messages anyone twice.
    """

    def deliver(self, job_id: str, recipients: Sequence[str], template: str) -> dict[str, int]:
        """Deliver; return counts only (at least ``submitted``)."""
        ...

    def close(self) -> None:
        """Release the channel."""
        ...


_CHANNEL_KIND = {"sms": "smpp", "webhook": "webhook", "outbox": "outbox"}
"""``params.channel`` → the node's channel kind (``TANDEM_CHANNEL_KIND``)."""


def channel_outreach(ctx: JobContext) -> AudienceOutreach:
    """The operator channel this telco node is configured with (:mod:`node.channels`), checked against the job.

    Raises:
        AppPromotionError: the job asks for another channel than the node runs.
    """
    settings = load_channel_settings()
    asked = ctx.job.params.channel or "outbox"
    if settings.kind != _CHANNEL_KIND[asked]:
        raise _error("params.channel", f"asks for {asked} but this telco's channel is {settings.kind}",
                     f"set params.channel to the telco's channel, or the telco sets TANDEM_CHANNEL_KIND="
                     f"{_CHANNEL_KIND[asked]}")
    return ChannelOutreach(ctx.settings.state_path, channel_settings=settings)


# ---------------------------------------------------------------- telco


def _telco_spec(terms: PromotionTerms, card: ModelCard, inp_fields: Sequence[str], key: str, key_type: KeyType,
                governance: Governance) -> ScreenSpec:
    named = set(inp_fields)
    installed, usage = f"{terms.bank_app}_installed", f"{terms.bank_app}_days30"
    known = sorted(n[: -len("_days30")] for n in governance.fields if n.endswith("_days30"))
    for app, column in [(terms.bank_app, installed), (terms.bank_app, usage),
                        *((a, f"{a}_days30") for a in terms.other_apps)]:
        if column not in governance.fields:
            which = "params.bank_app" if app == terms.bank_app else "params.peer_apps/competitor_apps"
            raise _error(which, f"unknown app {app!r}: the telco's dataset {governance.dataset} has no column "
                         f"{column}", f"name an app the telco records usage of: {', '.join(known) or 'none'}")
    need = [*card.feature_names, installed, usage, *(f"{a}_days30" for a in terms.other_apps)]
    if terms.segment is not None:
        if terms.segment not in governance.fields:
            raise _error("params.segment_field", f"{terms.segment!r} is not a column of {governance.dataset}",
                         "name one of the telco dataset's segment columns, or leave it out")
        rule = governance.fields[terms.segment]
        if rule.category != FieldCategory.FEATURE or rule.key_type is not None or rule.type in ("float", "date"):
            # segment labels name released cells: an identifier or a continuous column would name people
            raise _error("params.segment_field", f"{terms.segment!r} is a {rule.category.value} column of type "
                         f"{rule.type}; segment labels are released, so an identifier or a float/date column "
                         "would name individuals", "name a categorical (boolean, string or integer) feature "
                         "column, or leave it out")
        need.append(terms.segment)
    missing = [c for c in dict.fromkeys(need) if c not in named]
    if missing:
        raise _error("inputs.telco.feature_fields", f"does not name {missing}",
                     "name the model's telco features, the app columns and the segment column the job reads")
    # the arms keep each member's number (what the bank keys conversions by) for the later evaluation
    contact = next((n for n, r in governance.fields.items() if r.key_type == KeyType.MOBILE), None)
    if terms.mode == "relay":
        if contact is None:
            raise _error(f"{governance.dataset}", "has no mobile-number column to reach the audience",
                         "relay mode needs a field with key_type mobile in the telco's governance")
    return ScreenSpec(terms.threshold, tuple(card.feature_names), installed, key, key_type, contact, terms.segment,
                      (usage, *(f"{a}_days30" for a in terms.other_apps)))


@dataclass
class _Waiting:
    """A telco job waiting for its release."""

    bank: str
    arrived: threading.Event = field(default_factory=threading.Event)
    message: SignedRelease | None = None


class TelcoAppPromotion:
    """The telco's ``app_promotion`` role.

    Args:
        registry: the node's PSI sender registry (share the ``PsiSender`` family's: one per node owns ``psi.*``).
        outreach: the operator channel per job (default: :func:`channel_outreach`, the node's configured
            :mod:`node.channels` channel: opt-out list, quiet hours, rate limits, journal).
        patience: how long to wait for the bank (its release, then its PSI messages).
        batch_rows: subscribers scored per batch (memory bound).
        rng: the noise source (default: OS entropy; seed it only in tests).
    """

    def __init__(self, *, registry: SenderRegistry | None = None,
                 outreach: Callable[[JobContext], AudienceOutreach] | None = None,
                 patience: Patience = DEFAULT_PATIENCE, batch_rows: int = SCORE_BATCH_ROWS,
                 rng: Callable[[], np.random.Generator] | None = None) -> None:
        self.registry = registry or SenderRegistry()
        self._outreach = outreach or channel_outreach
        self.patience, self.batch_rows = patience, batch_rows
        self._rng = rng or np.random.default_rng
        self._waiting: dict[int, _Waiting] = {}
        self._failed: dict[int, str] = {}
        self._cond = threading.Condition()
        self._attached: set[int] = set()

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.APP_PROMOTION: self.handle}

    def attach(self, inbox: PeerInbox) -> None:
        """Route ``app_promotion.release`` and the PSI channels of ``inbox`` (idempotent)."""
        self.registry.attach(inbox)
        if id(inbox) not in self._attached:
            inbox.register_handler(RELEASE_CHANNEL, self._on_release)
            self._attached.add(id(inbox))

    def _on_release(self, msg: PeerMessage) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: msg.job_id in self._waiting or msg.job_id in self._failed, timeout=30.0)
            waiting, failed = self._waiting.get(msg.job_id), self._failed.get(msg.job_id)
        if failed is not None:
            raise ProtocolError(f"the telco failed job {msg.job_id}: {failed}", status_hint=410)
        if waiting is None:
            raise ProtocolError(f"job {msg.job_id} is not waiting for a release on this node (yet)", status_hint=409)
        if msg.sender != waiting.bank:
            raise ProtocolError(f"job {msg.job_id} is not shared with party {msg.sender}", status_hint=403)
        try:
            signed = SignedRelease.model_validate_json(msg.body)
        except ValidationError:
            raise RemoteProtocolError("malformed app-promotion release") from None
        if signed.job_id != str(msg.job_id) or signed.signer != waiting.bank:
            raise RemoteProtocolError("the release names another job or signer")
        waiting.message = signed
        waiting.arrived.set()
        return ReleaseAck(job_id=signed.job_id, release_sha256=signed.digest()).model_dump_json().encode()

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the telco; a failure is also told to the bank (its release is answered 410)."""
        try:
            return self._run(ctx)
        except Exception as exc:
            with self._cond:
                if len(self._failed) > 1000:
                    self._failed.clear()
                reason = str(exc) if isinstance(exc, ProtocolError) else type(exc).__name__
                self._failed[ctx.job.id] = reason[:300]
                self._cond.notify_all()
            raise

    def _run(self, ctx: JobContext) -> dict[str, Any]:
        ctx.progress(f"{_PREFIX}: checking terms", 0.0)
        terms = promotion_terms(ctx.job)
        bank = ctx.peer_party()
        card, part = _model(ctx, terms, "passive")
        inp = ctx.own_input()
        if len(inp.key_fields) != 1:
            raise _error("inputs.telco.key_fields", f"names {len(inp.key_fields)} fields",
                         "name exactly one PSI key, e.g. id_number")
        source, governance = ctx.open_dataset(inp.dataset_id)
        key = key_columns(governance, list(inp.key_fields))[0]
        spec = _telco_spec(terms, card, inp.feature_fields, key.field, key.key_type, governance)
        if ctx.inbox is None:
            raise ConfigError("the telco needs the data plane to receive the bank's release")
        self.attach(ctx.inbox)
        with self.registry.bound(terms.job_id, bank, still_running=ctx.check_current):
            signed = self._await_release(ctx, bank)
            _verify(ctx, signed, bank)
            scorer = standalone_part(card, part, signed.release)
            ctx.progress(f"{_PREFIX}: scoring subscribers at the telco", 0.2)
            with source:
                candidates = screen(scorer, source.iter_batches(spec.columns, self.batch_rows), spec)
            distinct = len(set(candidates.keys))
            if distinct > terms.cap:
                raise _error("params.match_cap", f"{distinct} subscribers pass the screening, more than the "
                             f"{terms.cap} whose bank-customer status this job may test",
                             "raise params.score_threshold, or have both data owners sign a larger match_cap")
            ctx.progress(f"{_PREFIX}: excluding bank customers by PSI", 0.5)
            customers, psi_stats = self._exclude(terms, key.key_type, candidates)
        audience = _audience(candidates, customers)
        held = split_arms(len(audience), terms.holdout_share, terms.arm_seed)
        arms = CampaignArms(int(terms.job_id), str(key.key_type), terms.arm_seed, terms.holdout_share, terms.channel,
                            tuple(ArmMember(candidates.keys[i], candidates.contacts[i], candidates.segments[i],
                                            "holdout" if h else "treatment") for i, h in zip(audience, held,
                                                                                             strict=True)),
                            peer=bank)
        save_arms(ctx.settings.state_path, arms)
        deliveries = self._deliver(ctx, terms, arms)
        ctx.progress(f"{_PREFIX}: done", 1.0)
        return self._outputs(terms, card, signed, candidates, arms, audience, deliveries, psi_stats)

    def _await_release(self, ctx: JobContext, bank: str) -> SignedRelease:
        waiting = _Waiting(bank)
        with self._cond:
            self._waiting[ctx.job.id] = waiting
            self._cond.notify_all()
        deadline = time.monotonic() + self.patience.start
        try:
            while not waiting.arrived.wait(max(0.0, min(3.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    raise ProtocolError(f"no release from the bank within {self.patience.start:g} s")
                with contextlib.suppress(CoordinatorUnavailable):
                    ctx.check_current()  # the bank failed the job (e.g. its own parameters): stop waiting
        finally:
            with self._cond:
                self._waiting.pop(ctx.job.id, None)
        assert waiting.message is not None
        return waiting.message

    def _exclude(self, terms: PromotionTerms, key_type: KeyType, candidates: Candidates
                 ) -> tuple[frozenset[str], dict[str, int]]:
        found: list[frozenset[str]] = []

        def summarise(sessions: Mapping[KeyType, Session], meter: EvaluationMeter) -> PsiJobSummary:
            session = sessions[key_type]
            assert isinstance(session, EcdhPsiSender)
            found.append(session.result().intersection or frozenset())
            return PsiJobSummary(job_id="x", evaluations=meter.evaluated)

        sender = EcdhPsiSender(list(dict.fromkeys(candidates.keys)), key_type=key_type, job_id=terms.job_id,
                               output_to=OutputTo.SENDER)
        job = SenderJob(terms.job_id, {key_type: sender}, meter=EvaluationMeter(None), summarise=summarise)
        with self.registry.opened(job):
            summary = job.wait(self.patience)
        return found[0], {"bank_keys": summary.evaluations, "bytes_to_peer": job.stats.bytes_sent,
                          "bytes_from_peer": job.stats.bytes_received}

    def _deliver(self, ctx: JobContext, terms: PromotionTerms, arms: CampaignArms) -> dict[str, int]:
        if terms.mode != "relay":
            return {}
        assert terms.template is not None
        ctx.progress(f"{_PREFIX}: outreach through {terms.channel}", 0.8)
        outreach = self._outreach(ctx)
        try:
            return dict(outreach.deliver(terms.job_id, arms.mobiles("treatment"), terms.template))
        finally:
            outreach.close()

    def _outputs(self, terms: PromotionTerms, card: ModelCard, signed: SignedRelease, candidates: Candidates,
                 arms: CampaignArms, audience: list[int],
                 deliveries: dict[str, int], psi_stats: dict[str, int]) -> dict[str, Any]:
        """Counts only, k-suppressed, noised with ε split evenly over the released vectors."""
        usage_apps = [terms.bank_app, *terms.other_apps]
        vectors = 2 + (1 if deliveries else 0)
        eps = None if terms.epsilon is None else terms.epsilon / vectors
        rng = self._rng()
        per_segment = Counter(m.segment for m in arms.members)
        sizes = Counter(f"{_segment_label(m.segment, per_segment, terms.k)}|{terms.channel}|{m.arm}"
                        for m in arms.members)
        using = Counter({app: sum(1 for i in audience if candidates.uses[i][j]) for j, app in enumerate(usage_apps)})
        logger.info("app_promotion %s: %d rows, %d over threshold, %d candidates", terms.job_id, candidates.rows,
                    candidates.over_threshold, len(candidates.keys))
        out: dict[str, Any] = {
            "role": "telco", "mode": terms.mode, "model_id": card.model_id, "algo": card.algo,
            "release_sha256": signed.digest(), "k": terms.k, "epsilon_spent": terms.epsilon,
            "score_threshold": terms.threshold, "channel": terms.channel, "holdout_share": terms.holdout_share,
            "arm_seed": terms.arm_seed, "arms_kept_at": "telco node (node.jobs.marketing.arms.load_arms)",
            "audience_sizes": released_sizes(sizes, terms.k, eps, rng),
            "audience_app_usage_30d": released_sizes(using, terms.k, eps, rng, sensitivity=len(usage_apps)),
            "bank_keys_evaluated": psi_stats["bank_keys"], "bytes_to_peer": psi_stats["bytes_to_peer"],
            "bytes_from_peer": psi_stats["bytes_from_peer"],
        }
        if deliveries:
            out["deliveries"] = released_sizes(deliveries, terms.k, eps, rng, sensitivity=len(deliveries))
        return out


def _segment_label(segment: str, per_segment: Counter[str], k: int) -> str:
    """The label a segment's cells are released under: its own only if at least k audience members share it.

    A label is itself a value of the telco's column, so a rarer one is pooled into ``OTHER_SEGMENTS`` before
    any cell leaves; the bank never reads a segment value that fewer than k people of the audience hold.
    """
    return segment if per_segment[segment] >= k else OTHER_SEGMENTS


def _audience(candidates: Candidates, customers: frozenset[str]) -> list[int]:
    """Candidate positions that are not bank customers, first occurrence of each key only."""
    seen: set[str] = set()
    out = []
    for i, k in enumerate(candidates.keys):
        if k not in customers and k not in seen:
            seen.add(k)
            out.append(i)
    return out


def _verify(ctx: JobContext, signed: SignedRelease, bank: str) -> None:
    """Check the bank's signature against the key its party registered (fails closed, no detail)."""
    try:
        public = ctx.coordinator.party(bank).signing_key
        verify_signature(public, SignedRelease.message(signed.job_id, signed.signer, signed.release),
                         signed.signature)
    except Exception:  # noqa: BLE001 - one opaque failure whatever check failed
        raise RemoteProtocolError("the bank's release signature does not verify") from None


# ---------------------------------------------------------------- bank


class BankAppPromotion:
    """The bank's ``app_promotion`` role: release, then PSI receiver over its customers' keys.

    Args:
        ready_timeout: how long to wait for the telco to accept the release and serve the PSI.
    """

    def __init__(self, *, ready_timeout: float = 600.0) -> None:
        self.ready_timeout = ready_timeout

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.APP_PROMOTION: self.handle}

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the bank."""
        ctx.progress(f"{_PREFIX}: checking terms", 0.0)
        terms = promotion_terms(ctx.job)
        telco = ctx.peer_party()
        card, part = _model(ctx, terms, "active")
        inp = ctx.own_input()
        if len(inp.key_fields) != 1:
            raise _error("inputs.bank.key_fields", f"names {len(inp.key_fields)} fields",
                         "name exactly one PSI key, the telco input's key type")
        source, governance = ctx.open_dataset(inp.dataset_id)
        key = key_columns(governance, list(inp.key_fields))[0]
        missing = [f for f in card.feature_names if f not in governance.fields]
        if missing:
            raise _error("inputs.bank.dataset_id", f"the customers' dataset lacks the model's features {missing}",
                         "give the bank dataset the propensity model was trained on")
        with source:
            frame = source.read([key.field, *card.feature_names])
        x = frame[card.feature_names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        release = release_for(card, part, x)
        message = SignedRelease.message(terms.job_id, ctx.settings.party, release)
        signed = SignedRelease(job_id=terms.job_id, signer=ctx.settings.party, release=release,
                               signature=ctx.keys.signing.sign(message))
        ctx.progress(f"{_PREFIX}: sending the signed release", 0.2)
        reply = self._send(ctx, telco, signed.model_dump_json().encode())
        try:
            ack = ReleaseAck.model_validate_json(reply)
        except ValidationError:
            raise RemoteProtocolError("malformed acknowledgement from the telco") from None
        if ack.release_sha256 != signed.digest():
            raise RemoteProtocolError("the telco acknowledged another release")
        ctx.progress(f"{_PREFIX}: PSI exclusion of customers", 0.4)
        column = normalise_column(key.key_type, [None if pd.isna(v) else str(v) for v in frame[key.field]])
        values = list(dict.fromkeys(column.values))
        link = link_to_peer(ctx, ready_timeout=self.ready_timeout)
        session = EcdhPsiReceiver(values, key_type=key.key_type, job_id=terms.job_id, output_to=OutputTo.SENDER,
                                  max_sender_size=terms.cap)  # the bank's own check of the signed cap
        try:
            drive(session, link, session_channel(key.key_type))
            link.close([key.key_type])
        except Exception as exc:
            link.abort(f"receiver failed: {type(exc).__name__}")
            raise
        candidates = session.result().sender_size
        ctx.progress(f"{_PREFIX}: done", 1.0)
        return {"role": "bank", "mode": terms.mode, "model_id": card.model_id, "algo": card.algo,
                "release_sha256": signed.digest(), "release_kind": release.algo, "k": terms.k,
                "customers_keys_sent": len(values), "invalid_identifiers": sum(column.invalid.values()),
                "telco_candidates": candidates if candidates >= terms.k else "suppressed (< k)",
                **link.stats.as_dict()}

    def _send(self, ctx: JobContext, telco: str, body: bytes) -> bytes:
        """Send the release, waiting while the telco has not opened the job yet (or until the job ended)."""
        transport = PeerFrameTransport(ctx.peer(telco), ctx.job.id, ready_timeout=self.ready_timeout,
                                       resume_attempts=0, still_running=ctx.check_current,
                                       kind="app_promotion.release")
        return transport.exchange(RELEASE_CHANNEL, 1, body)
