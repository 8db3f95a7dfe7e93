"""Numba kernels of the seed-002 impulsive DDE (explicit Euler, exact-on-grid delays, optional Markov mode).

Parameters enter as one float64 array ``theta`` ordered as :data:`PARAM_NAMES` (registry names), so changing a
value never recompiles. See docs/rit.md for the equations and every discretisation choice; in short, per step
``t_j -> t_{j+1}``:

1. impulses scheduled at ``t_j`` (radiation, then drug doses) act on the state at ``t_j``;
2. the post-impulse state is recorded, together with the delayed source terms
   ``R(t_j) = rho C_tot + psi phi sum_i omega(t_j - t_i) C_d,i`` and ``J(t_j) = a A^ T^``;
3. one explicit Euler step uses the state at ``t_j`` and ``R(t_j - tau_1)``, ``J(t_j - tau_2)`` read from the
   history by linear interpolation between the two bracketing grid points (exact when tau/dt is an integer);
   ``T^`` is capped at ``T^_0`` after the step.
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


@njit(cache=True)
def log_sf_tumour(theta, survival, d):
    """ln SF_C(d): 0 = LQ (eq 1), 1 = modified LQ (eq 2), 2 = LQL (eq 3)."""
    alpha = theta[P_ALPHA]
    beta = theta[P_BETA]
    if survival == 2:
        x = theta[P_X]
        y = x * d
        if y < 1e-4:
            g = d * d * (1.0 - y / 3.0 + y * y / 12.0)
        else:
            g = 2.0 * (y + math.expm1(-y)) / (x * x)
        return -alpha * d - beta * g
    if survival == 1:
        beta = beta * (1.0 + theta[P_C] * math.sqrt(d))
    return -alpha * d - beta * d * d


@njit(cache=True)
def omega(tbar, td1, td2):
    """Mitotic-delay ramp, eq (8) with the typo fixed: 0 for tbar <= td1, linear on (td1, td2], 1 after td2."""
    if tbar <= td1:
        return 0.0
    if tbar > td2:
        return 1.0
    return (tbar - td1) / (td2 - td1)


@njit(cache=True)
def kill_rate(theta, ta, ctot, p1):
    """Per-cell immune kill rate p (1 + p1) (T_a/C_tot)^q / (s + (T_a/C_tot)^q) (eqs 18, 22)."""
    if ctot <= 0.0 or ta <= 0.0:
        return 0.0
    # x^q / (s + x^q) written as 1 / (1 + s (C_tot/T_a)^q): no overflow when C_tot underflows towards 0
    return theta[P_P] * (1.0 + p1) / (1.0 + theta[P_S] * (ctot / ta) ** theta[P_Q])


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


@njit(cache=True)
def _interp(hist, pos):
    """Linear interpolation of a history array at fractional index ``pos`` (>= 0)."""
    i0 = int(math.floor(pos))
    w = pos - i0
    if w <= 1e-12:
        return hist[i0]
    return (1.0 - w) * hist[i0] + w * hist[i0 + 1]


@njit(cache=True)
def _ring(hist, m, k_latest, pos, init):
    """Value at fractional free-growth step ``pos`` from a ring buffer of size ``m`` holding steps <= k_latest."""
    if pos <= 0.0:
        return init if pos < 0.0 else hist[0]
    i0 = int(math.floor(pos))
    w = pos - i0
    v0 = hist[i0 % m]
    if w <= 1e-12 or i0 + 1 > k_latest:
        return v0
    return (1.0 - w) * v0 + w * hist[(i0 + 1) % m]


@njit(cache=True)
def run(
    theta,
    survival,
    vascular,
    v_pre,
    dt,
    n_steps,
    rt_idx,
    rt_dose,
    c4_idx,
    c4_amt,
    p1_idx,
    p1_amt,
    imex,
    stochastic,
    markov_threshold,
    rng,
    stop_on_control,
    max_free_steps,
    out_states,
    out_cohorts,
    info,
):
    """Free growth to ``v_pre`` (defines day 0), then ``n_steps`` treatment steps of length ``dt``.

    ``out_states`` (n_steps + 1, N_STATES) and ``out_cohorts`` (n_steps + 1, n_fractions) receive the recorded
    states at t_j = j dt (pass arrays with 0 rows to skip recording; then only ``info`` is filled).
    ``imex``: False = explicit Euler for every term (the seed's scheme; negative values are set to 0 and counted);
    True = explicit in sources, linearly implicit in per-capita losses (positivity-preserving, first order).
    The free-growth phase always uses explicit Euler (no treatment: non-stiff), so V is linear in the last,
    fractional step that lands exactly on the pre-treatment volume.
    ``stochastic``: Markov birth-death for C below ``markov_threshold`` cells (binomial draws from ``rng``).
    """
    for i in range(N_INFO):
        info[i] = 0.0
    info[I_CONTROLLED_STEP] = -1.0
    info[I_FIRST_NEGATIVE_STEP] = -1.0
    record = out_states.shape[0] > 0
    n_rt = rt_idx.shape[0]
    lam1 = theta[P_LAM1]
    lam2 = theta[P_LAM2]
    t0cap = theta[P_T0]
    a = theta[P_A]
    b = (theta[P_R] - 1.0) * a
    rho = theta[P_RHO]
    psi_phi = theta[P_PSI] * theta[P_PHI]
    phi = theta[P_PHI]
    td1 = theta[P_TD1]
    td2 = theta[P_TD2]
    sigma = theta[P_SIGMA]
    h = theta[P_H]
    iota = theta[P_IOTA]
    eta = theta[P_ETA]
    vc = theta[P_VC]
    vt = theta[P_VT]
    s1 = theta[P_TAU1] / dt
    s2 = theta[P_TAU2] / dt
    mpre = int(math.ceil(max(s1, s2))) + 2

    # ---------------------------------------------------------------- free growth (no treatment) to v_pre
    C = theta[P_C0]
    A = 0.0
    Th = t0cap
    Tha = 0.0
    Thb = 0.0
    Ta = 0.0
    m = mpre + 2
    ringR = np.zeros(m)
    ringJ = np.zeros(m)
    initR = rho * C
    initJ = 0.0
    k = 0
    ringR[0] = rho * C
    ringJ[0] = a * A * Th
    V = C * vc + Ta * vt
    theta_frac = 0.0
    reached = V >= v_pre
    already = reached
    while not reached:
        Rd = _ring(ringR, m, k, k - s1, initR)
        Jd = _ring(ringJ, m, k, k - s2, initJ)
        kill = kill_rate(theta, Ta, C, 0.0)
        act = (a + b) * A * Th
        dC = lam1 * C * (1.0 - lam2 * C) - kill * C
        dA = Rd - sigma * A - act
        dTh = -act + h
        dTha = a * A * Th
        dThb = b * A * Th
        dTa = Jd - iota * Ta * C - eta * Ta
        Vnew = (C + dt * dC) * vc + (Ta + dt * dTa) * vt
        if Vnew >= v_pre:
            theta_frac = (v_pre - V) / (Vnew - V) if Vnew > V else 1.0
        else:
            theta_frac = 1.0
        hstep = theta_frac * dt
        C += hstep * dC
        A += hstep * dA
        Th = min(Th + hstep * dTh, t0cap)
        Tha += hstep * dTha
        Thb += hstep * dThb
        Ta += hstep * dTa
        V = C * vc + Ta * vt
        if Vnew >= v_pre:
            reached = True
            break
        k += 1
        ringR[k % m] = rho * C
        ringJ[k % m] = a * A * Th
        if k > max_free_steps or not (V > 0.0 and V < 1e300):
            info[I_STATUS] = FREE_GROWTH_FAILED
            info[I_T_FREE] = k * dt
            return
    info[I_T_FREE] = 0.0 if already else (k + theta_frac) * dt

    # history on the treatment grid: index mpre + j <-> t_j = j dt (j may be negative down to -mpre)
    nh = mpre + n_steps + 1
    HR = np.empty(nh)
    HJ = np.empty(nh)
    # re-sample the free-growth history (old steps, day 0 at old position k + theta_frac) onto t = -q dt
    day0_pos = k + theta_frac
    for q in range(1, mpre + 1):
        pos = day0_pos - q
        HR[mpre - q] = _ring(ringR, m, k, pos, initR)
        HJ[mpre - q] = _ring(ringJ, m, k, pos, initJ)

    # ---------------------------------------------------------------- treatment phase
    Cd = np.zeros(max(n_rt, 1))
    t_rt = np.zeros(max(n_rt, 1))
    c4 = 0.0
    p1 = 0.0
    t_vasc = -1.0
    vasc_on = False
    ri = 0
    ci = 0
    pi = 0
    n_c4 = c4_idx.shape[0]
    n_p1 = p1_idx.shape[0]
    at = theta[P_AT]
    bt = theta[P_BT]
    min_c = C
    integer_mode = False
    for j in range(n_steps + 1):
        t = j * dt
        # 1. impulses at t_j
        while ri < n_rt and rt_idx[ri] == j:
            d = rt_dose[ri]
            sf = math.exp(log_sf_tumour(theta, survival, d))
            if integer_mode:
                surv = float(rng.binomial(int(C), sf))
            else:
                surv = sf * C
            Cd[ri] = C - surv  # every cell removed from C enters cohort ri
            C = surv
            t_rt[ri] = t
            Ta = Ta * math.exp(-at * d - bt * d * d)
            if vascular and d > theta[P_DV]:
                t_vasc = t
                vasc_on = True
            ri += 1
        while ci < n_c4 and c4_idx[ci] == j:
            c4 += c4_amt[ci]
            ci += 1
        while pi < n_p1 and p1_idx[pi] == j:
            p1 += p1_amt[pi]
            pi += 1
        # Markov mode: C becomes an integer number of cells below the threshold (unbiased stochastic rounding)
        if stochastic and C < markov_threshold and not integer_mode:
            fl = math.floor(C)
            C = fl + (1.0 if rng.random() < C - fl else 0.0)
            integer_mode = True
        elif integer_mode and C >= markov_threshold:
            integer_mode = False
        # 2. record state and delayed sources at t_j
        cd_tot = 0.0
        D = 0.0
        for i in range(ri):
            cd_tot += Cd[i]
            D += omega(t - t_rt[i], td1, td2) * Cd[i]
        ctot = C + cd_tot
        HR[mpre + j] = rho * ctot + psi_phi * D
        HJ[mpre + j] = a * A * Th
        f = 1.0
        if vasc_on:
            f = min(theta[P_KV] * (t - t_vasc), 1.0)
        min_c = min(min_c, C)
        if record:
            out_states[j, S_C] = C
            out_states[j, S_CD] = cd_tot
            out_states[j, S_A] = A
            out_states[j, S_TH] = Th
            out_states[j, S_THA] = Tha
            out_states[j, S_THB] = Thb
            out_states[j, S_TA] = Ta
            out_states[j, S_C4] = c4
            out_states[j, S_P1] = p1
            out_states[j, S_V] = ctot * vc + Ta * vt
            out_states[j, S_F] = f
            for i in range(n_rt):
                out_cohorts[j, i] = Cd[i] if i < ri else 0.0
        if C <= 0.0 and info[I_CONTROLLED_STEP] < 0.0 and integer_mode:
            info[I_CONTROLLED_STEP] = j
            if stop_on_control:
                break
        if j == n_steps:
            break
        if not (math.isfinite(C) and math.isfinite(Ta) and math.isfinite(A)):
            info[I_STATUS] = NONFINITE
            break
        # 3. explicit Euler step t_j -> t_{j+1}
        Rd = _interp(HR, mpre + j - s1)
        Jd = _interp(HJ, mpre + j - s2)
        kill = kill_rate(theta, Ta, ctot, p1)
        bp = b / (1.0 + c4)
        act = (a + bp) * A * Th
        growth = lam1 * (1.0 - lam2 * ctot)
        dA = Rd - sigma * A - act
        dTh = -act + h
        dTha = a * A * Th
        dThb = bp * A * Th
        dTa = Jd * f - iota * Ta * ctot - eta * Ta
        if integer_mode:
            n_new, capped = markov_step(int(C), growth * dt, kill * dt, rng)
            Cn = float(n_new)
            info[I_N_CAPPED] += capped
        elif imex:
            gain = max(growth, 0.0)
            loss = kill + max(-growth, 0.0)
            Cn = C * (1.0 + dt * gain) / (1.0 + dt * loss)
        else:
            Cn = C + dt * (growth - kill) * C
        neg = False
        if imex:
            # linearly implicit in every per-capita loss, explicit in every source (first order, positive)
            for i in range(ri):
                Cd[i] = Cd[i] / (1.0 + dt * (phi * omega(t - t_rt[i], td1, td2) + kill))
            Thn = min((Th + dt * h) / (1.0 + dt * (a + bp) * A), t0cap)
            act_n = A * Thn  # activation events per (a + b') this step, consistent with the T^ update
            Tha += dt * a * act_n
            Thb += dt * bp * act_n
            A = (A + dt * Rd) / (1.0 + dt * (sigma + (a + bp) * Thn))
            Th = Thn
            Ta = (Ta + dt * Jd * f) / (1.0 + dt * (iota * ctot + eta))
            c4 = c4 / (1.0 + dt * theta[P_NU])
            p1 = p1 / (1.0 + dt * theta[P_MU])
            C = Cn
        else:
            for i in range(ri):
                cdn = Cd[i] - dt * (phi * omega(t - t_rt[i], td1, td2) + kill) * Cd[i]
                if cdn < 0.0:
                    cdn = 0.0
                    neg = True
                Cd[i] = cdn
            if Cn < 0.0:
                Cn = 0.0
                neg = True
            C = Cn
            A += dt * dA
            if A < 0.0:
                A = 0.0
                neg = True
            Th = min(Th + dt * dTh, t0cap)
            if Th < 0.0:
                Th = 0.0
                neg = True
            Tha += dt * dTha
            Thb += dt * dThb
            Ta += dt * dTa
            if Ta < 0.0:
                Ta = 0.0
                neg = True
            c4 -= dt * theta[P_NU] * c4
            p1 -= dt * theta[P_MU] * p1
        if neg:
            info[I_N_NEGATIVE] += 1.0
            if info[I_FIRST_NEGATIVE_STEP] < 0.0:
                info[I_FIRST_NEGATIVE_STEP] = j
    info[I_FINAL_C] = C
    info[I_MIN_C] = min_c
