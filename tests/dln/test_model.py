"""Reference checks of the DLN map (seed 003 eqs 1-27): radiobiology blocks, exact growth, caps, conservation."""

import math

import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import norm

from immunocal.forward.dln import (
    Network,
    TreatmentPlan,
    c_trex1,
    default_parameters,
    eqd2,
    lkb_ntcp,
    lq_survival,
    param_array,
    simulate,
    simulate_batch,
    tumour_area,
)
from immunocal.forward.dln.model import PARAM_NAMES


@pytest.fixture(scope="module")
def ps():
    return default_parameters()


def one_site(days=20, radiation=(), drugs=(), init=None):
    net = Network(("t",), ("d",), {"t": ("d",)}, init or {})
    return TreatmentPlan.build(net, days, radiation, drugs)


def two_targets_one_dln(days=20, radiation=(), drugs=(), init=None):
    net = Network(("a", "b"), ("d",), {"a": ("d",), "b": ("d",)}, init or {})
    return TreatmentPlan.build(net, days, radiation, drugs)


# ---------------------------------------------------------------- radiobiology building blocks
def test_lq_survival_hand_values():
    assert lq_survival(0.3, 0.03, 2.0) == pytest.approx(math.exp(-0.6 - 0.12), rel=1e-14)
    assert lq_survival(0.3, 0.03, 0.0) == 1.0
    # eq 27 form exp(-alpha d (1 + beta/alpha d))
    a, b, d = 0.17, 0.0127, 8.0
    assert lq_survival(a, b, d) == pytest.approx(math.exp(-a * d * (1 + b / a * d)), rel=1e-14)


def test_eqd2_hand_values():
    assert eqd2(2.0, 0.5, 0.05) == pytest.approx(2.0, rel=1e-14)  # 2-Gy fractions are their own EQD2
    assert eqd2(8.0, 0.5, 0.05) == pytest.approx(8 * (8 + 10) / 12, rel=1e-14)  # alpha/beta = 10 Gy: 12 Gy
    assert 3 * eqd2(8.0, 0.3, 0.1) == pytest.approx(
        24 * (8 + 3) / (2 + 3), rel=1e-14
    )  # alpha/beta = 3: 52.8 Gy


def test_lkb_ntcp_half_at_td50_and_hand_values():
    assert lkb_ntcp(30.0, 30.0, 1.0, 0.3, 1.0) == pytest.approx(0.5, abs=1e-15)
    assert lkb_ntcp(30.0 * 1.3, 30.0, 1.0, 0.3, 1.0) == pytest.approx(norm.cdf(1.0), rel=1e-12)
    assert lkb_ntcp(30.0 * 0.4, 30.0, 1.0, 0.3, 1.0) == pytest.approx(norm.cdf(-2.0), rel=1e-12)
    # partial volume v: gEUD = v^n D, so v = 0.5, n = 1 halves the effective dose
    assert lkb_ntcp(60.0, 30.0, 1.0, 0.3, 0.5) == pytest.approx(0.5, abs=1e-15)


def test_lkb_ntcp_monotone_in_dose():
    doses = np.linspace(0, 100, 201)
    vals = np.array([lkb_ntcp(d, 25.0, 0.5, 0.2, 1.0) for d in doses])
    assert np.all(np.diff(vals) >= 0)  # non-decreasing everywhere (saturates at 1 in floating point)
    core = (vals > 1e-9) & (vals < 1 - 1e-9)
    assert core.sum() > 50 and np.all(np.diff(vals[core]) > 0)  # strictly increasing where resolvable
    assert vals[0] < 1e-6 and vals[-1] > 1 - 1e-6


def test_trex1_erf_limits_and_centre():
    c10, c11, c12 = 1.3, 0.5, 15.0
    assert c_trex1(0.0, c10, c11, c12) == pytest.approx(1.0, abs=1e-12)  # low dose: 1
    assert c_trex1(60.0, c10, c11, c12) == pytest.approx(c10 - 1.0, abs=1e-12)  # high dose: C_10 - 1
    assert c_trex1(c12, c10, c11, c12) == pytest.approx(c10 / 2, rel=1e-14)
    d = 13.0
    assert c_trex1(d, c10, c11, c12) == pytest.approx(
        0.5 * (c10 - (2 - c10) * erf(c11 * (d - c12))), rel=1e-14
    )


def test_area_scales_as_two_thirds_power():
    assert tumour_area(8.0) / tumour_area(1.0) == pytest.approx(4.0, rel=1e-12)
    assert tumour_area(4 / 3 * math.pi) == pytest.approx(math.pi, rel=1e-12)  # unit sphere: great circle


# ---------------------------------------------------------------- the map
@pytest.mark.parametrize("form", ["survive_then_grow", "seed_additive"])
def test_pure_growth_without_immunity_or_treatment(ps, form):
    p = ps.replace(ctl_cytotoxicity=0.0)
    res = simulate(one_site(30), p, tumour_update=form)
    n = res.target("tumour_cells", "t")
    expected = p["initial_tumour_cells"] * (1 + p["tumour_proliferation_rate"]) ** np.arange(31)
    np.testing.assert_allclose(n, expected, rtol=1e-12)
    np.testing.assert_allclose(res.volume("t"), p["volume_per_cell"] * expected, rtol=1e-12)


def test_anti_cd8_gives_pure_growth_after_depletion(ps):
    res = simulate(one_site(25, drugs=[{"name": "anti_cd8", "days": [5]}]), ps)
    n = res.target("tumour_cells", "t")
    np.testing.assert_allclose(n[6:] / n[5:-1], 1 + ps["tumour_proliferation_rate"], rtol=1e-12)
    assert np.all(n[1:6] / n[:5] < 1 + ps["tumour_proliferation_rate"])  # immune kill before depletion


def test_radiation_day_applies_lq_to_tumour(ps):
    p = ps.replace(ctl_cytotoxicity=0.0)
    res = simulate(one_site(10, radiation=[{"target": "t", "days": [4], "dose_gy": 8.0}]), p)
    n = res.target("tumour_cells", "t")
    s = lq_survival(p["tumour_lq_alpha"], p["tumour_lq_beta"], 8.0)
    assert n[5] / n[4] == pytest.approx((1 + p["tumour_proliferation_rate"]) * s, rel=1e-12)


def test_caps_reached_in_large_tumours(ps):
    res = simulate(
        one_site(3, radiation=[{"target": "t", "days": [0], "dose_gy": 8.0}], init={"t": 1e10}), ps
    )
    # day 1 = induction of day 0 (state starts at 0), large tumour: every induction/release at its cap
    assert res.target("mdsc", "t")[1] == pytest.approx(ps["mdsc_induction_cap"], rel=1e-12)
    assert res.target("m2", "t")[1] == pytest.approx(ps["m2_induction_cap"], rel=1e-12)
    # Treg: induction cap (no DLN Tregs exist yet on day 0)
    assert res.target("treg_tme", "t")[1] == pytest.approx(ps["treg_induction_cap"], rel=1e-12)
    ctrex = c_trex1(8.0, ps["trex1_level"], ps["trex1_steepness"], ps["trex1_threshold_dose"])
    cap_sum = ps["antigen_release_intrinsic_cap"] + ps["antigen_release_radiation_cap"]
    assert res.target("antigen", "t")[1] == pytest.approx(ctrex * cap_sum, rel=1e-12)
    # small tumour: below the caps, the power law C n^p
    small = simulate(one_site(3, init={"t": 10.0}), ps)
    assert small.target("mdsc", "t")[1] == pytest.approx(ps["mdsc_induction"] * 10.0**0.3, rel=1e-12)
    assert small.target("mdsc", "t")[1] < ps["mdsc_induction_cap"]


def test_trex1_factor_follows_max_dose_per_fraction(ps):
    plan = one_site(
        12,
        radiation=[
            {"target": "t", "days": [2], "dose_gy": 20.0},
            {"target": "t", "days": [5], "dose_gy": 2.0},
        ],
    )
    c = simulate(plan, ps).target("c_trex1", "t")
    args = (ps["trex1_level"], ps["trex1_steepness"], ps["trex1_threshold_dose"])
    assert c[1] == pytest.approx(c_trex1(0.0, *args), rel=1e-12)
    np.testing.assert_allclose(c[2:], c_trex1(20.0, *args), rtol=1e-12)  # d_max stays 20 Gy


def _lossless(ps):
    """All CTL losses off: survival 1, no suppression, every CTL in the DLN migrates (lambda_ind = 0)."""
    return ps.replace(
        ctl_natural_survival=1.0,
        pd1_survival_control=1.0,
        mdsc_suppression=0.0,
        treg_suppression=0.0,
        ctl_migration=1e-3,
        ctl_infiltration=1.0,
        overactivation_survival=1.0,
        pd1_survival_pdl1_overexpression=1.0,
        ctl_cytotoxicity=0.0,
        treg_migration=1e-3,
    )


def test_conservation_ctl_leaving_dlns_arrive_in_targets(ps):
    p = _lossless(ps)
    plan = two_targets_one_dln(30, init={"a": 1e9, "b": 3e8})
    res = simulate(plan, p, influx_mode="conservative")
    leave, arrive = res.flux[:, 0], res.flux[:, 1]
    assert leave.sum() > 1.0
    np.testing.assert_allclose(arrive, leave, rtol=1e-12, atol=1e-12)
    # bookkeeping: CTLs in the targets = initial + everything that left the DLN
    tot = sum(res.target("ctl_effector", t) + res.target("ctl_exhausted", t) for t in ("a", "b"))
    np.testing.assert_allclose(tot[1:], 2 * p["initial_ctl_tme"] + np.cumsum(leave), rtol=1e-12)
    # Tregs leaving the DLN (eq 17) arrive in the targets (eq 15) as well
    assert res.flux[:, 2].sum() > 0.1
    np.testing.assert_allclose(res.flux[:, 3], res.flux[:, 2], rtol=1e-12, atol=1e-12)


def test_seed_influx_equals_conservative_when_targets_equal_dlns(ps):
    p = _lossless(ps)
    net = Network(("a", "b"), ("da", "db"), {"a": ("da",), "b": ("db",)}, {"a": 1e9, "b": 2e9})
    res = simulate(TreatmentPlan.build(net, 25), p, influx_mode="seed")
    np.testing.assert_allclose(res.flux[:, 1], res.flux[:, 0], rtol=1e-12)
    # with I = 2 targets and M = 1 DLN, the seed's 1/M gives each target the whole DLN output (documented)
    res1 = simulate(two_targets_one_dln(25, init={"a": 1e9, "b": 1e9}), p, influx_mode="seed")
    np.testing.assert_allclose(res1.flux[:, 1], 2 * res1.flux[:, 0], rtol=1e-12)


def test_dln_dose_kills_ctl_in_transit_and_reduces_naive_supply(ps):
    p = _lossless(ps)
    plan = two_targets_one_dln(
        20, radiation=[{"dln": "d", "days": [10], "dose_gy": 8.0}], init={"a": 1e9, "b": 1e9}
    )
    res = simulate(plan, p, influx_mode="conservative")
    s = lq_survival(p["ctl_lq_alpha"], p["ctl_lq_beta"], 8.0)
    assert res.flux[10, 1] == pytest.approx(s * res.flux[10, 0], rel=1e-12)
    e = eqd2(8.0, p["dln_eqd2_alpha"], p["dln_eqd2_beta"])
    lkb = (p["dln_ntcp_td50"], p["dln_ntcp_n"], p["dln_ntcp_m"], 1.0)
    naive = (1 - lkb_ntcp(e, *lkb)) / (1 - lkb_ntcp(0.0, *lkb))  # normalised: a spared DLN supplies exactly 1
    supply = res.dln("naive_supply", "d")
    np.testing.assert_allclose(supply[:10], 1.0)
    np.testing.assert_allclose(supply[10:], naive, rtol=1e-12)  # irreversible by default


def test_dln_recovery_option(ps):
    p = ps.replace(dln_recovery_rate=0.2)
    plan = one_site(40, radiation=[{"dln": "d", "days": [5, 6, 7], "dose_gy": 8.0}])
    res = simulate(plan, p)
    supply, eq = res.dln("naive_supply", "d"), res.dln("eqd2_gy", "d")  # value used during day t's step
    assert eq[7] == pytest.approx(
        sum(eqd2(8.0, p["dln_eqd2_alpha"], p["dln_eqd2_beta"]) * math.exp(-0.2 * k) for k in range(3)),
        rel=1e-12,
    )
    assert supply[7] < 0.9 and supply[-1] > 0.99 and np.all(np.diff(supply[8:]) >= 0)
    frozen = simulate(plan, ps).dln("naive_supply", "d")  # default: irreversible
    np.testing.assert_allclose(frozen[7:], frozen[7], rtol=1e-14)
    assert frozen[7] < supply[7]


def test_pd1_state_machine_and_pdl1_flag(ps):
    plan = two_targets_one_dln(
        40,
        radiation=[{"target": "a", "days": [25], "dose_gy": 8.0}],
        drugs=[{"name": "anti_pdl1", "days": [5]}],
    )
    res = simulate(plan, ps)
    lam = res.target("lambda_pd1", "b")  # distant, never irradiated
    k, thr, c = ps["pd1_drug_decay"], ps["pd1_drug_threshold"], ps["pd1_dose_concentration"]
    n_state1 = math.floor(math.log(c / thr) / k) + 1  # days with concentration >= threshold
    np.testing.assert_allclose(lam[:5], ps["pd1_survival_control"])
    np.testing.assert_allclose(lam[5 : 5 + n_state1], ps["pd1_survival_state1"])
    np.testing.assert_allclose(lam[5 + n_state1 : 25], ps["pd1_survival_state2"])  # state II persists
    t_flag = int(ps["pdl1_overexpression_duration"])
    np.testing.assert_allclose(
        lam[25 : 25 + t_flag], ps["pd1_survival_pdl1_overexpression"]
    )  # flag in all targets
    np.testing.assert_allclose(lam[25 + t_flag :], ps["pd1_survival_state2"])


def test_ctla4_raises_priming_then_state2(ps):
    plan = one_site(30, drugs=[{"name": "anti_ctla4", "days": [5]}])
    res = simulate(plan, ps)
    apc, ctl, naive = res.dln("apc", "d"), res.dln("ctl_dln", "d"), res.dln("naive_supply", "d")
    # C_5 of steps t = 2, 3, ... (eq 5; antigen and hence APC are 0 on days 0 and 1)
    c5 = ctl[3:] / (apc[2:-1] * naive[2:-1] * ps["pd1_survival_control"])
    t1 = int(ps["ctla4_state1_duration"])
    np.testing.assert_allclose(c5[:3], ps["ctl_priming"], rtol=1e-12)
    np.testing.assert_allclose(c5[3 : 3 + t1], ps["ctl_priming_ctla4_state1"], rtol=1e-12)
    np.testing.assert_allclose(c5[3 + t1 :], ps["ctl_priming_ctla4_state2"], rtol=1e-12)


def test_batch_matches_single_runs(ps, rng):
    plan = two_targets_one_dln(
        60,
        radiation=[{"target": "a", "days": [10, 11, 12], "dose_gy": 8.0}],
        drugs=[{"name": "anti_ctla4", "days": [10, 13, 16]}],
    )
    base = param_array(ps)
    prms = np.repeat(base[None, :], 5, axis=0)
    j = PARAM_NAMES.index("ctl_cytotoxicity")
    prms[:, j] *= rng.uniform(0.5, 1.5, size=5)
    vols = simulate_batch(plan, prms)
    for s in range(5):
        single = simulate(plan, ps.replace(ctl_cytotoxicity=prms[s, j]))
        np.testing.assert_allclose(vols[s, :, 0], single.volume("a"), rtol=1e-12)
        np.testing.assert_allclose(vols[s, :, 1], single.volume("b"), rtol=1e-12)


def test_states_stay_non_negative_and_finite(ps):
    plan = two_targets_one_dln(
        60,
        radiation=[
            {"target": "a", "days": [10], "dose_gy": 30.0},
            {"dln": "d", "days": [10], "dose_gy": 30.0},
        ],
        drugs=[{"name": "anti_pd1", "days": [10, 13]}, {"name": "bezafibrate", "days": [10]}],
    )
    res = simulate(plan, ps)
    assert np.all(np.isfinite(res.target_traj)) and np.all(res.target_traj >= 0)
    assert np.all(np.isfinite(res.dln_traj)) and np.all(res.dln_traj >= 0)


def test_bad_options_rejected(ps):
    with pytest.raises(ValueError, match="unknown tumour_update 'euler'"):
        simulate(one_site(5), ps, tumour_update="euler")
    with pytest.raises(ValueError, match="unknown influx_mode 'split'"):
        simulate(one_site(5), ps, influx_mode="split")
    with pytest.raises(ValueError, match="must have 76 columns"):
        simulate_batch(one_site(5), np.ones((2, 3)))


# ---------------------------------------------------------------- Numba kernel vs independent numpy reference
@pytest.mark.parametrize("case", ["rt_ctla4_two_dlns", "everything_one_dln", "shared_dln_three_targets"])
def test_kernel_matches_numpy_reference(ps, case):
    from .reference import reference_run

    if case == "rt_ctla4_two_dlns":
        net = Network(("p", "d"), ("lp", "ld"), {"p": ("lp",), "d": ("ld",)}, {"d": 4e5})
        plan = TreatmentPlan.build(
            net,
            45,
            [
                {"target": "p", "days": [10, 11, 12], "dose_gy": 8.0},
                {"dln": "lp", "days": [10, 11, 12], "dose_gy": 8.0},
            ],
            [{"name": "anti_ctla4", "days": [10, 13, 16]}],
        )
        p = ps
    elif case == "everything_one_dln":
        net = Network(("a", "b"), ("d",), {"a": ("d",), "b": ("d",)})
        plan = TreatmentPlan.build(
            net,
            50,
            [
                {"target": "a", "days": [8], "dose_gy": 20.0},
                {"target": "b", "days": [20, 21], "dose_gy": 3.0},
                {"dln": "d", "days": [8], "dose_gy": 4.0},
            ],
            [
                {"name": "anti_pd1", "days": [9, 12, 30]},
                {"name": "bezafibrate", "days": [9]},
                {"name": "anti_ctla4", "days": [15]},
                {"name": "anti_cd8", "days": [40]},
            ],
        )
        p = ps.replace(dln_recovery_rate=0.1, bezafibrate_duration=10.0, ctl_tme_proliferation=0.05)
    else:
        net = Network(("a", "b", "c"), ("d1", "d2"), {"a": ("d1",), "b": ("d1", "d2"), "c": ("d2",)})
        plan = TreatmentPlan.build(
            net,
            40,
            [{"target": "b", "days": [10, 17], "dose_gy": 12.0}],
            [{"name": "anti_pdl1", "days": [10, 20]}],
        )
        p = ps
    res = simulate(plan, p)
    ref = reference_run(dict(p), plan, net.initial_tumour(p["initial_tumour_cells"]))
    np.testing.assert_allclose(res.target_traj[:, :7, :], ref, rtol=1e-10, atol=1e-300)


def test_random_admissible_parameters_stay_finite_and_non_negative(ps, rng):
    """Parameters drawn inside the registry ranges (survival fractions uniform, scales log-uniform around the
    defaults) never produce NaN, inf or negative states."""
    net = Network(("a", "b"), ("d",), {"a": ("d",), "b": ("d",)})
    plan = TreatmentPlan.build(
        net,
        60,
        [{"target": "a", "days": [10, 11, 12], "dose_gy": 8.0}, {"dln": "d", "days": [10], "dose_gy": 8.0}],
        [{"name": "anti_pd1", "days": [10, 13]}, {"name": "anti_ctla4", "days": [10]}],
    )
    base = param_array(ps)
    prms = np.repeat(base[None, :], 200, axis=0)
    for j, name in enumerate(PARAM_NAMES):
        if name in ("initial_tumour_cells", "volume_per_cell", "induction_exponent"):
            continue
        if base[j] > 0 and base[j] <= 1 and ("survival" in name or name == "exhaustion_survival"):
            prms[:, j] = rng.uniform(0.0, 1.0, 200)
        elif base[j] > 0:
            prms[:, j] = base[j] * np.exp(rng.uniform(-1.5, 1.5, 200))
    prms[:, PARAM_NAMES.index("trex1_level")] = rng.uniform(1.0, 2.0, 200)
    vols = simulate_batch(plan, prms)
    assert np.all(np.isfinite(vols)) and np.all(vols >= 0)


def test_log_volume_batch_named_parameters(ps):
    from immunocal.forward.dln.api import log_volume_batch, parameter_rows

    plan = two_targets_one_dln(30, radiation=[{"target": "a", "days": [10], "dose_gy": 8.0}])
    theta = np.array([[0.02, 0.1], [0.04, 0.2]])
    out = log_volume_batch(plan, theta, ["ctl_cytotoxicity", "tumour_lq_alpha"], [0, 10, 30])
    assert out.shape == (2, 2, 3)
    for s in range(2):
        res = simulate(plan, ps.replace(ctl_cytotoxicity=theta[s, 0], tumour_lq_alpha=theta[s, 1]))
        np.testing.assert_allclose(out[s, 0], np.log(res.volume("a")[[0, 10, 30]]), rtol=1e-12)
    with pytest.raises(Exception, match="'ctl_cytotoxicity'.*outside the admissible range"):
        parameter_rows(np.array([[-1.0]]), ["ctl_cytotoxicity"])
    with pytest.raises(Exception, match="unknown dln parameter 'ctl_cytotoxicty'"):
        parameter_rows(np.array([[1.0]]), ["ctl_cytotoxicty"])
    with pytest.raises(ValueError, match="observation days must lie in"):
        log_volume_batch(plan, theta, ["ctl_cytotoxicity", "tumour_lq_alpha"], [31])
