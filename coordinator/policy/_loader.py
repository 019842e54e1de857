"""The policy as data: ``coordinator/policy.yaml`` parsed strictly into a ``Policy`` with its version and digest.

Errors::

    PolicyError               a malformed policy file (names the key and the fix) or filter
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from protocols.wire.canonical import sha256_hex
from protocols.wire.control import FieldCategory, JobKind, KeyType, PartyKind, Purpose
from protocols.wire.desensitise import Clearance, ClearanceError, parse_clearance

__all__ = ["DEFAULT_POLICY_PATH", "KindRule", "Policy", "PolicyError", "load_policy", "parse_policy",
           "read_policy_text"]

DEFAULT_POLICY_PATH = Path(__file__).parents[1] / "policy.yaml"
"""The packaged policy file, ``coordinator/policy.yaml``."""


class PolicyError(Exception):
    """Root of the policy engine's errors: a policy file or a filter that cannot be used."""


@dataclass(frozen=True)
class KindRule:
    """What one job kind may do, as the policy file says."""

    purposes: frozenset[Purpose]
    required_inputs: tuple[PartyKind, ...]
    optional_inputs: tuple[PartyKind, ...]
    output_modes: tuple[str, ...]
    output_mode_required: bool
    label_required: bool


@dataclass(frozen=True)
class Policy:
    """A loaded policy. ``digest`` is the SHA-256 of the file bytes it was parsed from."""

    version: str
    digest: str
    k_min_cell: int
    max_recovery_match_cap: int
    auditor_level: int
    reveal_output_key_types: frozenset[KeyType]
    consent_categories: frozenset[FieldCategory]
    kinds: Mapping[JobKind, KindRule]
    epsilon_budget_per_pair: float
    epsilon_max_per_job: float
    epsilon_default: float
    clearance: Clearance = field(default_factory=Clearance)
    """Per role the highest level seen unmasked, and who may export row-level results in full (absent: none)."""


_OutputMode = Literal["count", "bank_ids", "reveal", "relay", "model", "scores", "bands"]


class _InputsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    required: list[PartyKind] = Field(min_length=1)
    optional: list[PartyKind] = Field(default_factory=list)


class _KindFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purposes: list[Purpose] = Field(min_length=1)
    inputs: _InputsFile
    output_modes: list[_OutputMode] = Field(min_length=1)
    output_mode_required: StrictBool
    label: Literal["required", "forbidden"]


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: StrictStr = Field(pattern=r"^\d{4}-\d{2}-\d{2}\.\d+$")
    k_min_cell: StrictInt = Field(ge=1)
    max_recovery_match_cap: StrictInt = Field(ge=1)
    auditor_level: StrictInt = Field(ge=1, le=5)
    reveal_output_key_types: list[KeyType]
    consent_categories: list[FieldCategory]
    epsilon_budget_per_pair: StrictFloat = Field(gt=0)
    epsilon_max_per_job: StrictFloat = Field(gt=0, le=10)
    epsilon_default: StrictFloat = Field(gt=0, le=10)
    kinds: dict[JobKind, _KindFile]
    clearance: dict[str, Any] | None = None


_FIXES: Mapping[str, str] = {
    "version": 'quote it and use the form "YYYY-MM-DD.N", e.g. version: "2026-11-27.1"',
    "k_min_cell": "set a whole number of at least 1, e.g. k_min_cell: 50",
    "max_recovery_match_cap": "set a whole number of at least 1, e.g. max_recovery_match_cap: 10000",
    "auditor_level": "set a security level from 1 to 5, e.g. auditor_level: 4",
    "reveal_output_key_types": f"list key types from {sorted(k.value for k in KeyType)}, e.g. [mobile]",
    "consent_categories": f"list categories from {sorted(c.value for c in FieldCategory)}, e.g. [feature, sensitive]",
    "epsilon_budget_per_pair": "set a positive number (total ε per dataset pair), e.g. epsilon_budget_per_pair: 3.0",
    "epsilon_max_per_job": "set a number in (0, 10], at most epsilon_budget_per_pair, e.g. epsilon_max_per_job: 1.0",
    "epsilon_default": "set a number in (0, 10], at most epsilon_max_per_job, e.g. epsilon_default: 0.5",
    "clearance": "give levels {role: 0-5} and full_export [{role, purpose}], e.g. clearance: {levels: {analyst: 3}}",
    "kinds": "give each job kind purposes, inputs {required, optional}, output_modes, "
    "output_mode_required (true/false) and label (required/forbidden)",
}


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "[key]") or "<top level>"
        top = str(err["loc"][0]) if err["loc"] else ""
        fix = _FIXES.get(top, f"remove it; known keys are {sorted(_FIXES)}")
        parts.append(f"policy key '{loc}': {err['msg']} (fix: {fix})")
    return "; ".join(parts)


def _kind_rule(spec: _KindFile) -> KindRule:
    return KindRule(
        purposes=frozenset(spec.purposes),
        required_inputs=tuple(spec.inputs.required),
        optional_inputs=tuple(spec.inputs.optional),
        output_modes=tuple(spec.output_modes),
        output_mode_required=spec.output_mode_required,
        label_required=spec.label == "required",
    )


def _check_epsilon_order(spec: _PolicyFile) -> None:
    """``epsilon_default <= epsilon_max_per_job <= epsilon_budget_per_pair``, naming the key that breaks it."""
    if spec.epsilon_max_per_job > spec.epsilon_budget_per_pair:
        raise PolicyError(f"policy key 'epsilon_max_per_job': {spec.epsilon_max_per_job} exceeds "
                          f"epsilon_budget_per_pair {spec.epsilon_budget_per_pair} "
                          f"(fix: {_FIXES['epsilon_max_per_job']})")
    if spec.epsilon_default > spec.epsilon_max_per_job:
        raise PolicyError(f"policy key 'epsilon_default': {spec.epsilon_default} exceeds epsilon_max_per_job "
                          f"{spec.epsilon_max_per_job} (fix: {_FIXES['epsilon_default']})")


def _policy_from_text(text: str, digest: str) -> Policy:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file is not valid YAML: {exc} (fix: correct the YAML syntax)") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file must be a mapping of keys, got {type(raw).__name__} (fix: start from "
                          f"coordinator/policy.yaml)")
    try:
        spec = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(_format_errors(exc)) from exc
    missing = [k.value for k in JobKind if k not in spec.kinds]
    if missing:
        raise PolicyError(f"policy key 'kinds.{missing[0]}': missing job kind(s) {missing} (fix: {_FIXES['kinds']})")
    _check_epsilon_order(spec)
    try:
        clearance = parse_clearance(spec.clearance) if spec.clearance is not None else Clearance()
    except ClearanceError as exc:
        raise PolicyError(f"policy key 'clearance': {exc}") from None
    return Policy(
        version=spec.version,
        digest=digest,
        k_min_cell=spec.k_min_cell,
        max_recovery_match_cap=spec.max_recovery_match_cap,
        auditor_level=spec.auditor_level,
        reveal_output_key_types=frozenset(spec.reveal_output_key_types),
        consent_categories=frozenset(spec.consent_categories),
        kinds=MappingProxyType({kind: _kind_rule(k) for kind, k in spec.kinds.items()}),
        epsilon_budget_per_pair=spec.epsilon_budget_per_pair,
        epsilon_max_per_job=spec.epsilon_max_per_job,
        epsilon_default=spec.epsilon_default,
        clearance=clearance,
    )


def parse_policy(text: str) -> Policy:
    """Parse policy YAML text (pure); ``digest`` is the SHA-256 of ``text`` encoded as UTF-8.

    Raises:
        PolicyError: naming the malformed key and how to fix it.
    """
    return _policy_from_text(text, sha256_hex(text.encode("utf-8")))


def read_policy_text(path: Path | None = None) -> str:
    """The text of the policy file at ``path`` (default: the packaged ``coordinator/policy.yaml``).

    ``parse_policy`` of it is ``load_policy(path)``: the digest of UTF-8 text is that of the file's bytes.

    Raises:
        PolicyError: if the file cannot be read or is not UTF-8.
    """
    path = path or DEFAULT_POLICY_PATH
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc} (fix: point to a UTF-8 YAML file)") from exc


def load_policy(path: Path | None = None) -> Policy:
    """Load the policy file at ``path`` (default: the packaged ``coordinator/policy.yaml``).

    Raises:
        PolicyError: if the file cannot be read, is not UTF-8, or is malformed (names key and fix).
    """
    return parse_policy(read_policy_text(path))
