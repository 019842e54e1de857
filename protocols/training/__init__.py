"""Training jobs ``train_risk`` (hetero LR) and ``train_propensity`` (SecureBoost) over Flower and the data plane.

Pieces:

- :mod:`protocols.training.arbiters`: the coordinator's arbiters, run by the Flower ServerApp (rounds,
  what the arbiter learns).
- :mod:`protocols.training.service`: the node side (job handlers, the loopback round endpoint the
  ClientApp shim calls, the node's SuperNode).
- :mod:`protocols.training.alignment`: PSI alignment with the intersection revealed to both parties.
- :mod:`protocols.training.evaluation`: held-out AUC/KS, ROC and KS figures, bank-only baseline.
- :mod:`protocols.training.checkpoints`: per-iteration LR checkpoints; a re-run of the same job (same
  id and digest) resumes after the last iteration both parties completed.

What each party learns: the VFL cores' statements (:mod:`protocols.vfl`), the alignment's
(:mod:`protocols.training.alignment`), and the rounds' (:mod:`protocols.training._party`). The
coordinator's arbiter learns only counts, masked values (LR) and the held-out metrics.
"""

from protocols.training.arbiters import LrJobArbiter, SbJobArbiter, TrainingError, lr_arbiter, sb_arbiter
from protocols.training.service import TrainingNodeSettings, TrainingService

__all__ = [
    "LrJobArbiter",
    "SbJobArbiter",
    "TrainingError",
    "TrainingNodeSettings",
    "TrainingService",
    "lr_arbiter",
    "sb_arbiter",
]
