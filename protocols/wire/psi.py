"""Data-plane wire models for the PSI sessions of :mod:`psi` (ECDH-PSI, cardinality, labeled PSI).

Every message is a small pydantic header (``kind`` discriminator, ``protocol_version``, ``job_id``,
the sender's ``stage``) plus, for chunks, a **binary body** that is never JSON: concatenated
fixed-size elements (32-byte ristretto255 encodings, or fixed-size label records). ``body`` is
excluded from the JSON header; :func:`encode_frame` / :func:`decode_frame` put the two together as::

    u32 big-endian header length ‖ header JSON (UTF-8) ‖ body bytes

Rounds (``R`` = receiver, the client; ``S`` = sender, the server; one reply per request)::

    R→S PsiHello        protocol, output side, key type, set size, chunk size
    S→R PsiWelcome      sender's set (or table) size, element sizes
    R→S PsiChunk        stream=query             receiver's blinded elements, chunk i of n
    S→R PsiChunk | PsiAck                        stream=evaluated (same order) or an acknowledgement
    R→S PsiPull         stream=…                 ask for chunk j of a sender-produced stream
    S→R PsiChunk        stream=evaluated | sender_set | label_table
    R→S PsiChunk        stream=returned          (output to sender) the sender's elements, re-blinded
    S→R PsiAck

Chunks carry ``chunk``/``total_chunks``/``count``/``total_count``, so a transport can resume per
chunk by replaying the last reply; a session refuses a chunk index it does not expect next.

A PSI *job* (``node.jobs.psi``) runs one session per key type, then closes::

    R→S PsiJobClose     status ok (the sessions the receiver ran) or abort (with the failing stage)
    S→R PsiJobSummary   counts only: OPRF evaluations, per-key hits and relayed messages (relay mode)

Both are plain JSON (``model_dump_json`` / ``model_validate_json``); they carry no element.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from protocols.wire.control import KeyType

__all__ = [
    "MAX_CHUNK_ELEMENTS",
    "MAX_FRAME_BYTES",
    "PSI_PROTOCOL_VERSION",
    "OutputTo",
    "PsiAck",
    "PsiChunk",
    "PsiHello",
    "PsiJobClose",
    "PsiJobSummary",
    "PsiMessage",
    "PsiProtocol",
    "PsiPull",
    "PsiWelcome",
    "Stream",
    "decode_frame",
    "encode_frame",
]

PSI_PROTOCOL_VERSION = "2"
"""2: labeled-PSI records derived with keyed BLAKE2b-512 (:mod:`psi.labeled`); 1 (HKDF-SHA256) is refused."""
MAX_CHUNK_ELEMENTS = 1 << 16
MAX_ELEMENT_BYTES = 1024
MAX_FRAME_BYTES = 64 * 1024 * 1024
_HEADER_LIMIT = 64 * 1024

JobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-.:]{1,64}$")]
Count = Annotated[int, Field(ge=0, le=10_000_000_000)]


class PsiProtocol(StrEnum):
    """Which PSI variant a session runs."""

    ECDH = "ecdh"
    CARDINALITY = "cardinality"
    LABELED = "labeled"


class OutputTo(StrEnum):
    """Which party learns the intersection in ECDH-PSI."""

    RECEIVER = "receiver"
    SENDER = "sender"


class Stream(StrEnum):
    """Named chunked streams of elements."""

    QUERY = "query"
    EVALUATED = "evaluated"
    SENDER_SET = "sender_set"
    RETURNED = "returned"
    LABEL_TABLE = "label_table"


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol_version: Literal["2"] = "2"
    job_id: JobId
    stage: Annotated[str, StringConstraints(max_length=64)] = ""


class PsiHello(_Header):
    """R→S: open a session and state its terms."""

    kind: Literal["psi.hello"] = "psi.hello"
    protocol: PsiProtocol
    output_to: OutputTo = OutputTo.RECEIVER
    key_type: KeyType
    set_size: Count
    chunk_size: int = Field(ge=1, le=MAX_CHUNK_ELEMENTS)


class PsiWelcome(_Header):
    """S→R: accept the terms and announce the sender's size and element layout."""

    kind: Literal["psi.welcome"] = "psi.welcome"
    protocol: PsiProtocol
    set_size: Count
    chunk_size: int = Field(ge=1, le=MAX_CHUNK_ELEMENTS)
    record_size: int = Field(default=32, ge=1, le=MAX_ELEMENT_BYTES)


class PsiChunk(_Header):
    """One chunk of a stream; ``body`` is ``count × element_size`` raw bytes (not part of the JSON)."""

    kind: Literal["psi.chunk"] = "psi.chunk"
    stream: Stream
    chunk: int = Field(ge=0)
    total_chunks: int = Field(ge=1)
    count: int = Field(ge=0, le=MAX_CHUNK_ELEMENTS)
    total_count: Count
    element_size: int = Field(default=32, ge=1, le=MAX_ELEMENT_BYTES)
    body: bytes = Field(default=b"", exclude=True, repr=False)


class PsiPull(_Header):
    """R→S: ask for chunk ``chunk`` of a sender-produced stream."""

    kind: Literal["psi.pull"] = "psi.pull"
    stream: Stream
    chunk: int = Field(ge=0)


class PsiAck(_Header):
    """S→R: chunk ``chunk`` of ``stream`` was received and processed."""

    kind: Literal["psi.ack"] = "psi.ack"
    stream: Stream
    chunk: int = Field(ge=0)


PsiMessage = Annotated[PsiHello | PsiWelcome | PsiChunk | PsiPull | PsiAck, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[PsiHello | PsiWelcome | PsiChunk | PsiPull | PsiAck] = TypeAdapter(PsiMessage)


def encode_frame(message: PsiHello | PsiWelcome | PsiChunk | PsiPull | PsiAck) -> bytes:
    """Serialise a message: length-prefixed JSON header, then the raw body (chunks only)."""
    header = message.model_dump_json().encode()
    body = message.body if isinstance(message, PsiChunk) else b""
    return len(header).to_bytes(4, "big") + header + body


def decode_frame(
    frame: bytes, *, max_frame_bytes: int = MAX_FRAME_BYTES
) -> PsiHello | PsiWelcome | PsiChunk | PsiPull | PsiAck:
    """Parse a frame produced by :func:`encode_frame`.

    Args:
        frame: The bytes received.
        max_frame_bytes: Refuse anything larger (checked before parsing).

    Raises:
        ValueError: If the frame is oversized, truncated or its header is invalid
            (``pydantic.ValidationError`` is a ``ValueError``). Body length against ``count`` is
            checked by the session, which knows the stage.
    """
    if len(frame) > max_frame_bytes:
        raise ValueError("frame exceeds the size limit")
    if len(frame) < 4:
        raise ValueError("frame truncated")
    header_len = int.from_bytes(frame[:4], "big")
    if header_len > _HEADER_LIMIT or 4 + header_len > len(frame):
        raise ValueError("frame header truncated or oversized")
    message = _ADAPTER.validate_json(frame[4 : 4 + header_len])
    body = frame[4 + header_len :]
    if isinstance(message, PsiChunk):
        return message.model_copy(update={"body": body})
    if body:
        raise ValueError("unexpected body on a header-only message")
    return message


Reason = Annotated[str, StringConstraints(max_length=500)]


class PsiJobClose(_Header):
    """R→S: the receiver is done with the job's sessions (``ok``), or gives up (``abort``, with a reason)."""

    kind: Literal["psi.close"] = "psi.close"
    status: Literal["ok", "abort"]
    sessions: list[KeyType] = Field(default_factory=list, max_length=len(KeyType))
    reason: Reason = ""


class PsiJobSummary(_Header):
    """S→R: what the sender may tell the receiver at the end of a job: counts, never elements.

    Attributes:
        evaluations: Receiver elements the sender evaluated with its key, over all sessions.
        hits_by_key: Relay mode only: the sender's newly matched records per key type (priority order).
        conflicts: Relay mode only: matched keys shared by several sender records (skipped, not guessed).
        relayed: Relay mode only: messages handed to the outreach channel.
    """

    kind: Literal["psi.summary"] = "psi.summary"
    evaluations: Count = 0
    hits_by_key: dict[KeyType, Count] = Field(default_factory=dict)
    conflicts: Count = 0
    relayed: Count | None = None
