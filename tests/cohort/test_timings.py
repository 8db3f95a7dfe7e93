"""The virtual cohort's timings on a continuous clock (immunocal.calib.cohort.peak_time, progression_time): exact on
functions the interpolation reproduces, converged in the output grid, continuous in the latents where the sampled
T_max is a step function, and consistent with the data's daily T_max and scan-based PFS."""

import math

import numpy as np
import pytest

from immunocal.calib.cohort import CohortConfig, CohortSimulator, peak_time, progression_time, simulate_one


def test_peak_time_is_the_vertex_of_a_quadratic_peak_and_stays_at_a_window_edge():
    t = np.arange(0.0, 30.0, 0.25)
    assert peak_time(t, -np.square(t - 3.37), window=28.0) == pytest.approx(3.37, abs=1e-12)
    assert peak_time(t, -np.square(t - 12.0), window=28.0) == pytest.approx(12.0, abs=1e-12)  # on a grid point
    assert peak_time(t, t.copy(), window=28.0) == 28.0  # still rising at the window's end
    assert peak_time(t, -t, window=28.0) == 0.0


def test_progression_time_is_the_first_20_percent_rise_over_the_nadir():
    t = np.arange(0.0, 40.0, 0.25)
    # diameter ratio falls linearly to 0.5 at day 10, then grows by 0.05 per day: 1.2 × 0.5 = 0.6 reached at day 12
    dn = np.where(t <= 10.0, 1.0 - 0.05 * t, 0.5 + 0.05 * (t - 10.0))
    assert progression_time(t, dn**3, detection_limit=1e-6) == pytest.approx(12.0, abs=1e-12)
    dn_off = 1.0 + 0.0 * t + 0.05 * np.sin(t)  # ±5 % wobble: never a 20 % rise
    assert math.isinf(progression_time(t, dn_off**3, detection_limit=1e-6))
    # below the detection limit the lesion is gone (diameter 0); it progresses when it becomes measurable again
    b = np.where(t < 20.0, np.exp(-t), 1e-3 * np.exp(0.2 * (t - 20.0)))
    back = 20.0 + 5.0 * math.log(2.0)  # the diameter jumps from 0 here: located within its grid cell
    got = progression_time(t, b, detection_limit=2e-3)
    assert np.floor(back / 0.25) * 0.25 <= got <= np.ceil(back / 0.25) * 0.25


@pytest.fixture(scope="module")
def thetas():
    return np.random.default_rng(0).random((12, 6))


def test_continuous_timings_are_converged_in_the_output_grid(thetas):
    names = list(CohortSimulator.observables)
    cond = {"cart_doses": [2.5e8]}
    coarse = CohortSimulator().simulate(thetas, cond)[:, :, 0]
    fine = CohortSimulator(rtol=1e-9, obs_step=1 / 16).simulate(thetas, cond)[:, :, 0]
    # measured: T_max 0.025 d, log PFS 0.0014 (the daily/scan values they replace move in steps of 1 d / 7 d)
    assert np.abs(coarse[:, names.index("t_max")] - fine[:, names.index("t_max")]).max() < 0.1
    assert np.abs(coarse[:, names.index("log_pfs_months")] - fine[:, names.index("log_pfs_months")]).max() < 0.01


def test_t_max_is_continuous_in_the_latents_and_rounds_to_the_daily_sample(thetas):
    sim = CohortSimulator()
    line = np.tile(thetas[0], (120, 1))
    line[:, 2] = np.linspace(0.05, 0.95, 120)  # theta_cyt
    y = sim.simulate(line, {"cart_doses": [2.5e8]})[:, :, 0]
    t_max = y[:, list(sim.observables).index("t_max")]
    assert np.ptp(t_max) > 2.0  # it does move along the line ...
    assert np.abs(np.diff(t_max)).max() < 0.25  # ... without the daily grid's jumps of a whole day
    cfg = CohortConfig()
    zero = {"scans": np.zeros(64), "markers": np.zeros(3), "crs": 0.0, "cmax": 0.0}
    for row in line[::20]:
        th = dict(zip(sim.parameter_names, row))
        daily = simulate_one(th, 2.5e8, zero, cfg)["t_max"]
        cont = sim.summaries(row, 2.5e8)[list(sim.observables).index("t_max")]
        assert abs(cont - daily) <= 0.5 + 1e-9, (cont, daily)  # the daily argmax is the nearest sample day
