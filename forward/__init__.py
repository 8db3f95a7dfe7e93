"""Numba forward models (no PyMC import): ``cart`` (seed 001), ``rit`` (seed 002), ``dln`` (seed 003).

Every package follows one template:

* equations and Numba kernels (``kernels.py`` / ``model.py``; parameters as float arrays in kernel order, values from
  the registry in ``priors/``);
* a Python API (``model.py`` / ``api.py`` / ``patient.py``) that validates inputs and raises ``ValueError`` naming the
  culprit, and :class:`immunocal.forward.errors.SimulationError` (subclassed per model) when a run with valid inputs fails
  numerically;
* its own schedule class that maps a conditions-table row (``from_condition``) and refuses unknown keys
  (``rit.Schedule``, ``dln.plan.TreatmentPlan``, the CAR-T simulator's infusions);
* ``simulator.py``: the calibration simulator (``RitSimulator``, ``DlnSimulator``, ``CartSimulator``) — a batch of
  parameter vectors × one condition → observables on a time grid, rebuilt from a serialisable descriptor;
* ``scenarios.py``: the seed's figures' arms and set-ups.
"""
