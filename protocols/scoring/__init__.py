"""Federated scoring: the bank scores customers with its model part and the telco's, one round trip each.

Parts: :mod:`~protocols.scoring._parties` (the sans-I/O core; rounds and what each party learns),
:mod:`~protocols.scoring._pseudonyms` (keyed pseudonyms instead of identifiers),
:mod:`~protocols.messages.scoring` (wire models), :mod:`~protocols.scoring.service` (node services),
:mod:`~protocols.scoring.api` (the bank's real-time HTTP API), :mod:`~protocols.scoring.jobs` (the batch
``score`` job handlers).
"""

from protocols.messages.scoring import PSEUDONYM_BYTES, ScoreReply, ScoreRequest
from protocols.scoring._caller import PeerCaller
from protocols.scoring._features import SchemaMismatch, check_schema, feature_matrix, governance_columns
from protocols.scoring._parties import ActiveScorer, Outcome, PassiveScorer, ScoredRows
from protocols.scoring._pseudonyms import SCORING_KEY_TYPE, PseudonymKey, derive_pseudonym_key

__all__ = [
    "PSEUDONYM_BYTES",
    "SCORING_KEY_TYPE",
    "ActiveScorer",
    "Outcome",
    "PassiveScorer",
    "PeerCaller",
    "PseudonymKey",
    "SchemaMismatch",
    "ScoreReply",
    "ScoreRequest",
    "ScoredRows",
    "check_schema",
    "derive_pseudonym_key",
    "feature_matrix",
    "governance_columns",
]
