"""What every coordinator service function works with: the store, the policy, the audit key, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coordinator.answer_cache import AnswerCache
from coordinator.policy import Policy
from coordinator.principal_cache import PrincipalCache
from coordinator.store import Store
from protocols.crypto.signing import SigningKey

__all__ = ["Context", "utc_now"]


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    """Dependencies of the service layer, built once by ``create_app`` (or the CLI).

    Attributes:
        store: where state and the audit log live.
        policy: the loaded policy every job is evaluated against.
        audit_key: the coordinator's Ed25519 key; signs audit heads. Never leaves the process.
        clock: source of timestamps (inject a fixed one in tests).
        principals: recently authenticated tokens (``coordinator.principal_cache``); revocation clears it.
        answers: answers of hot read endpoints under the store's write versions (``coordinator.answer_cache``).
    """

    store: Store
    policy: Policy
    audit_key: SigningKey
    clock: Callable[[], datetime] = field(default=utc_now)
    principals: PrincipalCache = field(default_factory=PrincipalCache, compare=False, repr=False)
    answers: AnswerCache = field(default_factory=AnswerCache, compare=False, repr=False)
