"""What travels inside a Flower Message between Tandem's ServerApp (arbiter) and ClientApp shims.

One instruction per party per round, message type ``query.tandem_round``, content a ``RecordDict``
with one ``ConfigRecord`` under :data:`RECORD_KEY`:

- ``payload`` (bytes): opaque round payload, produced by the arbiter (instruction) or by the
  party's node service (reply). Flower never interprets it.
- ``job_id`` (str), ``party`` (str), ``round`` (int): routing facts, instruction only.
- ``attempt`` (int, optional): the coordinator job's attempt the run belongs to (run config ``attempt``;
  the launcher starts one run per attempt). The shim sends it to the node service in the data plane's
  ``X-Tandem-Attempt`` header, and the node refuses a round of a stale attempt (410), so a message of a
  retried job's earlier run can never bind or feed the job's current attempt. Absent for runs outside
  a coordinator job (demos, benchmarks).

The node service is reached at ``{service-url}/flower/v1/{run_id}/{round}`` (see
:func:`service_round_url`) with the node's round token in :data:`HEADER_ROUND_TOKEN`.

What each party learns: only the payload addressed to it and the round number. The arbiter sees
every reply payload in full, so replies must carry only what the arbiter may see (masked values,
sealed envelopes).
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict
from flwr.app.typing import ConfigRecordValues

RECORD_KEY = "tandem"
ROUND_ACTION = "tandem_round"
ROUND_MESSAGE_TYPE = f"query.{ROUND_ACTION}"

NODE_CONFIG_PARTY = "party"
NODE_CONFIG_SERVICE_URL = "service-url"

HEADER_JOB_ID = "X-Tandem-Job-Id"
HEADER_PARTY = "X-Tandem-Party"
HEADER_RUN_ID = "X-Tandem-Run-Id"
HEADER_ROUND = "X-Tandem-Round"
HEADER_ROUND_TOKEN = "X-Tandem-Round-Token"
"""The node's per-``serve`` secret: its loopback round endpoint refuses a POST without it."""
ROUND_TOKEN_ENV = "TANDEM_FLOWER_ROUND_TOKEN"
"""Environment variable that hands the round token to the ClientApp runner (never argv, never run config)."""
HEADER_REPORT_TOKEN = "X-Tandem-Report-Token"
"""The coordinator launcher's secret: its loopback report endpoint refuses a report without it."""
REPORT_TOKEN_ENV = "TANDEM_FLOWER_REPORT_TOKEN"
"""Environment variable that hands the report token to the SuperLink and so to its ServerApp processes."""


@dataclass(frozen=True)
class Instruction:
    """One round's instruction to one party."""

    job_id: str
    party: str
    round: int
    payload: bytes
    attempt: int | None = None
    """The coordinator job's attempt this run belongs to; None for a run outside a coordinator job."""


def instruction_content(instruction: Instruction) -> RecordDict:
    """Pack an instruction into message content."""
    fields: dict[str, ConfigRecordValues] = {
        "job_id": instruction.job_id,
        "party": instruction.party,
        "round": instruction.round,
        "payload": instruction.payload,
    }
    if instruction.attempt is not None:
        fields["attempt"] = instruction.attempt
    return RecordDict({RECORD_KEY: ConfigRecord(fields)})


def read_instruction(content: RecordDict) -> Instruction:
    """Unpack an instruction from message content.

    Raises:
        ValueError: The content is not a Tandem instruction.
    """
    record = _record(content)
    payload, job_id, party, round_ = (
        record.get("payload"),
        record.get("job_id"),
        record.get("party"),
        record.get("round"),
    )
    if not isinstance(payload, bytes) or not isinstance(job_id, str) or not isinstance(party, str):
        raise ValueError("malformed Tandem instruction")
    if not isinstance(round_, int) or isinstance(round_, bool):
        raise ValueError("malformed Tandem instruction round")
    attempt = record.get("attempt")
    if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1):
        raise ValueError("malformed Tandem instruction attempt: a positive integer is expected")
    return Instruction(job_id=job_id, party=party, round=round_, payload=payload, attempt=attempt)


def reply_content(payload: bytes) -> RecordDict:
    """Pack a party's reply payload into message content."""
    return RecordDict({RECORD_KEY: ConfigRecord({"payload": payload})})


def read_reply(content: RecordDict) -> bytes:
    """Unpack a reply payload.

    Raises:
        ValueError: The content is not a Tandem reply.
    """
    payload = _record(content).get("payload")
    if not isinstance(payload, bytes):
        raise ValueError("malformed Tandem reply")
    return payload


def service_round_url(service_url: str, run_id: int, round_: int) -> str:
    """The node service endpoint a ClientApp posts a round to."""
    return f"{service_url.rstrip('/')}/flower/v1/{run_id}/{round_}"


def _record(content: RecordDict) -> ConfigRecord:
    if RECORD_KEY not in content.config_records:
        raise ValueError(f"message content has no '{RECORD_KEY}' config record")
    return content.config_records[RECORD_KEY]
