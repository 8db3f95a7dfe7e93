import os
from pathlib import Path

import arviz  # noqa: F401  (see below)
import numpy as np
import pytest

# ArviZ writes a once-a-day stamp file (tmp name + rename) on its first import of the day; two pytest-xdist workers
# importing it together on a fresh machine race on that tmp file (FileNotFoundError at collection, seen 2026-12-02).
# Importing it here, in the controller before the workers start, writes the stamp once.

#: ``shared/`` sits beside the repository (CI clones main with shared/ next to it); override with IMMUNOCAL_SHARED.
SHARED_DIR = Path(os.environ.get("IMMUNOCAL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture
def rng():
    """A seeded generator for every test that draws random numbers (never the global np.random)."""
    return np.random.default_rng(20261122)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared folder (seeds, SPEC, reference data)."""
    if not SHARED_DIR.is_dir():
        pytest.fail(f"shared/ folder not found at {SHARED_DIR}; set IMMUNOCAL_SHARED")
    return SHARED_DIR
