"""The one base class of numerical failures of every forward model.

A :class:`SimulationError` says that a run with *valid* inputs failed numerically (an unstable step, a non-finite
state, a tumour that never reaches its pre-treatment volume). Invalid inputs raise ``ValueError`` (or a
subclass naming the culprit) instead. Campaigns record both per run and go on; the difference tells a user whether to
change the numerics or the inputs.
"""

from __future__ import annotations


class SimulationError(RuntimeError):
    """A forward simulation with valid inputs failed numerically."""
