"""Numba kernels of the seed-002 impulsive DDE: the time step (exponential midpoint rule, or the seed's explicit
Euler), cumulative delay histories, impulses, and the Markov mode.

Parameters enter as one float64 array ``theta`` ordered as :data:`PARAM_NAMES` (registry names), so changing a
value never recompiles. See docs/rit.md ("Discretisation choices", point 5) for the equations of the scheme; in
short, per grid step ``t_j -> t_{j+1}``:

1. impulses scheduled at ``t_j`` (radiation, then drug doses) act on the state at ``t_j``;
2. the post-impulse state is recorded;
3. ``n_sub`` substeps of :func:`step`; each receives the delayed sources as integrals over its interval, read off
   the cumulative histories ``Q_R = int R`` and ``Q_J = T^_a`` (monotone cubic Hermite, :func:`_cum_at`), and
   appends its own increments to them; ``T^`` is capped at ``T^_0`` after each substep.

Inlining: small helpers are ``inline="always"`` (Numba-IR inlining; their call overhead showed in the step), but
not the helpers called at many sites that themselves inline others (:func:`_free_growth_step`, :func:`_cum_ring`,
:func:`birth_death_exact`): inlined, they multiplied the IR to ≈ 10 copies of :func:`step` and a cold compile of
the value and tangent specialisations took 2.7 + 7.4 minutes; now 0.5 + 1.3 minutes, the same bits and speed
(docs/rit.md, "Compile time").

Imported as ``immunocal.forward.rit.kernels``. (Its kernels are ``cache=True``: this line's change
invalidates a Numba cache written under the pre-namespace module name.)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: order of the parameter array handed to the kernels (names of priors/data/rit.toml)
PARAM_NAMES = (
    "initial_tumour_cells",
    "initial_naive_t_cells",
    "tumour_proliferation_rate",
    "proliferation_saturation",
    "tumour_alpha",
    "tumour_beta",
    "beta_dose_modulation",
    "lql_transition",
    "doomed_clearance_rate",
    "mitotic_delay_start",
    "mitotic_delay_end",
    "immune_kill_rate",
    "immune_kill_exponent",
    "immune_kill_half_saturation",
    "pdl1_dose",
    "pdl1_elimination_rate",
    "antigen_production_rate",
    "antigen_release_rate",
    "antigen_activation_delay",
    "antigen_elimination_rate",
    "t_cell_activation_rate",
    "activation_inactivation_ratio",
    "ctla4_dose",
    "ctla4_elimination_rate",
    "infiltration_delay",
    "t_cell_alpha",
    "t_cell_beta",
    "t_cell_tumour_death_rate",
    "t_cell_elimination_rate",
    "naive_t_cell_production",
    "tumour_cell_volume",
    "t_cell_volume",
    "vascular_damage_threshold",
    "vascular_recovery_rate",
)
(
    P_C0,
    P_T0,
    P_LAM1,
    P_LAM2,
    P_ALPHA,
    P_BETA,
    P_C,
    P_X,
    P_PHI,
    P_TD1,
    P_TD2,
    P_P,
    P_Q,
    P_S,
    P_IP1,
    P_MU,
    P_RHO,
    P_PSI,
    P_TAU1,
    P_SIGMA,
    P_A,
    P_R,
    P_IC4,
    P_NU,
    P_TAU2,
    P_AT,
    P_BT,
    P_IOTA,
    P_ETA,
    P_H,
    P_VC,
    P_VT,
    P_DV,
    P_KV,
) = range(len(PARAM_NAMES))

N_PARAMS = len(PARAM_NAMES)

SURVIVAL_CODES = {"lq": 0, "modified_lq": 1, "lql": 2}

#: columns of the recorded state array
STATE_NAMES = (
    "C",
    "C_doomed",
    "A_hat",
    "T_hat",
    "T_hat_a",
    "T_hat_b",
    "T_a",
    "c4",
    "p1",
    "volume_mm3",
    "vascular_factor",
)
S_C, S_CD, S_A, S_TH, S_THA, S_THB, S_TA, S_C4, S_P1, S_V, S_F = range(len(STATE_NAMES))
N_STATES = len(STATE_NAMES)

#: kernel status codes
OK, FREE_GROWTH_FAILED, NONFINITE = 0, 1, 2
#: info vector layout returned by the kernels
(
    I_STATUS,
    I_T_FREE,
    I_CONTROLLED_STEP,
    I_N_NEGATIVE,
    I_FIRST_NEGATIVE_STEP,
    I_N_CAPPED,
    I_FINAL_C,
    I_MIN_C,
) = range(8)
N_INFO = 8


# ------------------------------------------------------------------------ real or complex arithmetic (complex step)
# Every kernel runs on float64 parameters (the simulation) or on complex128 ones (complex-step differentiation:
# theta + i h e_k with h = 1e-200 gives d(output)/d theta_k = Im(output) / h exactly, to round-off — the exact
# derivative of this very discretisation, branches included). So branches compare real parts and min/max pick the
# branch by its real part (its derivative is then the branch's own).
@njit(cache=True, inline="always")
def _min(a, b):
    return a if a.real <= b.real else b


@njit(cache=True, inline="always")
def _max(a, b):
    return a if a.real >= b.real else b


@njit(cache=True)
def log_sf_tumour(theta, survival, d):
    """ln SF_C(d): 0 = LQ (eq 1), 1 = modified LQ (eq 2), 2 = LQL (eq 3)."""
    alpha = theta[P_ALPHA]
    beta = theta[P_BETA]
    if survival == 2:
        x = theta[P_X]
        y = x * d
        if y.real < 1e-4:
            g = d * d * (1.0 - y / 3.0 + y * y / 12.0)
        else:
            g = 2.0 * (y + np.expm1(-y)) / (x * x)
        return -alpha * d - beta * g
    if survival == 1:
        beta = beta * (1.0 + theta[P_C] * math.sqrt(d))
    return -alpha * d - beta * d * d


@njit(cache=True, inline="always")
def omega(tbar, td1, td2):
    """Mitotic-delay ramp, eq (8) with the typo fixed: 0 for tbar <= td1, linear on (td1, td2], 1 after td2."""
    if tbar.real <= td1.real:
        return 0.0
    if tbar.real > td2.real:
        return 1.0
    return (tbar - td1) / (td2 - td1)


@njit(cache=True, inline="always")
def kill_rate(theta, ta, ctot, p1):
    """Per-cell immune kill rate p (1 + p1) (T_a/C_tot)^q / (s + (T_a/C_tot)^q) (eqs 18, 22)."""
    return _kill_from_parts(theta, p1, _kill_parts(theta, ta, ctot))


@njit(cache=True, inline="always")
def _kill_parts(theta, ta, ctot):
    """The pieces of :func:`kill_rate` (its tangent reuses them): ``(active, ln(C_tot/T_a), (C_tot/T_a)^q,
    1 + s (C_tot/T_a)^q)``; x^q / (s + x^q) is written as 1 / (1 + s (C_tot/T_a)^q): no overflow when C_tot
    underflows towards 0."""
    if ctot.real <= 0.0 or ta.real <= 0.0:
        return False, 0.0 * ctot, 0.0 * ctot, 1.0 + 0.0 * ctot
    lr = np.log(ctot / ta)
    z = np.exp(theta[P_Q] * lr)
    return True, lr, z, 1.0 + theta[P_S] * z


@njit(cache=True, inline="always")
def _kill_from_parts(theta, p1, parts):
    if not parts[0]:
        return 0.0 * parts[3]
    return theta[P_P] * (1.0 + p1) / parts[3]


@njit(cache=True)
def markov_step(n, pp, pd, rng):
    """One Markov birth-death step of ``n`` cells (Supp. §3.1): each cell gives 2 (prob ``pp``), 0 (``pd``) or 1.

    Drawn for the whole population at once: births ~ Bin(n, pp), deaths ~ Bin(n - births, pd / (1 - pp)), which is
    the multinomial(n; pp, pd, 1 - pp - pd). Probabilities outside [0, 1] are capped (pp to [0, 1], pd to 1 - pp);
    returns (new n, number of caps applied)."""
    capped = 0
    pp = max(pp, 0.0)
    if pp > 1.0:
        pp = 1.0
        capped += 1
    pd = max(pd, 0.0)
    if pp + pd > 1.0:
        pd = 1.0 - pp
        capped += 1
    births = rng.binomial(n, pp) if pp > 0.0 else 0
    deaths = 0
    if pd > 0.0 and n - births > 0 and pp < 1.0:
        deaths = rng.binomial(n - births, min(pd / (1.0 - pp), 1.0))
    return n + births - deaths, capped


# ----------------------------------------------------------------------------------------- exponential step pieces
#: positions in the per-step state vector ``y`` handed to :func:`step`
Y_C, Y_A, Y_TH, Y_THA, Y_THB, Y_TA, Y_C4, Y_P1 = range(8)
N_Y = 8


@njit(cache=True, inline="always")
def relax(y, k, s, h):
    """Exact value after ``h`` of ``y' = s - k y`` with constant ``k >= 0`` and ``s``: ``y e^-kh + s (1 - e^-kh)/k``.

    Positive for ``y, s >= 0``, exact in the stiff limit (``-> s/k``) — the building block of the scheme."""
    return _relax_e(y, k, s, h, _relax_exp(k, h))


@njit(cache=True, inline="always")
def _relax_exp(k, h):
    """``e^{-k h}`` where :func:`relax` uses it (neither the series nor the stiff-limit branch), else 0: computed
    once per step, shared by the value and every tangent direction."""
    x = k * h
    if x.real < 1e-5 or x.real > 745.0:
        return 0.0 * x
    return np.exp(-x)


@njit(cache=True, inline="always")
def _relax_e(y, k, s, h, e):
    """:func:`relax` given ``e`` = :func:`_relax_exp` ``(k, h)``."""
    x = k * h
    if x.real < 1e-5:
        return y * (1.0 - x + 0.5 * x * x) + s * h * (1.0 - 0.5 * x + x * x / 6.0)
    if x.real > 745.0:  # e^-x underflows: the stiff limit
        return s / k
    return y * e + s * (1.0 - e) / k


@njit(cache=True)
def birth_death_exact(n, lam, mu, h, rng):
    """Cells after time ``h`` of a linear birth-death process (per-cell rates ``lam`` birth, ``mu`` death) from ``n``.

    Exact for constant rates (Kendall 1948): each cell's lineage is extinct w.p. ``alpha = mu q / (1 + lam q)``,
    otherwise it has ``1 + Geometric`` cells with ``P(one more) = beta = lam q / (1 + lam q)``, where
    ``q = (e^{(lam - mu) h} - 1) / (lam - mu)``. Drawn for the whole population: surviving lineages
    ``K ~ Bin(n, 1 - alpha)``, cells ``K + NegBin(K, 1 - beta)``. Its mean is ``n e^{(lam - mu) h}``, the
    deterministic exponential step; no probability is ever capped (unlike the seed's per-step probabilities)."""
    if n <= 0:
        return 0
    x = (lam - mu) * h
    if abs(x) < 1e-8:
        q = h * (1.0 + 0.5 * x)
    else:
        q = math.expm1(x) / (lam - mu)
    den = 1.0 + lam * q
    alpha = min(max(mu * q / den, 0.0), 1.0)
    beta = min(max(lam * q / den, 0.0), 1.0 - 1e-15)
    k = rng.binomial(n, 1.0 - alpha) if alpha < 1.0 else 0
    if k == 0 or beta <= 0.0:
        return k
    return k + rng.negative_binomial(k, 1.0 - beta)


@njit(cache=True, inline="always")
def _slope(d0, d1):
    """Node slope of a cumulative history from the increments of the two adjacent steps: the central (second-order)
    estimate, limited to [0, 3 min(d0, d1)] (Fritsch-Carlson), which keeps the interpolant monotone; 0 where a
    neighbouring step has no flux (a source switching on from 0 starts with zero slope)."""
    if d0.real <= 0.0 or d1.real <= 0.0:
        return 0.0
    return _min(0.5 * (d0 + d1), 3.0 * _min(d0, d1))


@njit(cache=True, inline="always")
def _hermite(dm, d0, dp, w):
    """Increment at fraction ``w`` of a step of a cumulative history whose increments over the previous, this and
    the next step are ``dm``, ``d0``, ``dp``: monotone cubic Hermite
    (PCHIP). Node values are kept exactly, so whole-step transfers are mass-consistent; within a step the rate
    varies smoothly instead of being piecewise constant."""
    s0 = _slope(dm, d0)
    s1 = _slope(d0, dp)
    w2 = w * w
    return d0 * (3.0 * w2 - 2.0 * w2 * w) + s0 * (w2 * w - 2.0 * w2 + w) + s1 * (w2 * w - w2)


@njit(cache=True, inline="always")
def _cum_at(hist, pos, last, smooth):
    """Cumulative history ``hist`` (values at integer positions 0..last) at fractional ``pos`` >= 0 by monotone
    cubic Hermite interpolation (:func:`_hermite`) when ``smooth``, else linear (piecewise-constant rate within a
    step: the seed's explicit Euler with linearly interpolated pointwise history); past ``last`` — only when a delay
    is shorter than the step — linear extrapolation with the last step's mean rate."""
    if pos.real >= last:
        return hist[last] + (pos - last) * (hist[last] - hist[last - 1])
    i0 = int(math.floor(pos.real))
    w = pos - i0
    if w.real <= 0.0 and w.imag == 0.0:  # on a node (a complex-step position goes on: its slope counts)
        return hist[i0]
    d0 = hist[i0 + 1] - hist[i0]
    if not smooth:
        return hist[i0] + w * d0
    dm = hist[i0] - hist[i0 - 1] if i0 > 0 else d0
    dp = hist[i0 + 2] - hist[i0 + 1] if i0 + 2 <= last else d0
    return hist[i0] + _hermite(dm, d0, dp, w)


@njit(cache=True)
def _cum_ring(ring, m, k, pos, dt, init_rate, smooth):
    """:func:`_cum_at` on a ring buffer of size ``m`` holding positions k-m+1..k of free growth; before position 0
    the history is the initial state (constant rate ``init_rate``, cumulative 0 at position 0)."""
    if pos.real <= 0.0:
        return init_rate * pos * dt
    if pos.real >= k:
        last = ring[k % m]
        prev = ring[(k - 1) % m] if k > 0 else -init_rate * dt
        return last + (pos - k) * (last - prev)
    i0 = int(math.floor(pos.real))
    w = pos - i0
    if w.real <= 0.0 and w.imag == 0.0:
        return ring[i0 % m]
    d0 = ring[(i0 + 1) % m] - ring[i0 % m]
    if not smooth:
        return ring[i0 % m] + w * d0
    dm = ring[i0 % m] - (ring[(i0 - 1) % m] if i0 > 0 else -init_rate * dt)
    dp = ring[(i0 + 2) % m] - ring[(i0 + 1) % m] if i0 + 2 <= k else d0
    return ring[i0 % m] + _hermite(dm, d0, dp, w)


# ------------------------------------------------------------------------- tangents (forward-mode sensitivities)
# Each helper returns the tangent of a building block for one direction, given the tangents of its inputs. They are
# compiled for complex arguments too (the complex-step specialisation types every line, though it runs with K = 0),
# hence the real-part comparisons.
@njit(cache=True, inline="always")
def _slope_coefficients(d0, d1):
    """The tangent of :func:`_slope` as the coefficients ``(c0, c1)`` of ``d s = c0 dd0 + c1 dd1`` (the branch
    taken)."""
    if d0.real <= 0.0 or d1.real <= 0.0:
        return 0.0, 0.0
    lower_first = d0.real <= d1.real
    m = d0 if lower_first else d1
    if (0.5 * (d0 + d1)).real <= 3.0 * m.real:
        return 0.5, 0.5
    return (3.0, 0.0) if lower_first else (0.0, 3.0)


@njit(cache=True, inline="always")
def _hermite_coefficients(dm, d0, dp, w, first, last_step):
    """:func:`_hermite`'s tangent as a linear form: ``(cm, c0, cp, cw)`` with ``d H = cm ddm + c0 dd0 + cp ddp + cw
    dw`` (the slopes' branches as taken). ``first``: ``dm`` is ``d0`` (the history's first step: its ``cm`` goes to
    ``c0``); ``last_step``: ``dp`` is ``d0`` likewise."""
    a0, b0 = _slope_coefficients(dm, d0)
    a1, b1 = _slope_coefficients(d0, dp)
    w2 = w * w
    w3 = w2 * w
    h10 = w3 - 2.0 * w2 + w
    h11 = w3 - w2
    cm = a0 * h10
    c0 = 3.0 * w2 - 2.0 * w3 + b0 * h10 + a1 * h11
    cp = b1 * h11
    if first:
        c0 += cm
        cm = 0.0 * cm
    if last_step:
        c0 += cp
        cp = 0.0 * cp
    cw = (d0 * (6.0 * w - 6.0 * w2) + _slope(dm, d0) * (3.0 * w2 - 4.0 * w + 1.0)
          + _slope(d0, dp) * (3.0 * w2 - 2.0 * w))
    return cm, c0, cp, cw


@njit(cache=True)
def _cum_weights(hist, pos, last, cw, r):
    """The tangent of :func:`_cum_at` (smooth interpolant) at ``pos`` as a linear form, computed once from the values
    for all directions: ``d F = sum_j cw[r, j] dhist[i0 - 1 + j] + cw[r, 4] dpos`` (``j = 0..3``: nodes
    ``i0 - 1 .. i0 + 2``, weight 0 on a node the interpolant does not use). Returns ``i0``; :func:`_cum_apply`
    evaluates the form for one direction. (Hermite is linear in the increments once the slopes' branches are fixed.)"""
    if pos.real >= last:  # linear extrapolation with the last step's increment
        e = pos - last
        cw[r, 0] = 0.0
        cw[r, 1] = -e
        cw[r, 2] = 1.0 + e
        cw[r, 3] = 0.0
        cw[r, 4] = hist[last] - hist[last - 1]
        return last - 1
    i0 = int(math.floor(pos.real))
    w = pos - i0
    d0 = hist[i0 + 1] - hist[i0]
    dm = hist[i0] - hist[i0 - 1] if i0 > 0 else d0
    dp = hist[i0 + 2] - hist[i0 + 1] if i0 + 2 <= last else d0
    cm, c0, cp, cpos = _hermite_coefficients(dm, d0, dp, w, i0 == 0, i0 + 2 > last)
    cw[r, 4] = cpos
    cw[r, 0] = -cm
    cw[r, 1] = 1.0 + cm - c0
    cw[r, 2] = c0 - cp
    cw[r, 3] = cp
    return i0


@njit(cache=True, inline="always")
def _cum_apply(dhist, i0, cw, r, k, dpos):
    """The linear form of :func:`_cum_weights` (row ``r``) in direction ``k``."""
    lo = i0 - 1 if i0 > 0 else 0
    hi = min(i0 + 2, dhist.shape[0] - 1)
    return (cw[r, 0] * dhist[lo, k] + cw[r, 1] * dhist[i0, k] + cw[r, 2] * dhist[i0 + 1, k] + cw[r, 3] * dhist[hi, k]
            + cw[r, 4] * dpos)


@njit(cache=True)
def _ring_weights(ring, m, kk, pos, dt, init_rate, cw, iw, r):
    """:func:`_cum_weights` for :func:`_cum_ring` (smooth): the tangent at ``pos`` as a linear form computed once
    from the values for all directions, ``dF = sum_j cw[r, j] dring[iw[r, j]] + cw[r, 4] dpos + cw[r, 5] dinit``
    (``j = 0..3``: the ring slots of positions ``i0 - 1 .. i0 + 2``; a slot the interpolant does not use has weight 0
    and points at a used one). Before position 0 the history is the initial state: its rate's tangent is ``dinit``."""
    for j in range(6):
        cw[r, j] = 0.0
    if pos.real <= 0.0:  # F = init_rate pos dt
        for j in range(4):
            iw[r, j] = 0
        cw[r, 4] = init_rate * dt
        cw[r, 5] = pos * dt
        return
    if pos.real >= kk:  # linear extrapolation with the last step's increment
        e = pos - kk
        last = ring[kk % m]
        for j in range(4):
            iw[r, j] = kk % m
        cw[r, 2] = 1.0 + e
        if kk > 0:
            iw[r, 1] = (kk - 1) % m
            cw[r, 1] = -e
            cw[r, 4] = last - ring[(kk - 1) % m]
        else:  # the previous node is the initial state's -init_rate dt
            cw[r, 5] = e * dt
            cw[r, 4] = last + init_rate * dt
        return
    i0 = int(math.floor(pos.real))
    w = pos - i0
    r0 = ring[i0 % m]
    d0 = ring[(i0 + 1) % m] - r0
    dm = r0 - ring[(i0 - 1) % m] if i0 > 0 else r0 + init_rate * dt
    dp = ring[(i0 + 2) % m] - ring[(i0 + 1) % m] if i0 + 2 <= kk else d0
    cm, c0, cp, cpos = _hermite_coefficients(dm, d0, dp, w, False, i0 + 2 > kk)
    cw[r, 4] = cpos
    iw[r, 1] = i0 % m
    iw[r, 2] = (i0 + 1) % m
    iw[r, 3] = (i0 + 2) % m if i0 + 2 <= kk else (i0 + 1) % m
    if i0 > 0:
        iw[r, 0] = (i0 - 1) % m
        cw[r, 0] = -cm
    else:  # ddm = dr0 + dinit dt
        iw[r, 0] = i0 % m
        cw[r, 5] = cm * dt
    cw[r, 1] = 1.0 + cm - c0
    cw[r, 2] = c0 - cp
    cw[r, 3] = cp


@njit(cache=True, inline="always")
def _ring_apply(dring, cw, iw, r, k, dpos, dinit):
    """The linear form of :func:`_ring_weights` (row ``r``) in direction ``k``."""
    return (cw[r, 0] * dring[iw[r, 0], k] + cw[r, 1] * dring[iw[r, 1], k] + cw[r, 2] * dring[iw[r, 2], k]
            + cw[r, 3] * dring[iw[r, 3], k] + cw[r, 4] * dpos + cw[r, 5] * dinit)


@njit(cache=True)
def _log_sf_tangent(theta, dth, k, survival, d):
    """Tangent (direction ``k``) of :func:`log_sf_tumour`."""
    alpha, beta = theta[P_ALPHA], theta[P_BETA]
    da, db = dth[P_ALPHA, k], dth[P_BETA, k]
    if survival == 2:
        x = theta[P_X]
        dx = dth[P_X, k]
        y = x * d
        if y.real < 1e-4:
            g = d * d * (1.0 - y / 3.0 + y * y / 12.0)
            dg = d * d * (-1.0 / 3.0 + y / 6.0) * dx * d
        else:
            g = 2.0 * (y + np.expm1(-y)) / (x * x)
            dg = 2.0 * d * (1.0 - np.exp(-y)) * dx / (x * x) - 2.0 * g * dx / x
        return -da * d - db * g - beta * dg
    if survival == 1:
        sq = math.sqrt(d)
        return -da * d - (db * (1.0 + theta[P_C] * sq) + beta * dth[P_C, k] * sq) * d * d
    return -da * d - db * d * d


@njit(cache=True, inline="always")
def _relax_tangent(y, k, s, h, e, dy, dk, ds, dh):
    """Tangent of :func:`relax` ``(y, k, s, h)`` (same branches), ``e`` = :func:`_relax_exp` ``(k, h)``."""
    x = k * h
    dx = dk * h + k * dh
    if x.real < 1e-5:
        p = 1.0 - x + 0.5 * x * x
        q = 1.0 - 0.5 * x + x * x / 6.0
        return dy * p + y * (x - 1.0) * dx + (ds * h + s * dh) * q + s * h * (x / 3.0 - 0.5) * dx
    if x.real > 745.0:
        return ds / k - s * dk / (k * k)
    de = -e * dx
    return dy * e + y * de + (ds * (1.0 - e) - s * de) / k - s * (1.0 - e) * dk / (k * k)


@njit(cache=True, inline="always")
def _kill_rate_tangent(theta, dth, k, ta, ctot, p1, dta, dctot, dp1, parts):
    """Tangent of :func:`kill_rate` in direction ``k`` of ``dth`` (P, K); ``parts`` = :func:`_kill_parts`."""
    active, lr, z, den = parts
    if not active:
        return 0.0 * ctot
    # d log(C_tot) = dC_tot / C_tot, written so that an eradicated tumour (C_tot underflowing towards 0, its
    # tangent with it) gives 0 rather than 0 x inf
    rel = dctot / ctot if dctot != 0.0 else 0.0 * dctot
    # (C_tot/T_a)^q underflowed to 0 (log -> -inf): it stays 0 under small changes
    dz = z * (dth[P_Q, k] * lr + theta[P_Q] * (rel - dta / ta)) if z != 0.0 else 0.0 * z
    num = theta[P_P] * (1.0 + p1)
    dnum = dth[P_P, k] * (1.0 + p1) + theta[P_P] * dp1
    return dnum / den - num * (dth[P_S, k] * z + theta[P_S] * dz) / (den * den)


@njit(cache=True, inline="always")
def _omega_tangent(tbar, td1, td2, dtbar, dtd1, dtd2):
    """Tangent of :func:`omega` (0 on the flat parts)."""
    if tbar.real <= td1.real or tbar.real > td2.real:
        return 0.0 * (td2 - td1)
    w = td2 - td1
    return (dtbar - dtd1) / w - (tbar - td1) * (dtd2 - dtd1) / (w * w)


@njit(cache=True)
def _step_tangent(theta, dth, y, cd_old, t_rt, n_cd, t, h, dh, dqr_half, dqr, dqj_half, dqj, dqin, f0,
                  fmid, dfv, decay_half, ddec, kill_prev, dkill_prev, kill, Th_m, A_m, Ta_m, c4_m, p1_m, kill_m,
                  Th_free, left, C_new, dCd, dy, dinc, dkill, wk, km_parts, e_c, e_th, e_a, e_ta):
    """Tangent of one exponential-scheme :func:`step` (see its docstring for the tangent arguments): the same
    expressions differentiated line by line, from the values ``step`` computed (``y`` and ``cd_old``: the state and
    cohorts at t; ``C_new``, ``Th_free``, ``left``: after the step; the stage-1 midpoint values; the kill rates
    used). Called before ``step`` updates ``y`` and the cohorts. Updates ``dy`` and ``dCd`` in place; writes
    ``dinc`` and ``dkill``. Every value-dependent transcendental is computed once: the ones the value step has
    (``km_parts`` = the midpoint kill rate's :func:`_kill_parts`, ``e_c`` = e^{(growth - kill) h}, the relaxation
    exponentials ``e_th``, ``e_a``, ``e_ta`` of T^, A^, T_a) are passed in; the cohorts' mitotic-delay ramps and decay
    factors go to the scratch ``wk`` (>= n_cd, 7) before the loop over the K directions, which is arithmetic only."""
    nk = dy.shape[1]
    lam1, lam2, a = theta[P_LAM1], theta[P_LAM2], theta[P_A]
    b = (theta[P_R] - 1.0) * a
    rho, psi, phi = theta[P_RHO], theta[P_PSI], theta[P_PHI]
    td1, td2, sigma, hsrc = theta[P_TD1], theta[P_TD2], theta[P_SIGMA], theta[P_H]
    iota, eta, t0cap = theta[P_IOTA], theta[P_ETA], theta[P_T0]
    C, A, Th, Ta, c4, p1 = y[Y_C], y[Y_A], y[Y_TH], y[Y_TA], y[Y_C4], y[Y_P1]
    ctot = C
    for i in range(n_cd):
        ctot += cd_old[i]
    growth = lam1 * (1.0 - lam2 * ctot)
    bp = b / (1.0 + c4)
    hh = 0.5 * h
    e_c4, e_p1 = decay_half[0], decay_half[1]
    cd_m = 0.0
    for i in range(n_cd):  # wk[i]: ramp at t, stage-1 denominator, ramp at t + h/2, clearance, total, decay, share
        om = omega(t - t_rt[i], td1, td2)
        wk[i, 0] = om
        wk[i, 1] = 1.0 + hh * (phi * om + kill)
        cd_m += cd_old[i] / wk[i, 1]
    gp, gm = 0.0 * growth, 0.0 * growth  # _max(growth, 0), _max(-growth, 0)
    if growth.real >= 0.0:
        gp = growth
    if -growth.real >= 0.0:
        gm = -growth
    num = 1.0 + hh * gp
    den = 1.0 + hh * (kill + gm)
    C_m = C * num / den
    ctot_m = C_m + cd_m
    growth_m = lam1 * (1.0 - lam2 * ctot_m)
    bp_m = b / (1.0 + c4_m)
    cd_new, cleared = 0.0 * C, 0.0 * C  # the step's cohorts after it and the cells cleared (as step computes them)
    for i in range(n_cd):
        om = omega(t + hh - t_rt[i], td1, td2)
        clear_rate = phi * om
        total = clear_rate + kill_m
        factor = np.exp(-total * h)
        wk[i, 2] = om
        wk[i, 3] = clear_rate
        wk[i, 4] = total
        wk[i, 5] = factor
        wk[i, 6] = clear_rate / total if total.real > 0.0 else 0.0 * total
        cdn = cd_old[i] * factor
        cd_new += cdn
        if total.real > 0.0:
            cleared += (cd_old[i] - cdn) * wk[i, 6]
    # the kill rate at t only when the predictor used it (else the previous midpoint's, with its own tangent)
    kill_t_parts = _kill_parts(theta, Ta, ctot) if kill_prev.real < 0.0 else (False, 0.0 * ctot, 0.0 * ctot,
                                                                                 1.0 + 0.0 * ctot)
    xth = Th + hh * hsrc
    qth = 1.0 + hh * (a + bp) * A
    th_capped = (xth / qth).real > t0cap.real
    qa = 1.0 + hh * (sigma + (a + bp) * Th)
    qt = 1.0 + hh * (iota * ctot + eta)
    ab = a + bp_m
    ka = sigma + ab * Th_m
    kt = iota * ctot_m + eta
    src = ctot + C_new + cd_new
    for k in range(nk):
        dlam1, dlam2, da = dth[P_LAM1, k], dth[P_LAM2, k], dth[P_A, k]
        db = dth[P_R, k] * a + (theta[P_R] - 1.0) * da
        dhh = 0.5 * dh[k]
        dC, dA, dTh, dTa, dc4, dp1 = dy[Y_C, k], dy[Y_A, k], dy[Y_TH, k], dy[Y_TA, k], dy[Y_C4, k], dy[Y_P1, k]
        dctot = dC
        for i in range(n_cd):
            dctot += dCd[i, k]
        if kill_prev.real >= 0.0:  # the predictor's kill rate: the previous midpoint's, or evaluated at t
            dkill_t = dkill_prev[k]
        else:
            dkill_t = _kill_rate_tangent(theta, dth, k, Ta, ctot, p1, dTa, dctot, dp1, kill_t_parts)
        dgrowth = dlam1 * (1.0 - lam2 * ctot) - lam1 * (dlam2 * ctot + lam2 * dctot)
        dbp = db / (1.0 + c4) - b * dc4 / ((1.0 + c4) * (1.0 + c4))
        # stage 1 (half step, linearly implicit)
        dgp = dgrowth if growth.real >= 0.0 else 0.0 * dgrowth
        dgm = -dgrowth if -growth.real >= 0.0 else 0.0 * dgrowth
        dnum = dhh * gp + hh * dgp
        dden = dhh * (kill + gm) + hh * (dkill_t + dgm)
        dC_m = (dC * num + C * dnum) / den - C_m * dden / den
        dcd_m = 0.0 * dC_m
        for i in range(n_cd):
            om = wk[i, 0]
            dom = _omega_tangent(t - t_rt[i], td1, td2, 0.0, dth[P_TD1, k], dth[P_TD2, k])
            den_i = wk[i, 1]
            dden_i = dhh * (phi * om + kill) + hh * (dth[P_PHI, k] * om + phi * dom + dkill_t)
            dcd_m += dCd[i, k] / den_i - cd_old[i] * dden_i / (den_i * den_i)
        if not th_capped:
            dxth = dTh + dhh * hsrc + hh * dth[P_H, k]
            dqth = dhh * (a + bp) * A + hh * ((da + dbp) * A + (a + bp) * dA)
            dTh_m = dxth / qth - xth * dqth / (qth * qth)
        else:
            dTh_m = dth[P_T0, k]
        dqa = dhh * (sigma + (a + bp) * Th) + hh * (dth[P_SIGMA, k] + (da + dbp) * Th + (a + bp) * dTh)
        dA_m = (dA + dqin[0, k]) / qa - (A + dqr_half) * dqa / (qa * qa)
        dqt = dhh * (iota * ctot + eta) + hh * (dth[P_IOTA, k] * ctot + iota * dctot + dth[P_ETA, k])
        dTa_m = (dTa + dfv[0, k] * dqj_half + f0 * dqin[2, k]) / qt - (Ta + f0 * dqj_half) * dqt / (qt * qt)
        dc4_m = dc4 * e_c4 + c4 * ddec[0, k]
        dp1_m = dp1 * e_p1 + p1 * ddec[1, k]
        # stage 2 (midpoint rates over the full step)
        dctot_m = dC_m + dcd_m
        dkill_m = _kill_rate_tangent(theta, dth, k, Ta_m, ctot_m, p1_m, dTa_m, dctot_m, dp1_m, km_parts)
        dgrowth_m = dlam1 * (1.0 - lam2 * ctot_m) - lam1 * (dlam2 * ctot_m + lam2 * dctot_m)
        dbp_m = db / (1.0 + c4_m) - b * dc4_m / ((1.0 + c4_m) * (1.0 + c4_m))
        dC_new = dC * e_c + C_new * ((dgrowth_m - dkill_m) * h + (growth_m - kill_m) * dh[k])
        dcleared = 0.0 * dC_new
        dcd_new = 0.0 * dC_new
        for i in range(n_cd):
            om = wk[i, 2]
            dom = _omega_tangent(t + hh - t_rt[i], td1, td2, dhh, dth[P_TD1, k], dth[P_TD2, k])
            dclear = dth[P_PHI, k] * om + phi * dom
            total = wk[i, 4]
            dtotal = dclear + dkill_m
            factor = wk[i, 5]
            dcdn = dCd[i, k] * factor - cd_old[i] * factor * (dtotal * h + total * dh[k])
            if total.real > 0.0:
                dfr = dclear / total - wk[i, 3] * dtotal / (total * total)
                dcleared += (dCd[i, k] - dcdn) * wk[i, 6] + cd_old[i] * (1.0 - factor) * dfr
            dCd[i, k] = dcdn
            dcd_new += dcdn
        dab = da + dbp_m
        dhs = dth[P_H, k]
        dTh_free = _relax_tangent(Th, ab * A_m, hsrc, h, e_th, dTh, dab * A_m + ab * dA_m, dhs, dh[k])
        dleft = dTh + dhs * h + hsrc * dh[k] - dTh_free
        if ab.real > 0.0:
            dy[Y_THA, k] += dleft * (a / ab) + left * (da / ab - a * dab / (ab * ab))
            dy[Y_THB, k] += dleft * (bp_m / ab) + left * (dbp_m / ab - bp_m * dab / (ab * ab))
        dy[Y_TH, k] = dTh_free if Th_free.real <= t0cap.real else dth[P_T0, k]
        dka = dth[P_SIGMA, k] + dab * Th_m + ab * dTh_m
        dsa = dqin[1, k] / h - dqr * dh[k] / (h * h)
        dy[Y_A, k] = _relax_tangent(A, ka, dqr / h, h, e_a, dA, dka, dsa, dh[k])
        dkt = dth[P_IOTA, k] * ctot_m + iota * dctot_m + dth[P_ETA, k]
        dst = (dfv[1, k] * dqj + fmid * dqin[3, k]) / h - fmid * dqj * dh[k] / (h * h)
        dy[Y_TA, k] = _relax_tangent(Ta, kt, fmid * dqj / h, h, e_ta, dTa, dkt, dst, dh[k])
        dy[Y_C4, k] = dc4_m * e_c4 + c4_m * ddec[0, k]
        dy[Y_P1, k] = dp1_m * e_p1 + p1_m * ddec[1, k]
        dy[Y_C, k] = dC_new
        dinc[k] = (dth[P_RHO, k] * hh * src + rho * dhh * src + rho * hh * (dctot + dC_new + dcd_new)
                   + dth[P_PSI, k] * cleared + psi * dcleared)
        dkill[k] = dkill_m


@njit(cache=True, inline="always")
def step(theta, y, Cd, t_rt, n_cd, t, h, dqr_half, dqr, dqj_half, dqj, f0, fmid, exponential, integer_mode, rng,
         decay_half, kill_prev, tg):
    """Advance the state ``y`` (layout ``Y_*``) and doomed cohorts ``Cd[:n_cd]`` from ``t`` to ``t + h``.

    Delayed sources enter as integrals over the step: ``dqr`` = int R(s - tau_1) ds and ``dqj`` = int J(s - tau_2) ds
    over [t, t + h] (``*_half`` over [t, t + h/2]), read off the cumulative histories, so T_a receives exactly the
    cells that left T^ tau_2 earlier. ``f0``/``fmid``: vascular factor at t and t + h/2. ``decay_half``: the drug
    decay factors e^{-nu h/2}, e^{-mu h/2} (computed once per run). ``kill_prev`` >= 0: the previous substep's
    midpoint kill rate, used by the exponential scheme's predictor in place of the kill rate at t (an O(h) lag in a
    predictor keeps the midpoint O(h^2) accurate, so the rule stays second order; it halves the costly powers
    (T_a/C_tot)^q); pass -1 after an impulse or at the first step.

    ``exponential`` (default scheme, docs/rit.md): exponential midpoint rule — a half step with rates frozen at t
    gives the midpoint state, whose rates are frozen over the full step; every population is advanced by the exact
    solution of ``y' = s - k y`` (:func:`relax`), and the cells leaving T^ are counted from T^'s own balance
    (``T^ + h h_T - T^_new``) and split a : b' into T^_a, T^_b. Second order, positive, exact in the stiff limit.
    Otherwise the seed's explicit Euler (negative values set to 0 and flagged).

    Returns ``(R integral of this step, negative flag, capped probabilities, kill rate used at the midpoint)``.

    Forward-mode sensitivities (exponential scheme, deterministic mode): ``tg = None`` for values only (the branch
    is pruned at compile time: the value path is the same machine code as without it), else the tuple
    ``(dth, dy, dCd, dh, dqin, dfv, ddec, dkill_prev, dinc, dkill, wk)`` of :func:`_step_tangent`: ``dth`` (P, K) the
    parameters' tangents in K directions, ``dy`` (N_Y, K) and ``dCd`` (n, K) the state's (updated in place), ``dh``
    (K,) the step's (non-zero only for the day-0 landing step), ``dqin`` (4, K) those of ``dqr_half, dqr,
    dqj_half, dqj``, ``dfv`` (2, K) of ``f0, fmid``, ``ddec`` (2, K) of ``decay_half``, ``dkill_prev`` (K,);
    ``dinc`` and ``dkill`` (K,) receive those of the returned R integral and kill rate; ``wk`` (>= n_cd, 7) is
    scratch.
    """
    lam1 = theta[P_LAM1]
    lam2 = theta[P_LAM2]
    a = theta[P_A]
    b = (theta[P_R] - 1.0) * a
    rho = theta[P_RHO]
    psi = theta[P_PSI]
    phi = theta[P_PHI]
    td1 = theta[P_TD1]
    td2 = theta[P_TD2]
    sigma = theta[P_SIGMA]
    hsrc = theta[P_H]
    iota = theta[P_IOTA]
    eta = theta[P_ETA]
    t0cap = theta[P_T0]
    C = y[Y_C]
    A = y[Y_A]
    Th = y[Y_TH]
    Ta = y[Y_TA]
    c4 = y[Y_C4]
    p1 = y[Y_P1]
    cd_tot = 0.0
    for i in range(n_cd):
        cd_tot += Cd[i]
    ctot = C + cd_tot
    kill = kill_prev if (exponential and kill_prev.real >= 0.0) else kill_rate(theta, Ta, ctot, p1)
    growth = lam1 * (1.0 - lam2 * ctot)
    bp = b / (1.0 + c4)
    if not exponential:
        # ------------------------------------------------------------ the seed's explicit Euler (rates at t)
        neg = False
        capped = 0
        cleared = 0.0
        for i in range(n_cd):
            cleared += omega(t - t_rt[i], td1, td2) * Cd[i]
        r_now = rho * ctot + psi * phi * cleared
        act = (a + bp) * A * Th
        if integer_mode:
            n_new, capped = markov_step(int(C.real), (growth * h).real, (kill * h).real, rng)
            Cn = float(n_new)
        else:
            Cn = C + h * (growth - kill) * C
        for i in range(n_cd):
            cdn = Cd[i] - h * (phi * omega(t - t_rt[i], td1, td2) + kill) * Cd[i]
            if cdn.real < 0.0:
                cdn = 0.0
                neg = True
            Cd[i] = cdn
        if Cn.real < 0.0:
            Cn = 0.0
            neg = True
        An = A + dqr - h * (sigma * A + act)
        if An.real < 0.0:
            An = 0.0
            neg = True
        Thn = _min(Th + h * (hsrc - act), t0cap)
        if Thn.real < 0.0:
            Thn = 0.0
            neg = True
        Tan = Ta + f0 * dqj - h * (iota * ctot + eta) * Ta
        if Tan.real < 0.0:
            Tan = 0.0
            neg = True
        y[Y_C] = Cn
        y[Y_A] = An
        y[Y_TH] = Thn
        y[Y_THA] += h * a * A * Th
        y[Y_THB] += h * bp * A * Th
        y[Y_TA] = Tan
        y[Y_C4] = c4 - h * theta[P_NU] * c4
        y[Y_P1] = p1 - h * theta[P_MU] * p1
        return h * r_now, neg, capped, kill

    # ---------------------------------------------------------------- exponential midpoint rule
    hh = 0.5 * h
    # stage 1: rates frozen at t, half step -> midpoint state. A predictor needs only O(h^2) accuracy, so it uses
    # the linearly implicit form (y + h/2 s) / (1 + h/2 k): positive, stable, no exponential
    C_m = C * (1.0 + hh * _max(growth, 0.0)) / (1.0 + hh * (kill + _max(-growth, 0.0)))
    cd_m = 0.0
    for i in range(n_cd):
        cd_m += Cd[i] / (1.0 + hh * (phi * omega(t - t_rt[i], td1, td2) + kill))
    Th_m = _min((Th + hh * hsrc) / (1.0 + hh * (a + bp) * A), t0cap)
    A_m = (A + dqr_half) / (1.0 + hh * (sigma + (a + bp) * Th))
    Ta_m = (Ta + f0 * dqj_half) / (1.0 + hh * (iota * ctot + eta))
    e_c4 = decay_half[0]
    e_p1 = decay_half[1]
    c4_m = c4 * e_c4
    p1_m = p1 * e_p1
    # stage 2: rates frozen at the midpoint state, full step
    ctot_m = C_m + cd_m
    km_parts = _kill_parts(theta, Ta_m, ctot_m)
    kill_m = _kill_from_parts(theta, p1_m, km_parts)
    growth_m = lam1 * (1.0 - lam2 * ctot_m)
    bp_m = b / (1.0 + c4_m)
    e_c = 0.0 * C
    if integer_mode:
        C = float(birth_death_exact(int(C.real), _max(growth_m, 0.0).real, (kill_m + _max(-growth_m, 0.0)).real,
                                    h, rng))
    else:
        e_c = np.exp((growth_m - kill_m) * h)
        C = C * e_c
    # T^ with the activation rate frozen at its midpoint value; `left` counts the cells that left T^ (>= 0)
    k_th = (a + bp_m) * A_m
    e_th = _relax_exp(k_th, h)
    Th_free = _relax_e(Th, k_th, hsrc, h, e_th)
    left = Th + hsrc * h - Th_free
    k_a = sigma + (a + bp_m) * Th_m
    e_a = _relax_exp(k_a, h)
    k_ta = iota * ctot_m + eta
    e_ta = _relax_exp(k_ta, h)
    if tg is not None:  # forward-mode sensitivities of this step (y and Cd still hold the state at t)
        _step_tangent(theta, tg[0], y, Cd, t_rt, n_cd, t, h, tg[3], dqr_half, dqr, dqj_half, dqj, tg[4], f0, fmid,
                      tg[5], decay_half, tg[6], kill_prev, tg[7], kill, Th_m, A_m, Ta_m, c4_m, p1_m, kill_m,
                      Th_free, left, C, tg[2], tg[1], tg[8], tg[9], tg[10], km_parts, e_c, e_th, e_a, e_ta)
    cleared = 0.0
    cd_new = 0.0
    e_kill = np.exp(-kill_m * h) if n_cd > 0 else 1.0
    for i in range(n_cd):
        clear_rate = phi * omega(t + hh - t_rt[i], td1, td2)
        total = clear_rate + kill_m
        cdn = Cd[i] * (e_kill if clear_rate.real == 0.0 else e_kill * np.exp(-clear_rate * h))
        if total.real > 0.0:
            cleared += (Cd[i] - cdn) * (clear_rate / total)
        Cd[i] = cdn
        cd_new += cdn
    if (a + bp_m).real > 0.0:
        y[Y_THA] += left * (a / (a + bp_m))
        y[Y_THB] += left * (bp_m / (a + bp_m))
    y[Y_TH] = _min(Th_free, t0cap)
    y[Y_A] = _relax_e(A, k_a, dqr / h, h, e_a)
    y[Y_TA] = _relax_e(Ta, k_ta, fmid * dqj / h, h, e_ta)
    y[Y_C] = C
    y[Y_C4] = c4_m * e_c4
    y[Y_P1] = p1_m * e_p1
    # antigen source of this step: rho int C_tot (trapezoid) + psi x the doomed cells cleared by mitotic catastrophe
    return rho * hh * (ctot + C + cd_new) + psi * cleared, False, 0, kill_m


@njit(cache=True)
def _free_growth_step(theta, y, ytry, no_cd, ringR, ringJ, m, k, frac, s1, s2, hf, initR, exponential, rng,
                      no_drugs, tg):
    """One untreated step of ``frac * hf`` from the free-growth state ``y`` (left unchanged) into ``ytry``, delayed
    sources read off the free-growth ring buffers; returns the step's antigen-source integral.

    ``tg``: None, or the tangents ``(dth, dy, dytry, dringR, dringJ, dinitR, ds1, ds2, dfrac, step_tg, cw, iw)`` —
    the positions ``k + c frac - s`` move with ``dfrac`` and ``-ds``, the step length with ``hf dfrac``; ``step_tg``
    is :func:`step`'s tangent tuple (its ``dy`` is ``dytry``), filled here; ``cw`` (6, 6) / ``iw`` (6, 4): work
    arrays of the six delayed-source positions' linear forms (:func:`_ring_weights`), computed once per step."""
    for i in range(N_Y):
        ytry[i] = y[i]
    if tg is not None:
        dth, dy, dytry, dringR, dringJ, dinitR, ds1, ds2, dfrac, stg, cw, iw = tg
        dq = stg[4]
        _ring_weights(ringR, m, k, k - s1, hf, initR, cw, iw, 0)
        _ring_weights(ringJ, m, k, k - s2, hf, 0.0, cw, iw, 1)
        _ring_weights(ringR, m, k, k + 0.5 * frac - s1, hf, initR, cw, iw, 2)
        _ring_weights(ringR, m, k, k + frac - s1, hf, initR, cw, iw, 3)
        _ring_weights(ringJ, m, k, k + 0.5 * frac - s2, hf, 0.0, cw, iw, 4)
        _ring_weights(ringJ, m, k, k + frac - s2, hf, 0.0, cw, iw, 5)
        for kk in range(dy.shape[1]):
            for i in range(N_Y):
                dytry[i, kk] = dy[i, kk]
            r0 = _ring_apply(dringR, cw, iw, 0, kk, -ds1[kk], dinitR[kk])
            j0 = _ring_apply(dringJ, cw, iw, 1, kk, -ds2[kk], 0.0)
            dq[0, kk] = _ring_apply(dringR, cw, iw, 2, kk, 0.5 * dfrac[kk] - ds1[kk], dinitR[kk]) - r0
            dq[1, kk] = _ring_apply(dringR, cw, iw, 3, kk, dfrac[kk] - ds1[kk], dinitR[kk]) - r0
            dq[2, kk] = _ring_apply(dringJ, cw, iw, 4, kk, 0.5 * dfrac[kk] - ds2[kk], 0.0) - j0
            dq[3, kk] = _ring_apply(dringJ, cw, iw, 5, kk, dfrac[kk] - ds2[kk], 0.0) - j0
            stg[3][kk] = hf * dfrac[kk]
    r0 = _cum_ring(ringR, m, k, k - s1, hf, initR, exponential)
    j0 = _cum_ring(ringJ, m, k, k - s2, hf, 0.0, exponential)
    qrh = _cum_ring(ringR, m, k, k + 0.5 * frac - s1, hf, initR, exponential) - r0
    qrf = _cum_ring(ringR, m, k, k + frac - s1, hf, initR, exponential) - r0
    qjh = _cum_ring(ringJ, m, k, k + 0.5 * frac - s2, hf, 0.0, exponential) - j0
    qjf = _cum_ring(ringJ, m, k, k + frac - s2, hf, 0.0, exponential) - j0
    if tg is None:
        inc, neg, cap, kl = step(theta, ytry, no_cd, no_cd, 0, 0.0, frac * hf, qrh, qrf, qjh, qjf, 1.0, 1.0,
                                 exponential, False, rng, no_drugs, -1.0, None)
    else:
        inc, neg, cap, kl = step(theta, ytry, no_cd, no_cd, 0, 0.0, frac * hf, qrh, qrf, qjh, qjf, 1.0, 1.0,
                                 exponential, False, rng, no_drugs, -1.0, tg[9])
    return inc


@njit(cache=True)
def _pre_volumes(vhist, k, theta_frac, hf, pre_times, out_pre):
    """Volumes at negative model times from the free-growth record: ``vhist[i]`` at step position ``i`` (i <= k),
    ``vhist[k + 1]`` (= the pre-treatment volume) at day 0, position ``k + theta_frac``; log-linear interpolation."""
    day0 = k + theta_frac
    for q in range(pre_times.shape[0]):
        pos = day0 + pre_times[q] / hf
        if pos.real <= 0.0:
            out_pre[q] = vhist[0]
            continue
        if pos.real >= k:
            i, w, width = k, pos - k, theta_frac
        else:
            i = math.floor(pos.real)
            w, width = pos - i, 1.0
        a = np.log(vhist[i])
        b = np.log(vhist[i + 1])
        out_pre[q] = np.exp(a + (b - a) * (w / width if width.real > 0.0 else 1.0))


@njit(cache=True, inline="always")
def _vascular(vasc_on, kv, t, t_vasc):
    if not vasc_on:
        return 1.0
    return _min(kv * (t - t_vasc), 1.0)


@njit(cache=True)
def run(
    theta,
    survival,
    vascular,
    v_pre,
    dt,
    n_steps,
    n_sub,
    hf,
    rt_idx,
    rt_dose,
    c4_idx,
    c4_amt,
    p1_idx,
    p1_amt,
    exponential,
    stochastic,
    markov_threshold,
    rng,
    stop_on_control,
    max_free_steps,
    out_states,
    out_cohorts,
    info,
    pre_times,
    out_pre,
    tan=None,
):
    """Free growth to ``v_pre`` (defines day 0), then ``n_steps`` treatment steps of length ``dt``, each integrated
    as ``n_sub`` substeps of ``h = dt / n_sub`` (events and records stay on the ``dt`` grid). Free growth, untreated
    and non-stiff, takes steps of ``hf`` (at most ``max_free_steps``).

    ``out_states`` (n_steps + 1, N_STATES) and ``out_cohorts`` (n_steps + 1, n_fractions) receive the recorded
    states at t_j = j dt (pass arrays with 0 rows to skip recording; then only ``info`` is filled).
    ``out_pre`` receives the volume at the (negative) model times ``pre_times`` of the free-growth phase — data
    measured before treatment — interpolated log-linearly between free-growth steps (pass empty arrays to skip);
    a time before the start of free growth gets the initial volume ``C(0) V_C``.
    ``exponential``: True = exponential midpoint rule (:func:`step`, the default), False = the seed's explicit Euler
    (negative values are set to 0 and counted). Both phases use the same step; the last free-growth step is
    shortened to ``theta dt`` with ``theta`` solved (Illinois regula falsi, to round-off) so that ``V`` lands exactly
    on the pre-treatment volume.
    ``stochastic``: Markov birth-death for C below ``markov_threshold`` cells — the exact linear birth-death process
    over each step with the step's midpoint rates (exponential scheme) or the seed's per-step probabilities
    (explicit scheme).
    ``tan``: None (values only; the tangent code is pruned at compile time), or ``(dth, dv_pre, out_dV, out_dpre)``
    for forward-mode sensitivities of a deterministic exponential-scheme run in K directions: ``dth`` (P, K) the
    parameters' tangents, ``dv_pre`` (K,) the pre-treatment volume's; ``out_dV`` (n_steps + 1, K) and ``out_dpre``
    (len(pre_times), K) receive those of the recorded volume and of the pre-treatment volumes. The day-0 landing
    fraction carries its implicit derivative (``d theta = -(dV - dv_pre) / (dV / d theta)`` from one more landing
    step with an extra direction for ``theta``).
    """
    for i in range(N_INFO):
        info[i] = 0.0
    info[I_CONTROLLED_STEP] = -1.0
    info[I_FIRST_NEGATIVE_STEP] = -1.0
    record = out_states.shape[0] > 0
    n_rt = rt_idx.shape[0]
    rho = theta[P_RHO]
    vc = theta[P_VC]
    vt = theta[P_VT]
    s1 = theta[P_TAU1] / hf
    s2 = theta[P_TAU2] / hf
    mpre = int(math.ceil(max(s1.real, s2.real))) + 2

    # ---------------------------------------------------------------- free growth (no treatment) to v_pre
    y = np.zeros(N_Y, dtype=theta.dtype)
    y[Y_C] = theta[P_C0]
    y[Y_TH] = theta[P_T0]
    ytry = np.zeros(N_Y, dtype=theta.dtype)
    no_cd = np.zeros(1, dtype=theta.dtype)
    m = mpre + 2
    fg_decay = np.zeros(2, dtype=theta.dtype)  # no drugs during free growth
    ringR = np.zeros(m, dtype=theta.dtype)  # cumulative int R ds from the start of free growth (R = rho C(0) before)
    ringJ = np.zeros(m, dtype=theta.dtype)  # cumulative int J ds = T^_a
    initR = rho * theta[P_C0]
    k = 0
    qr = 0.0
    V = y[Y_C] * vc + y[Y_TA] * vt
    theta_frac = 0.0
    n_pre = pre_times.shape[0]
    vhist = np.empty(max_free_steps + 2 if n_pre > 0 else 1, dtype=theta.dtype)  # V at free-growth step k
    vhist[0] = V
    if tan is not None:  # K parameter directions + one for the landing fraction (column K)
        dth_k, dvpre, out_dV, out_dpre = tan
        nk = dth_k.shape[1]
        nf = nk + 1
        dthf = np.zeros((N_PARAMS, nf))
        dthf[:, :nk] = dth_k
        dyf = np.zeros((N_Y, nf))
        dyt = np.zeros((N_Y, nf))
        dringR = np.zeros((m, nf))
        dringJ = np.zeros((m, nf))
        dqr = np.zeros(nf)
        dinitR = dthf[P_RHO] * theta[P_C0] + rho * dthf[P_C0]
        ds1 = dthf[P_TAU1] / hf
        ds2 = dthf[P_TAU2] / hf
        dfrac = np.zeros(nf)
        for kk in range(nf):
            dyf[Y_C, kk] = dthf[P_C0, kk]
            dyf[Y_TH, kk] = dthf[P_T0, kk]
        dvhist = np.zeros((max_free_steps + 2 if n_pre > 0 else 1, nf))
        for kk in range(nf):
            dvhist[0, kk] = dyf[Y_C, kk] * vc + y[Y_C] * dthf[P_VC, kk]
        stg = (dthf, dyt, np.zeros((1, nf)), np.zeros(nf), np.zeros((4, nf)), np.zeros((2, nf)),
               np.zeros((2, nf)), np.zeros(nf), np.zeros(nf), np.zeros(nf), np.zeros((1, 7)))
        rcw = np.zeros((6, 6), dtype=theta.dtype)  # the free-growth interpolants' tangents as linear forms
        riw = np.zeros((6, 4), dtype=np.int64)
        tg = (dthf, dyf, dyt, dringR, dringJ, dinitR, ds1, ds2, dfrac, stg, rcw, riw)
    if V.real < v_pre.real:
        while True:
            if tan is None:
                inc = _free_growth_step(theta, y, ytry, no_cd, ringR, ringJ, m, k, 1.0, s1, s2, hf, initR,
                                        exponential, rng, fg_decay, None)
            else:
                inc = _free_growth_step(theta, y, ytry, no_cd, ringR, ringJ, m, k, 1.0, s1, s2, hf, initR,
                                        exponential, rng, fg_decay, tg)
            Vnew = ytry[Y_C] * vc + ytry[Y_TA] * vt
            if not (Vnew.real > 0.0 and Vnew.real < 1e300) or k >= max_free_steps:
                info[I_STATUS] = FREE_GROWTH_FAILED
                info[I_T_FREE] = k * hf
                return
            if Vnew.real >= v_pre.real:
                break
            for i in range(N_Y):
                y[i] = ytry[i]
            qr += inc
            k += 1
            if n_pre > 0:
                vhist[k] = Vnew
            ringR[k % m] = qr
            ringJ[k % m] = y[Y_THA]
            V = Vnew
            if tan is not None:
                for kk in range(nf):
                    for i in range(N_Y):
                        dyf[i, kk] = dyt[i, kk]
                    dqr[kk] += stg[8][kk]
                    dringR[k % m, kk] = dqr[kk]
                    dringJ[k % m, kk] = dyf[Y_THA, kk]
                    if n_pre > 0:
                        dvhist[k, kk] = (dyf[Y_C, kk] * vc + y[Y_C] * dthf[P_VC, kk] + dyf[Y_TA, kk] * vt
                                         + y[Y_TA] * dthf[P_VT, kk])
        # last step shortened to theta dt: V(theta) = v_pre solved by Illinois regula falsi on [0, 1]
        lo, glo = 0.0, V - v_pre
        hi, ghi = 1.0, Vnew - v_pre
        side = 0
        theta_frac = 1.0
        for _ in range(200):
            theta_frac = lo - glo * (hi - lo) / (ghi - glo)
            inc = _free_growth_step(theta, y, ytry, no_cd, ringR, ringJ, m, k, theta_frac, s1, s2, hf, initR,
                                    exponential, rng, fg_decay, None)
            g = ytry[Y_C] * vc + ytry[Y_TA] * vt - v_pre
            if abs(g.real) <= 1e-14 * v_pre.real or (hi - lo).real <= 1e-15:
                break
            if g.real > 0.0:
                hi, ghi = theta_frac, g
                if side == 1:
                    glo *= 0.5
                side = 1
            else:
                lo, glo = theta_frac, g
                if side == -1:
                    ghi *= 0.5
                side = -1
        if tan is not None:  # the landing step once more, with the fraction's own direction (column nk)
            dfrac[nk] = 1.0
            inc = _free_growth_step(theta, y, ytry, no_cd, ringR, ringJ, m, k, theta_frac, s1, s2, hf, initR,
                                    exponential, rng, fg_decay, tg)
            dv_f = dyt[Y_C, nk] * vc + dyt[Y_TA, nk] * vt
            for kk in range(nk):
                dv = (dyt[Y_C, kk] * vc + ytry[Y_C] * dthf[P_VC, kk] + dyt[Y_TA, kk] * vt
                      + ytry[Y_TA] * dthf[P_VT, kk])
                dfrac[kk] = -(dv - dvpre[kk]) / dv_f
                for i in range(N_Y):
                    dyt[i, kk] += dyt[i, nk] * dfrac[kk]
                stg[8][kk] += stg[8][nk] * dfrac[kk]
            for kk in range(nk):
                for i in range(N_Y):
                    dyf[i, kk] = dyt[i, kk]
                dqr[kk] += stg[8][kk]
        for i in range(N_Y):
            y[i] = ytry[i]
        qr += inc
    info[I_T_FREE] = ((k + theta_frac) * hf).real
    if n_pre > 0:
        vhist[k + 1] = _max(V, v_pre)
        _pre_volumes(vhist, k, theta_frac, hf, pre_times, out_pre)
        if tan is not None:  # d of the log-linear interpolation: node values, the day-0 position, the last width
            for kk in range(nk):
                dvhist[k + 1, kk] = dvpre[kk] if V.real < v_pre.real else dvhist[k, kk]
                day0 = k + theta_frac
                for q in range(n_pre):
                    pos = day0 + pre_times[q] / hf
                    if pos <= 0.0:
                        out_dpre[q, kk] = dvhist[0, kk]
                        continue
                    if pos >= k:
                        i, w, width, dw, dwidth = k, pos - k, theta_frac, dfrac[kk], dfrac[kk]
                    else:
                        i = int(math.floor(pos))
                        w, width, dw, dwidth = pos - i, 1.0, dfrac[kk], 0.0
                    a = math.log(vhist[i])
                    b = math.log(vhist[i + 1])
                    da = dvhist[i, kk] / vhist[i]
                    db = dvhist[i + 1, kk] / vhist[i + 1]
                    r = w / width if width > 0.0 else 1.0
                    dr = (dw * width - w * dwidth) / (width * width) if width > 0.0 else 0.0
                    out_dpre[q, kk] = out_pre[q] * (da + (db - da) * r + (b - a) * dr)

    # cumulative histories on the substep grid: index hpre + i <-> t = i h (i down to -hpre)
    h = dt / n_sub
    s1 = theta[P_TAU1] / h
    s2 = theta[P_TAU2] / h
    hpre = int(math.ceil(max(s1.real, s2.real))) + 2
    nh = hpre + n_steps * n_sub + 1
    HR = np.empty(nh, dtype=theta.dtype)
    HJ = np.empty(nh, dtype=theta.dtype)
    HR[hpre] = qr
    HJ[hpre] = y[Y_THA]
    day0_pos = k + theta_frac
    for q in range(1, hpre + 1):
        pos = day0_pos - q * h / hf
        HR[hpre - q] = _cum_ring(ringR, m, k, pos, hf, initR, exponential)
        HJ[hpre - q] = _cum_ring(ringJ, m, k, pos, hf, 0.0, exponential)
    if tan is not None:  # the histories' tangents: ring tangents at positions that move with the landing fraction
        dHR = np.zeros((nh, nk))
        dHJ = np.zeros((nh, nk))
        for kk in range(nk):
            dHR[hpre, kk] = dqr[kk]
            dHJ[hpre, kk] = dyf[Y_THA, kk]
        for q in range(1, hpre + 1):
            pos = day0_pos - q * h / hf
            _ring_weights(ringR, m, k, pos, hf, initR, rcw, riw, 0)
            _ring_weights(ringJ, m, k, pos, hf, 0.0, rcw, riw, 1)
            for kk in range(nk):
                dHR[hpre - q, kk] = _ring_apply(dringR, rcw, riw, 0, kk, dfrac[kk], dinitR[kk])
                dHJ[hpre - q, kk] = _ring_apply(dringJ, rcw, riw, 1, kk, dfrac[kk], 0.0)

    # ---------------------------------------------------------------- treatment phase
    Cd = np.zeros(max(n_rt, 1), dtype=theta.dtype)
    t_rt = np.zeros(max(n_rt, 1))
    t_vasc = -1.0
    vasc_on = False
    kv = theta[P_KV]
    ri = 0
    ci = 0
    pi = 0
    n_c4 = c4_idx.shape[0]
    n_p1 = p1_idx.shape[0]
    at = theta[P_AT]
    bt = theta[P_BT]
    min_c = y[Y_C]
    integer_mode = False
    reuse = min(s1.real, s2.real) >= 2.0
    kill_last = -1.0
    decay = np.array([np.exp(-theta[P_NU] * 0.5 * h), np.exp(-theta[P_MU] * 0.5 * h)])
    r0 = _cum_at(HR, hpre - s1, hpre, exponential)
    j0 = _cum_at(HJ, hpre - s2, hpre, exponential)
    if tan is not None:  # the treatment phase's tangents and the step's tangent tuple
        dy = np.ascontiguousarray(dyf[:, :nk])
        dCd = np.zeros((max(n_rt, 1), nk))
        ds1t = dth_k[P_TAU1] / h
        ds2t = dth_k[P_TAU2] / h
        ddec = np.zeros((2, nk))
        ddec[0] = -0.5 * h * decay[0] * dth_k[P_NU]
        ddec[1] = -0.5 * h * decay[1] * dth_k[P_MU]
        dqt = np.zeros((4, nk))
        dfvt = np.zeros((2, nk))
        dkill_last = np.zeros(nk)
        dinc = np.zeros(nk)
        dkl = np.zeros(nk)
        ttg = (dth_k, dy, dCd, np.zeros(nk), dqt, dfvt, ddec, dkill_last, dinc, dkl, np.zeros((max(n_rt, 1), 7)))
        cw = np.zeros((6, 5))  # the delayed-source interpolants' tangents as linear forms (_cum_weights)
        iw = np.zeros(6, dtype=np.int64)
        dr0 = np.zeros(nk)
        dj0 = np.zeros(nk)
        dr1 = np.zeros(nk)
        dj1 = np.zeros(nk)
        dCl = np.zeros(nk)
        iw[0] = _cum_weights(HR, hpre - s1, hpre, cw, 0)
        iw[1] = _cum_weights(HJ, hpre - s2, hpre, cw, 1)
        for kk in range(nk):
            dr0[kk] = _cum_apply(dHR, iw[0], cw, 0, kk, -ds1t[kk])
            dj0[kk] = _cum_apply(dHJ, iw[1], cw, 1, kk, -ds2t[kk])
    for j in range(n_steps + 1):
        t = j * dt
        C = y[Y_C]
        if tan is not None:
            for kk in range(nk):
                dCl[kk] = dy[Y_C, kk]
        # 1. impulses at t_j (they change C, T_a or p1: the predictor's kill rate is recomputed)
        if (ri < n_rt and rt_idx[ri] == j) or (pi < n_p1 and p1_idx[pi] == j) or integer_mode:
            kill_last = -1.0
        while ri < n_rt and rt_idx[ri] == j:
            d = rt_dose[ri]
            sf = np.exp(log_sf_tumour(theta, survival, d))
            if integer_mode:
                surv = float(rng.binomial(int(C.real), sf.real))
            else:
                surv = sf * C
            if tan is not None:
                e_ta = math.exp(-at * d - bt * d * d)
                for kk in range(nk):
                    dsurv = sf * _log_sf_tangent(theta, dth_k, kk, survival, d) * C + sf * dCl[kk]
                    dCd[ri, kk] = dCl[kk] - dsurv
                    dCl[kk] = dsurv
                    dy[Y_TA, kk] = (dy[Y_TA, kk] - y[Y_TA] * (dth_k[P_AT, kk] * d + dth_k[P_BT, kk] * d * d)) * e_ta
            Cd[ri] = C - surv  # every cell removed from C enters cohort ri
            C = surv
            t_rt[ri] = t
            y[Y_TA] *= np.exp(-at * d - bt * d * d)
            if vascular and d > theta[P_DV].real:
                t_vasc = t
                vasc_on = True
            ri += 1
        while ci < n_c4 and c4_idx[ci] == j:
            y[Y_C4] += c4_amt[ci]
            if tan is not None and theta[P_IC4] != 0.0:  # the amount is a factor times the dose parameter
                for kk in range(nk):
                    dy[Y_C4, kk] += c4_amt[ci] / theta[P_IC4] * dth_k[P_IC4, kk]
            ci += 1
        while pi < n_p1 and p1_idx[pi] == j:
            y[Y_P1] += p1_amt[pi]
            if tan is not None and theta[P_IP1] != 0.0:
                for kk in range(nk):
                    dy[Y_P1, kk] += p1_amt[pi] / theta[P_IP1] * dth_k[P_IP1, kk]
            pi += 1
        # Markov mode: C becomes an integer number of cells below the threshold (unbiased stochastic rounding)
        if stochastic and C.real < markov_threshold and not integer_mode:
            fl = math.floor(C.real)
            C = fl + (1.0 if rng.random() < C.real - fl else 0.0)
            integer_mode = True
        elif integer_mode and C.real >= markov_threshold:
            integer_mode = False
        y[Y_C] = C
        if tan is not None:
            cd_t = 0.0
            for i in range(ri):
                cd_t += Cd[i]
            for kk in range(nk):
                dy[Y_C, kk] = dCl[kk]
                dcd_t = 0.0
                for i in range(ri):
                    dcd_t += dCd[i, kk]
                out_dV[j, kk] = ((dCl[kk] + dcd_t) * vc + (C + cd_t) * dth_k[P_VC, kk] + dy[Y_TA, kk] * vt
                                 + y[Y_TA] * dth_k[P_VT, kk])
        # 2. record the post-impulse state at t_j
        f = _vascular(vasc_on, kv, t, t_vasc)
        min_c = _min(min_c, C)
        if record:
            cd_tot = 0.0
            for i in range(ri):
                cd_tot += Cd[i]
            out_states[j, S_C] = C
            out_states[j, S_CD] = cd_tot
            out_states[j, S_A] = y[Y_A]
            out_states[j, S_TH] = y[Y_TH]
            out_states[j, S_THA] = y[Y_THA]
            out_states[j, S_THB] = y[Y_THB]
            out_states[j, S_TA] = y[Y_TA]
            out_states[j, S_C4] = y[Y_C4]
            out_states[j, S_P1] = y[Y_P1]
            out_states[j, S_V] = (C + cd_tot) * vc + y[Y_TA] * vt
            out_states[j, S_F] = f
            for i in range(n_rt):
                out_cohorts[j, i] = Cd[i] if i < ri else 0.0
        if C.real <= 0.0 and info[I_CONTROLLED_STEP] < 0.0 and integer_mode:
            info[I_CONTROLLED_STEP] = j
            if stop_on_control:
                break
        if j == n_steps:
            break
        if not (np.isfinite(C) and np.isfinite(y[Y_TA]) and np.isfinite(y[Y_A])):
            info[I_STATUS] = NONFINITE
            break
        # 3. n_sub substeps t_j -> t_{j+1}; delayed sources from the cumulative histories
        for u in range(n_sub):
            last = hpre + j * n_sub + u
            tu = t + u * h
            p_r = last - s1
            p_j = last - s2
            # the start of this substep's delayed window is the end of the previous one: reuse it (the same
            # interpolant, as long as the delay spans >= 2 substeps so no new node enters it)
            if not reuse:
                r0 = _cum_at(HR, p_r, last, exponential)
                j0 = _cum_at(HJ, p_j, last, exponential)
            r1 = _cum_at(HR, p_r + 1.0, last, exponential)
            j1 = _cum_at(HJ, p_j + 1.0, last, exponential)
            qrh = _cum_at(HR, p_r + 0.5, last, exponential) - r0
            qjh = _cum_at(HJ, p_j + 0.5, last, exponential) - j0
            f_0 = _vascular(vasc_on, kv, tu, t_vasc)
            f_m = _vascular(vasc_on, kv, tu + 0.5 * h, t_vasc)
            if tan is None:
                inc, neg, cap, kl = step(theta, y, Cd, t_rt, ri, tu, h, qrh, r1 - r0, qjh, j1 - j0, f_0, f_m,
                                         exponential, integer_mode, rng, decay, kill_last, None)
            else:
                if not reuse:
                    iw[0] = _cum_weights(HR, p_r, last, cw, 0)
                    iw[1] = _cum_weights(HJ, p_j, last, cw, 1)
                iw[2] = _cum_weights(HR, p_r + 1.0, last, cw, 2)
                iw[3] = _cum_weights(HJ, p_j + 1.0, last, cw, 3)
                iw[4] = _cum_weights(HR, p_r + 0.5, last, cw, 4)
                iw[5] = _cum_weights(HJ, p_j + 0.5, last, cw, 5)
                # the branch _min takes: kv (t - t_RT) while it is <= 1 (a tie takes the ramp, as the value)
                on0 = vasc_on and kv * (tu - t_vasc) <= 1.0
                onm = vasc_on and kv * (tu + 0.5 * h - t_vasc) <= 1.0
                for kk in range(nk):
                    if not reuse:
                        dr0[kk] = _cum_apply(dHR, iw[0], cw, 0, kk, -ds1t[kk])
                        dj0[kk] = _cum_apply(dHJ, iw[1], cw, 1, kk, -ds2t[kk])
                    dr1[kk] = _cum_apply(dHR, iw[2], cw, 2, kk, -ds1t[kk])
                    dj1[kk] = _cum_apply(dHJ, iw[3], cw, 3, kk, -ds2t[kk])
                    dqt[0, kk] = _cum_apply(dHR, iw[4], cw, 4, kk, -ds1t[kk]) - dr0[kk]
                    dqt[1, kk] = dr1[kk] - dr0[kk]
                    dqt[2, kk] = _cum_apply(dHJ, iw[5], cw, 5, kk, -ds2t[kk]) - dj0[kk]
                    dqt[3, kk] = dj1[kk] - dj0[kk]
                    dfvt[0, kk] = dth_k[P_KV, kk] * (tu - t_vasc) if on0 else 0.0
                    dfvt[1, kk] = dth_k[P_KV, kk] * (tu + 0.5 * h - t_vasc) if onm else 0.0
                inc, neg, cap, kl = step(theta, y, Cd, t_rt, ri, tu, h, qrh, r1 - r0, qjh, j1 - j0, f_0, f_m,
                                         exponential, integer_mode, rng, decay, kill_last, ttg)
                for kk in range(nk):
                    dHR[last + 1, kk] = dHR[last, kk] + dinc[kk]
                    dHJ[last + 1, kk] = dy[Y_THA, kk]
                    dkill_last[kk] = dkl[kk]
                    if reuse:
                        dr0[kk] = dr1[kk]
                        dj0[kk] = dj1[kk]
            HR[last + 1] = HR[last] + inc
            HJ[last + 1] = y[Y_THA]
            kill_last = kl
            if reuse:
                r0 = r1
                j0 = j1
            info[I_N_CAPPED] += cap
            if neg:
                info[I_N_NEGATIVE] += 1.0
                if info[I_FIRST_NEGATIVE_STEP] < 0.0:
                    info[I_FIRST_NEGATIVE_STEP] = j
    info[I_FINAL_C] = y[Y_C].real
    info[I_MIN_C] = min_c.real


@njit(cache=True)
def _grid_interp(values, n_last, pos):
    """``values`` on the grid positions ``0..n_last`` read at ``pos`` (linear; clamped to the ends, as
    ``np.interp``)."""
    if pos <= 0.0:
        return values[0]
    if pos >= n_last:
        return values[n_last]
    i = int(math.floor(pos))
    w = pos - i
    return values[i] + (values[i + 1] - values[i]) * w if w > 0.0 else values[i]


@njit(cache=True)
def run_rows(
    thetas,
    v_pre,
    row_steps,
    survival,
    vascular,
    dt,
    n_steps,
    n_sub,
    hf,
    rt_idx,
    rt_dose,
    c4_idx,
    c4_fac,
    p1_idx,
    p1_fac,
    exponential,
    max_free_steps,
    rng,
    pos,
    pre_times,
    out,
    info,
    jac,
    tan,
):
    """Deterministic runs of many parameter rows under one schedule in one compiled call: row ``r`` (``thetas[r]``,
    day-0 volume ``v_pre[r]``) is run for ``row_steps[r] <= n_steps`` grid steps by :func:`run`, and its volume read
    off at the observation positions ``pos`` (grid units; a negative position is the next entry of ``pre_times``,
    a day before day 0 read off the free-growth record) into ``out[r]``; ``info[r]`` gets its run's info vector.
    Drug amounts are ``c4_fac * theta[P_IC4]`` and ``p1_fac * theta[P_IP1]``; ``rng`` is not drawn from
    (deterministic runs). ``tan``: None (values only), or :func:`run`'s tangent tuple ``(dth, dv_pre, out_dV,
    out_dpre)`` (work arrays for one row: ``out_dV`` (n_steps + 1, K)) — then ``jac`` (n, len(pos), K) receives the
    volumes' derivatives at ``pos`` (left untouched for a row whose run failed; pass a (0, 0, 0) array without
    tangents). One call site of :func:`run` with ``tan`` as given, so each specialisation compiles only its own
    :func:`run` (a branch calling it twice compiled the value kernel into the tangent one too: +27 s cold). No Python
    between rows: the per-row overhead of a Python loop (argument typing, interpolation calls) was ~25 % of a value
    + gradient of the 40 MOC1 mice."""
    n = thetas.shape[0]
    n_pos = pos.shape[0]
    states = np.zeros((n_steps + 1, N_STATES))
    cohorts = np.zeros((n_steps + 1, rt_idx.shape[0]))
    out_pre = np.zeros(pre_times.shape[0])
    vol = np.empty(n_steps + 1)
    dcol = np.empty(n_steps + 1)
    for r in range(n):
        theta = thetas[r]
        n_r = row_steps[r]
        run(theta, survival, vascular, v_pre[r], dt, n_r, n_sub, hf, rt_idx, rt_dose, c4_idx, c4_fac * theta[P_IC4],
            p1_idx, p1_fac * theta[P_IP1], exponential, False, 0.0, rng, False, max_free_steps, states, cohorts,
            info[r], pre_times, out_pre, tan)
        for i in range(n_r + 1):
            vol[i] = states[i, S_V]
        q_pre = 0
        for q in range(n_pos):
            if pos[q] < 0.0:
                out[r, q] = out_pre[q_pre]
                q_pre += 1
            else:
                out[r, q] = _grid_interp(vol, n_r, pos[q])
        if tan is not None and info[r, I_STATUS] == OK:
            out_dV, out_dpre = tan[2], tan[3]
            for kk in range(out_dV.shape[1]):
                for i in range(n_r + 1):
                    dcol[i] = out_dV[i, kk]
                q_pre = 0
                for q in range(n_pos):
                    if pos[q] < 0.0:
                        jac[r, q, kk] = out_dpre[q_pre, kk]
                        q_pre += 1
                    else:
                        jac[r, q, kk] = _grid_interp(dcol, n_r, pos[q])
