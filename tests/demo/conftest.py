"""Expensive worlds the tests/demo modules share, built once per session.

* ``synthetic_population``: the generator's 20,000-person population (seed 7) as DataFrames, read by
  ``test_synthetic`` and ``test_synthetic_marketing`` (no test changes a frame).
* ``demo_run``: one run of the demo itself on a small population with 512-bit test keys and both
  nodes' egress capture on; the wire-capture tests and the training checks read its state directory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from demo import run as demo
from demo.synthetic import generate

SYNTHETIC_N = 20_000


@pytest.fixture(scope="session")
def synthetic_population(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """Every file of the generator's ``SYNTHETIC_N``-person population (seed 7), by dataset name."""
    from tests.demo.test_synthetic import read

    out = generate(tmp_path_factory.mktemp("pop"), n=SYNTHETIC_N, seed=7, progress=False)
    assert sum(out.rows.values()) > 0
    return {name: read(path) for name, path in out.as_dict().items()}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state directory of one finished demo run; each node's sent payloads are under ``../capture/<party>``."""
    state = tmp_path_factory.mktemp("wire-all") / "state"
    capture = state.parent / "capture"
    mp = pytest.MonkeyPatch()
    mp.setenv("TANDEM_BANK_EGRESS_CAPTURE_DIR", str(capture / "bank"))
    mp.setenv("TANDEM_TELCO_EGRESS_CAPTURE_DIR", str(capture / "telco"))
    try:
        assert demo.run(n=1500, seed=5, state=state, test_key_bits=512) == 0
    finally:
        mp.undo()
    return state
