"""The DLN model as a calibration simulator: conditions-table rows → plans, the same volumes as the scenarios."""

import numpy as np
import pytest

from immunocal.calib.forward_api import ForwardModel, check_output, load_forward_model
from immunocal.forward.dln.api import default_parameters, param_array, simulate_array
from immunocal.forward.dln.plan import PlanError, TreatmentPlan
from immunocal.forward.dln.scenarios import irradiation_arms, two_site_network
from immunocal.forward.dln.simulator import DlnSimulator

ROWS = {
    "control": {},
    "tumour_rt+anti_pd1": {"rt_days": [10, 11, 12], "rt_doses_gy": [8, 8, 8], "anti_pd1_days": [10, 13, 16]},
    "tumour_and_dln_rt+anti_ctla4": {"rt_days": [10, 11, 12], "rt_doses_gy": [8, 8, 8], "dln_rt_days": [10, 11, 12],
                                     "dln_rt_doses_gy": [8, 8, 8], "anti_ctla4_days": [10, 13, 16]},
}


@pytest.mark.parametrize("arm", list(ROWS))
def test_condition_rows_give_the_scenario_plans_and_volumes(arm):
    ref = irradiation_arms()[arm]
    plan = TreatmentPlan.from_condition(ROWS[arm], two_site_network(), ref.days)
    for a in ("target_dose", "dln_dose", "drug_dose"):
        np.testing.assert_array_equal(getattr(plan, a), getattr(ref, a))
    names = ("ctl_cytotoxicity", "tumour_lq_alpha")
    fm = DlnSimulator(parameter_names=names, days=(10.0, 30.0))
    assert isinstance(fm, ForwardModel) and fm.observables == ("log_volume_primary", "log_volume_distant")
    ps = default_parameters()
    theta = np.array([[ps[n] * 1.3 for n in names], [ps[n] for n in names]])
    out = check_output(fm, fm.simulate(theta, ROWS[arm]), 2)
    res = simulate_array(ref, param_array(default_parameters(**{n: ps[n] * 1.3 for n in names})))
    for k, target in enumerate(("primary", "distant")):
        np.testing.assert_allclose(out[0, k], np.log(np.maximum(res.volume(target)[10:31], 1e-3)), rtol=1e-12)


def test_condition_errors_are_named():
    net = two_site_network()
    with pytest.raises(PlanError, match=r"unknown column\(s\) \['anti_pd1_dayz'\]"):
        TreatmentPlan.from_condition({"anti_pd1_dayz": [10]}, net, 40)
    with pytest.raises(PlanError, match="2 rt_doses_gy for 3 rt_days"):
        TreatmentPlan.from_condition({"rt_days": [10, 11, 12], "rt_doses_gy": [8, 8]}, net, 40)
    with pytest.raises(ValueError, match="unknown parameter"):
        DlnSimulator(parameter_names=("ctl_cytotoxicty",))


def test_descriptor_round_trip():
    fm = load_forward_model("immunocal.forward.dln.simulator:DlnSimulator", parameter_names=["ctl_priming"], days=[10.0, 20.0])
    again = load_forward_model(fm.descriptor)
    np.testing.assert_array_equal(again.simulate([[0.7]], ROWS["tumour_rt+anti_pd1"]),
                                  fm.simulate([[0.7]], ROWS["tumour_rt+anti_pd1"]))


def test_generic_drug_columns_give_the_same_plan_and_bad_ones_are_named():
    net = two_site_network()
    named = TreatmentPlan.from_condition({"rt_days": [12], "rt_doses_gy": [20], "anti_ctla4_days": [14, 17, 20]},
                                         net, 40)
    generic = TreatmentPlan.from_condition({"rt_days": [12], "rt_doses_gy": [20], "drug": "anti_ctla4",
                                            "drug_days": [14, 17, 20], "drug_doses": [1, 1, 1]}, net, 40)
    np.testing.assert_array_equal(named.drug_dose, generic.drug_dose)
    assert generic.drug_dose.sum() == 3.0
    with pytest.raises(PlanError, match="without a drug name"):
        TreatmentPlan.from_condition({"drug_days": [14]}, net, 40)
    with pytest.raises(PlanError, match="unknown drug"):
        TreatmentPlan.from_condition({"drug": "anti_ctla5", "drug_days": [14]}, net, 40)
    with pytest.raises(PlanError, match="both as 'drug'"):
        TreatmentPlan.from_condition({"drug": "anti_pd1", "drug_days": [14], "anti_pd1_days": [15]}, net, 40)


def test_a_flank_inoculated_later_starts_smaller_and_its_jacobian_is_exact():
    """inoculation_delay_days = {distant: d}: n_0 (1 + C_0)^-d on day 0 — without immune kill exactly the primary's
    volume d days earlier; with the preset's day-0 CTLs acting on both flanks from day 0 the late flank is a few per
    cent smaller than that (the documented approximation). The Jacobian with respect to n_0 and C_0 (which now also
    set the late flank's start) against central differences."""
    names = ("tumour_proliferation_rate", "initial_tumour_cells", "ctl_cytotoxicity")
    ps = default_parameters()
    theta = np.array([[ps[n] for n in names]])
    late = DlnSimulator(parameter_names=names, days=(0.0, 30.0), inoculation_delay_days={"distant": 2})
    y = late.simulate(theta, {})[0]
    np.testing.assert_allclose(y[1, 0], y[0, 0] - 2 * np.log1p(ps["tumour_proliferation_rate"]), rtol=1e-12)
    assert np.all(np.abs(y[1, 2:6] - y[0, :4]) < 0.06)
    no_kill = theta.copy()
    no_kill[0, 2] = 1e-12
    y = late.simulate(no_kill, {})[0]
    np.testing.assert_allclose(y[1, 2:12], y[0, :10], rtol=1e-9, atol=1e-9)  # day t of the late flank = day t - 2
    cond = {"rt_days": [12, 13, 14], "rt_doses_gy": [8, 8, 8], "drug": "anti_ctla4", "drug_days": [14, 17, 20]}
    val, jac = late.simulate_jacobian(theta, cond)
    for j in range(len(names)):
        h = 1e-6 * theta[0, j]
        up, dn = theta.copy(), theta.copy()
        up[0, j] += h
        dn[0, j] -= h
        fd = (late.simulate(up, cond) - late.simulate(dn, cond)) / (2 * h)
        np.testing.assert_allclose(jac[..., j], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    with pytest.raises(PlanError, match="unknown target 'secondary'"):
        DlnSimulator(inoculation_delay_days={"secondary": 2})
    with pytest.raises(PlanError, match=">= 0"):
        DlnSimulator(inoculation_delay_days={"distant": -1})
