"""Independent plain-numpy implementation of the DLN map (seed 003 eqs 1-27), written from docs/dln.md with
parameters by name and vectorised over targets: the Numba kernel must agree with it to rounding."""

import math

import numpy as np
from scipy.special import erf
from scipy.stats import norm


def lq(a, b, d):
    return np.exp(-a * d - b * d * d)


def reference_run(p: dict, plan, init: np.ndarray):
    net = plan.network
    A = net.drain_matrix  # (I, M)
    I, M = A.shape
    T = plan.days
    n, E, X = init.astype(float).copy(), np.full(I, p["initial_ctl_tme"]), np.zeros(I)
    ag, mdsc, m2, treg = np.zeros(I), np.zeros(I), np.zeros(I), np.zeros(I)
    apc, cd, td = np.zeros(M), np.zeros(M), np.zeros(M)
    dmax, irr, eq = np.zeros(I), np.zeros(I, bool), np.zeros(M)
    conc, pd1_state, ctla4_last, beza_last, cd8 = 0.0, 0, None, None, False
    flag_until = -1.0
    tum = [n.copy()]
    ntcp = lambda D: norm.cdf((D - p["dln_ntcp_td50"]) / (p["dln_ntcp_m"] * p["dln_ntcp_td50"]))
    for t in range(T):
        dt, dd, g = plan.target_dose[t], plan.dln_dose[t], plan.drug_dose[t]
        conc += g[0] * p["pd1_dose_concentration"]
        if conc >= p["pd1_drug_threshold"] and conc > 0:
            pd1_state = 1
        elif pd1_state:
            pd1_state = 2
        if g[1] > 0:
            ctla4_last = t
        if g[2] > 0:
            beza_last = t
        cd8 = cd8 or g[3] > 0
        if np.any(dt > 0):
            flag_until = t + p["pdl1_overexpression_duration"]
        irr |= dt > 0
        dmax = np.maximum(dmax, dt)
        flag = t < flag_until
        lam_dln = {0: p["pd1_survival_control"], 1: p["pd1_survival_state1"], 2: p["pd1_survival_state2"]}[
            pd1_state
        ]
        lam_tme = lam_dln if (pd1_state == 1 or not flag) else p["pd1_survival_pdl1_overexpression"]
        loa = p["overactivation_survival_pd1"] if pd1_state else p["overactivation_survival"]
        if ctla4_last is not None and t - ctla4_last < p["ctla4_state1_duration"]:
            c5, c6, g6, g7 = (
                p["ctl_priming_ctla4_state1"],
                p["treg_priming_ctla4"],
                p["apc_inhibition_tme_ctla4_state1"],
                p["apc_inhibition_dln_ctla4_state1"],
            )
        elif ctla4_last is not None:
            c5, c6, g6, g7 = (
                p["ctl_priming_ctla4_state2"],
                p["treg_priming"],
                p["apc_inhibition_tme_ctla4_state2"],
                p["apc_inhibition_dln_ctla4_state2"],
            )
        else:
            c5, c6, g6, g7 = (
                p["ctl_priming"],
                p["treg_priming"],
                p["apc_inhibition_tme"],
                p["apc_inhibition_dln"],
            )
        lexh = (
            p["exhaustion_survival_bezafibrate"]
            if (beza_last is not None and t - beza_last < p["bezafibrate_duration"])
            else p["exhaustion_survival"]
        )
        g1 = 0.0 if cd8 else p["ctl_cytotoxicity"]
        lq_ = {
            c: lq(p[f"{c}_lq_alpha"], p[f"{c}_lq_beta"], dt)
            for c in ("tumour", "ctl", "treg", "apc", "m2", "mdsc")
        }
        N = E + X
        npow = n ** p["induction_exponent"]
        lam_ctl = (
            np.exp(-p["mdsc_suppression"] * (mdsc + m2))
            * np.exp(-p["treg_suppression"] * treg)
            * p["ctl_natural_survival"]
            * lam_tme
        )
        cinf = np.where(irr, p["ctl_infiltration_rt"], p["ctl_infiltration"])
        ctl_mean = np.sum(lq(p["ctl_lq_alpha"], p["ctl_lq_beta"], dd) * cd) / M
        treg_mean = np.sum(lq(p["treg_lq_alpha"], p["treg_lq_beta"], dd) * td) / M
        influx = cinf * (1 - np.exp(-p["ctl_migration"] * n * N)) * ctl_mean
        treg_in = (1 - np.exp(-p["treg_migration"] * n)) * treg_mean
        ctrex = 0.5 * (
            p["trex1_level"]
            - (2 - p["trex1_level"]) * erf(p["trex1_steepness"] * (dmax - p["trex1_threshold_dose"]))
        )
        i_int = np.minimum(p["antigen_release_intrinsic"] * npow, p["antigen_release_intrinsic_cap"])
        i_rad = np.minimum(
            p["antigen_release_radiation"] * (1 - lq_["tumour"]) * n, p["antigen_release_radiation_cap"]
        )
        apc_src = lq_["apc"] * np.exp(-g6 * (N + treg)) * ag
        n_new = (1 + p["tumour_proliferation_rate"]) * lq_["tumour"] * np.exp(-g1 * N) * n
        E_new = influx + p["ctl_tme_proliferation"] * E + lq_["ctl"] * lexh * lam_ctl * E
        X_new = (1 - lexh) * lq_["ctl"] * lam_ctl * E + lq_["ctl"] * lam_ctl * loa * X
        ag_new = ctrex * (i_int + i_rad) + p["antigen_natural_survival"] * ag
        mdsc_new = (
            np.minimum(p["mdsc_induction"] * npow, p["mdsc_induction_cap"])
            + lq_["mdsc"] * p["mdsc_natural_survival"] * mdsc
        )
        m2_new = (
            np.minimum(p["m2_induction"] * npow, p["m2_induction_cap"])
            + lq_["m2"] * p["m2_natural_survival"] * m2
        )
        treg_new = (
            np.minimum(p["treg_induction"] * npow, p["treg_induction_cap"])
            + treg_in
            + lq_["treg"] * lam_tme * p["treg_natural_survival"] * treg
        )
        eq = eq * math.exp(-p["dln_recovery_rate"]) + dd * (p["dln_eqd2_alpha"] + p["dln_eqd2_beta"] * dd) / (
            p["dln_eqd2_alpha"] + 2 * p["dln_eqd2_beta"]
        )
        naive = (1 - ntcp(eq)) / (1 - ntcp(0.0))
        apc_new = (
            p["apc_maturation"] * (A.T @ apc_src) / A.sum(axis=0)
            + np.exp(-g7 * (cd + td))
            * p["apc_natural_survival"]
            * lq(p["apc_lq_alpha"], p["apc_lq_beta"], dd)
            * apc
        )
        cd_new = c5 * lam_dln * naive * apc
        td_new = c6 * lam_dln * naive * apc
        n, E, X, ag, mdsc, m2, treg = n_new, E_new, X_new, ag_new, mdsc_new, m2_new, treg_new
        apc, cd, td = apc_new, cd_new, td_new
        conc *= math.exp(-p["pd1_drug_decay"])
        tum.append(np.stack([n, E, X, ag, mdsc, m2, treg]))
    tum[0] = np.stack([init.astype(float), np.full(I, p["initial_ctl_tme"]), *np.zeros((5, I))])
    return np.stack(tum)  # (T+1, 7, I)
