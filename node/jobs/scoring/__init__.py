"""Federated scoring: the bank scores customers with its model part and the telco's, one round trip each.

Parts: :mod:`~protocols.vfl.scoring` (the sans-I/O core; rounds and what each party learns),
:mod:`~node.jobs.scoring._pseudonyms` (keyed pseudonyms instead of identifiers),
:mod:`~protocols.wire.scoring` (wire models), :mod:`~node.jobs.scoring.service` (node services),
:mod:`~node.jobs.scoring.api` (the bank's real-time HTTP API), :mod:`~node.jobs.scoring.jobs` (the batch
``score`` job handlers), :mod:`~node.jobs.scoring._limits` (row caps and API limits, ``TANDEM_SCORING_*``),
:mod:`~node.jobs.scoring._quota` (the telco's per-call and per-day row caps) and
:mod:`~node.jobs.scoring._guard` (the bank API's lockout, rate limit and body bound).
"""

from node.jobs.scoring._caller import PeerCaller
from node.jobs.scoring._features import SchemaMismatch, check_schema, feature_matrix, governance_columns
from node.jobs.scoring._guard import ApiGuard
from node.jobs.scoring._limits import ScoringLimits, load_limits
from node.jobs.scoring._pseudonyms import SCORING_KEY_TYPE, PseudonymKey, derive_pseudonym_key
from node.jobs.scoring._quota import DailyUsage, RowQuota, ScoringCapExceeded

__all__ = [
    "SCORING_KEY_TYPE",
    "ApiGuard",
    "DailyUsage",
    "PeerCaller",
    "PseudonymKey",
    "RowQuota",
    "SchemaMismatch",
    "ScoringCapExceeded",
    "ScoringLimits",
    "check_schema",
    "derive_pseudonym_key",
    "feature_matrix",
    "governance_columns",
    "load_limits",
]
