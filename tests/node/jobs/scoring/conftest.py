from __future__ import annotations

import pytest

from tests.support.scoring_models import population, train


@pytest.fixture(scope="session")
def pop():
    return population()


@pytest.fixture(scope="session")
def trained_lr(pop):
    return train(pop, "hetero_lr")


@pytest.fixture(scope="session")
def trained_sb(pop):
    return train(pop, "secureboost")
