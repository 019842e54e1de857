"""The coordinator's arbiters for ``train_risk`` / ``train_propensity`` (run inside the Flower ServerApp).

Hetero LR (:func:`lr_arbiter`), Flower rounds of one job with ``E`` iterations::

    round 1          Setup → bank, telco          SetupReply (counts, alignment digest) ← each
    round 2 .. E+1   LrRound(iteration t) → each  LrRoundReply(masked update of t) ← each
                     (between the instruction and the reply, telco and bank exchange [[u_p]] and
                     [[d]] over the data plane: one request/response per iteration)
    round E+2        LrRound(stop) → each         FinishReply (held-out metrics) ← each

    Settings: :meth:`protocols.vfl.LrConfig.recommended` (full batch, ``E = 6`` iterations of block-diagonal
    Newton with momentum 0.3, linearised gradient, warm-started bank, features at 1/16) with the job's
    overrides (:func:`lr_job_config`); every ``LrRound`` carries all of it (``LrConfigWire``).

    A retried job resumes: when both SetupReplies report ``resume_from >= k`` (checkpoints of k
    completed iterations), round 2 is iteration k with a fresh key (:mod:`node.jobs.training.checkpoints`).

SecureBoost (:func:`sb_arbiter`; the bank holds its own key, so this arbiter holds none)::

    round 1          Setup → bank, telco          SetupReply ← each
    round 2 ..       SbRound(trees i..j) → bank   SbRoundReply(trees done) ← bank
                     (all level messages of those trees go bank ↔ telco over the data plane)
    last round       Finish → bank, telco         FinishReply ← each

What the arbiter learns: aligned row and feature counts, that both parties aligned the same order
(equal digests), for LR only uniformly masked values (see :mod:`protocols.vfl`) and the active
party's early-stopping vote, for SecureBoost tree counts, and the held-out metrics. The LR arbiter
holds the job's Paillier private key; it never leaves this process.

Refusals (raise :class:`TrainingError`, which fails the Flower run and, through the coordinator's
launcher, the job): replies of the wrong kind, different aligned row counts or alignment digests, no
rows, a key shorter than 2048 bits without the test-only flag, a masked update whose ciphertexts do
not decrypt under the job key (not units mod ``n**2``, out of range, another key), naming the party.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeVar

import phe
from pydantic import ValidationError

from coordinator.flower.arbiter import ArbiterContext, Payloads
from protocols.crypto.paillier import generate_keypair
from protocols.crypto.paillier.codec import decode_vector
from protocols.vfl import LrArbiter, LrConfig
from protocols.vfl.rounds import (
    Finish,
    FinishReply,
    LrConfigWire,
    LrRound,
    LrRoundReply,
    SbRound,
    SbRoundReply,
    Setup,
    SetupReply,
    TrainingError,
    decode_reply,
)
from protocols.wire.errors import RemoteProtocolError
from protocols.wire.training import LrInstruction, LrMaskedUpdate, VflRole

__all__ = ["ACTIVE", "PASSIVE", "LrJobArbiter", "SbJobArbiter",
           "lr_arbiter", "lr_job_config", "sb_arbiter"]

ACTIVE, PASSIVE = "bank", "telco"
_ROLE = {ACTIVE: VflRole.ACTIVE_PARTY, PASSIVE: VflRole.PASSIVE_PARTY}
_PARTY = {role: party for party, role in _ROLE.items()}


_T = TypeVar("_T")


def _reply_of(raw: bytes, cls: type[_T], party: str) -> _T:
    try:
        reply = decode_reply(raw)
    except ValidationError:
        raise TrainingError(f"{party} sent a malformed round reply") from None
    if not isinstance(reply, cls):
        raise TrainingError(f"{party} answered {reply.kind!r}, expected {cls.__name__}")
    return reply


def _check_setup(replies: Payloads) -> dict[str, SetupReply]:
    setups = {party: _reply_of(raw, SetupReply, party) for party, raw in replies.items()}
    bank, telco = setups[ACTIVE], setups[PASSIVE]
    if bank.alignment_digest != telco.alignment_digest or (bank.n_train, bank.n_test) != (telco.n_train, telco.n_test):
        raise TrainingError("the parties' aligned rows differ (row counts or alignment digest); refusing to train")
    if bank.n_train < 2 or bank.n_test < 1:
        raise TrainingError(f"too few aligned rows to train and evaluate ({bank.n_train} + {bank.n_test})")
    if min(bank.n_features, telco.n_features) < 1:
        raise TrainingError("a party has no features")
    return setups


_LR_OVERRIDES: dict[str, tuple[str, type]] = {
    "iterations": ("max_epochs", int), "batch_size": ("batch_size", int), "alpha": ("alpha", float),
    "tol": ("tol", float), "seed": ("seed", int), "gradient": ("gradient", str),
    "feature_exponent": ("feature_exponent", int), "warm_start": ("warm_start", bool),
}
_OPTIMIZER_OVERRIDES: dict[str, tuple[str, type]] = {
    "optimizer": ("method", str), "learning_rate": ("learning_rate", float), "momentum": ("momentum", float),
}


def lr_job_config(n_rows: int, config: Mapping[str, Any]) -> LrConfig:
    """The shared config of an LR job over ``n_rows`` aligned rows: :meth:`LrConfig.recommended` + overrides.

    Each key of the arbiter's ``config`` that is set (not None) replaces one field: ``iterations``
    (epochs), ``batch_size``, ``alpha``, ``tol``, ``seed``, ``gradient``, ``feature_exponent``,
    ``warm_start``, and of the optimiser ``optimizer`` (method), ``learning_rate`` and ``momentum``.
    ``allow_insecure_test_key`` is taken as given (tests only).
    """
    fields: dict[str, Any] = {name: cast(config[key]) for key, (name, cast) in _LR_OVERRIDES.items()
                              if config.get(key) is not None}
    base = LrConfig.recommended(n_rows).optimizer
    optimizer = {name: cast(config[key]) for key, (name, cast) in _OPTIMIZER_OVERRIDES.items()
                 if config.get(key) is not None}
    fields["optimizer"] = replace(base, **optimizer)
    fields["allow_insecure_test_key"] = bool(config.get("allow_insecure_test_key", False))
    return LrConfig.recommended(n_rows, **fields)


class LrJobArbiter:
    """Setup, then one Flower round per LR iteration around :class:`protocols.vfl.LrArbiter`."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Hold the job's arbiter config.

        Keys: ``key_bits``, ``allow_insecure_test_key`` (tests only), and the overrides of the recommended LR
        settings that :func:`lr_job_config` reads (``iterations``, ``batch_size``, ``seed``, ...); a key that
        is absent or None keeps the recommended value.
        """
        self._config = dict(config)
        self._core: LrArbiter | None = None
        self._wire: LrConfigWire | None = None
        self._metrics: dict[str, float] = {}
        self._done = False
        self._rounds = 0
        self._resume_from = 0
        self._public_key: phe.PaillierPublicKey | None = None

    def start(self) -> Payloads:
        """Round 1: ask both parties to align and describe their rows."""
        body = Setup(algorithm="lr").model_dump_json().encode()
        return {ACTIVE: body, PASSIVE: body}

    def handle(self, replies: Payloads) -> Payloads | None:
        """Advance by one round (see the module docstring)."""
        self._rounds += 1
        if self._core is None:
            return self._begin(_check_setup(replies))
        if self._core.stage.value == "done":
            self._finish(replies)
            return None
        updates: list[LrInstruction] = []
        for party in (ACTIVE, PASSIVE):
            update = _reply_of(replies[party], LrRoundReply, party).update
            if not isinstance(update, LrMaskedUpdate) or update.sender != _ROLE[party]:
                raise TrainingError(f"{party} sent no masked update of its own")
            self._check_ciphertexts(party, update)
            try:
                updates += [m for m in self._core.handle(update) if isinstance(m, LrInstruction)]
            except RemoteProtocolError as exc:
                raise TrainingError(f"{party}'s masked update was refused: {exc}") from exc
        return self._instructions(updates)

    def _check_ciphertexts(self, party: str, update: LrMaskedUpdate) -> None:
        """Refuse a party's vectors that cannot be decrypted under the job key, naming the party."""
        assert self._public_key is not None
        for data in (update.masked_gradient, update.masked_loss):
            if data is None:
                continue
            try:
                decode_vector(data, self._public_key, max_count=LrArbiter._MAX_VECTOR)
            except RemoteProtocolError:
                raise TrainingError(f"{party}'s masked update of iteration {update.iteration} holds ciphertexts "
                                    "that do not decrypt under the job key (malformed, out of range or under "
                                    "another key); refusing to go on") from None

    def _begin(self, setups: dict[str, SetupReply]) -> Payloads:
        c = self._config
        try:
            config = lr_job_config(setups[ACTIVE].n_train, c)
            self._wire = LrConfigWire.of(config)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"invalid LR settings: {exc}") from None
        self._resume_from = min(s.resume_from for s in setups.values())
        if self._resume_from >= config.max_iterations:
            raise TrainingError(f"cannot resume at iteration {self._resume_from} of {config.max_iterations}")
        allow = config.allow_insecure_test_key
        _, private_key = generate_keypair(int(c.get("key_bits", 2048)), allow_insecure_test_key=allow)
        self._public_key = private_key.public_key
        self._core = LrArbiter(config, private_key, start_iteration=self._resume_from)
        return self._instructions([m for m in self._core.start() if isinstance(m, LrInstruction)])

    def _instructions(self, instructions: list[LrInstruction]) -> Payloads:
        assert self._wire is not None
        if len(instructions) != 2:
            raise TrainingError("the LR arbiter produced no instruction for a party")
        resume = self._resume_from if self._rounds == 1 else 0
        return {
            _PARTY[VflRole(i.receiver)]: LrRound(config=self._wire, instruction=i,
                                                 resume_from=resume).model_dump_json().encode()
            for i in instructions
        }

    def _finish(self, replies: Payloads) -> None:
        self._metrics = _reply_of(replies[ACTIVE], FinishReply, ACTIVE).metrics
        _reply_of(replies[PASSIVE], FinishReply, PASSIVE)
        self._done = True

    def result(self) -> bytes:
        """JSON: rounds, iterations, early stop, the bank's held-out metrics."""
        summary = self._core.result() if self._core is not None and self._done else None
        return json.dumps({
            "algorithm": "lr", "flower_rounds": self._rounds,
            "iterations": summary.iterations if summary else None,
            "stopped_early": summary.stopped_early if summary else None, "resumed_from": self._resume_from,
            "metrics": self._metrics,
        }).encode()


class SbJobArbiter:
    """Setup, then SecureBoost trees in batches of ``trees_per_round`` per Flower round, then finish."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Hold the job's arbiter config.

        Keys: ``trees``, ``max_depth``, ``n_bins``, ``trees_per_round``, ``key_bits`` and
        ``allow_insecure_test_key`` (tests only).
        """
        c = dict(config)
        self._total = int(c.get("trees", 10))
        self._per_round = max(1, int(c.get("trees_per_round", 5)))
        self._template = SbRound(
            first_tree=0, n_trees=1, total_trees=self._total, max_depth=int(c.get("max_depth", 3)),
            n_bins=int(c.get("n_bins", 32)), allow_insecure_test_key=bool(c.get("allow_insecure_test_key", False)),
            key_bits=int(c.get("key_bits", 2048)),
        )
        self._stage = "setup"
        self._trees_done = 0
        self._rounds = 0
        self._metrics: dict[str, float] = {}

    def start(self) -> Payloads:
        """Round 1: ask both parties to align and describe their rows."""
        t = self._template
        body = Setup(algorithm="secureboost", trees=t.total_trees, max_depth=t.max_depth,
                     n_bins=t.n_bins).model_dump_json().encode()
        return {ACTIVE: body, PASSIVE: body}

    def handle(self, replies: Payloads) -> Payloads | None:
        """Advance by one round (see the module docstring)."""
        self._rounds += 1
        if self._stage == "setup":
            setups = _check_setup(replies)
            self._trees_done = min(s.resume_from for s in setups.values())
            self._stage = "trees"
        elif self._stage == "trees":
            done = _reply_of(replies[ACTIVE], SbRoundReply, ACTIVE).trees_done
            if done <= self._trees_done:
                raise TrainingError("the bank finished no tree in its round")
            self._trees_done = done
        else:
            self._metrics = _reply_of(replies[ACTIVE], FinishReply, ACTIVE).metrics
            _reply_of(replies[PASSIVE], FinishReply, PASSIVE)
            return None
        return self._next()

    def _next(self) -> Payloads:
        if self._trees_done >= self._total:
            self._stage = "finish"
            body = Finish().model_dump_json().encode()
            return {ACTIVE: body, PASSIVE: body}
        n = min(self._per_round, self._total - self._trees_done)
        payload = self._template.model_copy(update={"first_tree": self._trees_done, "n_trees": n})
        return {ACTIVE: payload.model_dump_json().encode()}

    def result(self) -> bytes:
        """JSON: rounds, trees, the bank's held-out metrics."""
        return json.dumps({"algorithm": "secureboost", "flower_rounds": self._rounds,
                           "trees": self._trees_done, "metrics": self._metrics}).encode()


def lr_arbiter(context: ArbiterContext) -> LrJobArbiter:
    """Arbiter factory (run config ``arbiter = "coordinator.flower.arbiters:lr_arbiter"``)."""
    _check_parties(context)
    return LrJobArbiter(context.config)


def sb_arbiter(context: ArbiterContext) -> SbJobArbiter:
    """Arbiter factory (run config ``arbiter = "coordinator.flower.arbiters:sb_arbiter"``)."""
    _check_parties(context)
    return SbJobArbiter(context.config)


def _check_parties(context: ArbiterContext) -> None:
    if set(context.parties) != {ACTIVE, PASSIVE}:
        raise TrainingError(f"training needs the parties {ACTIVE} and {PASSIVE}, got {list(context.parties)}")
