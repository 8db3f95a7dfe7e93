"""Spatially homogeneous CAR-T model (seed 001 eqs 9–15), its steady states and their stability (eqs 18–48).

``u = (C, E, T_A, T_B, S, A, H)``; :func:`rhs` is F(u), :func:`jacobian` its analytic Jacobian (checked against
finite differences in tests). Steady states: :func:`healthy_state` E_0 (eq 20), :func:`tumour_states` E_T
(eq 27 when μ_0 = 0, mixed states from eqs 28–30), :func:`coexistence_states` E_CT (root finding). Stability:
:func:`proposition1` (conditions 38 on J_T(E_0)) and :func:`proposition2` (conditions 48 on J_CE(E_T)).

Imported as ``immunocal.forward.cart.homogeneous``. (Its kernels are ``cache=True``: this line's change
invalidates a Numba cache written under the pre-namespace module name.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.integrate import solve_ivp
from scipy.optimize import root

from . import params as P
from .params import FIELDS, param_array


def _p(params) -> np.ndarray:
    return np.ascontiguousarray(params, dtype=np.float64) if isinstance(params, np.ndarray) else param_array(params)


@njit(cache=True)
def rhs_kernel(u, p):
    """F(u) of eqs (9)–(15) (compiled; exact same expressions as the spatial kernel without transport)."""
    c, e, ta, tb, s, a, h = u[0], u[1], u[2], u[3], u[4], u[5], u[6]
    ke = p[P.I_KE0] * (1.0 + p[P.I_BETAA] * a + p[P.I_BETAH] * h)
    pr_eff = p[P.I_PR] / (1.0 + a)
    muab = p[P.I_MU0] + p[P.I_NU] * c
    muba = p[P.I_MU1] * np.exp(-p[P.I_XI] * c)
    logistic = p[P.I_RT] * (1.0 - (ta + tb) / p[P.I_KT])
    fh = h / (p[P.I_KH] + h)
    out = np.empty(7)
    out[0] = p[P.I_RHO] * c * ta / (p[P.I_KC] + c) - p[P.I_DELTA] * c * ta - ke * c + pr_eff * e - p[P.I_DC_DEATH] * c
    out[1] = ke * c - pr_eff * e - p[P.I_DE_DEATH] * e
    out[2] = logistic * ta - p[P.I_GAMMA] * c * ta - muab * ta + muba * tb - p[P.I_DTA] * ta
    out[3] = logistic * tb + muab * ta - muba * tb - p[P.I_DTB] * tb
    out[4] = p[P.I_SIGS] * ta - p[P.I_LAMS] * s
    out[5] = p[P.I_SIGA] * (ta + tb) + p[P.I_SIGM] * fh - p[P.I_LAMA] * a
    out[6] = p[P.I_ETA] * (ta + tb) - p[P.I_LAMH] * h
    return out


@njit(cache=True)
def jacobian_kernel(u, p):
    """Analytic ∂F/∂u (7×7)."""
    c, e, ta, tb, s, a, h = u[0], u[1], u[2], u[3], u[4], u[5], u[6]
    ke0, ba, bh = p[P.I_KE0], p[P.I_BETAA], p[P.I_BETAH]
    ke = ke0 * (1.0 + ba * a + bh * h)
    pr = p[P.I_PR]
    pr_eff = pr / (1.0 + a)
    dpr_da = -pr / (1.0 + a) ** 2
    kc, rho = p[P.I_KC], p[P.I_RHO]
    rt, kt = p[P.I_RT], p[P.I_KT]
    mu0, mu1, nu, xi = p[P.I_MU0], p[P.I_MU1], p[P.I_NU], p[P.I_XI]
    muab = mu0 + nu * c
    muba = mu1 * np.exp(-xi * c)
    dmuba = -xi * muba
    logistic = rt * (1.0 - (ta + tb) / kt)
    dlog = -rt / kt
    kh = p[P.I_KH]
    dfh = kh / (kh + h) ** 2
    gam, dlt = p[P.I_GAMMA], p[P.I_DELTA]
    J = np.zeros((7, 7))
    # C
    J[0, 0] = rho * ta * kc / (kc + c) ** 2 - dlt * ta - ke - p[P.I_DC_DEATH]
    J[0, 1] = pr_eff
    J[0, 2] = rho * c / (kc + c) - dlt * c
    J[0, 5] = -ke0 * ba * c + dpr_da * e
    J[0, 6] = -ke0 * bh * c
    # E
    J[1, 0] = ke
    J[1, 1] = -pr_eff - p[P.I_DE_DEATH]
    J[1, 5] = ke0 * ba * c - dpr_da * e
    J[1, 6] = ke0 * bh * c
    # T_A
    J[2, 0] = -gam * ta - nu * ta + dmuba * tb
    J[2, 2] = logistic + dlog * ta - gam * c - muab - p[P.I_DTA]
    J[2, 3] = dlog * ta + muba
    # T_B
    J[3, 0] = nu * ta - dmuba * tb
    J[3, 2] = dlog * tb + muab
    J[3, 3] = logistic + dlog * tb - muba - p[P.I_DTB]
    # S, A, H
    J[4, 2] = p[P.I_SIGS]
    J[4, 4] = -p[P.I_LAMS]
    J[5, 2] = p[P.I_SIGA]
    J[5, 3] = p[P.I_SIGA]
    J[5, 5] = -p[P.I_LAMA]
    J[5, 6] = p[P.I_SIGM] * dfh
    J[6, 2] = p[P.I_ETA]
    J[6, 3] = p[P.I_ETA]
    J[6, 6] = -p[P.I_LAMH]
    return J


def rhs(u, params) -> np.ndarray:
    return rhs_kernel(np.asarray(u, dtype=np.float64), _p(params))


def jacobian(u, params) -> np.ndarray:
    return jacobian_kernel(np.asarray(u, dtype=np.float64), _p(params))


@dataclass
class OdeResult:
    t: np.ndarray
    y: np.ndarray  # (7, nt)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.y[FIELDS.index(name)]


def solve(params, u0: Sequence[float], t_end: float, t_eval: Sequence[float] | None = None, method: str = "LSODA",
          rtol: float = 1e-8, atol: float = 1e-12, infusions: Sequence[tuple[float, float]] = ()) -> OdeResult:
    """Integrate eqs (9)–(15) with scipy (stiff-capable ``LSODA``/``Radau``/``BDF`` use the analytic Jacobian).

    ``infusions``: ``(time, dose)`` pairs adding ``dose`` to C instantaneously (the integration restarts there).
    """
    p = _p(params)
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.shape != (7,) or not np.all(np.isfinite(u0)) or np.any(u0 < 0):
        raise ValueError(f"initial state must be 7 finite values ≥ 0 (C, E, T_A, T_B, S, A, H), got {u0}")
    if not (np.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end = {t_end} is invalid: need a finite value > 0")
    if t_eval is None:
        t_eval = np.linspace(0.0, t_end, 401)
    t_eval = np.asarray(t_eval, dtype=float)
    f = lambda t, u: rhs_kernel(u, p)  # noqa: E731
    jac = lambda t, u: jacobian_kernel(u, p)  # noqa: E731
    kw = {} if method in ("RK45", "RK23", "DOP853") else {"jac": jac}
    cuts = sorted(t for t, _ in infusions if 0 < t < t_end)
    doses = {t: d for t, d in infusions}
    if any(t == 0 for t, _ in infusions):
        u0 = u0.copy()
        u0[0] += sum(d for t, d in infusions if t == 0)
    edges = [0.0] + cuts + [t_end]
    ts, ys = [], []
    u = u0
    for a, b in zip(edges[:-1], edges[1:]):
        mask = (t_eval >= a) & ((t_eval < b) | ((b == t_end) & (t_eval <= b)))
        te = t_eval[mask] if b == t_end else np.append(t_eval[mask], b)
        sol = solve_ivp(f, (a, b), u, method=method, t_eval=te, rtol=rtol, atol=atol, **kw)
        if not sol.success:
            raise RuntimeError(f"homogeneous CAR-T ODE failed on [{a}, {b}]: {sol.message}")
        if b == t_end:
            ts.append(sol.t)
            ys.append(sol.y)
        else:
            ts.append(sol.t[:-1])
            ys.append(sol.y[:, :-1])
            u = np.maximum(sol.y[:, -1], 0.0)
            u[0] += doses.get(b, 0.0)
    return OdeResult(np.concatenate(ts), np.concatenate(ys, axis=1))


# ------------------------------------------------------------------------------------------- steady states
def healthy_state() -> np.ndarray:
    """E_0 (eq 20): the origin."""
    return np.zeros(7)


def _fields_from_tumour(ta: float, tb: float, p: np.ndarray) -> np.ndarray:
    n = ta + tb
    s = p[P.I_SIGS] / p[P.I_LAMS] * ta                                   # eq 21
    h = p[P.I_ETA] / p[P.I_LAMH] * n                                     # eq 22
    a = (p[P.I_SIGA] * n + p[P.I_SIGM] * h / (p[P.I_KH] + h)) / p[P.I_LAMA]  # eq 23
    return np.array([0.0, 0.0, ta, tb, s, a, h])


def tumour_states(params) -> list[np.ndarray]:
    """All biologically admissible CAR-T-free tumour states E_T (C = E = 0, 0 < N < K_T).

    Mixed states (T_A, T_B > 0) from the quadratic (28) in R = r_T(1 − N/K_T), N from eq (29) and T_B/T_A from
    eq (30); when μ_0 = 0 also the antigen-homogeneous state of eq (27) (T_B = 0)."""
    p = _p(params)
    rt, kt = p[P.I_RT], p[P.I_KT]
    dta, dtb, mu0, mu1 = p[P.I_DTA], p[P.I_DTB], p[P.I_MU0], p[P.I_MU1]
    states = []
    if mu0 == 0.0 and rt > dta:
        ta = kt * (1.0 - dta / rt)  # eq 27 with μ_0 = 0
        states.append(_fields_from_tumour(ta, 0.0, p))
    b = dta + dtb + mu0 + mu1
    c0 = (dta + mu0) * (dtb + mu1) - mu0 * mu1
    disc = b * b - 4.0 * c0
    if disc >= 0 and mu1 > 0:
        for R in ((b - np.sqrt(disc)) / 2.0, (b + np.sqrt(disc)) / 2.0):
            n = kt * (1.0 - R / rt)                                        # eq 29
            ratio = (dta + mu0 - R) / mu1                                  # eq 30: T_B/T_A
            if 0 < n < kt and ratio > 0:
                ta = n / (1.0 + ratio)
                states.append(_fields_from_tumour(ta, n - ta, p))
    return states


def coexistence_states(params, guesses: Sequence[Sequence[float]] = (), t_relax: float = 2000.0,
                       tol: float = 1e-10) -> list[np.ndarray]:
    """E_CT states (C > 0, T_A > 0) found by Newton–Krylov-free root finding (scipy ``hybr`` with the analytic
    Jacobian) from the given guesses and from the end of a long ODE run started near every E_T with a small
    CAR-T dose. Distinct roots with all components ≥ 0 are returned."""
    p = _p(params)
    starts = [np.asarray(g, dtype=float) for g in guesses]
    for et in tumour_states(p):
        u0 = et.copy()
        u0[0] = 1e-3 * p[P.I_KT]
        try:
            starts.append(solve(p, u0, t_relax, t_eval=[t_relax], method="LSODA").y[:, -1])
        except RuntimeError:
            pass
    found: list[np.ndarray] = []
    for x0 in starts:
        sol = root(lambda u: rhs_kernel(u, p), x0, jac=lambda u: jacobian_kernel(u, p), method="hybr", tol=tol)
        if not sol.success:
            continue
        u = sol.x
        scale = np.maximum(np.abs(u), 1e-12 * p[P.I_KT])
        if np.any(u < -1e-9 * scale) or u[0] <= 1e-9 * p[P.I_KT] or u[2] <= 0:
            continue
        if np.max(np.abs(rhs_kernel(u, p)) / scale) > 1e-6:
            continue
        if not any(np.allclose(u, v, rtol=1e-6, atol=1e-12 * p[P.I_KT]) for v in found):
            found.append(np.maximum(u, 0.0))
    return found


# ------------------------------------------------------------------------------------------- stability
def proposition1(params) -> dict:
    """Conditions (38) on J_T(E_0) (eqs 35–37) and the eigenvalues of the full Jacobian at E_0."""
    p = _p(params)
    rt, dta, dtb, mu0, mu1 = p[P.I_RT], p[P.I_DTA], p[P.I_DTB], p[P.I_MU0], p[P.I_MU1]
    JT = np.array([[rt - dta - mu0, mu1], [mu0, rt - dtb - mu1]])
    tr, det = np.trace(JT), np.linalg.det(JT)
    eig_full = np.linalg.eigvals(jacobian_kernel(np.zeros(7), p))
    return {"trace": float(tr), "det": float(det), "conditions_hold": bool(tr < 0 and det > 0),
            "eig_JT": np.linalg.eigvals(JT), "eig_full": eig_full,
            "stable": bool(np.max(eig_full.real) < 0)}


def proposition2(params, state: np.ndarray | None = None) -> dict:
    """Conditions (48) on J_CE(E_T) (eqs 41–47), the eigenvalues of the (C, E) block and of the full Jacobian."""
    p = _p(params)
    if state is None:
        states = tumour_states(p)
        if not states:
            raise ValueError("no admissible tumour steady state E_T for these parameters")
        state = states[0]
    ta, a, h = state[2], state[5], state[6]
    ke = p[P.I_KE0] * (1 + p[P.I_BETAA] * a + p[P.I_BETAH] * h)
    pr = p[P.I_PR] / (1 + a)
    a11 = p[P.I_RHO] / p[P.I_KC] * ta - p[P.I_DELTA] * ta - ke - p[P.I_DC_DEATH]  # eq 42
    J = np.array([[a11, pr], [ke, -(pr + p[P.I_DE_DEATH])]])
    tr, det = a11 + J[1, 1], a11 * J[1, 1] - pr * ke
    eig = np.linalg.eigvals(J)
    return {"state": state, "a11": float(a11), "trace": float(tr), "det": float(det),
            "conditions_hold": bool(tr < 0 and det > 0), "eig_JCE": eig,
            "eig_full": np.linalg.eigvals(jacobian_kernel(np.asarray(state, float), p)),
            "car_t_can_invade": bool(np.max(eig.real) > 0)}
