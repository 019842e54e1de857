"""The bank node's command line (``tandem-bank``): the shared node CLI over ``BankSettings``.

The bank is the PSI receiver of ``audience_overlap`` and ``recovery`` (``node.jobs.psi``) and the
active party of federated scoring: the batch ``score`` job and, when ``TANDEM_BANK_SCORING_API_KEY`` is
set, the real-time scoring API beside ``serve`` (``node.jobs.scoring``). It plans new branch sites over
the telco's released demand in ``site_selection`` jobs (``node.jobs.sites.job``; maps in ``<state>/sites``).
"""

from __future__ import annotations

from bank_node.settings import BankSettings
from node.cli import build_cli
from node.jobs.marketing.app_promotion import BankAppPromotion
from node.jobs.marketing.evaluation import BankCampaignEvaluation
from node.jobs.marketing.retention import BankRetention
from node.jobs.marketing.segments import BankSegmentSizes
from node.jobs.psi import PsiReceiver
from node.jobs.psi.cli import add_psi_commands
from node.jobs.scoring.api import bank_scoring_service
from node.jobs.scoring.jobs import BankBatchScoring
from node.jobs.sites.job import BankSiteSelection
from node.jobs.training import TrainingService

__all__ = ["main"]

_training = TrainingService()
main = build_cli(BankSettings, "bank", families=[PsiReceiver(), BankBatchScoring(), BankSiteSelection(), _training,
                                                 BankAppPromotion(), BankCampaignEvaluation(), BankRetention(),
                                                 BankSegmentSizes()],
                 extensions=[add_psi_commands], services=[bank_scoring_service, _training.serve])
