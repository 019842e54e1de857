"""Training jobs ``train_risk`` (hetero LR) and ``train_propensity`` (SecureBoost) over Flower and the data plane.

Pieces:

- :mod:`node.jobs.training.service`: the node side (job handlers, the loopback round endpoint the
  ClientApp shim calls, the node's SuperNode).
- :mod:`node.jobs.training.alignment`: PSI alignment with the intersection revealed to both parties.
- :mod:`node.jobs.training.evaluation`: held-out AUC/KS, ROC and KS figures, bank-only baseline.
- :mod:`node.jobs.training.checkpoints`: per-iteration LR checkpoints; a re-run of the same job (same
  id and digest) resumes after the last iteration both parties completed.

What each party learns: the VFL cores' statements (:mod:`protocols.vfl`), the alignment's
(:mod:`node.jobs.training.alignment`), and the rounds' (:mod:`node.jobs.training._party`). The
coordinator's arbiter (:mod:`coordinator.flower.arbiters`) learns only counts, masked values (LR) and the
held-out metrics; the round messages both sides agree on are :mod:`protocols.vfl.rounds`.
"""

from node.jobs.training.service import TrainingNodeSettings, TrainingService

__all__ = [
    "TrainingNodeSettings",
    "TrainingService",
]
