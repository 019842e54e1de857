"""Plain optimisers for the parties' own weights (each party updates only its own block)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Optimizer", "OptimizerConfig", "OptimizerState"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OptimizerConfig:
    """Update rule shared by both parties.

    Attributes:
        method: ``"sgd"`` (with ``lr / sqrt(1 + decay * t)``), ``"rmsprop"``, ``"adam"``, or ``"newton"``:
            block-diagonal Newton, where each party preconditions its own gradient with the curvature of
            its own block (computed from its own features only, so nothing more is exchanged), with
            heavy-ball ``momentum``; converges in a handful of full-batch iterations.
        learning_rate: step size (for ``"newton"`` a damping factor; 1.0 is a full Newton step).
        decay: SGD learning-rate decay.
        beta1: Adam first-moment decay.
        beta2: Adam/RMSprop second-moment decay.
        eps: numerical floor.
        momentum: heavy-ball momentum of ``"newton"`` (speeds up the block-diagonal iteration).
    """

    method: Literal["sgd", "rmsprop", "adam", "newton"] = "adam"
    learning_rate: float = 0.05
    decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0


@dataclass(frozen=True)
class OptimizerState:
    """Everything an :class:`Optimizer` carries from one step to the next (restoring it continues bit for bit).

    Attributes:
        steps: steps taken.
        first: Adam's first moment, or the heavy-ball velocity of ``"newton"`` (zeros for the others).
        second: the second moment of Adam and RMSprop (zeros for the others).
    """

    steps: int
    first: FloatArray
    second: FloatArray


@dataclass
class Optimizer:
    """Stateful optimiser over one weight vector."""

    config: OptimizerConfig
    size: int
    step_count: int = 0
    _m: FloatArray = field(init=False)
    _v: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self._m = np.zeros(self.size)
        self._v = np.zeros(self.size)

    def state(self) -> OptimizerState:
        """A copy of the optimiser's state."""
        return OptimizerState(self.step_count, self._m.copy(), self._v.copy())

    def restore(self, state: OptimizerState) -> None:
        """Continue from ``state`` (taken from an optimiser of the same config and size).

        Raises:
            ValueError: the state's vectors do not have this optimiser's size, or ``steps`` is negative.
        """
        if state.steps < 0 or np.shape(state.first) != (self.size,) or np.shape(state.second) != (self.size,):
            raise ValueError(f"optimiser state does not fit a vector of {self.size} weights")
        self.step_count = int(state.steps)
        self._m = np.array(state.first, dtype=np.float64)
        self._v = np.array(state.second, dtype=np.float64)

    def step(self, weights: FloatArray, gradient: FloatArray, hessian: FloatArray | None = None) -> FloatArray:
        """Return the updated weights after one step along ``gradient``.

        Args:
            weights: current weights.
            gradient: gradient of the (regularised) loss at ``weights``.
            hessian: the party's own block of the curvature; required by ``"newton"``, ignored otherwise.
        """
        self.step_count += 1
        c = self.config
        if c.method == "sgd":
            return weights - c.learning_rate / math.sqrt(1 + c.decay * self.step_count) * gradient
        if c.method == "newton":
            if hessian is None:
                raise ValueError("the newton method needs the party's curvature block")
            self._m = c.momentum * self._m - c.learning_rate * np.linalg.solve(hessian, gradient)
            return weights + self._m
        self._v = c.beta2 * self._v + (1 - c.beta2) * gradient**2
        if c.method == "rmsprop":
            return weights - c.learning_rate * gradient / (np.sqrt(self._v) + c.eps)
        self._m = c.beta1 * self._m + (1 - c.beta1) * gradient
        m_hat = self._m / (1 - c.beta1**self.step_count)
        v_hat = self._v / (1 - c.beta2**self.step_count)
        return weights - c.learning_rate * m_hat / (np.sqrt(v_hat) + c.eps)
