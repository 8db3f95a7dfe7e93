"""The CAR-T reaction–diffusion–chemotaxis model (seed 001 eqs 1–8) and its Strang-split time stepper (eq 57).

.. math::
   \\partial_t C   = \\nabla\\cdot(D_C(x)\\nabla C) - \\nabla\\cdot(\\chi_C(A) C \\nabla S) + \\rho_C C T_A/(K_C + C)
                   - \\delta_{CT} C T_A - k_e(A,H) C + p_r E/(1+A) - d_C C
   \\partial_t E   = D_E \\nabla^2 E + k_e(A,H) C - p_r E/(1+A) - d_E E
   \\partial_t T_A = D_T \\nabla^2 T_A + r_T (1 - (T_A+T_B)/K_T) T_A - \\gamma C T_A - \\mu_{AB}(C) T_A
                   + \\mu_{BA}(C) T_B - d_{T_A} T_A
   \\partial_t T_B = D_T \\nabla^2 T_B + r_T (1 - (T_A+T_B)/K_T) T_B + \\mu_{AB}(C) T_A - \\mu_{BA}(C) T_B - d_{T_B} T_B
   \\partial_t S   = D_S \\nabla^2 S + \\sigma_S T_A - \\lambda_S S
   \\partial_t A   = D_A \\nabla^2 A + \\sigma_A (T_A+T_B) + \\sigma_M f(H) - \\lambda_A A
   \\partial_t H   = D_H \\nabla^2 H + \\eta (T_A+T_B) - \\lambda_H H

with χ_C(A) = χ_0/(1+α_A A), k_e = k_e0(1+β_A A+β_H H), μ_AB = μ_0+νC, μ_BA = μ_1 e^{−ξC}, f(H) = H/(K_H+H).

One step: ``U ← Φ_R(Δt/2) Φ_D(Δt) Φ_R(Δt/2) U`` where Φ_R is RK2 with ``exp_substeps`` substeps and projection onto
u ≥ 0 after the predictor and after each substep (kernels.reaction_half_step), Φ_D is backward Euler for each field
(:mod:`immunocal.forward.cart.diffusion`) followed by the projection (removes round-off negatives only).

Stability guards (never silent clamping of an exploding solution): after every reaction half-step, a non-finite
value raises :class:`InstabilityError`; so does an explicit update that would drive a field below
``−negativity_tol × max(field)`` before the projection (default ``negativity_tol = 1e-3``). Smaller undershoots are
truncation-level artefacts of the explicit step (e.g. the centred face average of C in the chemotaxis flux at a sharp
front removes ≈ h·χ·ΔS/(2Δx²)·C from an empty neighbour) and are projected; the largest one seen is reported in
``SimulationResult.diagnostics['max_relative_undershoot']``. The published program's conventions (no guards, ceil
step count) live in :mod:`immunocal.forward.cart.reference` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from immunocal.forward.errors import SimulationError

from . import params as P
from .diffusion import SOLVERS, ExactDiffusion, VariableCoefficientDiffusion, make_diffusion
from .grid import Grid
from .kernels import clamp_nonneg, reaction_half_step, reaction_rhs
from .params import FIELDS, diffusion_coefficients, param_array


#: Revision of the spatial solver's arithmetic — results of different revisions differ at round-off level, so stored
#: forward runs (campaigns) record it and are not mixed: 1 = full 3-D DCT diffusion solve, five-pass RK2;
#: 2 = DCT over the fast axes + Thomas along the slowest, fused two-pass RK2 with the x-face flux carried
#: (2026-12-01; same linear system and same reaction arithmetic, ≈ 1e-15 per diffusion solve).
SOLVER_REVISION = 2


class InstabilityError(SimulationError):
    """The explicit reaction step or the solution became unstable (non-finite or strongly negative values)."""


# ----------------------------------------------------------------------------------------------- numpy reference
def reaction_rhs_numpy(U: np.ndarray, p: np.ndarray, grid: Grid) -> np.ndarray:
    """Readable numpy version of R(U) (reactions + chemotaxis, no diffusion); must agree with the Numba kernel."""
    C, E, TA, TB, S, A, H = (U[f] for f in range(7))
    chi = p[P.I_CHI0] / (1.0 + p[P.I_ALPHA] * A)
    div = np.zeros_like(C)
    for axis, h in zip((2, 1, 0), grid.spacing3):  # x, y, z axes of the (nz, ny, nx) array
        n = C.shape[axis]
        if n < 2:
            continue
        # index-clamped neighbours: pad with edge values, face between node m and m+1
        def sl(a, b):
            idx = [slice(None)] * 3
            idx[axis] = slice(a, b)
            return tuple(idx)

        chi_f = 0.5 * (chi[sl(0, n - 1)] + chi[sl(1, n)])
        c_f = 0.5 * (C[sl(0, n - 1)] + C[sl(1, n)])
        flux = chi_f * c_f * (S[sl(1, n)] - S[sl(0, n - 1)]) / h  # interior faces; boundary faces carry 0
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        flux = np.pad(flux, pad)
        div += (flux[sl(1, n + 1)] - flux[sl(0, n)]) / h
    ke = p[P.I_KE0] * (1 + p[P.I_BETAA] * A + p[P.I_BETAH] * H)
    pr_eff = p[P.I_PR] / (1 + A)
    mu_ab = p[P.I_MU0] + p[P.I_NU] * C
    mu_ba = p[P.I_MU1] * np.exp(-p[P.I_XI] * C)
    logistic = p[P.I_RT] * (1 - (TA + TB) / p[P.I_KT])
    f_h = H / (p[P.I_KH] + H)
    out = np.empty_like(U)
    out[0] = (p[P.I_RHO] * C * TA / (p[P.I_KC] + C) - p[P.I_DELTA] * C * TA - ke * C + pr_eff * E
              - p[P.I_DC_DEATH] * C - div)
    out[1] = ke * C - pr_eff * E - p[P.I_DE_DEATH] * E
    out[2] = logistic * TA - p[P.I_GAMMA] * C * TA - mu_ab * TA + mu_ba * TB - p[P.I_DTA] * TA
    out[3] = logistic * TB + mu_ab * TA - mu_ba * TB - p[P.I_DTB] * TB
    out[4] = p[P.I_SIGS] * TA - p[P.I_LAMS] * S
    out[5] = p[P.I_SIGA] * (TA + TB) + p[P.I_SIGM] * f_h - p[P.I_LAMA] * A
    out[6] = p[P.I_ETA] * (TA + TB) - p[P.I_LAMH] * H
    return out


def reaction_rhs_numba(U: np.ndarray, p: np.ndarray, grid: Grid) -> np.ndarray:
    """Convenience wrapper of the compiled R(U) (allocates its output)."""
    out = np.empty_like(U)
    reaction_rhs(np.ascontiguousarray(U), p, 1.0 / grid.spacing3, np.empty(U.shape[1:]), out)
    return out


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Infusion:
    """Instantaneous CAR-T administration at ``time``: ``C += profile`` (a field of the grid's storage shape, or a
    scalar added everywhere). Applied at the start of the first step whose start time is ≥ time − Δt/2."""

    time: float
    profile: np.ndarray | float

    def __post_init__(self):
        if not math.isfinite(self.time) or self.time < 0:
            raise ValueError(f"infusion time {self.time} is invalid: need a finite time ≥ 0")
        arr = np.asarray(self.profile, dtype=np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError("infusion profile must be finite and ≥ 0")


@dataclass(frozen=True)
class StepSettings:
    """Numerical settings of the Strang-split solver.

    dt : time step Δt (> 0); exp_substeps : RK2 substeps per reaction half-step (≥ 1); solver : ``exact``
    (DCT-II, default) or ``jacobi`` (published algorithm); diff_iters, diff_tol : Jacobi settings;
    negativity_tol : guard threshold (see module docstring); threads : Numba/scipy.fft threads (None = all for
    grids ≥ 30k nodes, else 1); diffusion_scheme : ``backward_euler`` (seed eq 60, default) or ``crank_nicolson``
    (exact solver; makes the Strang step second order in time, see tests/cart/test_numerics.py).
    """

    dt: float
    exp_substeps: int = 1
    solver: str = "exact"
    diff_iters: int = 60
    diff_tol: float = 1e-8
    negativity_tol: float = 1e-3
    guards: bool = True
    threads: int | None = None
    diffusion_scheme: str = "backward_euler"

    def __post_init__(self):
        if not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"time step dt = {self.dt} is invalid: need a finite dt > 0")
        if int(self.exp_substeps) < 1:
            raise ValueError(f"exp_substeps = {self.exp_substeps} is invalid: need ≥ 1")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown diffusion solver '{self.solver}'; choose one of {SOLVERS}")
        if int(self.diff_iters) < 1:
            raise ValueError(f"diff_iters = {self.diff_iters} is invalid: need ≥ 1")
        if not (math.isfinite(self.diff_tol) and self.diff_tol >= 0):
            raise ValueError(f"diff_tol = {self.diff_tol} is invalid: need a finite value ≥ 0")
        if not (self.negativity_tol > 0):
            raise ValueError(f"negativity_tol = {self.negativity_tol} is invalid: need > 0")


@dataclass
class SimulationResult:
    """Trajectory summaries. ``times[n]``, ``integrals[n, f]`` (node sum × cell volume), ``means[n, f]``,
    ``maxima[n, f]``; ``snapshots[t] = U`` copies at requested times; ``final`` state; ``diagnostics``."""

    grid: Grid
    times: np.ndarray
    integrals: np.ndarray
    means: np.ndarray
    maxima: np.ndarray
    final: np.ndarray
    snapshots: dict[float, np.ndarray] = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    params: Mapping[str, float] | None = None

    def integral(self, name: str) -> np.ndarray:
        return self.integrals[:, FIELDS.index(name)]

    def mean(self, name: str) -> np.ndarray:
        return self.means[:, FIELDS.index(name)]


# ----------------------------------------------------------------------------------------------- stepper
class CarTSolver:
    """Strang-split solver for one grid, parameter vector and settings.

    Parameters
    ----------
    grid : Grid
    params : ParameterSet or mapping name -> value (every cart parameter) or kernel vector (``params.PARAM_NAMES``)
    settings : StepSettings
    car_t_diffusion_field : optional D_C(x) of the storage shape; replaces the scalar D_C (exact solver only).
    """

    def __init__(self, grid: Grid, params, settings: StepSettings, car_t_diffusion_field: np.ndarray | None = None):
        self.grid = grid
        self.params = params if not isinstance(params, np.ndarray) else None
        self.p = np.ascontiguousarray(params, dtype=np.float64) if isinstance(params, np.ndarray) \
            else param_array(params)
        if self.p.shape != (len(P.PARAM_NAMES),) or not np.all(np.isfinite(self.p)):
            raise ValueError(f"parameter vector must hold {len(P.PARAM_NAMES)} finite values")
        self.settings = settings
        # threads for the Numba kernels: all for large grids, one for small ones (parallel regions cost more
        # than they save below ~30k nodes)
        if settings.threads is not None:
            self.threads = max(1, min(int(settings.threads), numba.config.NUMBA_NUM_THREADS))
        else:
            self.threads = numba.config.NUMBA_NUM_THREADS if grid.size >= 30_000 else 1
        D = diffusion_coefficients(self.p)
        self.variable_dc = None
        if car_t_diffusion_field is not None:
            if settings.solver != "exact":
                raise ValueError("a spatially varying D_C(x) needs solver='exact' (the Jacobi solver of the "
                                 "published program has constant coefficients)")
            self.variable_dc = VariableCoefficientDiffusion(grid, car_t_diffusion_field)
            D[0] = 0.0
        if self.variable_dc is not None and settings.diffusion_scheme != "backward_euler":
            raise ValueError("a spatially varying D_C(x) is solved with backward Euler only")
        self.diffuse = make_diffusion(settings.solver, grid, D, settings.diff_iters, settings.diff_tol,
                                      workers=settings.threads, scheme=settings.diffusion_scheme)
        self.inv_h = 1.0 / grid.spacing3
        shape = grid.array_shape
        self.work = np.empty((3, 7) + shape)
        self.chi = np.empty(shape)
        self.rowmin = np.empty((shape[0] * shape[1], 7))
        self.rowbad = np.zeros(shape[0] * shape[1], dtype=np.int64)
        self.worst = np.zeros(8)
        self.max_undershoot = np.zeros(7)

    # -- pieces ---------------------------------------------------------------------------------------------
    def reaction(self, U: np.ndarray, dt_half: float, t: float) -> None:
        s = self.settings
        reaction_half_step(U, self.p, self.inv_h, dt_half, int(s.exp_substeps), self.work, self.chi, self.rowmin,
                           self.rowbad, self.worst)
        if self.worst[7] > 0:
            raise InstabilityError(
                f"non-finite value in the reaction–chemotaxis step at t ≈ {t:.6g} (dt = {s.dt:g}, "
                f"exp_substeps = {s.exp_substeps}); reduce dt or increase exp_substeps (try "
                f"{4 * s.exp_substeps})")
        np.minimum(self.max_undershoot, self.worst[:7], out=self.max_undershoot)
        if s.guards:
            f = int(np.argmin(self.worst[:7]))
            if self.worst[f] < -s.negativity_tol:
                raise InstabilityError(
                    f"explicit reaction–chemotaxis update drove field {FIELDS[f]} to {self.worst[f]:.3g} × its "
                    f"max before projection at t ≈ {t:.6g} (tolerance −{s.negativity_tol:g}); the explicit step "
                    f"is unstable: increase exp_substeps (currently {s.exp_substeps}, try ≥ {4 * s.exp_substeps}) "
                    f"or reduce dt = {s.dt:g}")

    def diffusion(self, U: np.ndarray, dt: float) -> None:
        if self.variable_dc is None and isinstance(self.diffuse, ExactDiffusion):
            self.diffuse(U, dt, project=True)  # the projection fused with the solve's write-back
            return
        self.diffuse(U, dt)
        if self.variable_dc is not None:
            self.variable_dc(U[0], dt)
        clamp_nonneg(U)

    def step(self, U: np.ndarray, t: float, dt: float | None = None) -> None:
        """One Strang step Φ_R(dt/2) Φ_D(dt) Φ_R(dt/2), in place."""
        dt = self.settings.dt if dt is None else dt
        previous = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            self.reaction(U, 0.5 * dt, t)
            self.diffusion(U, dt)
            self.reaction(U, 0.5 * dt, t + 0.5 * dt)
        finally:
            numba.set_num_threads(previous)

    # -- driver ---------------------------------------------------------------------------------------------
    def run(self, U0: np.ndarray, t_end: float, *, record_every: int = 1,
            snapshot_times: Sequence[float] = (), infusions: Sequence[Infusion] = (),
            callback=None, step_count: int | None = None, progress: bool = False) -> SimulationResult:
        """Integrate from ``U0`` (copied) at t = 0 to ``t_end``.

        The number of steps is ``ceil(t_end/dt)`` (to 1e-9 relative) and the last step is shortened so the run
        ends exactly at ``t_end`` (unless ``step_count`` is given: then exactly that many steps of size dt — the
        published program's convention, see :mod:`immunocal.forward.cart.reference`). Integrals are recorded at t = 0, every
        ``record_every`` steps and at the end; snapshots at the steps nearest to ``snapshot_times``;
        ``callback(n, t, U)`` is called after every step (n = 1 …).
        """
        if not (math.isfinite(t_end) and t_end >= 0):
            raise ValueError(f"final time t_end = {t_end} is invalid: need a finite value ≥ 0")
        U = np.array(U0, dtype=np.float64, order="C", copy=True)
        if U.shape != (7,) + self.grid.array_shape:
            raise ValueError(f"state has shape {U.shape}; expected {(7,) + self.grid.array_shape}")
        if not np.all(np.isfinite(U)) or np.any(U < 0):
            raise ValueError("initial state must be finite and ≥ 0")
        dt = self.settings.dt
        if step_count is None:
            nsteps = max(int(math.ceil(t_end / dt * (1 - 1e-9))), 0)
            times = np.minimum(np.arange(nsteps + 1) * dt, t_end)
            if nsteps:
                times[-1] = t_end
        else:
            nsteps = int(step_count)
            times = np.arange(nsteps + 1) * dt
        snap_steps = {}
        for ts in snapshot_times:
            n = int(np.argmin(np.abs(times - ts)))
            snap_steps.setdefault(n, float(times[n]))
        pending = sorted(infusions, key=lambda inf: inf.time)
        for inf in pending:
            try:
                np.broadcast_to(np.asarray(inf.profile, dtype=np.float64), U[0].shape)
            except ValueError:
                raise ValueError(f"infusion profile at t = {inf.time} has shape {np.shape(inf.profile)}; expected a "
                                 f"scalar or the field shape {U[0].shape} (nz, ny, nx)") from None
        rec_t, rec_i, rec_m, rec_x, snaps = [], [], [], [], {}
        vol = self.grid.cell_volume

        def record(n):
            sums = U.reshape(7, -1).sum(axis=1)
            rec_t.append(times[n])
            rec_i.append(sums * vol)
            rec_m.append(sums / U[0].size)
            rec_x.append(U.reshape(7, -1).max(axis=1))

        iterator = range(nsteps)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="cart", unit="step")
        if 0 in snap_steps:
            snaps[snap_steps[0]] = U.copy()
        for n in iterator:
            t = times[n]
            h = times[n + 1] - t
            while pending and pending[0].time <= t + 0.5 * h + 1e-12:
                inf = pending.pop(0)
                U[0] += np.broadcast_to(np.asarray(inf.profile, dtype=np.float64), U[0].shape)
            if n % record_every == 0:
                record(n)
            self.step(U, t, h)
            if callback is not None:
                callback(n + 1, times[n + 1], U)
            if n + 1 in snap_steps:
                snaps[snap_steps[n + 1]] = U.copy()
        record(nsteps)
        if pending:
            # infusions at (or after) the final time are applied to the returned state
            for inf in pending:
                if inf.time <= times[-1] + 1e-12:
                    U[0] += np.broadcast_to(np.asarray(inf.profile, dtype=np.float64), U[0].shape)
        diag = {"steps": nsteps, "dt": dt, "solver": self.settings.solver,
                "exp_substeps": self.settings.exp_substeps, "threads": self.threads,
                "max_relative_undershoot": {f: float(v) for f, v in zip(FIELDS, self.max_undershoot)}}
        return SimulationResult(self.grid, np.array(rec_t), np.array(rec_i), np.array(rec_m), np.array(rec_x),
                                U, snaps, diag, self.params)


def simulate(grid: Grid, params, U0: np.ndarray, t_end: float, dt: float, **kwargs) -> SimulationResult:
    """One-call spatial simulation: ``StepSettings`` keywords (exp_substeps, solver, …) and ``run`` keywords
    (record_every, snapshot_times, infusions, …) may be mixed."""
    run_keys = {"record_every", "snapshot_times", "infusions", "callback", "step_count", "progress"}
    run_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in run_keys}
    dc_field = kwargs.pop("car_t_diffusion_field", None)
    solver = CarTSolver(grid, params, StepSettings(dt=dt, **kwargs), car_t_diffusion_field=dc_field)
    return solver.run(U0, t_end, **run_kw)
