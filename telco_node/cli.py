"""The telco node's command line (``tandem-telco``): the shared node CLI over ``TelcoSettings``.

The telco is the PSI sender of ``audience_overlap`` and ``recovery``: labeled-PSI tables per key
epoch, OPRF evaluations metered per job, relay messages through its outbox (``node.jobs.psi``).
It is the passive party of federated scoring: it answers batch ``score`` jobs and, while serving,
real-time ``score`` calls from the bank (``node.jobs.scoring``). In ``site_selection`` jobs it releases
k-suppressed, ε-noised demand per H3 cell to the bank (``node.jobs.sites.job``).
"""

from __future__ import annotations

from node.cli import build_cli
from node.jobs.marketing.app_promotion import TelcoAppPromotion
from node.jobs.marketing.evaluation import TelcoCampaignEvaluation
from node.jobs.marketing.retention import TelcoRetention
from node.jobs.marketing.segments import TelcoSegmentSizes
from node.jobs.psi import PsiSender
from node.jobs.psi.cli import add_psi_commands
from node.jobs.scoring.api import telco_scoring_service
from node.jobs.scoring.jobs import TelcoBatchScoring
from node.jobs.sites.job import TelcoSiteSelection
from node.jobs.training import TrainingService
from telco_node.settings import TelcoSettings

__all__ = ["main"]

_training = TrainingService()
_psi = PsiSender()  # one PSI sender registry per node: app_promotion's PSI shares it
main = build_cli(TelcoSettings, "telco", families=[_psi, TelcoBatchScoring(), TelcoSiteSelection(), _training,
                                                   TelcoAppPromotion(registry=_psi.registry),
                                                   TelcoCampaignEvaluation(_psi), TelcoRetention(_psi),
                                                   TelcoSegmentSizes(_psi)],
                 extensions=[add_psi_commands], services=[telco_scoring_service, _training.serve])
