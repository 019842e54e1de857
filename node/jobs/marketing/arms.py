"""The treatment and holdout arms of an ``app_promotion`` job, kept in the telco's node state.

The arms never leave the telco: a later ``campaign_evaluation`` job (E4) reads them at the telco with
:func:`load_arms` and counts conversions per arm by PSI cardinality against the bank's new adopters.

File: ``<state>/marketing/<job_id>/arms.json`` (written once, atomically, mode 0600 in a 0700 directory)::

    {"job_id": 12, "key_type": "mobile", "arm_seed": 7, "holdout_share": 0.2, "channel": "sms", "peer": "bank-a",
     "members": [{"key": "<canonical key>", "mobile": "<number or null>", "segment": "all",
                  "arm": "treatment" | "holdout"}, ...]}

``key`` is the canonical identifier the job excluded bank customers on (``key_type``); ``mobile`` the
number outreach used (or would use), which is what the bank keys its conversions by. ``peer`` is the
bank the campaign ran with: only that bank may evaluate it (:func:`check_evaluator`), and only once
(:func:`claim_evaluation` writes ``<state>/marketing/<job_id>/evaluated_by.json`` before any arm is served).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from protocols.wire.errors import ConfigError

__all__ = ["ARMS_FILE", "ArmMember", "CampaignArms", "arms_path", "check_evaluator", "claim_evaluation", "load_arms",
           "save_arms"]

ARMS_FILE = "arms.json"
CLAIM_FILE = "evaluated_by.json"
Arm = Literal["treatment", "holdout"]


@dataclass(frozen=True)
class ArmMember:
    """One audience member as the telco records it."""

    key: str
    mobile: str | None
    segment: str
    arm: Arm


@dataclass(frozen=True)
class CampaignArms:
    """The arms of one app-promotion job."""

    job_id: int
    key_type: str
    arm_seed: int
    holdout_share: float
    channel: str
    members: tuple[ArmMember, ...]
    peer: str | None = None
    """The bank party of the campaign (None only in files written without it, e.g. by hand in tests)."""

    def arm(self, name: Arm) -> list[ArmMember]:
        """The members of one arm, in audience order."""
        return [m for m in self.members if m.arm == name]

    def mobiles(self, name: Arm) -> list[str]:
        """The known mobile numbers of one arm (what the bank keys conversions by)."""
        return [m.mobile for m in self.members if m.arm == name and m.mobile]


def arms_path(state_dir: Path, job_id: int) -> Path:
    """Where the arms of ``job_id`` live under the node's state directory."""
    return Path(state_dir) / "marketing" / str(int(job_id)) / ARMS_FILE


def save_arms(state_dir: Path, arms: CampaignArms) -> Path:
    """Write the arms of a job (replacing those of an earlier attempt of the same job)."""
    path = arms_path(state_dir, arms.job_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {"job_id": arms.job_id, "key_type": arms.key_type, "arm_seed": arms.arm_seed,
            "holdout_share": arms.holdout_share, "channel": arms.channel, "peer": arms.peer,
            "members": [{"key": m.key, "mobile": m.mobile, "segment": m.segment, "arm": m.arm}
                        for m in arms.members]}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def load_arms(state_dir: Path, job_id: int) -> CampaignArms:
    """The arms an ``app_promotion`` job recorded on this node.

    Raises:
        ConfigError: no arms of that job here (not an app-promotion job that succeeded on this node).
    """
    path = arms_path(state_dir, job_id)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no treatment/holdout arms of job {job_id} on this node: params.campaign_job_id must "
                          "name an app_promotion job that succeeded at this telco") from None
    members: Sequence[dict[str, str | None]] = body["members"]
    return CampaignArms(int(body["job_id"]), str(body["key_type"]), int(body["arm_seed"]),
                        float(body["holdout_share"]), str(body["channel"]),
                        tuple(ArmMember(str(m["key"]), m["mobile"], str(m["segment"]),
                                        "holdout" if m["arm"] == "holdout" else "treatment") for m in members),
                        None if body.get("peer") is None else str(body["peer"]))


def check_evaluator(arms: CampaignArms, peer: str) -> None:
    """Refuse an evaluation of ``arms`` by a bank other than the one the campaign ran with.

    Raises:
        ConfigError: ``peer`` is not the campaign's bank (names params.campaign_job_id).
    """
    if arms.peer is not None and arms.peer != peer:
        raise ConfigError(f"params.campaign_job_id: job {arms.job_id} is another bank's campaign, not {peer}'s; "
                          "evaluate a campaign this bank ran with this telco")


def claim_evaluation(state_dir: Path, campaign_job_id: int, evaluation_job_id: int) -> None:
    """Record that ``evaluation_job_id`` evaluates ``campaign_job_id``; refuse any other evaluation of it.

    The claim is written (exclusively, before any arm is served) so two evaluations that differ in a few
    converters cannot be differenced to tell which arm one person was in; a retry of the same evaluation
    job passes.

    Raises:
        ConfigError: another job already evaluated (or began to evaluate) the campaign.
    """
    path = Path(state_dir) / "marketing" / str(int(campaign_job_id)) / CLAIM_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{CLAIM_FILE}.{int(evaluation_job_id)}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"evaluation_job_id": int(evaluation_job_id)}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # whole file or nothing, and only if no claim exists yet
    except FileExistsError:
        earlier = int(json.loads(path.read_text(encoding="utf-8"))["evaluation_job_id"])
        if earlier != int(evaluation_job_id):
            raise ConfigError(f"params.campaign_job_id: campaign {campaign_job_id} was already evaluated by job "
                              f"{earlier}; a campaign is evaluated once (two evaluations could be differenced "
                              "person by person): read that job's result, or measure a new campaign") from None
    finally:
        tmp.unlink(missing_ok=True)
