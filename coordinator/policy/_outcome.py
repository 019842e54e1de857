"""Rule ids and the one way a rule reports a finding.

Ids are stable: add new ones at the end, never renumber.
"""

from __future__ import annotations

from protocols.wire.control import RuleOutcome

__all__ = [
    "R01", "R02", "R03", "R04", "R05", "R06", "R07", "R08", "R09", "R10", "R11", "R12", "R13", "R14", "R15", "R16",
    "R17", "outcome",
]

R01, R02, R03, R04, R05 = (
    "R01-dataset-exists", "R02-field-exists", "R03-kind-purpose", "R04-inputs-shape", "R05-identifier-use")
R06, R07, R08, R09, R10 = (
    "R06-purpose-binding", "R07-key-fields", "R08-label-locality", "R09-output-desensitisation", "R10-auditor-level")
R11, R12, R13, R14, R15 = ("R11-min-cell", "R12-output-mode", "R13-reveal-recovery", "R14-relay-template", "R15-filter")
R16 = "R16-epsilon-budget"
R17 = "R17-segments"


def outcome(rule_id: str, allowed: bool, message: str, field: str | None = None, fix: str | None = None) -> RuleOutcome:
    """One finding of rule ``rule_id``; its message starts with the id."""
    return RuleOutcome(rule_id=rule_id, allowed=allowed, field=field, message=f"{rule_id}: {message}", fix=fix)
