"""Labeled PSI for lost-contact recovery: the receiver learns the labels of its matches only.

Parties: receiver R (the bank: the client, holds identifiers X) and sender S (the telco: the server,
holds records ``key → label``, e.g. ID number → current phone number, and an OPRF key k).

The OPRF is ``F_k(x) = k·H(x)`` on ristretto255. Per distinct key y, S publishes one record::

    okm = BLAKE2b-512(key = "tandem/psi/v2/labeled", data = F_k(y))       (RFC 7693, 64 bytes out)
    tag = okm[0:16]    enc_key = okm[16:48]    nonce = okm[48:60]
    ct  = AES-256-GCM(enc_key, nonce, aad = tag, plaintext = labels)

``F_k(y)`` is the 32-byte canonical encoding. BLAKE2b keyed with a public constant is a
domain-separated hash, modelled as a random oracle like ``H``; one call gives all three values (as
libsodium's ``crypto_kx`` splits one BLAKE2b-512 of a DH output into two session keys), and the
key string separates this use from any other hash of the same point. Both parties derive with
:func:`_derive`, so this is a wire-visible format: ``v2`` replaced v1's HKDF-SHA256 (four HMACs,
≈5 µs a record against ≈0.5 µs), and tables built with v1 are not reused (see
``node.jobs.psi.tables``). The plaintext is the labels, each as one length byte and its UTF-8
bytes, zero-padded to the table's common size (a multiple of 16, at least 32).

The table (:class:`SenderTable`) is built once per key epoch by :func:`prepare_sender_table`, is a
deterministic function of (records, k) and is sorted by record bytes (so by tag: tags are distinct
except with negligible probability), so it can be cached and reused.

Shared key values: a key whose records carry more than ``MAX_LABELS_PER_KEY`` distinct labels (a
cloned IMEI, a placeholder nobody listed, a shop's MAC) names no one, and its record would hand the
receiver every label on it (and outgrow the wire's record size). :func:`refuse_shared_keys` takes
such keys out before the table is built and counts them (:class:`SharedKeys`: how many key values,
how many records; never which); :func:`prepare_sender_table` refuses to build a table with one.

Rounds::

    1. R→S PsiHello(protocol=labeled, set_size=|X|)       S→R PsiWelcome(set_size=table size, record_size)
    2. R→S PsiChunk(query, i)  r·H(x)                      S→R PsiChunk(evaluated, i)  k·r·H(x), same order
    3. R→S PsiPull(label_table, j)                         S→R PsiChunk(label_table, j)  tag ‖ ct records
    R unblinds with r⁻¹ to get k·H(x), derives each tag and key, and decrypts the records whose tag it holds.

What each party learns (semi-honest; one-more-DH assumption for the OPRF): R learns the labels of
X∩Y and the table size; S learns |X| (how many queries were made) and nothing about which. A
record holding several distinct labels reveals them all (conflicts are reported, not resolved).
Not protected: a malicious S could evaluate with a key other than the table's (R would just see no
matches); plaintexts are padded to a common size, so label lengths do not leak beyond that size.

AES-GCM runs through ``cryptography`` (OpenSSL): one key per record makes pycryptodome's per-key
GHASH set-up the bottleneck (≈190 µs against ≈3 µs a record); the bytes are identical.

Cost of preparing a table, per record on one core: hash to the group ≈11 µs and one scalar
multiplication ≈34 µs (libsodium; the floor), derivation, label encoding and sealing ≈3 µs, all in
the mapper's workers; grouping and the final sort run in the calling process (under 1 µs).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Unpack

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocols.wire.control import KeyType
from protocols.wire.psi import PsiChunk, PsiProtocol, PsiPull, PsiWelcome, Stream
from psi import _ristretto
from psi._batch import BatchMapper, map_evaluate, serial_map
from psi._errors import PsiCryptoError
from psi._session import (
    DEFAULT_CHUNK_SIZE,
    ChunkReader,
    Message,
    ReceiverParty,
    SenderParty,
    SessionOptions,
    WelcomeTerms,
    chunk_bounds,
)
from psi.group import Scalar, hash_to_group_batch
from psi.group import split_points as _split

__all__ = [
    "LabeledPsiReceiver",
    "LabeledPsiSender",
    "LabeledReceiverStage",
    "LabeledResult",
    "LabeledSenderStage",
    "MAX_LABELS_PER_KEY",
    "SenderTable",
    "SharedKeys",
    "prepare_sender_table",
    "refuse_shared_keys",
    "seal_batch",
]

TAG_BYTES = 16
GCM_TAG_BYTES = 16
KDF_KEY = b"tandem/psi/v2/labeled"
"""BLAKE2b key of the record derivation; names the table format (a new derivation needs a new one)."""
_MIN_PLAINTEXT = 32
MAX_LABELS_PER_KEY = 4
"""Most distinct labels one key value may carry (a family's shared phone); more: ``shared_key_value``."""
_KEY_END = TAG_BYTES + 32
_NONCE_END = _KEY_END + 12


def _derive(oprf_value: bytes) -> tuple[bytes, bytes, bytes]:
    """``(tag, encryption key, nonce)`` of an OPRF output: one keyed BLAKE2b-512 (module docstring)."""
    okm = hashlib.blake2b(oprf_value, digest_size=64, key=KDF_KEY).digest()
    return okm[:TAG_BYTES], okm[TAG_BYTES:_KEY_END], okm[_KEY_END:_NONCE_END]


def _encode_labels(labels: Sequence[str], size: int) -> bytes:
    parts = [len(b).to_bytes(1, "big") + b for b in (label.encode() for label in labels)]
    return b"".join(parts).ljust(size, b"\x00")


def _encode_label(label: str, size: int) -> bytes:
    """:func:`_encode_labels` of one label (the common case, without the generator)."""
    data = label.encode()
    return (len(data).to_bytes(1, "big") + data).ljust(size, b"\x00")


def _decode_labels(plaintext: bytes) -> tuple[str, ...]:
    labels, pos = [], 0
    while pos < len(plaintext) and plaintext[pos]:
        length = plaintext[pos]
        labels.append(plaintext[pos + 1 : pos + 1 + length].decode())
        pos += 1 + length
    return tuple(labels)


def _plaintext_size(longest: int) -> int:
    """Common plaintext size for groups whose longest encoding (length bytes, labels, end byte) is ``longest``."""
    return max(_MIN_PLAINTEXT, -(-longest // 16) * 16)


def _encoded_size(labels: Sequence[str]) -> int:
    return sum(1 + len(label.encode()) for label in labels) + 1


def seal_batch(key_type: str, keys: Sequence[str], labels: Sequence[str | Sequence[str]], scalar: Scalar,
               size: int) -> bytes:
    """Table records for a batch of distinct keys: ``tag ‖ AES-GCM(labels) ‖ gcm_tag`` each, packed.

    Args:
        key_type: Identifier kind of the keys.
        keys: Distinct canonical keys.
        labels: For each key its label, or its labels (a sequence) when it has several.
        scalar: The OPRF key k.
        size: Plaintext size (from the whole table's longest group).

    Returns:
        The records in the order of ``keys`` (the caller sorts the table).
    """
    oprf = _ristretto.scalarmult_many(scalar.to_bytes(), hash_to_group_batch(key_type, keys))
    blake2b, aesgcm, encode_one, encode = hashlib.blake2b, AESGCM, _encode_label, _encode_labels
    out: list[bytes] = []
    append = out.append
    for value, group in zip(_split(oprf), labels, strict=True):
        okm = blake2b(value, digest_size=64, key=KDF_KEY).digest()
        tag = okm[:TAG_BYTES]
        plaintext = encode_one(group, size) if isinstance(group, str) else encode(group, size)
        append(tag)
        append(aesgcm(okm[TAG_BYTES:_KEY_END]).encrypt(okm[_KEY_END:_NONCE_END], plaintext, tag))
    return b"".join(out)


def key_id(scalar: Scalar) -> str:
    """Public fingerprint of an OPRF key (hex of SHA-256 of k·B, 16 chars); binds a table to its key."""
    return hashlib.sha256(_ristretto.scalarmult_base(scalar.to_bytes())).hexdigest()[:16]


@dataclass(frozen=True)
class SenderTable:
    """A labeled-PSI table for one key type and key epoch. Holds no secret; safe to cache on disk.

    Attributes:
        key_type: Identifier kind of the keys.
        key_id: Fingerprint of the OPRF key that built it (see :func:`key_id`).
        record_size: Bytes per record (tag, ciphertext, GCM tag).
        records: Packed records sorted by tag.
    """

    key_type: KeyType
    key_id: str
    record_size: int
    records: bytes

    @property
    def count(self) -> int:
        """Number of records."""
        return len(self.records) // self.record_size


@dataclass(frozen=True)
class SharedKeys:
    """Key values refused because more than ``MAX_LABELS_PER_KEY`` distinct labels share them.

    Counts only: which values they were stays with the sender.

    Attributes:
        values: Key values refused.
        records: Records (e.g. subscribers) that held them.
    """

    values: int = 0
    records: int = 0


def refuse_shared_keys(records: Sequence[tuple[str, str]], *, max_labels: int = MAX_LABELS_PER_KEY
                       ) -> tuple[Sequence[tuple[str, str]], SharedKeys]:
    """``records`` without the keys that carry more than ``max_labels`` distinct labels, and their count.

    The common case, every key once, is one ``set`` of the keys at C speed and returns ``records`` itself.

    Args:
        records: ``(canonical key, label)`` pairs.
        max_labels: Most distinct labels a key may carry and stay in the table.

    Returns:
        The kept records, in their order, and what was refused.
    """
    keys = list(map(itemgetter(0), records))
    if len(set(keys)) == len(keys):
        return records, SharedKeys()
    labels: dict[str, set[str]] = {key: set() for key, count in Counter(keys).items() if count > max_labels}
    if not labels:
        return records, SharedKeys()
    for key, label in records:
        if key in labels:
            labels[key].add(label)
    shared = {key for key, found in labels.items() if len(found) > max_labels}
    if not shared:
        return records, SharedKeys()
    kept = [record for record in records if record[0] not in shared]
    return kept, SharedKeys(len(shared), len(records) - len(kept))


def prepare_sender_table(
    records: Iterable[tuple[str, str]],
    *,
    key_type: KeyType,
    key: Scalar,
    mapper: BatchMapper = serial_map,
    batch: int = 8192,
) -> SenderTable:
    """Build the sender's table once per key epoch.

    Args:
        records: ``(canonical key, label)`` pairs; repeated keys gather their distinct labels.
        key_type: Identifier kind of the keys.
        key: The OPRF key k of this epoch. **Rotate it per epoch**: anyone who ever learns k can
            test any identifier against every table built with it.
        mapper: Parallelises the OPRF evaluations and sealing.
        batch: Keys per mapped batch.

    Returns:
        The :class:`SenderTable` (deterministic for given records and key).

    Raises:
        ValueError: If a key carries more than ``MAX_LABELS_PER_KEY`` distinct labels (take such
            keys out first with :func:`refuse_shared_keys`, which counts them).
    """
    keys, labels, longest = _group(records)
    size = _plaintext_size(longest)
    kind = str(key_type)
    args = [(kind, keys[i : i + batch], labels[i : i + batch], key, size) for i in range(0, len(keys), batch)]
    del labels
    record_size = TAG_BYTES + size + GCM_TAG_BYTES
    records_out = _sorted_records(mapper(seal_batch, args), record_size, len(keys))
    return SenderTable(KeyType(key_type), key_id(key), record_size, records_out)


def _group(records: Iterable[tuple[str, str]]) -> tuple[list[str], list[str | tuple[str, ...]], int]:
    """Distinct keys (first-seen order), the label of each or its sorted distinct labels, and the longest encoding.

    The common case, every key once, runs at C speed (a ``set`` of the keys: ≈0.1 µs a record at
    10⁷, a ``dict`` of the pairs ≈0.3 µs); repeated keys take a Python loop.
    """
    pairs = records if isinstance(records, list) else list(records)
    keys = list(map(itemgetter(0), pairs))
    if len(set(keys)) == len(keys):
        labels: list[str | tuple[str, ...]] = list(map(itemgetter(1), pairs))
        return keys, labels, max(map(len, map(str.encode, labels)), default=-2) + 2  # type: ignore[arg-type]
    seen: dict[str, str] = {}
    more: dict[str, set[str]] = {}
    for key, label in pairs:
        kept = seen.setdefault(key, label)
        if kept != label:
            more.setdefault(key, {kept}).add(label)
    longest = max(map(len, map(str.encode, seen.values())), default=-2) + 2
    labels = list(seen.values())
    if any(len(found) > MAX_LABELS_PER_KEY for found in more.values()):
        raise ValueError(f"a key value carries more than MAX_LABELS_PER_KEY={MAX_LABELS_PER_KEY} distinct labels;"
                         " take it out with psi.labeled.refuse_shared_keys(records) before building the table")
    for index, key in enumerate(seen):
        if key in more:
            labels[index] = tuple(sorted(more[key]))
            longest = max(longest, _encoded_size(labels[index]))
    return list(seen), labels, longest


def _sorted_records(parts: Iterable[bytes], record_size: int, count: int) -> bytes:
    """The packed records of ``parts`` sorted by their bytes, exactly as ``sorted()`` of the slices.

    NumPy sorts fixed-size void elements by unsigned byte comparison (memcmp order), in place.
    """
    table = np.empty(count, dtype=f"V{record_size}")
    flat = table.view(np.uint8)
    pos = 0
    for part in parts:
        flat[pos : pos + len(part)] = np.frombuffer(part, dtype=np.uint8)
        pos += len(part)
    if pos != count * record_size:
        raise ValueError("sealed batches do not add up to the table size")
    table.sort()
    return table.tobytes()


def _tag_heads(tags: Iterable[bytes]) -> npt.NDArray[np.uint64]:
    """The distinct first 8 bytes of ``tags`` as sorted integers (what :func:`_candidate_offsets` looks up)."""
    return np.unique(np.frombuffer(b"".join(tag[:8] for tag in tags), dtype="<u8"))


def _candidate_offsets(body: bytes, size: int, heads: npt.NDArray[np.uint64]) -> list[int]:
    """Offsets of the records in ``body`` whose tag starts with one of ``heads`` (every hit, and rarely more).

    Vectorised prefilter for the receiver's table scan (≈0.02 µs a record against ≈0.08 µs for a
    dict lookup per record); the caller still checks the whole tag.
    """
    count = len(body) // size
    if not count or not len(heads):
        return []
    first = np.ndarray((count,), dtype="<u8", buffer=body, strides=(size,))
    at = np.minimum(np.searchsorted(heads, first), len(heads) - 1)
    return (np.flatnonzero(heads[at] == first) * size).tolist()


@dataclass(frozen=True)
class LabeledResult:
    """Outcome at the receiver.

    Attributes:
        labels: For each matched canonical identifier, its labels (more than one means a conflict).
        query_count: Distinct identifiers queried.
        table_size: Records in the sender's table.
    """

    labels: dict[str, tuple[str, ...]]
    query_count: int
    table_size: int


class LabeledReceiverStage(Enum):
    """Receiver stages, named by what the receiver waits for."""

    IDLE = "idle"
    AWAIT_WELCOME = "await_welcome"
    AWAIT_EVALUATED = "await_evaluated"
    AWAIT_TABLE = "await_table"
    DONE = "done"


class LabeledSenderStage(Enum):
    """Sender stages, named by what the sender waits for."""

    IDLE = "idle"
    AWAIT_QUERY = "await_query"
    AWAIT_TABLE_PULL = "await_table_pull"
    DONE = "done"


_R = LabeledReceiverStage
_S = LabeledSenderStage


class LabeledPsiReceiver(ReceiverParty[LabeledResult]):
    """The receiver (client) of labeled PSI.

    Args:
        values: Canonical identifiers to look up; duplicates collapse.
        key_type: Identifier kind (must match the sender's table).
        job_id: Job the session belongs to.
        chunk_size: Elements per query chunk.
        blind: The blinding scalar r (fresh by default; inject only for known-answer tests).
        rng: Randomness for the query shuffle.
        mapper: Parallelises the group work.
    """

    Stage = LabeledReceiverStage
    PROTOCOL = PsiProtocol.LABELED
    TRANSITIONS = {
        (_R.AWAIT_WELCOME, "psi.welcome"): "_on_welcome",
        (_R.AWAIT_EVALUATED, "psi.chunk:evaluated"): "_on_evaluated",
        (_R.AWAIT_TABLE, "psi.chunk:label_table"): "_on_table",
    }

    def __init__(
        self, values: Iterable[str], *, blind: Scalar | None = None, **options: Unpack[SessionOptions]
    ) -> None:
        super().__init__(values, scalar=blind, **options)
        self._wanted: dict[bytes, tuple[str, bytes, bytes]] = {}
        self._heads: npt.NDArray[np.uint64] = _tag_heads(())
        self._labels: dict[str, tuple[str, ...]] = {}
        self._readers: dict[Stream, ChunkReader] = {}

    def _welcome_fits(self, record_size: int) -> bool:
        """A record holds a tag, at least one block of sealed labels, and a GCM tag."""
        return record_size > TAG_BYTES + GCM_TAG_BYTES

    def _open_streams(self, welcome: PsiWelcome) -> None:
        """Expect our query evaluated, then the sender's table of ``record_size``-byte records."""
        self._readers = {
            Stream.EVALUATED: ChunkReader(Stream.EVALUATED, len(self._values), self.chunk_size),
            Stream.LABEL_TABLE: ChunkReader(
                Stream.LABEL_TABLE, welcome.set_size, welcome.chunk_size, welcome.record_size
            ),
        }

    def _on_evaluated(self, message: PsiChunk) -> Message:
        reader = self._readers[Stream.EVALUATED]
        body = reader.accept(message, self._stage.name)
        unblinded = map_evaluate(self._map, body, self._scalar.invert())
        start, _ = chunk_bounds(message.chunk, len(self._values), self.chunk_size)
        for offset, value in enumerate(_split(unblinded)):
            tag, key, nonce = _derive(value)
            self._wanted[tag] = (self._values[start + offset], key, nonce)
        if not reader.done:
            return self._next_query()
        self._heads = _tag_heads(self._wanted)
        self._stage = _R.AWAIT_TABLE
        return self._pull(Stream.LABEL_TABLE, 0)

    def _on_table(self, message: PsiChunk) -> Message | None:
        reader = self._readers[Stream.LABEL_TABLE]
        body = reader.accept(message, self._stage.name)
        size = reader.element_size
        for pos in _candidate_offsets(body, size, self._heads):
            hit = self._wanted.get(body[pos : pos + TAG_BYTES])
            if hit is not None:
                self._labels[hit[0]] = self._open(body[pos : pos + size], hit[1], hit[2])
        if not reader.done:
            return self._pull(Stream.LABEL_TABLE, reader.next_index)
        self._result = LabeledResult(dict(self._labels), len(self._values), reader.total_count)
        self._wanted = {}
        self._stage = _R.DONE
        return None

    @staticmethod
    def _open(record: bytes, key: bytes, nonce: bytes) -> tuple[str, ...]:
        tag, sealed = record[:TAG_BYTES], record[TAG_BYTES:]
        try:
            return _decode_labels(AESGCM(key).decrypt(nonce, sealed, tag))
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise PsiCryptoError() from None


class LabeledPsiSender(SenderParty[int]):
    """The sender (server) of labeled PSI.

    Args:
        table: The table prepared for this key epoch.
        key: The OPRF key the table was built with (checked against ``table.key_id``).
        job_id: Job the session belongs to.
        chunk_size: Records per table chunk.
        mapper: Parallelises the OPRF evaluations.

    Its :meth:`result` is what the sender learns: how many identifiers were queried.
    """

    Stage = LabeledSenderStage
    PROTOCOL = PsiProtocol.LABELED
    TRANSITIONS = {
        (_S.IDLE, "psi.hello"): "_on_hello",
        (_S.AWAIT_QUERY, "psi.chunk:query"): "_on_query",
        (_S.AWAIT_TABLE_PULL, "psi.pull:label_table"): "_on_pull",
    }

    def __init__(
        self,
        table: SenderTable,
        *,
        key: Scalar,
        job_id: str,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        mapper: BatchMapper = serial_map,
    ) -> None:
        super().__init__(job_id)
        if key_id(key) != table.key_id:
            raise ValueError("the key is not the one the table was built with")
        self.table = table
        self.key_type = table.key_type
        self.chunk_size = chunk_size
        self._key = key
        self._map = mapper

    def _welcome_terms(self) -> WelcomeTerms:
        """The welcome announces the table's size and record size."""
        return {"set_size": self.table.count, "record_size": self.table.record_size}

    def _on_query(self, message: PsiChunk) -> PsiChunk:
        body = self._queries.accept(message, self._stage.name)
        evaluated = map_evaluate(self._map, body, self._key)
        if self._queries.done:
            self._stage = _S.AWAIT_TABLE_PULL
        return self._chunk(Stream.EVALUATED, message.chunk, message.total_count, self._queries.chunk_size, evaluated)

    def _on_pull(self, message: PsiPull) -> PsiChunk:
        total, size = self.table.count, self.table.record_size
        start, stop = self._take_pull(message, total, self.chunk_size)
        if self._pulled_all(total, self.chunk_size):
            self._stage, self._result = _S.DONE, self._queries.total_count
        body = self.table.records[start * size : stop * size]
        return self._chunk(Stream.LABEL_TABLE, message.chunk, total, self.chunk_size, body, size)
