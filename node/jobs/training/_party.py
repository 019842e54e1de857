"""A party's side of one training job: Flower rounds in, data-plane exchanges out, its model part stored.

One :class:`PartyJob` per running job and node. The Flower endpoint calls :meth:`PartyJob.on_round`
(one call per Flower round addressed to this party) and the data-plane inbox calls
:meth:`PartyJob.on_peer`; both run on server threads, so the VFL core objects are only touched under
a lock and results are handed between threads through :class:`~node.jobs.training._job._Slots`.

Data plane per job (the telco's node is the server of LR and SecureBoost exchanges except where
noted)::

    train.psi.r / train.psi.s   bank → telco   row alignment (node.jobs.training.alignment)
    train.lr   seq t+1          telco → bank   LrForward of iteration t; response LrResidual
    train.eval (LR)             telco → bank   LrPartialScores of the held-out rows; response metrics
    train.sb   seq k            bank → telco   SbTreeStart / SbLevelSplits / SbTrainingDone /
                                               SbPredictRequest; response the passive's messages
    train.eval (SecureBoost)    bank → telco   the held-out metrics; response an acknowledgement

What each party learns is what the VFL cores state (:mod:`protocols.vfl`), plus: the telco learns the
held-out metrics (AUC, KS) the bank sends it for its model card; the bank learns the telco's plain
partial scores (LR) or split routes (SecureBoost) on the held-out rows only, as scoring would.

Modules: :mod:`~node.jobs.training._job` (the job spec and what every party job shares),
:mod:`~node.jobs.training._lr_party` (hetero LR), :mod:`~node.jobs.training._sb_party` (SecureBoost);
this one picks the party job for an algorithm and role.
"""

from __future__ import annotations

from node.jobs.training._job import JobSpec, PartyJob
from node.jobs.training._lr_party import BankLrJob, TelcoLrJob
from node.jobs.training._sb_party import BankSbJob, TelcoSbJob

__all__ = ["JobSpec", "PartyJob", "make_party_job"]

_JOBS: dict[tuple[str, bool], type[PartyJob]] = {
    ("lr", True): BankLrJob, ("lr", False): TelcoLrJob,
    ("secureboost", True): BankSbJob, ("secureboost", False): TelcoSbJob,
}


def make_party_job(spec: JobSpec, *, active: bool) -> PartyJob:
    """The party job for ``spec.algorithm`` and this party's role."""
    return _JOBS[(spec.algorithm, active)](spec)
