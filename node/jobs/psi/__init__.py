"""PSI jobs over the data plane: ``audience_overlap`` and ``recovery`` (DESIGN.md §2-§4).

The sans-I/O sessions live in :mod:`psi`; this package drives them between the two nodes. The bank
runs :class:`PsiReceiver`, the telco :class:`PsiSender` (``node.runner.JobFamily``); both jobs' module docstrings
(:mod:`~node.jobs.psi.audience_overlap`, :mod:`~node.jobs.psi.recovery`) state the rounds
and what each party learns. :mod:`~node.jobs.psi.local` runs both roles in one process over
the same drivers and messages (``tandem-bank psi-local``).

Modules: ``_rows`` (a party's rows: keys, filter, consent), ``_link`` (receiver wire: frames,
channels, counting, retries), ``_sender`` (sender registry, sessions, evaluation meter, close, idle
timeout), ``tables`` (labeled tables per key epoch), ``outreach`` (relay outbox), ``results``
(row-level results kept at the bank, masked listings), ``handlers``, ``local``, ``cli``.
"""

from ._link import CLOSE_CHANNEL, FrameTransport, LocalFrameTransport, PeerFrameTransport, PsiJobError, SessionLink
from ._rows import KeyColumn, PartyRows, party_rows
from ._sender import EvaluationMeter, Patience, SenderJob, SenderRegistry
from .handlers import PsiReceiver, PsiSender
from .outreach import OutboxChannel, OutreachChannel, mask_msisdn
from .results import list_results
from .tables import TableStore

__all__ = [
    "CLOSE_CHANNEL",
    "EvaluationMeter",
    "FrameTransport",
    "KeyColumn",
    "LocalFrameTransport",
    "OutboxChannel",
    "OutreachChannel",
    "PartyRows",
    "Patience",
    "PeerFrameTransport",
    "PsiJobError",
    "PsiReceiver",
    "PsiSender",
    "SenderJob",
    "SenderRegistry",
    "SessionLink",
    "TableStore",
    "list_results",
    "mask_msisdn",
    "party_rows",
]
