"""One package per job family a node runs.

:mod:`node.jobs.psi` (overlap, recovery, outreach), :mod:`node.jobs.training` (``train_risk``,
``train_propensity``) and :mod:`node.jobs.scoring` (batch and real-time federated scoring). Each family's
handlers plug into :class:`node.runner.JobRunner`.
"""
