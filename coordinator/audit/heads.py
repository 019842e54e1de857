"""The audit chain's last signed head, kept beside the database so that a deleted tail is noticed.

After every write transaction that appended audit events, the coordinator signs the new chain head
(``chain.sign_head``) and writes it, fsynced and atomically replaced, to a small file in its state
directory (``audit_heads.json``, mode 0600; setting ``audit_heads_path``). At start-up ``check_tail``
demands that the database's chain still hold the record that head names (same ``seq``, same ``hash``):

- the chain is shorter than the head (events deleted from the tail, or the whole log emptied), or
- the record at the head's ``seq`` has another hash, or it or a later record no longer matches its
  hash or link (events rewritten),

and the coordinator refuses to start, naming the head, the chain's actual end and how to investigate.
A head whose signature does not verify under the coordinator's key is refused the same way.

Group commit: a serving coordinator signs and writes the head at most once per ``interval`` (setting
``audit_head_interval_ms``, default 200 ms), from a timer thread, not once per write: a request no longer
waits for an Ed25519 signature and an fsync (about 6 ms, and serialised), and under load one head covers
every event committed in its window. The window this opens: after a crash (``kill -9``, power loss) the
file may name a head up to ``interval`` older than the last committed event, so a tail deleted within
that window is not noticed at start-up (deleting more, or rewriting any record up to the stored head, still
is). A clean stop (SIGTERM, the end of a CLI command) writes the newest head first (``flush`` at exit), so
nothing is lost then. ``interval`` 0 writes each head in the committing thread before ``save`` returns.

What it does not prove: someone who can write the state directory can delete the database's tail
*and* this file; the coordinator then starts with a loud warning and records ``audit.heads_started``
in the log itself. Whoever holds the signing key can sign any head. A head written by another process
(the CLI, or another worker of ``serve --workers N``, each of which stores the heads of what it appends)
may be replaced by an older one; that only makes the check less strict, never wrong, since every head is
written after its events committed. The file holds a sequence number, a hash, a time,
the coordinator's public key and a signature: nothing any auditor does not already see.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from coordinator.audit.chain import SignedHead, sign_head, verify_head
from coordinator.store import Store
from protocols.crypto.hashchain import ChainRecord, verify_chain
from protocols.crypto.signing import SigningKey
from protocols.wire.canonical import canonical_json
from protocols.wire.errors import ConfigError, CryptoError

__all__ = ["AuditHeads", "flush_pending_heads"]

PAGE = 2000
logger = logging.getLogger(__name__)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): a crash leaves the old file or the new one, never half.

    The directory is not fsynced: a crash that loses the rename leaves the previous head, which the log
    still extends, so the check stays right (only less strict) and each write saves a second fsync.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class AuditHeads:
    """The signed-head file of one coordinator: ``save`` after commits, ``check_tail`` at start-up.

    Args:
        path: the heads file.
        key: the coordinator's audit key.
        interval: seconds between head writes (group commit, see the module docstring); 0 writes every head
            before ``save`` returns.
    """

    def __init__(self, path: Path, key: SigningKey, *, interval: float = 0.0) -> None:
        self.path = path
        self.interval = interval
        self._key = key
        self._lock = threading.Lock()  # guards the fields below (held briefly)
        self._write_lock = threading.Lock()  # one head write at a time
        self._saved = -1
        self._newest = -1
        self._pending: ChainRecord | None = None
        self._timer: threading.Timer | None = None
        self._last_write = float("-inf")
        self._checked = False
        if interval > 0:
            _at_exit.append(self)

    def save(self, record: ChainRecord) -> None:
        """Sign ``record`` (a committed chain head) and store it, now or within ``interval``.

        Does nothing before ``check_tail`` has passed (a process that found the log tampered must not
        overwrite the evidence with a head of the damaged chain), nor for a head older than one this
        process already stored or queued.
        """
        with self._lock:
            if not self._checked or record.seq <= self._newest:
                return
            self._newest, self._pending = record.seq, record
            if self.interval > 0:
                if self._timer is None:
                    delay = max(0.0, self._last_write + self.interval - time.monotonic())
                    self._timer = threading.Timer(delay, self._flush_logged)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Write the newest queued head now, if any.

        Raises:
            OSError: the file could not be written (the head stays queued for the next flush).
        """
        with self._write_lock:
            with self._lock:
                record, self._timer = self._pending, None
            if record is None or record.seq <= self._saved:
                return
            head = sign_head(self._key, record)
            _write_atomically(self.path, canonical_json(head.to_dict()) + b"\n")  # on OSError it stays queued
            with self._lock:
                if self._pending is record:
                    self._pending = None
                self._saved, self._last_write = record.seq, time.monotonic()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except OSError as exc:
            logger.error("audit head seq %d committed but not stored outside the database: %s", self._newest, exc)

    def load(self) -> SignedHead | None:
        """The stored head, or None if there is no file.

        Raises:
            ConfigError: the file is unreadable, malformed, or not signed by the coordinator's key.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the audit heads file {self.path}: {exc}") from None
        try:
            head = SignedHead(**json.loads(raw))
            verify_head(head, self._key.public_hex)
        except (ValueError, TypeError, CryptoError):
            raise ConfigError(
                f"the audit heads file {self.path} is malformed or not signed by this coordinator's audit key "
                f"({self._key.public_hex[:16]}…): it was edited, or the key changed. Investigate before starting: "
                "compare the file with your exported heads and check coordinator_signing.key") from None
        return head

    def check_tail(self, store: Store) -> bool:
        """Refuse a chain that does not extend the stored head; warn when there is no head to check against.

        The record the head names must be in the log with the head's hash, and it and every record after
        it must match their hashes and links. (Records before it are the full verifier's job: the audit
        pages and ``audit verify``.) Only once this passes does ``save`` store new heads.

        Returns:
            True if the log has events but there was no head file (the caller records ``audit.heads_started``).

        Raises:
            ConfigError: naming the stored head, what is wrong with the log, and how to investigate.
        """
        saved = self.load()
        if saved is None:
            return self._start_without_head(store)
        try:
            problem = _tail_problem(store, saved)
        except ValueError as exc:  # a row whose body is no longer JSON
            problem = f"a record of the log is not valid JSON ({exc}): events were rewritten"
        if problem:
            raise ConfigError(
                f"audit log tampered: the last signed head ({self.path}) names seq {saved.seq} (hash "
                f"{saved.hash[:16]}…, signed at {saved.signed_at}), but {problem}. The coordinator will not start. "
                "Investigate: `tandem-coordinator audit export --out audit.jsonl` shows the log as it is now; compare "
                "it with earlier exports, restore the database from a backup, and only once the loss is understood "
                f"and recorded move {self.path} aside to start a new heads file")
        self._checked = True
        return False

    def checked_elsewhere(self) -> None:
        """Store heads from now on: the process that started this one ran ``check_tail`` before it did.

        For a worker of ``serve --workers N``: ``serve`` checked the tail before starting any worker, so each
        head a worker stores names a record committed after that check. Without this, a worker stored no head
        at all, and a tail of the events the workers appended could be deleted unnoticed.
        """
        with self._lock:
            self._checked = True

    def _start_without_head(self, store: Store) -> bool:
        with store.read() as tx:
            head = tx.audit.head()
        if head is not None:
            logger.warning("no signed audit head at %s although the audit log has %d events: its tail cannot be "
                           "checked against an earlier head (first start with this version, or the file was "
                           "deleted); starting a new heads file", self.path, head.seq + 1)
        self._checked = True
        return head is not None


_at_exit: list[AuditHeads] = []
"""Heads files with a write interval: their newest head is written when the process exits normally.

Strong references: a serving coordinator's app (and with it its heads) is already garbage when the
interpreter runs its exit handlers, and a weak set then forgot the head queued in the last interval."""


@atexit.register
def flush_pending_heads() -> None:
    """Write every queued head now: at the app's shutdown and at a normal interpreter exit.

    The app's shutdown is the one that counts for ``serve``: uvicorn re-raises the SIGTERM it caught
    once it has shut down, and a process killed by that signal runs no exit handlers.
    """
    for heads in list(_at_exit):
        heads._flush_logged()


def _records_from(store: Store, seq: int) -> Iterator[ChainRecord]:
    after = seq - 1
    while page := _page(store, after):
        yield from page
        after = page[-1].seq


def _page(store: Store, after: int) -> list[ChainRecord]:
    with store.read() as tx:
        return tx.audit.events(after, PAGE)


def _tail_problem(store: Store, saved: SignedHead) -> str:
    """What is wrong with the log from the signed head's record on ("" if nothing)."""
    with store.read() as tx:
        head = tx.audit.head()
    if head is None or head.seq < saved.seq:
        ends = "the audit log is empty" if head is None else f"the audit log ends at seq {head.seq}"
        return f"{ends}: events were deleted from its tail"
    records = _records_from(store, saved.seq)
    first = next(records, None)
    if first is None or first.seq != saved.seq or first.hash != saved.hash:
        return f"the log holds another record at seq {saved.seq}: events were rewritten or replaced"
    verdict = verify_chain(chain([first], records), start_prev=first.prev_hash, start_seq=saved.seq)
    if not verdict.ok:
        return f"the log's record seq {verdict.bad_seq} fails its check ({verdict.reason}): events were rewritten"
    return ""
