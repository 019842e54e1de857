"""Resume of hetero LR through the parties' public ``state()`` / ``restore()`` and ``LrArbiter(start_iteration=k)``."""

from collections import deque

import numpy as np
import pytest

from protocols.crypto.paillier import generate_keypair
from protocols.vfl import (
    LR_RECEIVER,
    LrActiveParty,
    LrArbiter,
    LrConfig,
    LrPartyState,
    LrPassiveParty,
    OptimizerConfig,
    run_local_lr,
)
from protocols.vfl._local import wire_roundtrip
from protocols.wire.errors import LocalProtocolError, RemoteProtocolError
from protocols.wire.training import LrInstruction, VflRole


def _drive(config, active, passive, arbiter, *, stop_at=None):
    """Deliver messages until done; with ``stop_at = k``, stop once both parties applied instruction k."""
    parties = {VflRole.ACTIVE_PARTY: active, VflRole.PASSIVE_PARTY: passive, VflRole.ARBITER: arbiter}
    states: dict[VflRole, LrPartyState] = {}
    queue = deque(arbiter.start())
    while queue:
        msg, _ = wire_roundtrip(queue.popleft())
        receiver = msg.receiver if isinstance(msg, LrInstruction) else LR_RECEIVER[msg.kind]
        queue.extend(parties[receiver].handle(msg))
        if isinstance(msg, LrInstruction) and msg.iteration == stop_at:
            states[receiver] = parties[receiver].state()
            if len(states) == 2:
                return states
    return states


def _weights(active, passive):
    a, p = active.result(), passive.result()
    return np.concatenate([a.weights, [a.intercept], p.weights]), a.loss_history, a.iterations


@pytest.mark.parametrize("config_kw", [
    {},  # the recommended settings: linearised gradient, Newton + momentum, warm start
    {"optimizer": OptimizerConfig("adam", 0.05), "gradient": "taylor", "warm_start": False, "batch_size": 200},
], ids=["recommended", "adam-minibatch"])
def test_resumed_run_ends_with_the_same_model_as_an_uninterrupted_one(breast, config_kw):
    # Prepare
    xa, y, xp = breast
    config = LrConfig.recommended(len(y), allow_insecure_test_key=True, tol=0.0, **config_kw)
    reference = run_local_lr(config, xa, y, xp, key_bits=512)
    first = (LrActiveParty(config, xa, y), LrPassiveParty(config, xp))
    states = _drive(config, *first, LrArbiter(config, generate_keypair(512, allow_insecure_test_key=True)[1]),
                    stop_at=3)

    # Execute: fresh parties restored from the states, a fresh key, the arbiter starting at 3
    active, passive = LrActiveParty(config, xa, y), LrPassiveParty(config, xp)
    active.restore(states[VflRole.ACTIVE_PARTY])
    passive.restore(states[VflRole.PASSIVE_PARTY])
    arbiter = LrArbiter(config, generate_keypair(512, allow_insecure_test_key=True)[1], start_iteration=3)
    _drive(config, active, passive, arbiter)

    # Assert
    weights, losses, iterations = _weights(active, passive)
    expected = np.concatenate([reference.active.weights, [reference.active.intercept], reference.passive.weights])
    assert states[VflRole.ACTIVE_PARTY].iteration == 3 and states[VflRole.PASSIVE_PARTY].iteration == 3
    assert np.array_equal(weights, expected)  # bit for bit
    assert losses == reference.active.loss_history and iterations == reference.active.iterations
    assert arbiter.result().iterations == reference.arbiter.iterations


def test_state_carries_the_weights_and_the_newton_velocity(breast):
    xa, y, xp = breast
    config = LrConfig.recommended(len(y), allow_insecure_test_key=True)
    fresh = LrActiveParty(config, xa, y)
    states = _drive(config, fresh, LrPassiveParty(config, xp),
                    LrArbiter(config, generate_keypair(512, allow_insecure_test_key=True)[1]), stop_at=2)

    active = states[VflRole.ACTIVE_PARTY]
    assert active.optimizer.steps == 2 and np.any(active.optimizer.first != 0)  # heavy-ball velocity
    assert len(active.weights) == xa.shape[1] + 1 and np.any(active.weights != 0)
    assert states[VflRole.PASSIVE_PARTY].optimizer.steps == 2


def test_restore_refuses_a_started_party_or_a_state_that_does_not_fit(breast, small_keypair):
    xa, y, xp = breast
    config = LrConfig.recommended(len(y), allow_insecure_test_key=True)
    state = LrPartyState(iteration=2, weights=np.zeros(xp.shape[1]),
                         optimizer=LrPassiveParty(config, xp)._optimizer.state())
    passive = LrPassiveParty(config, xp)
    with pytest.raises(LocalProtocolError):
        LrPassiveParty(config, xp[:, :2]).restore(state)  # another feature count
    with pytest.raises(LocalProtocolError):
        passive.restore(LrPartyState(iteration=config.max_iterations, weights=state.weights,
                                     optimizer=state.optimizer))
    with pytest.raises(LocalProtocolError):
        passive.state()  # nothing applied yet
    with pytest.raises(LocalProtocolError):
        LrArbiter(config, small_keypair[1], start_iteration=config.max_iterations)
    arbiter = LrArbiter(config, small_keypair[1])
    started = LrPassiveParty(config, xp)
    started.handle(next(m for m in arbiter.start() if m.receiver is VflRole.PASSIVE_PARTY))
    with pytest.raises(LocalProtocolError):
        started.restore(state)


def test_a_restored_party_accepts_only_the_resume_instruction(breast, small_keypair):
    xa, y, xp = breast
    config = LrConfig.recommended(len(y), allow_insecure_test_key=True)
    passive = LrPassiveParty(config, xp)
    passive.restore(LrPartyState(iteration=2, weights=np.zeros(xp.shape[1]),
                                 optimizer=passive._optimizer.state()))
    (instruction,) = [m for m in LrArbiter(config, small_keypair[1], start_iteration=2).start()
                      if m.receiver is VflRole.PASSIVE_PARTY]

    with pytest.raises(RemoteProtocolError):
        passive.handle(instruction.model_copy(update={"iteration": 0}))
    with pytest.raises(RemoteProtocolError):
        passive.handle(instruction.model_copy(update={"masked_gradient": b"\x00" * 64}))
    (forward,) = passive.handle(instruction)
    assert forward.kind == "lr_forward" and forward.iteration == 2
