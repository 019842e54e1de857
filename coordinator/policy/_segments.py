"""R17: a ``segment_sizes`` job's segment file parses, is the one its params bind, and reads usable fields only.

The file travels in the job's params (``segments``, with ``segments_sha256`` and ``segments_version``), so
the signed terms bind it; the grammar and the field checks are :mod:`protocols.wire.segments`, the same
code the telco runs before it evaluates a rule. Fields are checked against the telco input's catalog:
unknown fields, identifiers, labels and sensitive fields, fields whose purposes exclude the job's purpose
and fields at or above the policy's auditor level are refused, each finding naming the segment and field.
"""

from __future__ import annotations

from coordinator.policy._context import EvalContext
from coordinator.policy._outcome import R17, outcome
from protocols.wire.control import JobKind, PartyKind, RuleOutcome
from protocols.wire.segments import SegmentError, SegmentSet, check_fields, parse_segments

__all__ = ["segments_valid"]

_PARAMS_FIX = ("send the file's text as params.segments with its params.segments_sha256 and params.segments_version "
               "(protocols.wire.segments.segment_params builds all three from the file)")


def _denied(exc: SegmentError, field: str | None = None) -> RuleOutcome:
    return outcome(R17, False, str(exc), field or exc.field, exc.fix)


def _binding(ctx: EvalContext, parsed: SegmentSet) -> list[RuleOutcome]:
    params = ctx.job.params
    found = []
    if params.segments_sha256 != parsed.sha256:
        found.append(outcome(R17, False, f"params.segments_sha256 is {params.segments_sha256!r}, but the file's "
                             f"SHA-256 is {parsed.sha256}", "params.segments_sha256", _PARAMS_FIX))
    if params.segments_version != parsed.version:
        found.append(outcome(R17, False, f"params.segments_version is {params.segments_version!r}, but the file "
                             f"says version {parsed.version!r}", "params.segments_version", _PARAMS_FIX))
    return found


def _products(ctx: EvalContext) -> list[RuleOutcome]:
    banks = ctx.of_kind(PartyKind.BANK)
    if banks and not banks[0].spec.feature_fields:
        return [outcome(R17, False, f"the bank input {banks[0].dataset.name} names no product field",
                        f"{banks[0].dataset.name}.feature_fields",
                        "name the bank's 0/1 product-holding fields as feature_fields, e.g. [has_fund, has_stock]")]
    return []


def segments_valid(ctx: EvalContext) -> list[RuleOutcome]:
    """R17: the segment file of a ``segment_sizes`` job (other kinds: nothing to say)."""
    if ctx.job.kind != JobKind.SEGMENT_SIZES:
        return []
    text = ctx.job.params.segments
    if text is None:
        return [outcome(R17, False, "a segment_sizes job needs its segment file", "params.segments", _PARAMS_FIX)]
    try:
        parsed = parse_segments(text)
    except SegmentError as exc:
        return [_denied(exc, f"params.segments: {exc.field}")]
    found = _binding(ctx, parsed) + _products(ctx)
    found += [outcome(R17, False, f"segment {s.name!r}: score: segment_sizes evaluates rules only",
                      f"params.segments: {s.name}.score", "give the segment a rule (score thresholds are "
                      "app_promotion's)") for s in parsed.segments if s.score is not None]
    for inp in ctx.of_kind(PartyKind.TELCO):
        found += [_denied(e) for e in check_fields(parsed, inp.dataset.name, inp.fields, ctx.job.purpose,
                                                   ctx.policy.auditor_level)]
    return found

