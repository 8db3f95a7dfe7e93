import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator for every test that draws random numbers (never the global np.random)."""
    return np.random.default_rng(20261122)
