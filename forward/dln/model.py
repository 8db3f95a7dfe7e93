r"""Seed-003 cancer-immunity-cycle compartment model with draining lymph nodes (DLN): all equations in one place.

The seed writes every equation as a per-step update ``dn/dt = gain - (1 - lambda) n`` with survival fractions
``lambda`` in [0, 1]. This module implements them as a **discrete-time map with a step of one day** (the seed's own
unit time step; drugs and fractions are given on whole days). For target ``i`` (tumour) and DLN ``m``, with the state
at day ``t`` on the right-hand side and the state at ``t + 1`` on the left (``lambda_RT^(X)`` is the LQ survival of
cell type X for the dose the compartment receives on day ``t``; a compartment that receives no dose has 1):

====  =====================================================================================================
eq    update (day t -> t+1)
====  =====================================================================================================
1-2   n_T' = (1 + C_0) lambda_RT^(T) lambda_IMM n_T,   lambda_IMM = exp(-gamma_1 n_CTL),  n_CTL = E + X
      (option ``tumour_update="seed_additive"``: n_T' = n_T + C_0 n_T - (1 - lambda_RT lambda_IMM) n_T)
3     E' = C_inf,i (1 - lambda_ind^(CTL)) (1/M) sum_m lambda_RT^(CTL-DLN) n_m^(CTL-DLN)
           + C_1 E + lambda_RT^(CTL-TME) lambda_exh lambda_CTL E
4     X' = (1 - lambda_exh) lambda_RT^(CTL-TME) lambda_CTL E + lambda_RT^(CTL-TME) lambda_CTL lambda_OA X
5     n_m^(CTL-DLN)' = C_5 lambda_PD-1^(DLN) n_naive,m n_m^(APC)          (all DLN CTLs leave every step)
6     n_m^(APC)' = C_7 (1/I_m) sum_{i->m} lambda_RT^(APC-TME) lambda_CTLA-4^(TME) n_i^(Ag)
                   + lambda_CTLA-4^(DLN) lambda_NL^(APC) lambda_RT^(APC-DLN) n_m^(APC)
7     n_Ag' = C_Trex1 (I^Int + I^Rad) + lambda_NL^(Ag) n_Ag
8     C_Trex1 = (C_10 - (2 - C_10) erf(C_11 (d_max,i - C_12))) / 2      (1 at low dose, C_10 - 1 at high dose)
9     n_naive,m = (1 - NTCP_LKB(EQD2 so far)) / (1 - NTCP_LKB(0))   (1 when spared; irreversible unless recovery)
10    lambda_CTL = lambda_MDSC lambda_Treg lambda_NL^(CTL) lambda_PD-1^(TME)
11    lambda_MDSC = exp(-gamma_2 (n_MDSC + n_M2))
12    lambda_Treg = exp(-gamma_3 n_Treg-TME)
13    n_MDSC' = I^(MDSC) + lambda_RT^(MDSC) lambda_NL^(MDSC) n_MDSC
14    n_M2' = I^(M2) + lambda_RT^(M2) lambda_NL^(M2) n_M2
15    n_Treg' = I^(Treg) + (1 - lambda_ind^(Treg)) (1/M) sum_m lambda_RT^(Treg-DLN) n_m^(Treg-DLN)
                + lambda_RT^(Treg-TME) lambda^(Treg) n_Treg
16    lambda^(Treg) = lambda_PD-1^(TME) lambda_NL^(Treg)
17    n_m^(Treg-DLN)' = C_6 lambda_PD-1^(DLN) n_naive,m n_m^(APC)
18-20 I^(MDSC|M2|Treg) = min(C_{2|3|4} n_T^p, I_max^(MDSC|M2|Treg))
21    lambda_ind^(CTL) = exp(-gamma_4 n_T n_CTL)
22    lambda_ind^(Treg) = exp(-gamma_5 n_T)
23    lambda_CTLA-4^(TME) = exp(-gamma_6 (n_CTL + n_Treg-TME))
24    lambda_CTLA-4^(DLN) = exp(-gamma_7 (n_m^(CTL-DLN) + n_m^(Treg-DLN)))
25    I^Int = min(C_8 n_T^p, I_max^(Int))
26    I^Rad = min(C_9 (1 - lambda_RT^(T)) n_T, I_max^(Rad))
27    lambda_RT^(X) = exp(-alpha_X d (1 + (beta_X/alpha_X) d)) = exp(-alpha_X d - beta_X d^2)
--    volume V_i = k_i n_T,i (mm^3); area = pi (3 V_i / 4 pi)^(2/3), proportional to n_T,i^(2/3)
====  =====================================================================================================

Drug and radiation state machines (seed Methods; the appendix that details them is not available):

* anti-PD-1/PD-L1: concentration c += dose x ``pd1_dose_concentration`` on a dosing day, then
  c <- c exp(-``pd1_drug_decay``) (first-order decay, SPEC §5). c >= threshold: state I (lambda_PD-1 = lambda^(++));
  once c has fallen below the threshold the drug stays in state II (lambda^(+)) for the rest of the run (a later
  dose that lifts c above the threshold again restores state I).
* RT-induced PD-L1 over-expression: any irradiated target raises a flag for ``pdl1_overexpression_duration`` days, in
  all targets (seed: "this process also applies to distant metastatic tumours"). In the TME the precedence is
  state I (lambda^(++)) > flag (lambda^(-)) > state II (lambda^(+)) > control (lambda^(+-)); in the DLN (PD-L1 on normal
  cells, eqs 5, 17) the flag does not apply.
* anti-CTLA-4: for ``ctla4_state1_duration`` days after the last dose C_5 = C_5^(++), C_6 = C_6^(++),
  gamma_6/7 = gamma^(++); afterwards C_5^(+), C_6 (control), gamma^(+) for the rest of the run.
* bezafibrate: lambda_exh = lambda_exh^(+) from the first dose until ``bezafibrate_duration`` days after the last.
* anti-CD8: gamma_1 = 0 from the first dose on (seed: "not attenuated throughout the experiment").
* lambda_OA = lambda_OA^(+) while anti-PD-1 is in state I or II.
* C_inf,i = C_inf^(RT) in a target from its first irradiation on, C_inf otherwise.

Why a 1-day step: the seed's rates are fitted per "unit time step" (one day in its mouse experiments), doses and
drugs are daily events, and every survival fraction lambda is a per-step probability. A finer step h (days) would
need lambda -> lambda^h for every natural/suppressive survival (and exp(-gamma x) -> exp(-h gamma x)),
(1 + C_0) -> (1 + C_0)^h, the inductions, releases and caps multiplied by h, the DLN outflow (eqs 5, 17) replaced by
a residence fraction, and each RT fraction applied once as an impulse. The choice (1 + C_0) lambda_RT lambda_IMM for
eq 1 (proliferation of the cells that survive the step) equals the seed's additive form to first order, keeps the
map positive, and composes exactly under such a refinement; the literal additive form is available as an option.

Conservation (tested): with ``influx_mode="conservative"`` the CTLs leaving all DLNs are shared between the
``I`` targets (factor 1/I instead of the seed's 1/M, identical when I = M), so with all losses off the CTLs arriving
in the targets equal the CTLs leaving the DLNs. The seed's 1/M (default) gives every target the DLN mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

# ---------------------------------------------------------------------------------------------------------------
# parameter layout: registry names in the order of the kernels' parameter array
PARAM_NAMES: tuple[str, ...] = (
    "tumour_proliferation_rate",
    "ctl_cytotoxicity",
    "ctl_infiltration",
    "ctl_infiltration_rt",
    "ctl_tme_proliferation",
    "exhaustion_survival",
    "exhaustion_survival_bezafibrate",
    "overactivation_survival",
    "overactivation_survival_pd1",
    "ctl_natural_survival",
    "pd1_survival_control",
    "pd1_survival_state1",
    "pd1_survival_state2",
    "pd1_survival_pdl1_overexpression",
    "mdsc_suppression",
    "treg_suppression",
    "mdsc_natural_survival",
    "m2_natural_survival",
    "treg_natural_survival",
    "mdsc_induction",
    "m2_induction",
    "treg_induction",
    "mdsc_induction_cap",
    "m2_induction_cap",
    "treg_induction_cap",
    "induction_exponent",
    "ctl_priming",
    "ctl_priming_ctla4_state1",
    "ctl_priming_ctla4_state2",
    "treg_priming",
    "treg_priming_ctla4",
    "ctl_migration",
    "treg_migration",
    "apc_inhibition_tme",
    "apc_inhibition_tme_ctla4_state1",
    "apc_inhibition_tme_ctla4_state2",
    "apc_inhibition_dln",
    "apc_inhibition_dln_ctla4_state1",
    "apc_inhibition_dln_ctla4_state2",
    "apc_maturation",
    "apc_natural_survival",
    "antigen_release_intrinsic",
    "antigen_release_radiation",
    "antigen_release_intrinsic_cap",
    "antigen_release_radiation_cap",
    "antigen_natural_survival",
    "trex1_level",
    "trex1_steepness",
    "trex1_threshold_dose",
    "dln_ntcp_td50",
    "dln_ntcp_n",
    "dln_ntcp_m",
    "dln_eqd2_alpha",
    "dln_eqd2_beta",
    "dln_recovery_rate",
    "tumour_lq_alpha",
    "tumour_lq_beta",
    "ctl_lq_alpha",
    "ctl_lq_beta",
    "treg_lq_alpha",
    "treg_lq_beta",
    "apc_lq_alpha",
    "apc_lq_beta",
    "m2_lq_alpha",
    "m2_lq_beta",
    "mdsc_lq_alpha",
    "mdsc_lq_beta",
    "volume_per_cell",
    "pd1_drug_threshold",
    "pd1_drug_decay",
    "pd1_dose_concentration",
    "pdl1_overexpression_duration",
    "ctla4_state1_duration",
    "bezafibrate_duration",
    "initial_tumour_cells",
    "initial_ctl_tme",
)
_IX = {name: i for i, name in enumerate(PARAM_NAMES)}
N_PARAMS = len(PARAM_NAMES)

# index constants (module globals are compile-time constants for Numba)
C0 = _IX["tumour_proliferation_rate"]
G1 = _IX["ctl_cytotoxicity"]
CINF = _IX["ctl_infiltration"]
CINF_RT = _IX["ctl_infiltration_rt"]
C1 = _IX["ctl_tme_proliferation"]
LEXH = _IX["exhaustion_survival"]
LEXH_B = _IX["exhaustion_survival_bezafibrate"]
LOA = _IX["overactivation_survival"]
LOA_PD1 = _IX["overactivation_survival_pd1"]
LNL_CTL = _IX["ctl_natural_survival"]
LPD1_0 = _IX["pd1_survival_control"]
LPD1_I = _IX["pd1_survival_state1"]
LPD1_II = _IX["pd1_survival_state2"]
LPD1_OVER = _IX["pd1_survival_pdl1_overexpression"]
G2 = _IX["mdsc_suppression"]
G3 = _IX["treg_suppression"]
LNL_MDSC = _IX["mdsc_natural_survival"]
LNL_M2 = _IX["m2_natural_survival"]
LNL_TREG = _IX["treg_natural_survival"]
C2 = _IX["mdsc_induction"]
C3 = _IX["m2_induction"]
C4 = _IX["treg_induction"]
CAP_MDSC = _IX["mdsc_induction_cap"]
CAP_M2 = _IX["m2_induction_cap"]
CAP_TREG = _IX["treg_induction_cap"]
P_EXP = _IX["induction_exponent"]
C5 = _IX["ctl_priming"]
C5_I = _IX["ctl_priming_ctla4_state1"]
C5_II = _IX["ctl_priming_ctla4_state2"]
C6 = _IX["treg_priming"]
C6_I = _IX["treg_priming_ctla4"]
G4 = _IX["ctl_migration"]
G5 = _IX["treg_migration"]
G6 = _IX["apc_inhibition_tme"]
G6_I = _IX["apc_inhibition_tme_ctla4_state1"]
G6_II = _IX["apc_inhibition_tme_ctla4_state2"]
G7 = _IX["apc_inhibition_dln"]
G7_I = _IX["apc_inhibition_dln_ctla4_state1"]
G7_II = _IX["apc_inhibition_dln_ctla4_state2"]
C7 = _IX["apc_maturation"]
LNL_APC = _IX["apc_natural_survival"]
C8 = _IX["antigen_release_intrinsic"]
C9 = _IX["antigen_release_radiation"]
CAP_INT = _IX["antigen_release_intrinsic_cap"]
CAP_RAD = _IX["antigen_release_radiation_cap"]
LNL_AG = _IX["antigen_natural_survival"]
C10 = _IX["trex1_level"]
C11 = _IX["trex1_steepness"]
C12 = _IX["trex1_threshold_dose"]
TD50 = _IX["dln_ntcp_td50"]
NTCP_N = _IX["dln_ntcp_n"]
NTCP_M = _IX["dln_ntcp_m"]
EQD2_A = _IX["dln_eqd2_alpha"]
EQD2_B = _IX["dln_eqd2_beta"]
DLN_REC = _IX["dln_recovery_rate"]
A_TUM = _IX["tumour_lq_alpha"]
B_TUM = _IX["tumour_lq_beta"]
A_CTL = _IX["ctl_lq_alpha"]
B_CTL = _IX["ctl_lq_beta"]
A_TREG = _IX["treg_lq_alpha"]
B_TREG = _IX["treg_lq_beta"]
A_APC = _IX["apc_lq_alpha"]
B_APC = _IX["apc_lq_beta"]
A_M2 = _IX["m2_lq_alpha"]
B_M2 = _IX["m2_lq_beta"]
A_MDSC = _IX["mdsc_lq_alpha"]
B_MDSC = _IX["mdsc_lq_beta"]
K_VOL = _IX["volume_per_cell"]
PD1_THR = _IX["pd1_drug_threshold"]
PD1_DECAY = _IX["pd1_drug_decay"]
PD1_CONC = _IX["pd1_dose_concentration"]
T_PDL1 = _IX["pdl1_overexpression_duration"]
T_CTLA4 = _IX["ctla4_state1_duration"]
T_BEZA = _IX["bezafibrate_duration"]
N0_TUM = _IX["initial_tumour_cells"]
N0_CTL = _IX["initial_ctl_tme"]

# state layout -------------------------------------------------------------------------------------------------
TARGET_VARS: tuple[str, ...] = (
    "tumour_cells",
    "ctl_effector",
    "ctl_exhausted",
    "antigen",
    "mdsc",
    "m2",
    "treg_tme",
    # diagnostics (value used during the step starting that day; last row repeats the previous day)
    "lambda_pd1",
    "c_trex1",
    "ctl_influx",
)
DLN_VARS: tuple[str, ...] = ("apc", "ctl_dln", "treg_dln", "naive_supply", "eqd2_gy")
FLUX_VARS: tuple[str, ...] = (
    "ctl_leaving_dlns",
    "ctl_arriving_targets",
    "treg_leaving_dlns",
    "treg_arriving_targets",
)
DRUGS: tuple[str, ...] = ("anti_pd1", "anti_ctla4", "bezafibrate", "anti_cd8")
N_TV = len(TARGET_VARS)
N_DV = len(DLN_VARS)

# options (integer codes live only here; the public API takes names)
TUMOUR_UPDATES = {"survive_then_grow": 0, "seed_additive": 1}
INFLUX_MODES = {"seed": 0, "conservative": 1}
_SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------------------------
# radiobiology building blocks (scalar, jitted; also used from Python)
@njit(cache=True)
def lq_survival(alpha: float, beta: float, dose: float) -> float:
    """Eq 27: LQ surviving fraction exp(-alpha d - beta d^2) of one fraction of ``dose`` Gy."""
    return math.exp(-alpha * dose - beta * dose * dose)


@njit(cache=True)
def eqd2(dose: float, alpha: float, beta: float) -> float:
    """Equivalent dose in 2-Gy fractions of one fraction ``dose``: d (alpha + beta d) / (alpha + 2 beta)."""
    return dose * (alpha + beta * dose) / (alpha + 2.0 * beta)


@njit(cache=True)
def lkb_ntcp(eqd2_dose: float, td50: float, n: float, m: float, volume_fraction: float) -> float:
    """Lyman-Kutcher-Burman NTCP = Phi((gEUD - TD50) / (m TD50)) for a uniform dose to ``volume_fraction``.

    The one-bin generalised EUD is gEUD = (v D^(1/n))^n = v^n D (v = 1: gEUD = D, n drops out).
    """
    geud = volume_fraction**n * eqd2_dose
    t = (geud - td50) / (m * td50)
    return 0.5 * (1.0 + math.erf(t / _SQRT2))


@njit(cache=True)
def c_trex1(d_max: float, c10: float, c11: float, c12: float) -> float:
    """Eq 8: Trex1 antigen factor; 1 for d_max << C_12, C_10 - 1 for d_max >> C_12."""
    return 0.5 * (c10 - (2.0 - c10) * math.erf(c11 * (d_max - c12)))


# ---------------------------------------------------------------------------------------------------------------
#: parameters that act only through a threshold or a duration on the 1-day grid (drug state machines): the map is
#: piecewise constant in them, so their exact derivative is 0 almost everywhere — refused by the sensitivities
SWITCH_PARAMS = (PD1_THR, PD1_DECAY, PD1_CONC, T_PDL1, T_CTLA4, T_BEZA)


@njit(cache=True, inline="always")
def _lq_d(alpha, beta, d, da, db):
    """Eq 27 and its tangent: exp(-alpha d - beta d^2), given tangents ``da``, ``db`` of alpha and beta."""
    v = math.exp(-alpha * d - beta * d * d)
    return v, -v * (d * da + d * d * db)


@njit(cache=True, inline="always")
def _ntcp_d(e, de, td50, dtd50, m, dm):
    """LKB NTCP at uniform EQD2 ``e`` over the whole organ (v = 1: n drops out) and its tangent."""
    t = (e - td50) / (m * td50)
    dt = de / (m * td50) - e * (dm * td50 + m * dtd50) / (m * td50) ** 2 + dm / (m * m)
    return 0.5 * (1.0 + math.erf(t / _SQRT2)), math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi) * dt


@njit(cache=True, inline="always")
def _min_d(a, da, b, db):
    """min(a, b) and the tangent of the branch it takes (a at a tie)."""
    if a <= b:
        return a, da
    return b, db


@njit(cache=True)
def _run(prm, drains, target_dose, dln_dose, drug_dose, init_tumour, opts, tr, dl, flux, dprm, dinit, dtr, ddl):
    """Advance the map over ``T = target_dose.shape[0]`` days, writing into tr (T+1, N_TV, I), dl (T+1, N_DV, M),
    flux (T, 4). ``drains`` is the (I, M) 0/1 target->DLN matrix; drug_dose is (T, 4) in the order of DRUGS.

    Forward-mode sensitivities through the same map: ``dprm`` (N_PARAMS, K) holds the tangent of every parameter
    with respect to K directions (a column of the identity for each calibrated parameter), ``dinit`` (I, K) that of
    the initial tumour cells; ``dtr`` (T+1, 7, I, K) and ``ddl`` (T+1, 3, M, K) receive the tangents of the seven
    target states and of the DLN APC / CTL / Treg — the exact derivative of what the map computes (K = 0: values
    only). Thresholds and durations (:data:`SWITCH_PARAMS`) act discretely and carry no tangent."""
    n_days = target_dose.shape[0]
    n_t = target_dose.shape[1]
    n_d = dln_dose.shape[1]
    nk = dprm.shape[1]
    tumour_form = opts[0]
    influx_mode = opts[1]
    p = prm[P_EXP]

    # targets per DLN (I_m)
    i_m = np.zeros(n_d)
    for i in range(n_t):
        for m in range(n_d):
            i_m[m] += drains[i, m]

    # initial state
    for i in range(n_t):
        for v in range(N_TV):
            tr[0, v, i] = 0.0
        tr[0, 0, i] = init_tumour[i]
        tr[0, 1, i] = prm[N0_CTL]
        for k in range(nk):
            for v in range(7):
                dtr[0, v, i, k] = 0.0
            dtr[0, 0, i, k] = dinit[i, k]
            dtr[0, 1, i, k] = dprm[N0_CTL, k]
    for m in range(n_d):
        for v in range(N_DV):
            dl[0, v, m] = 0.0
        dl[0, 3, m] = 1.0
        for k in range(nk):
            for v in range(3):
                ddl[0, v, m, k] = 0.0

    d_max = np.zeros(n_t)
    irradiated = np.zeros(n_t, dtype=np.bool_)
    eqd2_acc = np.zeros(n_d)
    apc_in = np.zeros(n_t)
    d_eqd2 = np.zeros((n_d, nk))
    d_apc_in = np.zeros((n_t, nk))
    pd1_conc = 0.0
    pd1_state = 0  # 0 never/control, 1 state I, 2 state II
    ctla4_last = -1.0e9
    ctla4_given = False
    beza_first = -1
    beza_last = -1.0e9
    cd8_given = False
    flag_until = -1.0  # PD-L1 over-expression flag raised while t < flag_until
    rec = math.exp(-prm[DLN_REC])
    # eq 9 normalised so that a spared DLN has supply exactly 1 (seed: "ideally spared doses: n_naive = 1");
    # the LKB curve itself gives NTCP(0) = Phi(-1/m) > 0
    naive0 = 1.0 - lkb_ntcp(0.0, prm[TD50], prm[NTCP_N], prm[NTCP_M], 1.0)
    d_naive0 = np.zeros(nk)
    for k in range(nk):
        d_naive0[k] = -_ntcp_d(0.0, 0.0, prm[TD50], dprm[TD50, k], prm[NTCP_M], dprm[NTCP_M, k])[1]

    for t in range(n_days):
        # ---- drugs given today (state machines, seed Methods)
        if drug_dose[t, 0] > 0.0:
            pd1_conc += drug_dose[t, 0] * prm[PD1_CONC]
        if pd1_conc >= prm[PD1_THR] and pd1_conc > 0.0:
            pd1_state = 1
        elif pd1_state != 0:
            pd1_state = 2
        if drug_dose[t, 1] > 0.0:
            ctla4_last = t
            ctla4_given = True
        if drug_dose[t, 2] > 0.0:
            if beza_first < 0:
                beza_first = t
            beza_last = t
        if drug_dose[t, 3] > 0.0:
            cd8_given = True
        # radiation of targets raises the PD-L1 flag in all targets
        for i in range(n_t):
            if target_dose[t, i] > 0.0:
                flag_until = t + prm[T_PDL1]
                irradiated[i] = True
                d_max[i] = max(d_max[i], target_dose[t, i])
        flag = t < flag_until

        # the day's effective parameters, by index (their tangents are the parameters' own)
        if pd1_state == 1:
            j_pd1_dln = LPD1_I
            j_pd1_tme = LPD1_I
        elif pd1_state == 2:
            j_pd1_dln = LPD1_II
            j_pd1_tme = LPD1_OVER if flag else LPD1_II
        else:
            j_pd1_dln = LPD1_0
            j_pd1_tme = LPD1_OVER if flag else LPD1_0
        j_oa = LOA_PD1 if pd1_state != 0 else LOA
        if ctla4_given and (t - ctla4_last) < prm[T_CTLA4]:
            j5, j6, j_g6, j_g7 = C5_I, C6_I, G6_I, G7_I
        elif ctla4_given:
            j5, j6, j_g6, j_g7 = C5_II, C6, G6_II, G7_II
        else:
            j5, j6, j_g6, j_g7 = C5, C6, G6, G7
        j_exh = LEXH_B if (beza_first >= 0 and (t - beza_last) < prm[T_BEZA]) else LEXH
        lpd1_dln, lpd1_tme, loa = prm[j_pd1_dln], prm[j_pd1_tme], prm[j_oa]
        c5, c6, g6, g7, lexh = prm[j5], prm[j6], prm[j_g6], prm[j_g7], prm[j_exh]
        g1 = 0.0 if cd8_given else prm[G1]
        g1_on = 0.0 if cd8_given else 1.0

        # ---- DLN outflow of the CTLs / Tregs present at t (eqs 3, 15: sum_m lambda_RT^(X-DLN) n_m)
        ctl_leave = 0.0
        treg_leave = 0.0
        ctl_out = 0.0
        treg_out = 0.0
        d_ctl_out = np.zeros(nk)
        d_treg_out = np.zeros(nk)
        for m in range(n_d):
            d = dln_dose[t, m]
            ctl_leave += dl[t, 1, m]
            treg_leave += dl[t, 2, m]
            s_ctl = lq_survival(prm[A_CTL], prm[B_CTL], d)
            s_treg = lq_survival(prm[A_TREG], prm[B_TREG], d)
            ctl_out += s_ctl * dl[t, 1, m]
            treg_out += s_treg * dl[t, 2, m]
            for k in range(nk):
                ds_ctl = _lq_d(prm[A_CTL], prm[B_CTL], d, dprm[A_CTL, k], dprm[B_CTL, k])[1]
                ds_treg = _lq_d(prm[A_TREG], prm[B_TREG], d, dprm[A_TREG, k], dprm[B_TREG, k])[1]
                d_ctl_out[k] += ds_ctl * dl[t, 1, m] + s_ctl * ddl[t, 1, m, k]
                d_treg_out[k] += ds_treg * dl[t, 2, m] + s_treg * ddl[t, 2, m, k]
        share = 1.0 / n_t if influx_mode == 1 else 1.0 / n_d
        ctl_arrive = 0.0
        treg_arrive = 0.0

        # ---- targets
        for i in range(n_t):
            d = target_dose[t, i]
            n = tr[t, 0, i]
            e = tr[t, 1, i]
            x = tr[t, 2, i]
            ag = tr[t, 3, i]
            mdsc = tr[t, 4, i]
            m2 = tr[t, 5, i]
            treg = tr[t, 6, i]
            nctl = e + x
            np_ = n**p if n > 0.0 else 0.0
            lrt_t = lq_survival(prm[A_TUM], prm[B_TUM], d)  # eq 27 per cell type
            lrt_ctl = lq_survival(prm[A_CTL], prm[B_CTL], d)
            lrt_treg = lq_survival(prm[A_TREG], prm[B_TREG], d)
            lrt_apc = lq_survival(prm[A_APC], prm[B_APC], d)
            lrt_m2 = lq_survival(prm[A_M2], prm[B_M2], d)
            lrt_mdsc = lq_survival(prm[A_MDSC], prm[B_MDSC], d)
            l_imm = math.exp(-g1 * nctl)  # eq 2
            l_mdsc = math.exp(-prm[G2] * (mdsc + m2))  # eq 11
            l_treg = math.exp(-prm[G3] * treg)  # eq 12
            l_ctl = l_mdsc * l_treg * prm[LNL_CTL] * lpd1_tme  # eq 10
            l_ind_ctl = math.exp(-prm[G4] * n * nctl)  # eq 21
            l_ind_treg = math.exp(-prm[G5] * n)  # eq 22
            l_ctla4 = math.exp(-g6 * (nctl + treg))  # eq 23
            j_inf = CINF_RT if irradiated[i] else CINF
            cinf = prm[j_inf]
            influx = cinf * (1.0 - l_ind_ctl) * share * ctl_out  # eq 3, first term
            treg_in = (1.0 - l_ind_treg) * share * treg_out  # eq 15, second term
            ctl_arrive += influx
            treg_arrive += treg_in
            ctrex = c_trex1(d_max[i], prm[C10], prm[C11], prm[C12])  # eq 8
            i_int = min(prm[C8] * np_, prm[CAP_INT])  # eq 25
            i_rad = min(prm[C9] * (1.0 - lrt_t) * n, prm[CAP_RAD])  # eq 26
            i_mdsc = min(prm[C2] * np_, prm[CAP_MDSC])  # eq 18
            i_m2 = min(prm[C3] * np_, prm[CAP_M2])  # eq 19
            i_treg = min(prm[C4] * np_, prm[CAP_TREG])  # eq 20

            if tumour_form == 0:  # eqs 1-2
                tr[t + 1, 0, i] = (1.0 + prm[C0]) * lrt_t * l_imm * n
            else:
                tr[t + 1, 0, i] = n + prm[C0] * n - (1.0 - lrt_t * l_imm) * n
            tr[t + 1, 1, i] = influx + prm[C1] * e + lrt_ctl * lexh * l_ctl * e  # eq 3
            tr[t + 1, 2, i] = (1.0 - lexh) * lrt_ctl * l_ctl * e + lrt_ctl * l_ctl * loa * x  # eq 4
            tr[t + 1, 3, i] = ctrex * (i_int + i_rad) + prm[LNL_AG] * ag  # eq 7
            tr[t + 1, 4, i] = i_mdsc + lrt_mdsc * prm[LNL_MDSC] * mdsc  # eq 13
            tr[t + 1, 5, i] = i_m2 + lrt_m2 * prm[LNL_M2] * m2  # eq 14
            tr[t + 1, 6, i] = i_treg + treg_in + lrt_treg * lpd1_tme * prm[LNL_TREG] * treg  # eqs 15-16
            apc_in[i] = lrt_apc * l_ctla4 * ag  # eq 6, summand of the first term
            tr[t, 7, i] = lpd1_tme
            tr[t, 8, i] = ctrex
            tr[t, 9, i] = influx

            # tangents of the same expressions (product and chain rules, line by line)
            for k in range(nk):
                dn, de, dx = dtr[t, 0, i, k], dtr[t, 1, i, k], dtr[t, 2, i, k]
                dag, dmdsc, dm2, dtreg = dtr[t, 3, i, k], dtr[t, 4, i, k], dtr[t, 5, i, k], dtr[t, 6, i, k]
                dnctl = de + dx
                dnp = p * n ** (p - 1.0) * dn + np_ * math.log(n) * dprm[P_EXP, k] if n > 0.0 else 0.0
                dlrt_t = _lq_d(prm[A_TUM], prm[B_TUM], d, dprm[A_TUM, k], dprm[B_TUM, k])[1]
                dlrt_ctl = _lq_d(prm[A_CTL], prm[B_CTL], d, dprm[A_CTL, k], dprm[B_CTL, k])[1]
                dlrt_treg = _lq_d(prm[A_TREG], prm[B_TREG], d, dprm[A_TREG, k], dprm[B_TREG, k])[1]
                dlrt_apc = _lq_d(prm[A_APC], prm[B_APC], d, dprm[A_APC, k], dprm[B_APC, k])[1]
                dlrt_m2 = _lq_d(prm[A_M2], prm[B_M2], d, dprm[A_M2, k], dprm[B_M2, k])[1]
                dlrt_mdsc = _lq_d(prm[A_MDSC], prm[B_MDSC], d, dprm[A_MDSC, k], dprm[B_MDSC, k])[1]
                dl_imm = -l_imm * (g1_on * dprm[G1, k] * nctl + g1 * dnctl)
                dl_mdsc = -l_mdsc * (dprm[G2, k] * (mdsc + m2) + prm[G2] * (dmdsc + dm2))
                dl_treg = -l_treg * (dprm[G3, k] * treg + prm[G3] * dtreg)
                dl_ctl = (dl_mdsc * l_treg * prm[LNL_CTL] * lpd1_tme + l_mdsc * dl_treg * prm[LNL_CTL] * lpd1_tme
                          + l_mdsc * l_treg * dprm[LNL_CTL, k] * lpd1_tme
                          + l_mdsc * l_treg * prm[LNL_CTL] * dprm[j_pd1_tme, k])
                dl_ind_ctl = -l_ind_ctl * (dprm[G4, k] * n * nctl + prm[G4] * (dn * nctl + n * dnctl))
                dl_ind_treg = -l_ind_treg * (dprm[G5, k] * n + prm[G5] * dn)
                dl_ctla4 = -l_ctla4 * (dprm[j_g6, k] * (nctl + treg) + g6 * (dnctl + dtreg))
                dinflux = share * (dprm[j_inf, k] * (1.0 - l_ind_ctl) * ctl_out - cinf * dl_ind_ctl * ctl_out
                                   + cinf * (1.0 - l_ind_ctl) * d_ctl_out[k])
                dtreg_in = share * (-dl_ind_treg * treg_out + (1.0 - l_ind_treg) * d_treg_out[k])
                u = prm[C11] * (d_max[i] - prm[C12])
                du = dprm[C11, k] * (d_max[i] - prm[C12]) - prm[C11] * dprm[C12, k]
                dctrex = 0.5 * (dprm[C10, k] * (1.0 + math.erf(u))
                                - (2.0 - prm[C10]) * 2.0 / math.sqrt(math.pi) * math.exp(-u * u) * du)
                di_int = _min_d(prm[C8] * np_, dprm[C8, k] * np_ + prm[C8] * dnp, prm[CAP_INT], dprm[CAP_INT, k])[1]
                di_rad = _min_d(prm[C9] * (1.0 - lrt_t) * n,
                                dprm[C9, k] * (1.0 - lrt_t) * n - prm[C9] * dlrt_t * n + prm[C9] * (1.0 - lrt_t) * dn,
                                prm[CAP_RAD], dprm[CAP_RAD, k])[1]
                di_mdsc = _min_d(prm[C2] * np_, dprm[C2, k] * np_ + prm[C2] * dnp, prm[CAP_MDSC],
                                 dprm[CAP_MDSC, k])[1]
                di_m2 = _min_d(prm[C3] * np_, dprm[C3, k] * np_ + prm[C3] * dnp, prm[CAP_M2], dprm[CAP_M2, k])[1]
                di_treg = _min_d(prm[C4] * np_, dprm[C4, k] * np_ + prm[C4] * dnp, prm[CAP_TREG],
                                 dprm[CAP_TREG, k])[1]
                dsurv = dlrt_t * l_imm + lrt_t * dl_imm
                if tumour_form == 0:
                    dtr[t + 1, 0, i, k] = (dprm[C0, k] * lrt_t * l_imm * n
                                           + (1.0 + prm[C0]) * (dsurv * n + lrt_t * l_imm * dn))
                else:
                    dtr[t + 1, 0, i, k] = (dn + dprm[C0, k] * n + prm[C0] * dn + dsurv * n
                                           - (1.0 - lrt_t * l_imm) * dn)
                a_e = lrt_ctl * l_ctl  # common factor of eqs 3-4
                da_e = dlrt_ctl * l_ctl + lrt_ctl * dl_ctl
                dlexh = dprm[j_exh, k]
                dtr[t + 1, 1, i, k] = (dinflux + dprm[C1, k] * e + prm[C1] * de
                                       + (da_e * lexh + a_e * dlexh) * e + a_e * lexh * de)
                dtr[t + 1, 2, i, k] = (-dlexh * a_e * e + (1.0 - lexh) * (da_e * e + a_e * de)
                                       + (da_e * loa + a_e * dprm[j_oa, k]) * x + a_e * loa * dx)
                dtr[t + 1, 3, i, k] = (dctrex * (i_int + i_rad) + ctrex * (di_int + di_rad)
                                       + dprm[LNL_AG, k] * ag + prm[LNL_AG] * dag)
                dtr[t + 1, 4, i, k] = (di_mdsc + dlrt_mdsc * prm[LNL_MDSC] * mdsc
                                       + lrt_mdsc * (dprm[LNL_MDSC, k] * mdsc + prm[LNL_MDSC] * dmdsc))
                dtr[t + 1, 5, i, k] = (di_m2 + dlrt_m2 * prm[LNL_M2] * m2
                                       + lrt_m2 * (dprm[LNL_M2, k] * m2 + prm[LNL_M2] * dm2))
                f_treg = lrt_treg * lpd1_tme * prm[LNL_TREG]
                df_treg = (dlrt_treg * lpd1_tme * prm[LNL_TREG] + lrt_treg * dprm[j_pd1_tme, k] * prm[LNL_TREG]
                           + lrt_treg * lpd1_tme * dprm[LNL_TREG, k])
                dtr[t + 1, 6, i, k] = di_treg + dtreg_in + df_treg * treg + f_treg * dtreg
                d_apc_in[i, k] = (dlrt_apc * l_ctla4 + lrt_apc * dl_ctla4) * ag + lrt_apc * l_ctla4 * dag

        # ---- DLNs
        for m in range(n_d):
            d = dln_dose[t, m]
            acc_old = eqd2_acc[m]
            eqd2_acc[m] = acc_old * rec + eqd2(d, prm[EQD2_A], prm[EQD2_B])
            ntcp = lkb_ntcp(eqd2_acc[m], prm[TD50], prm[NTCP_N], prm[NTCP_M], 1.0)
            naive = (1.0 - ntcp) / naive0  # eq 9
            apc = dl[t, 0, m]
            l_ctla4_dln = math.exp(-g7 * (dl[t, 1, m] + dl[t, 2, m]))  # eq 24
            src = 0.0
            for i in range(n_t):
                if drains[i, m] > 0.0:
                    src += apc_in[i]
            lrt_apc_dln = lq_survival(prm[A_APC], prm[B_APC], d)
            dl[t + 1, 0, m] = prm[C7] * src / i_m[m] + l_ctla4_dln * prm[LNL_APC] * lrt_apc_dln * apc  # eq 6
            dl[t + 1, 1, m] = c5 * lpd1_dln * naive * apc  # eq 5
            dl[t + 1, 2, m] = c6 * lpd1_dln * naive * apc  # eq 17
            dl[t, 3, m] = naive
            dl[t, 4, m] = eqd2_acc[m]
            dl[t + 1, 3, m] = naive
            dl[t + 1, 4, m] = eqd2_acc[m]
            for k in range(nk):
                a_, b_ = prm[EQD2_A], prm[EQD2_B]
                deqd2 = d * (b_ * (2.0 - d) * dprm[EQD2_A, k] + a_ * (d - 2.0) * dprm[EQD2_B, k]) / (a_ + 2 * b_) ** 2
                d_eqd2[m, k] = (d_eqd2[m, k] - acc_old * dprm[DLN_REC, k]) * rec + deqd2
                dntcp = _ntcp_d(eqd2_acc[m], d_eqd2[m, k], prm[TD50], dprm[TD50, k], prm[NTCP_M], dprm[NTCP_M, k])[1]
                dnaive = (-dntcp * naive0 - (1.0 - ntcp) * d_naive0[k]) / (naive0 * naive0)
                dsrc = 0.0
                for i in range(n_t):
                    if drains[i, m] > 0.0:
                        dsrc += d_apc_in[i, k]
                dl_ctla4_dln = -l_ctla4_dln * (dprm[j_g7, k] * (dl[t, 1, m] + dl[t, 2, m])
                                               + g7 * (ddl[t, 1, m, k] + ddl[t, 2, m, k]))
                dlrt_apc_dln = _lq_d(prm[A_APC], prm[B_APC], d, dprm[A_APC, k], dprm[B_APC, k])[1]
                dapc = ddl[t, 0, m, k]
                ddl[t + 1, 0, m, k] = ((dprm[C7, k] * src + prm[C7] * dsrc) / i_m[m]
                                       + (dl_ctla4_dln * prm[LNL_APC] * lrt_apc_dln
                                          + l_ctla4_dln * dprm[LNL_APC, k] * lrt_apc_dln
                                          + l_ctla4_dln * prm[LNL_APC] * dlrt_apc_dln) * apc
                                       + l_ctla4_dln * prm[LNL_APC] * lrt_apc_dln * dapc)
                q = lpd1_dln * naive * apc
                dq = dprm[j_pd1_dln, k] * naive * apc + lpd1_dln * dnaive * apc + lpd1_dln * naive * dapc
                ddl[t + 1, 1, m, k] = dprm[j5, k] * q + c5 * dq
                ddl[t + 1, 2, m, k] = dprm[j6, k] * q + c6 * dq

        flux[t, 0] = ctl_leave
        flux[t, 1] = ctl_arrive
        flux[t, 2] = treg_leave
        flux[t, 3] = treg_arrive
        # drug decay after the day's dosing (first order)
        pd1_conc *= math.exp(-prm[PD1_DECAY])

    for i in range(n_t):
        for v in range(7, N_TV):
            tr[n_days, v, i] = tr[n_days - 1, v, i] if n_days > 0 else 0.0


@njit(cache=True)
def run_single(prm, drains, target_dose, dln_dose, drug_dose, init_tumour, opts):
    n_days, n_t = target_dose.shape
    n_d = dln_dose.shape[1]
    tr = np.empty((n_days + 1, N_TV, n_t))
    dl = np.empty((n_days + 1, N_DV, n_d))
    flux = np.empty((max(n_days, 0), 4))
    _run(prm, drains, target_dose, dln_dose, drug_dose, init_tumour, opts, tr, dl, flux, np.zeros((N_PARAMS, 0)),
         np.zeros((n_t, 0)), np.zeros((n_days + 1, 7, n_t, 0)), np.zeros((n_days + 1, 3, n_d, 0)))
    return tr, dl, flux


@njit(cache=True, parallel=True)
def run_batch(prms, drains, target_dose, dln_dose, drug_dose, init_tumours, opts):
    """Tumour cells (n_sim, T+1, I) for each parameter row of ``prms`` (n_sim, N_PARAMS); one plan.

    ``init_tumours`` is (n_sim, I) (row i = initial tumour cells of simulation i)."""
    n_sim = prms.shape[0]
    n_days, n_t = target_dose.shape
    n_d = dln_dose.shape[1]
    out = np.empty((n_sim, n_days + 1, n_t))
    for s in prange(n_sim):
        tr = np.empty((n_days + 1, N_TV, n_t))
        dl = np.empty((n_days + 1, N_DV, n_d))
        flux = np.empty((n_days, 4))
        _run(prms[s], drains, target_dose, dln_dose, drug_dose, init_tumours[s], opts, tr, dl, flux,
             np.zeros((N_PARAMS, 0)), np.zeros((n_t, 0)), np.zeros((n_days + 1, 7, n_t, 0)),
             np.zeros((n_days + 1, 3, n_d, 0)))
        for t in range(n_days + 1):
            for i in range(n_t):
                out[s, t, i] = tr[t, 0, i]
    return out


@njit(cache=True)
def run_batch_tangent(prms, cols, drains, target_dose, dln_dose, drug_dose, init_tumours, d_init, opts):
    """As :func:`run_batch`, plus the exact sensitivities of the tumour cells to the parameters ``cols`` (kernel
    indices): ``(cells (n_sim, T+1, I), dcells (n_sim, T+1, I, K))``; ``d_init`` (n_sim, I, K) is the tangent of
    the initial tumour cells. Serial on purpose: it runs inside a sampler's likelihood, whose chains are forked
    processes (a GNU-OpenMP thread pool started before a fork aborts the child)."""
    n_sim = prms.shape[0]
    n_days, n_t = target_dose.shape
    n_d = dln_dose.shape[1]
    nk = cols.shape[0]
    out = np.empty((n_sim, n_days + 1, n_t))
    dout = np.empty((n_sim, n_days + 1, n_t, nk))
    for s in range(n_sim):
        tr = np.empty((n_days + 1, N_TV, n_t))
        dl = np.empty((n_days + 1, N_DV, n_d))
        flux = np.empty((n_days, 4))
        dtr = np.empty((n_days + 1, 7, n_t, nk))
        ddl = np.empty((n_days + 1, 3, n_d, nk))
        dprm = np.zeros((N_PARAMS, nk))
        for k in range(nk):
            dprm[cols[k], k] = 1.0
        _run(prms[s], drains, target_dose, dln_dose, drug_dose, init_tumours[s], opts, tr, dl, flux, dprm,
             d_init[s], dtr, ddl)
        for t in range(n_days + 1):
            for i in range(n_t):
                out[s, t, i] = tr[t, 0, i]
                for k in range(nk):
                    dout[s, t, i, k] = dtr[t, 0, i, k]
    return out, dout


# ---------------------------------------------------------------------------------------------------------------
def tumour_area(volume):
    """Cross-sectional area (mm^2) of a sphere of ``volume`` mm^3: pi (3V / 4 pi)^(2/3), proportional to n^(2/3)."""
    v = np.asarray(volume, dtype=float)
    return math.pi * (3.0 * v / (4.0 * math.pi)) ** (2.0 / 3.0)


@dataclass(frozen=True)
class DLNResult:
    """Trajectories of one simulation. Arrays are indexed [day, variable, compartment]; day 0 is the start."""

    targets: tuple[str, ...]
    dlns: tuple[str, ...]
    target_traj: np.ndarray  # (T+1, len(TARGET_VARS), I)
    dln_traj: np.ndarray  # (T+1, len(DLN_VARS), M)
    flux: np.ndarray  # (T, len(FLUX_VARS))
    volume_per_cell: np.ndarray  # (I,) k_i in mm^3 per cell

    @property
    def days(self) -> np.ndarray:
        return np.arange(self.target_traj.shape[0])

    def target(self, var: str, name: str) -> np.ndarray:
        return self.target_traj[:, TARGET_VARS.index(var), self.targets.index(name)]

    def dln(self, var: str, name: str) -> np.ndarray:
        return self.dln_traj[:, DLN_VARS.index(var), self.dlns.index(name)]

    def volume(self, name: str) -> np.ndarray:
        """Tumour volume V_i = k_i n_i (mm^3)."""
        return self.volume_per_cell[self.targets.index(name)] * self.target("tumour_cells", name)

    def area(self, name: str) -> np.ndarray:
        """Tumour cross-section area (mm^2), proportional to n^(2/3)."""
        return tumour_area(self.volume(name))

    def to_rows(self) -> tuple[list[str], list[list]]:
        """Long table: day, compartment kind, compartment, variable, value (plus volume/area of targets)."""
        header = ["day", "kind", "compartment", "variable", "value"]
        rows: list[list] = []
        for day in range(self.target_traj.shape[0]):
            for i, name in enumerate(self.targets):
                for v, var in enumerate(TARGET_VARS):
                    rows.append([day, "target", name, var, float(self.target_traj[day, v, i])])
                vol = float(self.volume_per_cell[i] * self.target_traj[day, 0, i])
                rows.append([day, "target", name, "volume_mm3", vol])
                rows.append([day, "target", name, "area_mm2", float(tumour_area(vol))])
            for m, name in enumerate(self.dlns):
                for v, var in enumerate(DLN_VARS):
                    rows.append([day, "dln", name, var, float(self.dln_traj[day, v, m])])
        return header, rows

    def to_csv(self, path) -> None:
        from immunocal.priors.textio import write_table

        header, rows = self.to_rows()
        write_table(path, header, rows)
