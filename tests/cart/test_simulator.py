"""The CAR-T model as a calibration simulator: the same series as simulate_patient, conditions checked."""

import numpy as np
import pytest

from immunocal.calib.forward_api import ForwardModel, check_output, load_forward_model
from immunocal.forward.cart import simulate_patient
from immunocal.forward.cart.simulator import CartSimulator


def test_simulator_matches_simulate_patient_and_round_trips():
    fm = load_forward_model("immunocal.forward.cart.simulator:CartSimulator", parameter_names=["exhaustion_rate"],
                            t_end=30.0, observables=["log_burden", "log_cart"])
    assert isinstance(fm, ForwardModel)
    cond = {"cart_days": [0.0, 7.0], "cart_doses": [0.08, 0.08], "tumour0": 0.4, "tb_fraction": 0.1}
    out = check_output(fm, fm.simulate([[0.05], [0.2]], cond), 2)
    ref = simulate_patient({"exhaustion_rate": 0.2}, dose=0.08, infusion_times=(0.0, 7.0), tumour0=0.4,
                           tb_fraction=0.1, t_end=30.0, observation_times=fm.times)
    np.testing.assert_allclose(out[1, 0], np.log(np.maximum(ref.series["burden"], 1e-8)), rtol=1e-12)
    np.testing.assert_allclose(out[1, 1], np.log(np.maximum(ref.series["C"], 1e-8)), rtol=1e-12)
    assert not np.allclose(out[0], out[1])                      # the parameter matters
    again = load_forward_model(fm.descriptor)
    np.testing.assert_array_equal(again.simulate([[0.2]], cond), out[1:])


def test_spatial_simulator_runs_on_a_coarse_grid():
    fm = CartSimulator(parameter_names=("exhaustion_rate",), model="spatial", t_end=3.0, n=17, dt=0.05)
    out = fm.simulate([[0.1]], {})
    assert out.shape == (1, 1, 4) and np.all(np.isfinite(out))


def test_condition_and_option_errors_are_named():
    fm = CartSimulator(t_end=5.0)
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['cart_dayz'\]"):
        fm.simulate([[0.1]], {"cart_dayz": [0.0]})
    with pytest.raises(ValueError, match="2 cart_doses for 1 cart_days"):
        fm.simulate([[0.1]], {"cart_days": [0.0], "cart_doses": [0.1, 0.1]})
    with pytest.raises(ValueError, match="unknown observable"):
        CartSimulator(observables=("log_volume",))
    with pytest.raises(Exception, match="exhaustion_rat"):
        CartSimulator(parameter_names=("exhaustion_rat",))
