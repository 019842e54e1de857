"""The bank side's data-plane link for the marketing jobs whose receiver runs one PSI session after another.

``segment_sizes`` (one run per cell) and ``campaign_evaluation`` (one run per arm) drive several runs over
one :class:`SessionLink` (messages numbered per channel across the runs), each run on a fresh transport
that waits while the telco opens it; ``churn_warning`` runs one. :func:`reopening_link` builds the link
and its ``reopen``; :func:`aborting` tells the telco why the receiver gave up before the error propagates.

What each party learns from this module: nothing beyond the frames the sessions send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from node.jobs.psi._link import PeerFrameTransport, SessionLink
from node.runner import JobContext

__all__ = ["aborting", "reopening_link"]


def reopening_link(ctx: JobContext, *, ready_timeout: float) -> tuple[SessionLink, Callable[[], None]]:
    """A link to the job's peer node, and a ``reopen`` that gives it a fresh transport for the next run.

    Args:
        ctx: The job's context (its signed peer party, job id).
        ready_timeout: How long each transport waits for the telco to open its side, seconds; it stops
            waiting earlier once the coordinator shows the job ended (:meth:`JobContext.check_current`).
    """
    client = ctx.peer(ctx.peer_party())

    def transport() -> PeerFrameTransport:
        return PeerFrameTransport(client, ctx.job.id, ready_timeout=ready_timeout, still_running=ctx.check_current)

    link = SessionLink(transport(), str(ctx.job.id))

    def reopen() -> None:
        link.transport = transport()

    return link, reopen


@contextmanager
def aborting(link: SessionLink, ctx: JobContext) -> Iterator[None]:
    """Abort ``link`` (naming the stage and the error's type, never its text) if the body raises; re-raise."""
    try:
        yield
    except Exception as exc:
        link.abort(f"receiver failed at {ctx.stage}: {type(exc).__name__}")
        raise
