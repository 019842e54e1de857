"""Who may read which audit events: every event for an auditor, its own party's for anyone else.

An event is about the parties named by its stored fields, never by matching free text
(``concerned_parties``): the actor's party (``user:X``), the object's (``job:N``: the job's parties,
the owners of its input datasets, as stored when it was submitted; ``dataset:N``: its owner;
``party:X``: X; ``user:X``: X's party) and the user an expired token named (``details.user``).
``policy.loaded`` is public. Events about no party (failed logins with unknown tokens, exports, web
sessions of auditors) are for auditors only. So a party's admin learns its own users', datasets' and
jobs' events, and of the rest of the log nothing but that it exists (the signed head's sequence number).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator.audit.log import EXPORT_PAGE, event_public, events
from coordinator.context import Context
from coordinator.errors import NotFound
from protocols.crypto.hashchain import ChainRecord
from protocols.wire.control import AuditEventPublic

__all__ = ["EVERYONE", "PUBLIC_OBJECTS", "Owners", "Scope", "Visibility", "concerned_parties", "read_records",
           "scoped_events"]

PUBLIC_OBJECTS = frozenset({"policy"})
_OWNED = frozenset({"job", "dataset", "party", "user"})


def read_records(ctx: Context, after: int, limit: int) -> list[ChainRecord]:
    """Up to ``limit`` stored records after seq ``after``, in one read transaction."""
    with ctx.store.read() as tx:
        return tx.audit.events(after, limit)


@dataclass(frozen=True)
class Scope:
    """Whose events a viewer may see.

    Attributes:
        everything: every event (auditors).
        party: otherwise, the viewer's party; events about other parties are left out (None: public only).
    """

    everything: bool = False
    party: str | None = None


EVERYONE = Scope(everything=True)


class Owners:
    """Parties of jobs, datasets and users, read from the store once per name during one pass."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cache: dict[str, frozenset[str]] = {}

    def of(self, ref: str) -> frozenset[str]:
        """The parties ``ref`` (``job:N``, ``dataset:N``, ``party:X``, ``user:X``) belongs to."""
        if ref not in self._cache:
            self._cache[ref] = self._lookup(*ref.partition(":")[::2])
        return self._cache[ref]

    def _lookup(self, kind: str, ident: str) -> frozenset[str]:
        if kind == "party":
            return frozenset({ident})
        if kind != "user" and not ident.isdigit():
            return frozenset()
        try:
            with self.ctx.store.read() as tx:
                if kind == "job":
                    return frozenset(tx.jobs.job_parties(int(ident)))
                if kind == "dataset":
                    return frozenset({tx.catalog.get_dataset(int(ident)).party})
                party = tx.catalog.get_user(ident).party
                return frozenset({party} if party else ())
        except NotFound:
            return frozenset()


def _private_to(body: dict[str, Any]) -> str | None:
    """The one party an event about a party's own outputs belongs to, else ``None``.

    Such events are a party's result report (its outputs digest and keys, from which the other party
    could guess a count it must not learn) and an export of its rows (a row count).
    """
    action, details = str(body.get("action", "")), body.get("details")
    if not isinstance(details, dict) or not isinstance(details.get("party"), str):
        return None
    if action == "job.result" or action.startswith("output.") or action.endswith(".exported"):
        return str(details["party"])
    return None


def concerned_parties(body: dict[str, Any], owners: Owners) -> frozenset[str]:
    """The parties an event is about, from its stored actor, object and ``details.user``.

    An event about one party's own outputs (``_private_to``) concerns that party alone, though its
    object is a job both parties share.
    """
    private = _private_to(body)
    if private is not None:
        return frozenset({private})
    refs = [str(body.get("actor", "")), str(body.get("object", ""))]
    details = body.get("details")
    if isinstance(details, dict) and isinstance(details.get("user"), str):
        refs.append(f"user:{details['user']}")
    return frozenset().union(*(owners.of(r) for r in refs if r.partition(":")[0] in _OWNED))


class Visibility:
    """Whether a record may be shown under a scope."""

    def __init__(self, ctx: Context, scope: Scope) -> None:
        self.scope = scope
        self.owners = Owners(ctx)

    def shows(self, rec: ChainRecord) -> bool:
        """Whether the viewer may see ``rec``."""
        if self.scope.everything or str(rec.body.get("object", "")) in PUBLIC_OBJECTS:
            return True
        return self.scope.party is not None and self.scope.party in concerned_parties(rec.body, self.owners)


def scoped_events(ctx: Context, scope: Scope, after_seq: int, limit: int) -> list[AuditEventPublic]:
    """Up to ``limit`` events after ``after_seq`` that ``scope`` may see, oldest first.

    Reads on past events the scope may not see until ``limit`` are found or the log ends.
    """
    if scope.everything:
        return events(ctx, after_seq, limit)
    visibility = Visibility(ctx, scope)
    found: list[AuditEventPublic] = []
    while len(found) < limit:
        page = read_records(ctx, after_seq, EXPORT_PAGE)
        found += [event_public(r) for r in page if visibility.shows(r)][: limit - len(found)]
        if len(page) < EXPORT_PAGE:
            return found
        after_seq = page[-1].seq
    return found
