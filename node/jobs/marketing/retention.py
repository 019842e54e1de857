"""Jobs ``churn_warning`` and ``win_back``: keep the bank's customers, and win back the lost ones.

``churn_warning`` (output mode ``bands``). The telco computes, for every subscriber, a churn-risk band
from its own signals (``protocols.marketing.bands``: number changed, silent, moved home cell, stopped
the bank's app, started a competitor's — its input's ``feature_fields`` name exactly these columns)
and publishes a fresh labeled-PSI table ``tag ‖ AES-GCM(band)`` under a one-job OPRF key; the bank, as
the labeled-PSI receiver over its customers' key (its input's one ``key_fields`` entry), learns the
band of each of *its own* customers the telco matched, and keeps ``customer_id, band`` in its job
directory (never sent anywhere). Channels ``psi.<key_type>`` and ``psi.close`` (the telco's PSI sender
registry routes them). ``params.match_cap``, when set, caps the telco's OPRF evaluations.

What each party learns (semi-honest; one-more-DH for the OPRF):

* bank: the band (low, medium, high) of its matched customers, and the table size; never a signal,
  a score, nor anything of a subscriber it did not ask about (it can only open records of keys it holds).
* telco: how many keys the bank queried, not which, nor which matched.
* coordinator: counts only — customers asked, matched, per band (each below k suppressed), bytes.

``win_back`` (output modes ``reveal`` and ``relay``). Recovery (``node.jobs.psi.recovery``) for the lost
customers most worth winning back: the bank ranks its lost-contact list by a propensity column it
holds (its input's one ``feature_fields`` entry, higher first) and runs recovery for the top
``params.match_cap`` only — reveal (the bank learns their current numbers, under every recovery rule:
purpose recovery, consent, cap, approvals; coordinator rule R13 applies to win_back as to recovery) or
relay (the telco messages them through its outreach channel; the number never leaves the telco).
The telco's side is the recovery sender, refused by the telco itself when the signed terms carry no
``match_cap`` (in relay mode too; coordinator rule R13 bounds it by the policy's cap). What each party
learns: as in recovery, over the top-ranked customers only; the ranking itself never leaves the bank.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from node.jobs.marketing._bank_link import aborting
from node.jobs.psi import PsiSender
from node.jobs.psi._link import drive, session_channel
from node.jobs.psi._node import ONE_INPUT, k_of, key_columns, link_to_peer, load_rows, progress_of
from node.jobs.psi._rows import PartyRows
from node.jobs.psi._sender import EvaluationMeter, SenderJob
from node.jobs.psi.recovery import receive_recovery, recovery_terms
from node.jobs.psi.results import write_rows
from node.runner import JobContext, JobHandler
from protocols.marketing.bands import BANDS, SIGNALS, BandInputError, bands
from protocols.wire.control import JobKind, JobPublic, KeyType
from protocols.wire.errors import ConfigError
from protocols.wire.psi import PsiJobSummary
from psi.group import Scalar
from psi.identifiers import normalise_column
from psi.labeled import LabeledPsiReceiver, LabeledPsiSender, prepare_sender_table, refuse_shared_keys

__all__ = ["BANDS_FILE", "BankRetention", "RetentionError", "TelcoRetention", "bank_churn_warning",
           "bank_win_back", "churn_terms", "rank_by_propensity", "telco_churn_warning"]

BANDS_FILE = "churn_bands.csv"
SUPPRESSED = "suppressed (< k)"


class RetentionError(ConfigError):
    """A retention job cannot run: the message names the field and the fix (reported verbatim)."""

    status_hint = 422


def _error(field_name: str, problem: str, fix: str) -> RetentionError:
    return RetentionError(f"{field_name}: {problem}; {fix}")


@dataclass(frozen=True)
class ChurnTerms:
    """What both sides agreed to.

    Attributes:
        job_id: The coordinator's job id, as text.
        k: Minimum customers behind a released band count.
        match_cap: Most OPRF evaluations the telco grants, or None.
    """

    job_id: str
    k: int
    match_cap: int | None


def churn_terms(job: JobPublic) -> ChurnTerms:
    """The terms of an approved ``churn_warning`` job.

    Raises:
        RetentionError: An output mode other than ``bands``.
    """
    if job.params.output_mode not in (None, "bands"):
        raise _error("params.output_mode", f"churn_warning has no output mode {job.params.output_mode!r}",
                     "omit output_mode or use 'bands'")
    return ChurnTerms(str(job.id), k_of(job.params), job.params.match_cap)


def _one_key(ctx: JobContext, key_fields: list[str], dataset: str) -> None:
    if len(key_fields) != 1:
        raise _error(f"{dataset}.key_fields", f"names {len(key_fields)} fields",
                     "name exactly one key field (e.g. id_number or mobile), the same kind at both parties")


# ---------------------------------------------------------------- churn_warning: telco (labeled-PSI sender)


def _summary(sessions: object, meter: EvaluationMeter) -> PsiJobSummary:
    return PsiJobSummary(job_id="x", evaluations=meter.evaluated)


def band_records(frame: pd.DataFrame, key_field: str, key_type: KeyType) -> tuple[list[tuple[str, str]], Counter[str]]:
    """``(canonical key, band)`` per subscriber with a valid key, and refused keys by ``key_type:reason``.

    Raises:
        RetentionError: A signal column is missing or holds values the band rule cannot read.
    """
    try:
        banded = bands({s: frame[s].to_numpy() for s in SIGNALS if s in frame.columns})
    except BandInputError as exc:
        raise RetentionError(f"telco input {exc}") from None
    column = normalise_column(key_type, frame[key_field].astype("string").tolist())
    invalid = Counter({f"{kt}:{reason}": n for (kt, reason), n in column.invalid.items()})
    return [(v, banded[i]) for v, i in zip(column.values, column.indices, strict=True)], invalid


def telco_churn_warning(ctx: JobContext, psi: PsiSender) -> dict[str, Any]:
    """``JobHandler`` of the telco: bands from its signals, one labeled-PSI table under a fresh key."""
    progress = progress_of(ctx, "churn_warning")
    progress("reading churn signals", 0.0)
    terms = churn_terms(ctx.job)
    inp = ctx.own_input(refusal=ONE_INPUT)
    source, governance = ctx.open_dataset(inp.dataset_id)
    _one_key(ctx, list(inp.key_fields), governance.dataset)
    if set(inp.feature_fields) != set(SIGNALS):
        raise _error(f"{governance.dataset}.feature_fields", f"names {list(inp.feature_fields)}",
                     f"name exactly the churn signals {list(SIGNALS)}")
    key = key_columns(governance, list(inp.key_fields))[0]
    with source:
        frame = source.read([key.field, *SIGNALS])
    records, invalid = band_records(frame, key.field, key.key_type)
    kept, shared = refuse_shared_keys(records)
    progress("preparing the band table", 0.2)
    oprf_key = Scalar.random()  # one job, one key: a table of this job cannot be tested with another's
    table = prepare_sender_table(kept, key_type=key.key_type, key=oprf_key)
    session = LabeledPsiSender(table, key=oprf_key, job_id=terms.job_id)
    job = SenderJob(terms.job_id, {key.key_type: session}, meter=EvaluationMeter(terms.match_cap),
                    summarise=_summary)
    registry = psi.registry
    if ctx.inbox is not None:
        registry.attach(ctx.inbox)
    with registry.bound(terms.job_id, ctx.peer_party(), still_running=ctx.check_current), registry.opened(job):
        progress("serving the bank", 0.5)
        summary = job.wait(psi.patience)
    progress("done", 1.0)
    return {"role": "telco", "mode": "bands", "key_type": str(key.key_type), "bank_queries": summary.evaluations,
            "table_records": table.count, "invalid_identifiers": dict(sorted(invalid.items())),
            "shared_key_values": shared.values, "bytes_to_peer": job.stats.bytes_sent,
            "bytes_from_peer": job.stats.bytes_received}


# ---------------------------------------------------------------- churn_warning: bank (labeled-PSI receiver)

_RISK = {band: i for i, band in enumerate(BANDS)}


def bank_churn_warning(ctx: JobContext, *, ready_timeout: float = 600.0) -> dict[str, Any]:
    """``JobHandler`` of the bank: its customers' keys queried; a band per matched customer kept at the bank."""
    progress = progress_of(ctx, "churn_warning")
    progress("reading customers", 0.0)
    terms = churn_terms(ctx.job)
    inp = ctx.own_input(refusal=ONE_INPUT)
    _one_key(ctx, list(inp.key_fields), "bank input")
    rows = load_rows(ctx, inp)
    key_type = next(iter(rows.keys))
    column = normalise_column(key_type, rows.keys[key_type])
    link = link_to_peer(ctx, ready_timeout=ready_timeout)
    with aborting(link, ctx):
        session = LabeledPsiReceiver(sorted(set(column.values)), key_type=key_type, job_id=terms.job_id)
        progress(f"{session_channel(key_type)} session", 0.2)
        drive(session, link, session_channel(key_type))
        link.close([key_type])
    labels = session.result().labels
    banded: list[tuple[str, str]] = []
    conflicts = 0
    for value, index in zip(column.values, column.indices, strict=True):
        found = [b for b in labels.get(value, ()) if b in _RISK]
        if not found:
            continue
        conflicts += len(set(found)) > 1  # a key of several subscribers: the highest band is kept
        banded.append((rows.record_ids[index], max(found, key=_RISK.__getitem__)))
    write_rows(ctx.workdir / BANDS_FILE, ["customer_id", "band"], banded)
    per_band = Counter(b for _, b in banded)
    progress("done", 1.0)
    return {
        "role": "bank", "mode": "bands", "key_type": str(key_type), "k": terms.k,
        "customers_asked": len(set(column.values)), "customers_matched": _released(len(banded), terms.k),
        "bands": {b: _released(per_band.get(b, 0), terms.k) for b in BANDS}, "conflicts": conflicts,
        "invalid_identifiers": {f"{kt}:{r}": n for (kt, r), n in sorted(column.invalid.items())},
        "bands_at": f"bank node: jobs/{ctx.job.id}/{BANDS_FILE}", **link.stats.as_dict(),
    }


def _released(value: int, k: int) -> int | str:
    return value if value >= k else SUPPRESSED


# ---------------------------------------------------------------- win_back


def rank_by_propensity(rows: PartyRows, top: int | None) -> PartyRows:
    """The ``top`` rows of highest propensity (``rows.labels``; missing or non-numeric last), in rank order.

    Ties keep the list's order, so a ranking is reproducible.
    """
    assert rows.labels is not None

    def score(i: int) -> float:
        try:
            value = float(rows.labels[i])  # type: ignore[index, arg-type]
        except (TypeError, ValueError):
            return -math.inf
        return value if math.isfinite(value) else -math.inf

    order = sorted(range(rows.size), key=lambda i: -score(i))[: top if top is not None else rows.size]
    return replace(rows, keys={kt: [col[i] for i in order] for kt, col in rows.keys.items()},
                   record_ids=[rows.record_ids[i] for i in order], labels=[rows.labels[i] for i in order])


def bank_win_back(ctx: JobContext, *, ready_timeout: float = 600.0) -> dict[str, Any]:
    """``JobHandler`` of the bank: recovery (reveal or relay) of the top ``match_cap`` lost customers by propensity."""
    progress = progress_of(ctx, "win_back")
    progress("ranking lost customers by propensity", 0.0)
    inp = ctx.own_input(refusal=ONE_INPUT)
    if len(inp.feature_fields) != 1:
        raise _error("bank input feature_fields", f"names {list(inp.feature_fields)}",
                     "name the one propensity column of the lost-contact list to rank by (higher first)")
    if ctx.job.params.match_cap is None:
        raise _error("params.match_cap", "is missing", "set how many of the top-ranked lost customers to win back")
    rows = load_rows(ctx, inp, label_field=inp.feature_fields[0])
    ranked = rank_by_propensity(rows, ctx.job.params.match_cap)
    terms = recovery_terms(str(ctx.job.id), tuple(rows.keys), ctx.job.params)
    outputs = receive_recovery(ctx, ranked, terms, progress, ready_timeout=ready_timeout)
    progress("done", 1.0)
    return {**outputs, "ranked_by": inp.feature_fields[0], "candidates": rows.size, "chosen": ranked.size}


class BankRetention:
    """The bank's ``churn_warning`` and ``win_back`` roles (PSI receiver of both).

    Args:
        ready_timeout: How long to wait for the telco to open its side, seconds (a telco that refused
            the job never opens it: the bank fails after this long).
    """

    def __init__(self, *, ready_timeout: float = 600.0) -> None:
        self.ready_timeout = ready_timeout

    def churn_warning(self, ctx: JobContext) -> dict[str, Any]:
        """``churn_warning`` as the labeled-PSI receiver."""
        return bank_churn_warning(ctx, ready_timeout=self.ready_timeout)

    def win_back(self, ctx: JobContext) -> dict[str, Any]:
        """``win_back`` as the recovery receiver over the top-ranked lost customers."""
        return bank_win_back(ctx, ready_timeout=self.ready_timeout)

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.CHURN_WARNING: self.churn_warning, JobKind.WIN_BACK: self.win_back}


class TelcoRetention:
    """The telco's ``churn_warning`` and ``win_back`` roles, sharing the node's PSI sender family.

    Args:
        psi: The node's PSI sender (its registry routes ``psi.*`` frames; win_back is its recovery sender).
    """

    def __init__(self, psi: PsiSender) -> None:
        self.psi = psi

    def churn_warning(self, ctx: JobContext) -> dict[str, Any]:
        """``churn_warning`` as the labeled-PSI sender of band records, for the signed peer only."""
        return telco_churn_warning(ctx, self.psi)

    def win_back(self, ctx: JobContext) -> dict[str, Any]:
        """``win_back`` as the recovery sender, refused without a signed ``match_cap`` in either mode.

        The cap is what bounds a win-back: without it a bank node that skips its own ranking could have
        the telco test, and in relay mode message, everyone on a list of its choosing. The telco meters
        OPRF evaluations and relays to at most ``match_cap`` people (the recovery sender's meter).
        """
        if ctx.job.params.match_cap is None:
            raise _error("params.match_cap", "is missing: a win-back without a cap could test and message any "
                         "number of people", "sign a match_cap (how many top-ranked lost customers to win back)")
        return self.psi.recovery(ctx)

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        handlers: dict[JobKind, Callable[[JobContext], dict[str, Any]]] = {
            JobKind.CHURN_WARNING: self.churn_warning, JobKind.WIN_BACK: self.win_back}
        return handlers
