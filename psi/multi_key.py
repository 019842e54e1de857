"""Multi-identifier matching for recovery: try key types in priority order, never guess on conflicts.

A customer record carries several identifiers (ID number, IMEI, IDFA, MAC). The matcher asks for one
labeled-PSI lookup per key type, in priority order, and only for customers not yet matched by an
earlier key, so a customer is matched at most once and later (weaker) keys are not even queried for
it. A match whose record holds several distinct labels is a **conflict**: it is reported, counted,
and no label is chosen.

The matcher is a plain state machine with no I/O: :meth:`MultiKeyMatcher.next_query` says which
values to look up next, :meth:`MultiKeyMatcher.add_results` takes what a labeled-PSI session found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from protocols.wire.control import KeyType
from psi._errors import InvalidIdentifier, PsiLocalError
from psi.identifiers import normalise

__all__ = ["DEFAULT_PRIORITY", "MultiKeyMatcher", "MultiKeyResult"]

DEFAULT_PRIORITY: tuple[KeyType, ...] = (KeyType.ID_NUMBER, KeyType.IMEI, KeyType.IDFA, KeyType.MAC)


@dataclass(frozen=True)
class MultiKeyResult:
    """Outcome of multi-key matching.

    Attributes:
        matches: Customer index → ``(key type that matched, label)`` for unambiguous matches.
        conflicts: Customer index → ``(key type, all labels found)`` where the labels disagree.
        hits_by_key: Unambiguous matches per key type.
        conflicts_by_key: Conflicts per key type.
        queried_by_key: Distinct values looked up per key type.
        invalid: Refused identifiers by ``(key_type, reason)``.
    """

    matches: dict[int, tuple[KeyType, str]]
    conflicts: dict[int, tuple[KeyType, tuple[str, ...]]]
    hits_by_key: dict[KeyType, int]
    conflicts_by_key: dict[KeyType, int]
    queried_by_key: dict[KeyType, int]
    invalid: Counter[tuple[str, str]] = field(default_factory=Counter)


class MultiKeyMatcher:
    """Drives the per-key lookups of one customer list.

    Args:
        customers: One mapping per customer from key type to raw identifier (missing or ``None`` allowed).
        priority: Key types in the order they are tried; earlier keys win.
    """

    def __init__(
        self, customers: Sequence[Mapping[KeyType, str | None]], priority: Sequence[KeyType] = DEFAULT_PRIORITY
    ) -> None:
        self.priority = tuple(KeyType(k) for k in priority)
        if len(set(self.priority)) != len(self.priority):
            raise ValueError("priority lists a key type twice")
        self._invalid: Counter[tuple[str, str]] = Counter()
        self._canonical = [self._normalise_customer(c) for c in customers]
        self._position = 0
        self._matches: dict[int, tuple[KeyType, str]] = {}
        self._conflicts: dict[int, tuple[KeyType, tuple[str, ...]]] = {}
        self._hits: dict[KeyType, int] = {}
        self._conflict_counts: dict[KeyType, int] = {}
        self._queried: dict[KeyType, int] = {}
        self._pending: tuple[KeyType, dict[str, list[int]]] | None = None

    def _normalise_customer(self, customer: Mapping[KeyType, str | None]) -> dict[KeyType, str]:
        out: dict[KeyType, str] = {}
        for key_type in self.priority:
            raw = customer.get(key_type)
            if raw is None or not str(raw).strip():
                continue
            try:
                out[key_type] = normalise(key_type, raw)
            except InvalidIdentifier as exc:
                self._invalid[(str(key_type), exc.reason)] += 1
        return out

    def _resolved(self, index: int) -> bool:
        return index in self._matches or index in self._conflicts

    def next_query(self) -> tuple[KeyType, list[str]] | None:
        """The next key type and the distinct canonical values to look up, or ``None`` when finished.

        Key types for which no unresolved customer has a value are skipped (and count 0 queries).
        """
        if self._pending is not None:
            raise PsiLocalError("add_results() for the previous query first")
        while self._position < len(self.priority):
            key_type = self.priority[self._position]
            self._position += 1
            owners: dict[str, list[int]] = {}
            for index, keys in enumerate(self._canonical):
                if key_type in keys and not self._resolved(index):
                    owners.setdefault(keys[key_type], []).append(index)
            self._queried[key_type] = len(owners)
            if owners:
                self._pending = (key_type, owners)
                return key_type, list(owners)
        return None

    def add_results(self, key_type: KeyType, labels: Mapping[str, Sequence[str]]) -> None:
        """Record what the lookup for ``key_type`` found: canonical value → its labels.

        Raises:
            PsiLocalError: If ``key_type`` is not the pending query, or ``labels`` has values never asked for.
        """
        if self._pending is None or self._pending[0] is not KeyType(key_type):
            raise PsiLocalError("results for a key type that was not queried")
        key_type, owners = self._pending
        if not set(labels) <= set(owners):
            raise PsiLocalError("results contain values that were not queried")
        self._pending = None
        hits = conflicts = 0
        for value, found in labels.items():
            distinct = tuple(sorted(set(found)))
            for index in owners[value]:
                if len(distinct) == 1:
                    self._matches[index] = (key_type, distinct[0])
                    hits += 1
                elif distinct:
                    self._conflicts[index] = (key_type, distinct)
                    conflicts += 1
        self._hits[key_type] = hits
        self._conflict_counts[key_type] = conflicts

    def result(self) -> MultiKeyResult:
        """The outcome once every key type has been queried."""
        if self._pending is not None or self._position < len(self.priority):
            raise PsiLocalError("matching is not finished")
        return MultiKeyResult(
            dict(self._matches),
            dict(self._conflicts),
            {k: self._hits.get(k, 0) for k in self.priority},
            {k: self._conflict_counts.get(k, 0) for k in self.priority},
            dict(self._queried),
            Counter(self._invalid),
        )
