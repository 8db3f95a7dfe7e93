"""CAR-T reaction–diffusion–chemotaxis model of a solid tumour (seed 001; SPEC §3).

Map of the package:

========================  ====================================================================================
``grid``                  node-centred 1/2/3-D grids (Δx = L/(N−1)), storage ``U[7, nz, ny, nx]``
``params``                kernel parameter order, ParameterSet → float64 vector
``kernels``               Numba: R(U) (reactions + face-flux chemotaxis), RK2 half-step, Jacobi sweep
``diffusion``             backward-Euler solvers: ``exact`` (DCT-II, default), ``jacobi`` (published algorithm)
``model``                 numpy reference R(U), :class:`CarTSolver` (Strang splitting, infusions, guards)
``reference``             REFERENCE MODE: the published C++ program's conventions, argument names and CSV output
``homogeneous``           ODE eqs 9–15, steady states E_0/E_T/E_CT, Jacobian, Propositions 1–2
``observables``           burden, antigen-negative fraction, CAR-T kinetics, infiltration depth, RECIST, PFS
``scenarios``             initial states of the normalised studies
``patient``               :func:`simulate_patient`: parameters in → observables out (cohort-scale API)
``io``                    CSV (seed layout) and ``.npz`` snapshots
========================  ====================================================================================
"""

import os as _os

# Numba's OpenMP layer spins at barriers by default; on a shared 2-core machine a descheduled spinning thread makes
# every parallel region 30-50x slower. Passive waiting costs nothing measurable when the machine is idle.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .grid import Grid  # noqa: E402
from .model import CarTSolver, Infusion, InstabilityError, SimulationResult, StepSettings, simulate  # noqa: E402
from .observables import Observables, summarise  # noqa: E402
from .params import FIELDS, PARAM_NAMES, param_array  # noqa: E402
from .patient import PatientResult, resolve_parameters, simulate_patient  # noqa: E402

__all__ = [
    "FIELDS", "PARAM_NAMES", "CarTSolver", "Grid", "Infusion", "InstabilityError", "Observables", "PatientResult",
    "SimulationResult", "StepSettings", "param_array", "resolve_parameters", "simulate", "simulate_patient",
    "summarise",
]
