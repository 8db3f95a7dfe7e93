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
