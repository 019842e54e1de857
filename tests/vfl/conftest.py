from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from protocols.paillier import generate_keypair

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fate"


@pytest.fixture(scope="session")
def breast():
    guest = pd.read_csv(DATA / "breast_hetero_guest.csv")
    host = pd.read_csv(DATA / "breast_hetero_host.csv")
    merged = guest.merge(host, on="id", suffixes=("_a", "_p"))
    xa = merged[[c + "_a" if c + "_a" in merged else c for c in guest.columns if c.startswith("x")]].to_numpy(float)
    xp = merged[[c + "_p" if c + "_p" in merged else c for c in host.columns if c.startswith("x")]].to_numpy(float)
    return xa, merged["y"].to_numpy(float), xp


@pytest.fixture(scope="session")
def small_keypair():
    return generate_keypair(512, allow_insecure_test_key=True)


@pytest.fixture()
def rng():
    return np.random.default_rng(7)
