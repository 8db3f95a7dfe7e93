"""The CAR-T model in a culture well (Conte et al. 2025 real-time killing assays): seed 001's homogeneous equations
(eqs 9–11, C active and E exhausted CAR-T cells, T antigen-positive tumour cells) with the tumour-microenvironment
terms switched off, in cells per well and days::

    dC/dt = ρ C T / (K_C + C) − δ C T − k_E C + p_r E − d_C C        (eq 9, A = H = 0: no suppressor, no hypoxia)
    dE/dt = k_E C − p_r E − d_E E                                      (eq 10, A = 0)
    dT/dt = r T (1 − T / K) − γ C T − d_T T                            (eq 11, T_B = 0: no antigen loss in 3 days)

A well starts with ``initial_tumour_cells`` T₀ at the first output time; at the condition's first ``cart_days`` the
CAR-T cells ``effector_target_ratio`` × T₀ are added (the E:T ratio of the plated target cells), as active cells.
Observation (the source's conversion, :data:`CI_PER_CELL`, :data:`CI_INTERCEPT`): the xCELLigence Cell Index
``CI = 1.946e-4 · T + 0.1602 + o`` — adherent tumour cells only (suspended CAR-T cells do not change the impedance);
``o`` (``cell_index_offset``, default 0) is one well's constant Cell Index that is not cell number — spreading after
attachment (every arm rises by ~1 CI in the first 10 h) and the electrode's own reading (a per-well latent in the
Conte configs, so that a constant misfit is not left to a slowly drifting residual).
Units: cells per well, days; γ and δ per CAR-T cell per day. The defaults are the registry's ``normalised`` preset
(densities as fractions of K_T) converted with K = ``well_capacity_cells``: γ = 2.5 / K, δ = 0.05 / K, K_C = 0.05 K;
the other rates are per day in both. Why these terms are off: in a 72-h well assay there is neither hypoxia nor a
suppressive microenvironment, and antigen loss (0.13/day in the seed) is not separable from killing by a Cell Index.

Numerics: classical RK4 with ``substeps`` steps per output interval (the data's 0.25 h); the tangent (forward
sensitivity) equations integrated by the same RK4 stages give the exact derivative of the discrete map
(:meth:`InVitroCartSimulator.simulate_jacobian`, checked against central differences in tests); the step is shown
converged by ``tests/cart/test_invitro.py`` (fourth order; substeps 4 vs 256). The batch kernels are serial: a
well costs ~0.1 ms, and a threaded (OpenMP) kernel evaluated before PyMC forks its chain processes aborts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

#: Cell Index per adherent tumour cell and the empty-well Cell Index (the source's linear conversion)
CI_PER_CELL = 1.946e-4
CI_INTERCEPT = 0.1602
#: the normalised preset (registry ``cart``/``normalised``) in a well of K = 25,000 cells (≈ the tumour-alone plateau
#: of PBT030: Cell Index 4.8)
WELL_CAPACITY = 25000.0
PARAMETERS = {  # name: (default, unit, admissible low, admissible high, scale)
    "tumour_growth_rate": (0.13, "1/day", 0.01, 3.0, "log"),
    "well_capacity_cells": (WELL_CAPACITY, "cells", 5e3, 1e5, "log"),
    "kill_rate": (2.5 / WELL_CAPACITY, "1/(CAR-T cell day)", 1e-7, 1e-2, "log"),
    "car_t_proliferation_rate": (0.55, "1/day", 0.01, 5.0, "log"),
    "car_t_half_saturation_cells": (0.05 * WELL_CAPACITY, "cells", 10.0, 1e6, "log"),
    "contact_loss_rate": (0.05 / WELL_CAPACITY, "1/(tumour cell day)", 1e-9, 1e-3, "log"),
    "exhaustion_rate": (0.05, "1/day", 1e-3, 2.0, "log"),
    "exhaustion_recovery_rate": (0.1, "1/day", 1e-3, 2.0, "log"),
    "car_t_death_rate": (0.08, "1/day", 1e-3, 2.0, "log"),
    "exhausted_death_rate": (0.04, "1/day", 1e-3, 2.0, "log"),
    "tumour_death_rate": (0.01, "1/day", 1e-4, 1.0, "log"),
    "initial_tumour_cells": (8000.0, "cells", 1e3, 5e4, "log"),
    # a well's constant Cell Index that is not cell number (cell spreading after attachment, the electrode's own
    # reading against the source's 0.1602); not a model parameter — it enters the Cell Index only
    "cell_index_offset": (0.0, "Cell Index", -3.0, 3.0, "linear"),
}
NAMES = tuple(PARAMETERS)
N_PAR = len(NAMES)
(I_R, I_K, I_GAMMA, I_RHO, I_KC, I_DELTA, I_KE, I_PR, I_DC, I_DE, I_DT, I_T0, I_OFFSET) = range(N_PAR)


@njit(cache=True)
def _rhs(u, p, out):
    c, e, t = u[0], u[1], u[2]
    out[0] = p[I_RHO] * c * t / (p[I_KC] + c) - p[I_DELTA] * c * t - p[I_KE] * c + p[I_PR] * e - p[I_DC] * c
    out[1] = p[I_KE] * c - p[I_PR] * e - p[I_DE] * e
    out[2] = p[I_R] * t * (1.0 - t / p[I_K]) - p[I_GAMMA] * c * t - p[I_DT] * t


@njit(cache=True)
def _dfdp(u, p, j, d):
    """∂f/∂θ_j (3,) at ``u``."""
    c, e, t = u[0], u[1], u[2]
    d[0] = 0.0
    d[1] = 0.0
    d[2] = 0.0
    if j == I_RHO:
        d[0] = c / (p[I_KC] + c) * t
    elif j == I_KC:
        d[0] = -p[I_RHO] * c * t / (p[I_KC] + c) ** 2
    elif j == I_DELTA:
        d[0] = -c * t
    elif j == I_KE:
        d[0] = -c
        d[1] = c
    elif j == I_PR:
        d[0] = e
        d[1] = -e
    elif j == I_DC:
        d[0] = -c
    elif j == I_DE:
        d[1] = -e
    elif j == I_R:
        d[2] = t * (1.0 - t / p[I_K])
    elif j == I_K:
        d[2] = p[I_R] * t * t / p[I_K] ** 2
    elif j == I_GAMMA:
        d[2] = -c * t
    elif j == I_DT:
        d[2] = -t


@njit(cache=True)
def _tangent(u, s, p, cols, out, d):
    """d/dθ of the right-hand side along the sensitivities ``s`` (3 × len(cols), column k = θ_cols[k]):
    J_u s + ∂f/∂θ (``d``: a scratch vector of 3, so that the hot loop allocates nothing)."""
    c, t = u[0], u[2]
    kc = p[I_KC]
    j00 = p[I_RHO] * t * kc / (kc + c) ** 2 - p[I_DELTA] * t - p[I_KE] - p[I_DC]
    j01 = p[I_PR]
    j02 = p[I_RHO] * c / (kc + c) - p[I_DELTA] * c
    j10 = p[I_KE]
    j11 = -p[I_PR] - p[I_DE]
    j20 = -p[I_GAMMA] * t
    j22 = p[I_R] * (1.0 - 2.0 * t / p[I_K]) - p[I_GAMMA] * c - p[I_DT]
    for k in range(cols.shape[0]):
        _dfdp(u, p, cols[k], d)
        out[0, k] = j00 * s[0, k] + j01 * s[1, k] + j02 * s[2, k] + d[0]
        out[1, k] = j10 * s[0, k] + j11 * s[1, k] + d[1]
        out[2, k] = j20 * s[0, k] + j22 * s[2, k] + d[2]


@njit(cache=True)
def _stage(u, s, p, cols, a, k_in, q_in, tmp, st, k_out, q_out, d):
    """One RK4 stage: the right-hand side (``k_out``) and its tangent (``q_out``, when ``cols`` is not empty) at the
    state u + a·k_in and sensitivities s + a·q_in (the tangent of a Runge–Kutta step is the same step of the
    tangent equations: the exact derivative of the discrete map). Explicit loops: no temporaries."""
    for i in range(3):
        tmp[i] = u[i] + a * k_in[i]
    m = cols.shape[0]
    if m > 0:
        for i in range(3):
            for k in range(m):
                st[i, k] = s[i, k] + a * q_in[i, k]
        _tangent(tmp, st, p, cols, q_out, d)
    _rhs(tmp, p, k_out)


@njit(cache=True)
def _well(p, ratio, cart_time, t0, step, n_out, substeps, cols, ci, sens):
    """One well: Cell Index at ``t0 + k·step`` into ``ci[k]``, and d CI / dθ_cols into ``sens[k]`` (``cols``: the
    parameters to differentiate by; empty: none)."""
    m = cols.shape[0]
    k_t0 = -1
    k_off = -1
    for k in range(m):
        if cols[k] == I_T0:
            k_t0 = k
        elif cols[k] == I_OFFSET:
            k_off = k
    u = np.array([0.0, 0.0, p[I_T0]])
    s = np.zeros((3, m))
    if k_t0 >= 0:
        s[2, k_t0] = 1.0
    added = ratio <= 0.0 or not np.isfinite(cart_time)
    h = step / substeps
    k1, k2, k3, k4, tmp = np.empty(3), np.empty(3), np.empty(3), np.empty(3), np.empty(3)
    q1, q2, q3, q4 = np.empty((3, m)), np.empty((3, m)), np.empty((3, m)), np.empty((3, m))
    st = np.empty((3, m))
    d = np.empty(3)
    t = t0
    for k in range(n_out):
        if k > 0:
            for _ in range(substeps):
                _rhs(u, p, k1)
                if m > 0:
                    _tangent(u, s, p, cols, q1, d)
                _stage(u, s, p, cols, 0.5 * h, k1, q1, tmp, st, k2, q2, d)
                _stage(u, s, p, cols, 0.5 * h, k2, q2, tmp, st, k3, q3, d)
                _stage(u, s, p, cols, h, k3, q3, tmp, st, k4, q4, d)
                for i in range(3):
                    u[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
                    for j in range(m):
                        s[i, j] += h / 6.0 * (q1[i, j] + 2.0 * q2[i, j] + 2.0 * q3[i, j] + q4[i, j])
                t += h
            t = t0 + k * step  # no drift of the output times
        if not added and t >= cart_time - 1e-9 * step:  # the CAR-T cells go in at the first output time >= theirs
            u[0] += ratio * p[I_T0]
            if k_t0 >= 0:
                s[0, k_t0] += ratio
            added = True
        ci[k] = CI_PER_CELL * u[2] + CI_INTERCEPT + p[I_OFFSET]
        for j in range(m):
            sens[k, j] = CI_PER_CELL * s[2, j]  # zero for the offset: no state depends on it
        if k_off >= 0:
            sens[k, k_off] = 1.0


@njit(cache=True)
def cell_index_batch(P, ratio, cart_time, t0, step, n_out, substeps):
    """Cell Index ``(n, n_out)`` of a batch of full parameter vectors ``P`` (n, N_PAR) under one condition."""
    n = P.shape[0]
    out = np.empty((n, n_out))
    dummy = np.empty((1, 0))
    none = np.empty(0, dtype=np.int64)
    for i in range(n):
        _well(P[i], ratio, cart_time, t0, step, n_out, substeps, none, out[i], dummy)
    return out


@njit(cache=True)
def cell_index_batch_jacobian(P, ratio, cart_time, t0, step, n_out, substeps, cols):
    """:func:`cell_index_batch` and d CI / dθ_cols ``(n, n_out, len(cols))`` (forward sensitivities, same RK4
    stages; only the columns asked for are propagated)."""
    n = P.shape[0]
    out = np.empty((n, n_out))
    jac = np.empty((n, n_out, cols.shape[0]))
    for i in range(n):
        _well(P[i], ratio, cart_time, t0, step, n_out, substeps, cols, out[i], jac[i])
    return out, jac


@dataclass
class InVitroCartSimulator:
    """Cell Index of CAR-T killing assays (one well per subject) on the data's time grid.

    ``parameter_names``: the columns of ``theta`` (any of :data:`PARAMETERS`; the others keep ``defaults`` or the
    table's default). Output grid: ``t_start_days`` + k·``step_days``, k < ``n_times`` (Conte 2025: 2.5013 h, 0.25 h,
    280 points to 72.25 h). A condition gives ``effector_target_ratio`` (0: tumour alone) and ``cart_days``."""

    parameter_names: tuple[str, ...] = ("tumour_growth_rate", "kill_rate")
    t_start_days: float = 2.5013 / 24.0
    step_days: float = 0.25 / 24.0
    n_times: int = 280
    substeps: int = 4
    defaults: dict | None = None
    name: str = "cart_invitro"

    def __post_init__(self):
        self.parameter_names = tuple(self.parameter_names)
        unknown = [n for n in (*self.parameter_names, *(self.defaults or {})) if n not in PARAMETERS]
        if unknown:
            raise ValueError(f"in-vitro CAR-T simulator: unknown parameter(s) {unknown}; known: {list(NAMES)}")
        if not (self.step_days > 0 and self.n_times >= 1 and self.substeps >= 1):
            raise ValueError(f"in-vitro CAR-T simulator: need step_days > 0, n_times >= 1, substeps >= 1; got "
                             f"{self.step_days}, {self.n_times}, {self.substeps}")
        self._base = np.array([PARAMETERS[n][0] for n in NAMES], float)
        for n, v in (self.defaults or {}).items():
            if not (np.isfinite(v) and (v > 0 or PARAMETERS[n][4] != "log")):
                raise ValueError(f"in-vitro CAR-T simulator: default {n} = {v!r} must be a "
                                 f"{'positive' if PARAMETERS[n][4] == 'log' else 'finite'} number")
            self._base[NAMES.index(n)] = float(v)
        self._idx = np.array([NAMES.index(n) for n in self.parameter_names], dtype=np.int64)
        self.times = self.t_start_days + self.step_days * np.arange(self.n_times)
        self.observables = ("cell_index",)
        self.numerics_tag = f"rk4_substeps{self.substeps}"

    def space(self, preset=None):
        from immunocal.calib.design import ParameterSpace

        rec = [PARAMETERS[n] for n in self.parameter_names]
        return ParameterSpace(self.parameter_names, tuple(r[2] for r in rec), tuple(r[3] for r in rec),
                              tuple(r[4] for r in rec))

    def refined(self) -> InVitroCartSimulator:
        """The same simulator with 4× the RK4 substeps (the workflow's resolution check)."""
        return InVitroCartSimulator(self.parameter_names, self.t_start_days, self.step_days, self.n_times,
                                    self.substeps * 4, self.defaults, self.name)

    def _full(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(np.asarray(theta, float))
        if theta.shape[1] != len(self.parameter_names):
            raise ValueError(f"in-vitro CAR-T simulator: theta has {theta.shape[1]} columns, parameter_names has "
                             f"{len(self.parameter_names)}")
        P = np.repeat(self._base[None, :], len(theta), axis=0)
        P[:, self._idx] = theta
        return np.ascontiguousarray(P)

    def _condition(self, condition) -> tuple[float, float]:
        condition = condition or {}
        ratio = float(condition.get("effector_target_ratio", 0.0) or 0.0)
        days = condition.get("cart_days") or []
        if ratio < 0 or not np.isfinite(ratio):
            raise ValueError(f"in-vitro CAR-T simulator: effector_target_ratio must be >= 0, got {ratio!r}")
        if ratio > 0 and not days:
            raise ValueError("in-vitro CAR-T simulator: a condition with effector_target_ratio > 0 needs cart_days")
        return ratio, (float(days[0]) if days else np.inf)

    def simulate(self, theta: np.ndarray, condition: dict | None = None) -> np.ndarray:
        ratio, cart = self._condition(condition)
        ci = cell_index_batch(self._full(theta), ratio, cart, self.t_start_days, self.step_days, self.n_times,
                              self.substeps)
        return ci[:, None, :]

    def simulate_jacobian(self, theta: np.ndarray, condition: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`simulate` and its exact Jacobian ``(n, 1, n_times, len(parameter_names))``."""
        ratio, cart = self._condition(condition)
        ci, jac = cell_index_batch_jacobian(self._full(theta), ratio, cart, self.t_start_days, self.step_days,
                                            self.n_times, self.substeps, self._idx)
        return ci[:, None, :], jac[:, None, :, :]
