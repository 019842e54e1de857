"""Stage dispatch for the sans-I/O protocol parties: a message out of stage fails before any work.

A party declares a *transition table*: a mapping from ``(stage, event)`` to the name of the method
that handles that event in that stage. ``event`` is whatever the protocol keys its messages by (the
message ``kind``; PSI qualifies chunks, pulls and acks by stream, ``"psi.chunk:query"``).
:func:`check_stage` looks the pair up and raises the protocol's refusal when it is absent, so a
message that arrives in the wrong stage never reaches a handler; :func:`dispatch` then calls the
handler with the message.

The default refusal, :func:`out_of_stage`, is a :class:`~protocols.wire.errors.RemoteProtocolError`
with status 409; a protocol with its own error type (PSI) passes its own ``reject``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, TypeVar

from protocols.wire.errors import ProtocolError, RemoteProtocolError

__all__ = ["Reject", "check_stage", "dispatch", "out_of_stage"]

S = TypeVar("S", bound=Enum)

Reject = Callable[[Any, str], ProtocolError]
"""Builds the error for an event that the table does not accept in a stage: ``reject(stage, event)``."""


def out_of_stage(stage: Enum, event: str) -> RemoteProtocolError:
    """The default refusal: the peer sent ``event`` in a stage that does not accept it (status 409)."""
    return RemoteProtocolError(f"message {event!r} not expected in stage {stage.value!r}", status_hint=409)


def check_stage(table: Mapping[tuple[S, str], str], stage: S, event: str, *, reject: Reject = out_of_stage) -> str:
    """The name of the handler for ``event`` in ``stage``.

    Args:
        table: The party's transitions, ``(stage, event) → handler method name``.
        stage: The party's current stage.
        event: The key of the arriving message.
        reject: Builds the error raised when the pair is not in ``table``.

    Raises:
        ProtocolError: ``reject(stage, event)`` when ``table`` has no entry for the pair.
    """
    name = table.get((stage, event))
    if name is None:
        raise reject(stage, event)
    return name


def dispatch(
    party: object,
    table: Mapping[tuple[S, str], str],
    stage: S,
    event: str,
    message: object,
    *,
    reject: Reject = out_of_stage,
) -> Any:
    """Call ``party``'s handler for ``(stage, event)`` with ``message`` and return what it returns.

    Raises:
        ProtocolError: ``reject(stage, event)``, before any handler runs, when the pair is not in ``table``.
    """
    return getattr(party, check_stage(table, stage, event, reject=reject))(message)
