"""Job ``campaign_evaluation``: did the campaign work? Conversions per arm by PSI cardinality, and the uplift.

Parties: the telco holds the arms of an ``app_promotion`` job (``params.campaign_job_id``), treatment
(messaged) and holdout (not messaged), as mobile numbers in its node state; the bank holds its
conversions after the campaign (new app registrations or product openings, keyed by the mobile
number they registered with: its input's one ``key_fields`` entry, of key type ``mobile``). The bank is
the PSI **receiver**, the telco the **sender**, over the data plane (channels ``psi.mobile`` and
``psi.close``, routed by the telco's PSI sender registry, so this job shares it with the PSI family).

Steps::

    telco  loads the campaign's arms (refused if the campaign left none on this node, or ran with another
           bank than this job's peer) and claims the campaign for this job in its node state (refused if
           another job already evaluated it: two evaluations whose conversions differ by one person would
           tell, by difference, which arm that person was in; node.jobs.marketing.arms.claim_evaluation)
    for each arm, treatment then holdout (one cardinality-PSI run per arm, psi.cardinality):
      bank   hello, query chunks a·H(x) of its converters' numbers
      telco  re-blinds and *shuffles* them, sends b·H(y) of the arm's numbers
      bank   counts the matches: |converters ∩ arm| and learns |arm|; closes the run
    bank   releases arm sizes and conversions k-suppressed (params.min_cell: size, converters and
           non-converters of each arm at least k) and, with params.epsilon, noised with two-sided
           geometric noise of sensitivity 2 (the pair's ε budget is charged by the coordinator);
           the uplift (difference of proportions) with a confidence interval (Newcombe's hybrid score
           interval for exact counts, a Wald interval whose variance includes the noise for noised
           counts: protocols.marketing.uplift)

What each party learns (semi-honest, DDH in ristretto255):

* bank: per arm, the exact arm size and the exact number of its converters in the arm (computed on
  its node; only the k-suppressed, possibly noised figures leave it) — never which converter was in
  which arm, nor any number of the arms.
* telco: the number of converters the bank queried (the same for both arms); nothing about who converted.
  It keeps which evaluation job claimed the campaign (a job id, no person).
* coordinator: the released counts, rates, uplift and interval; from the telco, how many numbers the
  bank queried per arm and the bytes. Never a number.

Caveats: the bank chooses its conversions input, so one run already tells its node, exactly, how many of
any numbers it lists are in each arm (a list of one number and the bank's own customers, who are never in
an arm, says whether that number was targeted): the once-per-campaign claim bounds this to one query set
per campaign, it does not remove it. The bank's node sees exact per-arm counts (inherent in cardinality
PSI; noise protects the release, not the receiver's own computation); the bank also knows how many
converters were in no arm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.jobs.marketing._bank_link import aborting, reopening_link
from node.jobs.marketing.arms import check_evaluator, claim_evaluation, load_arms
from node.jobs.psi import PsiSender
from node.jobs.psi._link import SessionLink, drive, session_channel
from node.jobs.psi._node import k_of, load_rows, progress_of
from node.jobs.psi._sender import DEFAULT_PATIENCE, EvaluationMeter, Patience, SenderJob, SenderRegistry
from node.jobs.sites.demand import two_sided_geometric_noise
from node.runner import JobContext, JobHandler
from protocols.marketing.uplift import ARMS, SENSITIVITY, ArmCounts, UpliftInputError, evaluate_uplift
from protocols.wire.control import JobKind, JobPublic, KeyType
from protocols.wire.errors import ConfigError
from protocols.wire.psi import PsiJobSummary
from psi import Session
from psi.cardinality import CardinalityReceiver, CardinalitySender
from psi.identifiers import normalise_column

__all__ = ["ArmReader", "BankCampaignEvaluation", "EvaluationError", "EvaluationTerms", "TelcoCampaignEvaluation",
           "evaluation_terms", "run_evaluation_receiver", "stored_arms"]

logger = logging.getLogger(__name__)

KEY = KeyType.MOBILE
ArmReader = Callable[[JobContext, int], Mapping[str, Sequence[str]]]
"""Reads the arms (arm name → mobile numbers) of a campaign job at the telco."""
_PREFIX = "campaign_evaluation"
_ONE_INPUT = "job {job} has {count} inputs on this node; campaign_evaluation takes exactly one per party"


class EvaluationError(ConfigError):
    """A campaign evaluation cannot run: the message names the field and the fix (reported verbatim)."""

    status_hint = 422


def _error(field_name: str, problem: str, fix: str) -> EvaluationError:
    return EvaluationError(f"{field_name}: {problem}; {fix}")


@dataclass(frozen=True)
class EvaluationTerms:
    """What both sides agreed to (from the approved, signed job).

    Attributes:
        job_id: The coordinator's job id, as text.
        campaign_job_id: The app_promotion job whose arms are evaluated.
        k: Minimum people behind a released cell (``params.min_cell``).
        epsilon: The release's ε, or None for exact (k-suppressed) counts.
    """

    job_id: str
    campaign_job_id: int
    k: int
    epsilon: float | None


def evaluation_terms(job: JobPublic) -> EvaluationTerms:
    """The terms of an approved ``campaign_evaluation`` job.

    Raises:
        EvaluationError: No campaign job named, or an output mode this kind does not have.
    """
    params = job.params
    if params.output_mode not in (None, "count"):
        raise _error("params.output_mode", f"campaign_evaluation has no output mode {params.output_mode!r}",
                     "omit output_mode or use 'count'")
    if params.campaign_job_id is None:
        raise _error("params.campaign_job_id", "is missing", "name the app_promotion job whose arms to evaluate")
    return EvaluationTerms(str(job.id), params.campaign_job_id, k_of(params), params.epsilon)


def stored_arms(ctx: JobContext, campaign_job_id: int) -> Mapping[str, Sequence[str]]:
    """The arms' mobile numbers an ``app_promotion`` job stored at this telco node (:mod:`.arms`).

    Raises:
        ConfigError: The campaign left no arms on this node, or it ran with another bank than this job's
            peer (the message names params.campaign_job_id).
    """
    arms = load_arms(ctx.settings.state_path, campaign_job_id)
    check_evaluator(arms, ctx.peer_party())
    return {arm: arms.mobiles(arm) for arm in ("treatment", "holdout")}


# ---------------------------------------------------------------- the bank (receiver)


def run_evaluation_receiver(link: SessionLink, converters: Sequence[str], terms: EvaluationTerms, *,
                            reopen: Callable[[], None] | None = None,
                            progress: Callable[[str, float], None] | None = None) -> dict[str, ArmCounts]:
    """One cardinality-PSI run per arm over ``link``; the exact counts stay with the caller.

    Args:
        link: The link to the telco's sender (messages numbered per channel across the runs).
        converters: The bank's canonical mobile numbers of converters (distinct).
        terms: The job's terms.
        reopen: Called before every run after the first (a fresh transport that waits while the
            telco opens the next arm).
        progress: Progress reporter.
    """
    counts: dict[str, ArmCounts] = {}
    for index, arm in enumerate(ARMS):
        if index and reopen is not None:
            reopen()
        if progress is not None:
            progress(f"PSI cardinality with the {arm} arm", 0.1 + 0.4 * index)
        session = CardinalityReceiver(converters, key_type=KEY, job_id=terms.job_id)
        drive(session, link, session_channel(KEY))
        link.close([KEY])
        result = session.result()
        counts[arm] = ArmCounts(result.sender_size, result.intersection_size)
    return counts


class BankCampaignEvaluation:
    """The bank's ``campaign_evaluation`` role (PSI receiver).

    Args:
        rng: The noise source (default: OS entropy; seed it only in tests).
        ready_timeout: How long to wait for the telco to open each arm's run, seconds.
    """

    def __init__(self, *, rng: Callable[[], np.random.Generator] | None = None, ready_timeout: float = 600.0) -> None:
        self._rng = rng or np.random.default_rng
        self.ready_timeout = ready_timeout

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.CAMPAIGN_EVALUATION: self.handle}

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the bank."""
        progress = progress_of(ctx, _PREFIX)
        progress("reading conversions", 0.0)
        terms = evaluation_terms(ctx.job)
        inp = ctx.own_input(refusal=_ONE_INPUT)
        rows = load_rows(ctx, inp)
        if list(rows.keys) != [KEY]:
            raise _error("inputs.key_fields", f"the bank's conversions are keyed by {[str(k) for k in rows.keys]}",
                         "name exactly one key field of key type mobile (the number a conversion registered with)")
        column = normalise_column(KEY, rows.keys[KEY])
        converters = sorted(set(column.values))
        link, reopen = reopening_link(ctx, ready_timeout=self.ready_timeout)
        with aborting(link, ctx):
            counts = run_evaluation_receiver(link, converters, terms, reopen=reopen, progress=progress)
        progress("releasing the uplift", 0.9)
        noise = None
        if terms.epsilon is not None:
            noise = two_sided_geometric_noise(terms.epsilon, 2 * len(ARMS), self._rng(), sensitivity=SENSITIVITY)
        try:
            release = evaluate_uplift(counts, k=terms.k, epsilon=terms.epsilon,
                                      noise=None if noise is None else noise.tolist())
        except UpliftInputError as exc:
            raise EvaluationError(str(exc)) from None
        invalid = {f"{kt}:{reason}": n for (kt, reason), n in sorted(column.invalid.items())}
        progress("done", 1.0)
        return {"role": "bank", "campaign_job_id": terms.campaign_job_id, **release.as_dict(),
                "conversion_rows": rows.total_rows, "invalid_identifiers": invalid, **link.stats.as_dict()}


# ---------------------------------------------------------------- the telco (sender)


def _summary(sessions: Mapping[KeyType, Session], meter: EvaluationMeter) -> PsiJobSummary:
    return PsiJobSummary(job_id="x", evaluations=meter.evaluated)


def serve_arms(registry: SenderRegistry, terms: EvaluationTerms, arms: Mapping[str, Sequence[str]], *,
               patience: Patience = DEFAULT_PATIENCE, progress: Callable[[str, float], None] | None = None
               ) -> dict[str, int]:
    """Serve one cardinality-PSI run per arm, in :data:`ARMS` order; return the bank's queries per arm.

    Raises:
        EvaluationError: The arms are not exactly treatment and holdout.
        ProtocolError: The bank aborted, went silent or sent something invalid.
    """
    if set(arms) != set(ARMS):
        raise _error("params.campaign_job_id", f"the campaign's arms are {sorted(arms)}",
                     f"evaluate a campaign with exactly the arms {list(ARMS)}")
    queries: dict[str, int] = {}
    for index, arm in enumerate(ARMS):
        column = normalise_column(KEY, list(arms[arm]))
        session = CardinalitySender(column.values, key_type=KEY, job_id=terms.job_id)
        job = SenderJob(terms.job_id, {KEY: session}, meter=EvaluationMeter(None), summarise=_summary)
        with registry.opened(job):
            if progress is not None:
                progress(f"serving the bank: {arm} arm", 0.1 + 0.4 * index)
            summary = job.wait(patience)
        queries[arm] = summary.evaluations
    return queries


class TelcoCampaignEvaluation:
    """The telco's ``campaign_evaluation`` role, sharing the node's PSI sender registry.

    Args:
        psi: The node's PSI sender family (its registry routes ``psi.*`` frames; its patience applies).
        arms: Reads a campaign's arms (default: :func:`stored_arms`, the app_promotion job's store).
    """

    def __init__(self, psi: PsiSender, *, arms: ArmReader = stored_arms) -> None:
        self.psi, self._arms = psi, arms

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.CAMPAIGN_EVALUATION: self.handle}

    def handle(self, ctx: JobContext) -> dict[str, Any]:
        """``JobHandler`` of the telco."""
        progress = progress_of(ctx, _PREFIX)
        progress("loading the campaign's arms", 0.0)
        terms = evaluation_terms(ctx.job)
        ctx.own_input(refusal=_ONE_INPUT)
        arms = self._arms(ctx, terms.campaign_job_id)
        claim_evaluation(ctx.settings.state_path, terms.campaign_job_id, ctx.job.id)  # before any arm is served
        registry = self.psi.registry
        if ctx.inbox is not None:
            registry.attach(ctx.inbox)
        with registry.bound(terms.job_id, ctx.peer_party(), still_running=ctx.check_current):
            queries = serve_arms(registry, terms, arms, patience=self.psi.patience, progress=progress)
        progress("done", 1.0)
        return {"role": "telco", "campaign_job_id": terms.campaign_job_id, "arms": list(ARMS),
                "bank_queries": queries}
