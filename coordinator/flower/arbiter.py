"""The pluggable arbiter a Tandem ServerApp drives, and the round loop around it (no Flower I/O).

A training job's arbiter is any object with three methods:

- ``start() -> dict[party, bytes]``: the first round's payload per party;
- ``handle(replies: dict[party, bytes]) -> dict[party, bytes] | None``: given what every party
  addressed in the last round answered, the next round's payloads, or ``None`` when done;
- ``result() -> bytes``: the job's outcome once done (reported, never sent to the parties).

A round may address a subset of the parties (e.g. only the active party of SecureBoost); exactly the
parties addressed must answer. The ServerApp obtains the arbiter from its run config: ``arbiter`` is
an import path ``"package.module:factory"`` to a callable taking an :class:`ArbiterContext`
(job id, run id, parties, the JSON ``arbiter-config``, the coordinator's URL) and returning the
arbiter. The arbiter may fetch its job's state from the coordinator's local service itself.

What each party learns: only the payloads addressed to it. The arbiter learns every reply payload.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Payloads = dict[str, bytes]
Exchange = Callable[[int, Payloads], Payloads]


@runtime_checkable
class Arbiter(Protocol):
    """The job-specific logic the ServerApp runs round by round."""

    def start(self) -> Payloads:
        """Return the first round's payload per party."""
        ...

    def handle(self, replies: Payloads) -> Payloads | None:
        """Consume one round's replies; return the next round's payloads, or None when done."""
        ...

    def result(self) -> bytes:
        """Return the job's outcome once done."""
        ...


@dataclass(frozen=True)
class ArbiterContext:
    """What an arbiter factory is given."""

    job_id: str
    run_id: int
    parties: tuple[str, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    coordinator_url: str = ""


ArbiterFactory = Callable[[ArbiterContext], Arbiter]


class ArbiterError(RuntimeError):
    """The arbiter broke the round protocol (unknown party, empty round, too many rounds)."""


@dataclass(frozen=True)
class RoundsOutcome:
    """What :func:`run_rounds` returns."""

    rounds: int
    result: bytes


def load_arbiter_factory(ref: str) -> ArbiterFactory:
    """Import ``"package.module:attribute"`` and return the callable it names.

    Raises:
        ArbiterError: The reference is malformed or does not name a callable.
    """
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ArbiterError(f"arbiter reference must be 'module:attribute', got {ref!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ArbiterError(f"{module_name} has no attribute {attribute!r}")
    if not callable(target):
        raise ArbiterError(f"{ref} is not callable")
    return target  # type: ignore[no-any-return]


def build_arbiter(ref: str, context: ArbiterContext) -> Arbiter:
    """Load the factory named by ``ref`` and call it with ``context``.

    Raises:
        ArbiterError: The factory cannot be loaded or did not return an arbiter.
    """
    arbiter = load_arbiter_factory(ref)(context)
    if not isinstance(arbiter, Arbiter):
        raise ArbiterError(f"{ref} returned {type(arbiter).__name__}, which is not an Arbiter")
    return arbiter


def _check_outgoing(outgoing: Payloads, parties: tuple[str, ...], round_: int) -> None:
    if not outgoing:
        raise ArbiterError(f"round {round_}: the arbiter addressed no party (return None to finish)")
    unknown = sorted(set(outgoing) - set(parties))
    if unknown:
        raise ArbiterError(f"round {round_}: unknown parties {unknown}; known {list(parties)}")
    for party, payload in outgoing.items():
        if not isinstance(payload, bytes):
            raise ArbiterError(f"round {round_}: payload for {party} is {type(payload).__name__}, not bytes")


def run_rounds(arbiter: Arbiter, exchange: Exchange, parties: tuple[str, ...], max_rounds: int) -> RoundsOutcome:
    """Drive ``arbiter`` through rounds 1, 2, ... using ``exchange`` to reach the parties.

    Args:
        arbiter: The job's arbiter.
        exchange: ``exchange(round, payloads)`` delivers each payload to its party and returns
            every addressed party's reply.
        parties: The parties that exist in this federation.
        max_rounds: Refuse to run more rounds than this.

    Returns:
        The number of rounds run and the arbiter's result.

    Raises:
        ArbiterError: The arbiter addressed unknown parties, no party, or ran too many rounds; or
            ``exchange`` returned replies from a different set of parties than addressed.
    """
    outgoing: Payloads | None = arbiter.start()
    round_ = 0
    while outgoing is not None:
        round_ += 1
        if round_ > max_rounds:
            raise ArbiterError(f"the arbiter wants more than max-rounds={max_rounds} rounds")
        _check_outgoing(outgoing, parties, round_)
        replies = exchange(round_, dict(outgoing))
        if set(replies) != set(outgoing):
            raise ArbiterError(f"round {round_}: replies from {sorted(replies)}, expected {sorted(outgoing)}")
        outgoing = arbiter.handle(replies)
    return RoundsOutcome(rounds=round_, result=arbiter.result())
