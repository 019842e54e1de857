"""Wire models of federated scoring (bank = active party → telco = passive party, one round trip).

Both models are JSON with base64 byte fields. ``pseudonyms`` is ``n × PSEUDONYM_BYTES`` bytes (keyed
pseudonyms, never identifiers, see :mod:`node.jobs.scoring._pseudonyms`); ``known`` is a packed bitmap
(``numpy.packbits`` order) over the request's rows: 1 where the telco holds the subscriber. The share is
the model kind's scoring reply from :mod:`protocols.wire.training`: ``LrPartialScores`` (plain
``u_p`` per row, 0 for unknown rows) or ``SbPredictReply`` (left bitmaps per passive split, 0 bits for
unknown rows).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocols.wire.training import LrPartialScores, SbPredictReply

__all__ = ["PSEUDONYM_BYTES", "ScoreBatchAck", "ScoreBatchClose", "ScoreReply", "ScoreRequest"]

PSEUDONYM_BYTES = 16


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    protocol_version: Literal["1"] = "1"


class ScoreRequest(_Wire):
    """Bank → telco: the model and the keyed pseudonyms of the rows to score."""

    kind: Literal["score_request"] = "score_request"
    model_id: str = Field(max_length=64)
    pseudonyms: bytes

    @field_validator("pseudonyms")
    @classmethod
    def _whole_pseudonyms(cls, value: bytes) -> bytes:
        if len(value) % PSEUDONYM_BYTES:
            raise ValueError(f"pseudonyms must be a multiple of {PSEUDONYM_BYTES} bytes")
        return value

    @property
    def n_rows(self) -> int:
        """Rows in this request."""
        return len(self.pseudonyms) // PSEUDONYM_BYTES


class ScoreReply(_Wire):
    """Telco → bank: which rows it knows, and its share of the score for every row."""

    kind: Literal["score_reply"] = "score_reply"
    model_id: str = Field(max_length=64)
    n_rows: int = Field(ge=0)
    known: bytes
    share: LrPartialScores | SbPredictReply = Field(discriminator="kind")


class ScoreBatchClose(_Wire):
    """Bank → telco at the end of a batch ``score`` job: how many requests and rows it sent."""

    kind: Literal["score_close"] = "score_close"
    model_id: str = Field(max_length=64)
    requests: int = Field(ge=0)
    rows: int = Field(ge=0)


class ScoreBatchAck(_Wire):
    """Telco → bank: the requests and rows it answered (must equal the close's)."""

    kind: Literal["score_ack"] = "score_ack"
    requests: int = Field(ge=0)
    rows: int = Field(ge=0)
