"""The CAR-T model in a culture well (forward/cart/invitro.py): the logistic closed form without CAR-T cells, the
CAR-T pool conserved when nothing creates or removes cells, RK4's fourth order and a converged default step, exact
sensitivities (central differences) for every parameter with the cells added at the first output time and later,
and named errors."""

import numpy as np
import pytest

from immunocal.forward.cart.invitro import CI_INTERCEPT, CI_PER_CELL, NAMES, PARAMETERS, InVitroCartSimulator

THETA = np.array([[0.6, 25000.0, 1e-4, 0.55, 1250.0, 2e-6, 0.05, 0.1, 0.08, 0.04, 0.01, 8000.0, 0.03]])
OFFSET = 0.03  # the well's Cell Index offset (last column)
ADDED_AT_START = {"effector_target_ratio": 0.1, "cart_days": [2.5013 / 24.0]}


def test_tumour_alone_is_the_logistic_closed_form():
    sim = InVitroCartSimulator(parameter_names=NAMES)
    theta = THETA.copy()
    theta[0, NAMES.index("tumour_death_rate")] = 0.0
    ci = sim.simulate(theta, {"effector_target_ratio": 0.0})[0, 0]
    r, k, t0 = 0.6, 25000.0, 8000.0
    t = sim.times - sim.times[0]
    cells = k * t0 * np.exp(r * t) / (k + t0 * np.expm1(r * t))
    assert np.max(np.abs(ci - (CI_PER_CELL * cells + CI_INTERCEPT + OFFSET))) < 1e-9


def test_car_t_pool_is_conserved_without_proliferation_loss_or_death():
    """ρ = δ = d_C = d_E = 0: C + E = E:T × T0 for ever; then killing alone is dT/dt = rT(1 − T/K) − γ (C+E−E) T, and
    with k_E = 0 also E = 0: T follows the logistic with rate r − γ·C0 (closed form)."""
    sim = InVitroCartSimulator(parameter_names=NAMES)
    theta = THETA.copy()
    for n in ("car_t_proliferation_rate", "contact_loss_rate", "car_t_death_rate", "exhausted_death_rate",
              "exhaustion_rate", "tumour_death_rate"):
        theta[0, NAMES.index(n)] = 0.0
    ci = sim.simulate(theta, ADDED_AT_START)[0, 0]
    c0 = 0.1 * 8000.0
    r_eff = 0.6 - 1e-4 * c0
    k_eff = 25000.0 * r_eff / 0.6
    t = sim.times - sim.times[0]
    cells = k_eff * 8000.0 * np.exp(r_eff * t) / (k_eff + 8000.0 * np.expm1(r_eff * t))
    assert np.max(np.abs(ci - (CI_PER_CELL * cells + CI_INTERCEPT + OFFSET))) < 1e-9


def test_cell_index_offset_shifts_the_reading_only():
    """The well's offset moves every Cell Index by itself and nothing else: d CI / d offset = 1 exactly, and no
    other sensitivity changes."""
    sim = InVitroCartSimulator(parameter_names=NAMES)
    shifted = THETA.copy()
    shifted[0, NAMES.index("cell_index_offset")] = -0.2
    y0, j0 = sim.simulate_jacobian(THETA, ADDED_AT_START)
    y1, j1 = sim.simulate_jacobian(shifted, ADDED_AT_START)
    assert np.allclose(y1 - y0, -0.2 - OFFSET, rtol=0, atol=1e-12)
    assert np.array_equal(j0, j1) and np.all(j0[..., NAMES.index("cell_index_offset")] == 1.0)
    InVitroCartSimulator(defaults={"cell_index_offset": -0.1})  # a linear-scale default may be <= 0


def test_rk4_is_fourth_order_and_the_default_step_converged():
    ref = InVitroCartSimulator(parameter_names=NAMES, substeps=256).simulate(THETA, ADDED_AT_START)
    errs = [np.max(np.abs(InVitroCartSimulator(parameter_names=NAMES, substeps=s, step_days=1.0 / 24)
                          .simulate(THETA, ADDED_AT_START) - InVitroCartSimulator(
                              parameter_names=NAMES, substeps=256, step_days=1.0 / 24).simulate(THETA, ADDED_AT_START)))
            for s in (1, 2, 4)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((orders > 3.7) & (orders < 4.3)), orders
    default = InVitroCartSimulator(parameter_names=NAMES).simulate(THETA, ADDED_AT_START)
    assert np.max(np.abs(default - ref)) < 1e-10  # Cell Index noise in the data is ~1e-2


@pytest.mark.parametrize("condition", [ADDED_AT_START, {"effector_target_ratio": 0.04, "cart_days": [0.5]},
                                       {"effector_target_ratio": 0.0}])
def test_sensitivities_are_the_derivative_of_the_discrete_map(condition):
    sim = InVitroCartSimulator(parameter_names=NAMES, n_times=120)
    y, jac = sim.simulate_jacobian(THETA, condition)
    assert jac.shape == (1, 1, 120, len(NAMES)) and np.allclose(y, sim.simulate(THETA, condition))
    # log-sensitivities θ_j ∂CI/∂θ_j (Cell Index units, comparable across parameters) against central differences
    log_sens = jac[0, 0] * THETA[0]
    tol = 1e-6 * np.max(np.abs(log_sens))
    for j, name in enumerate(NAMES):
        h = THETA[0, j] * 1e-4
        up, down = THETA.copy(), THETA.copy()
        up[0, j] += h
        down[0, j] -= h
        fd = (sim.simulate(up, condition) - sim.simulate(down, condition))[0, 0] / (2 * h) * THETA[0, j]
        assert np.max(np.abs(log_sens[:, j] - fd)) <= tol, (name, np.max(np.abs(log_sens[:, j] - fd)), tol)
    others = {n: float(v) for n, v in zip(NAMES, THETA[0]) if n not in ("kill_rate", "initial_tumour_cells")}
    sub = InVitroCartSimulator(parameter_names=("kill_rate", "initial_tumour_cells"), n_times=120, defaults=others)
    _, js = sub.simulate_jacobian(THETA[:, [NAMES.index("kill_rate"), NAMES.index("initial_tumour_cells")]], condition)
    assert np.allclose(js[..., 0], jac[..., NAMES.index("kill_rate")]) and \
        np.allclose(js[..., 1], jac[..., NAMES.index("initial_tumour_cells")])


def test_named_errors():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['kill'\]"):
        InVitroCartSimulator(parameter_names=("kill",))
    sim = InVitroCartSimulator(parameter_names=("kill_rate",))
    with pytest.raises(ValueError, match="needs cart_days"):
        sim.simulate(np.array([[1e-4]]), {"effector_target_ratio": 0.1})
    with pytest.raises(ValueError, match="theta has 2 columns"):
        sim.simulate(np.ones((1, 2)), None)
    with pytest.raises(ValueError, match="must be a positive number"):
        InVitroCartSimulator(defaults={"kill_rate": -1.0})
    with pytest.raises(ValueError, match="must be a finite number"):
        InVitroCartSimulator(defaults={"cell_index_offset": np.nan})
    assert set(PARAMETERS) == set(NAMES) and sim.space().names == ("kill_rate",)


@pytest.mark.parametrize("config", ["invitro.toml", "invitro_reverse.toml"])
def test_conte_configs_resolve_their_arms_priors_and_times(config):
    """The shipped Conte 2025 configs: disjoint fitted / held-out arms covering the four, priors on the admissible
    ranges, every data time inside the simulator's grid."""
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    cal = Calibration(dataset_dir("conte2025") / config, "/nonexistent/never-written", progress=False)
    fit, held = cal.conditions
    assert not set(fit) & set(held) and len(set(fit) | set(held)) == 4 and "PBT030_tumour_only" in fit
    grid = np.asarray(cal.forward.times)  # the data's clock drifts up to 6 min off the 0.25-h grid: interpolated
    assert grid[0] - 1e-9 <= cal.data.time.min() and cal.data.time.max() <= grid[-1]
    space = cal.space(cal.free)
    for s in cal.parameters:
        j = list(space.names).index(s.name)
        assert s.prior.support == pytest.approx((space.lower[j], space.upper[j]))


@pytest.mark.slow
def test_conte_config_log_density_and_gradient_are_finite():
    """The exact route's model of the shipped config: log density and gradient finite at the initial point."""
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    cal = Calibration(dataset_dir("conte2025") / "invitro.toml", "/nonexistent/never-written", progress=False)
    model = cal.model(cal.ensure_emulators())
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point)) and np.all(np.isfinite(model.compile_dlogp()(point)))


def test_killing_time_of_a_curve():
    """The study's killing time: the Cell Index peak and the first time after it below half the peak (None if
    never) — on a rise-then-kill curve and on a tumour-alone curve."""
    from immunocal.studies.cart_conte_invitro import killing_times

    t = np.linspace(0.0, 3.0, 301)
    rise_fall = 1.0 + 2.0 * np.exp(-((t - 1.0) / 0.5) ** 2)  # peak 3 at day 1; below 1.5 from 1 + 0.5·sqrt(ln 4)
    k = killing_times(t, rise_fall)
    assert k["peak_day"] == pytest.approx(1.0)
    assert k["half_peak_day"] == pytest.approx(1.0 + 0.5 * np.sqrt(np.log(4.0)), abs=0.011)
    growing = 1.0 + t
    assert killing_times(t, growing) == {"peak_day": 3.0, "half_peak_day": None}
