import numpy as np
import pandas as pd
import pytest

from demo.public_data import fate_path
from protocols.crypto.paillier import generate_keypair


@pytest.fixture(scope="session")
def breast():
    guest = pd.read_csv(fate_path("breast", "guest"))
    host = pd.read_csv(fate_path("breast", "host"))
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
