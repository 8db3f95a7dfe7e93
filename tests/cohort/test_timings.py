"""The virtual cohort's timings on a continuous clock (immunocal.calib.cohort.peak_time, progression_time): exact on
functions the interpolation reproduces, converged in the output grid, continuous in the latents where the sampled
T_max is a step function, and consistent with the data's daily T_max and scan-based PFS."""

import math

import numpy as np
import pytest

from immunocal.calib.cohort import (
    WINDOW_END_LOGIT_SCALE,
    CohortConfig,
    CohortSimulator,
    first_peak_time,
    peak_time,
    progression_time,
    simulate_one,
    window_end_margin,
)


def test_peak_time_is_the_vertex_of_a_quadratic_peak_and_stays_at_a_window_edge():
    t = np.arange(0.0, 30.0, 0.25)
    assert peak_time(t, -np.square(t - 3.37), window=28.0) == pytest.approx(3.37, abs=1e-12)
    assert peak_time(t, -np.square(t - 12.0), window=28.0) == pytest.approx(12.0, abs=1e-12)  # on a grid point
    assert peak_time(t, t.copy(), window=28.0) == 28.0  # still rising at the window's end
    assert peak_time(t, -t, window=28.0) == 0.0


def test_first_peak_and_window_end_margin_split_the_daily_t_max():
    """C + E with an early peak (day 4.3), a dip and a late rise: the first peak stays at the early vertex while the
    late rise grows past it; the margin's sign is the daily argmax being the window's last day."""
    t = np.arange(0.0, 30.0, 0.25)
    for late, at_end in ((0.6, False), (1.4, True)):
        y = np.exp(-0.5 * np.square((t - 4.3) / 1.5)) + late * np.clip((t - 12.0) / 16.0, 0.0, None) ** 2
        assert first_peak_time(t, y, window=28.0) == pytest.approx(4.3, abs=0.02)
        daily = t[::4]
        margin = window_end_margin(daily, y[::4], window=28.0)
        assert (margin > 0) == at_end
        w = daily <= 28.0
        assert (int(np.argmax(y[::4][w])) == w.sum() - 1) == at_end
        assert peak_time(t, y, window=28.0) == (28.0 if at_end else pytest.approx(4.3, abs=0.02))
    assert first_peak_time(t, t.copy(), window=28.0) == 28.0  # rising with a falling rate throughout: the end
    # rising throughout with a shoulder: the growth rate's local minimum, continuous with the peak it becomes
    fine = np.arange(0.0, 30.0, 1e-3)
    times, regimes = [], []
    for bump in (0.06, 0.1, 0.12, 0.15, 0.2):
        def curve(x, bump=bump):
            return 0.05 * x + bump * np.exp(-0.5 * np.square((x - 5.0) / 1.5)) + 0.3 * (1 - np.exp(-x))
        rate = np.gradient(np.log(curve(fine)), fine)
        y = curve(fine)
        has_peak = np.any((y[1:-1] > y[:-2]) & (y[1:-1] > y[2:]))
        inner = np.flatnonzero((rate[1:-1] < rate[:-2]) & (rate[1:-1] <= rate[2:]) & (fine[1:-1] > 3.0)) + 1
        expected = fine[np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]))[0] + 1] if has_peak else fine[inner[0]]
        times.append(first_peak_time(t, curve(t), window=28.0))
        regimes.append(bool(has_peak))
        assert times[-1] == pytest.approx(expected, abs=0.03), (bump, has_peak)
    assert regimes == [False, False, False, True, True]
    assert np.all(np.abs(np.diff(times)) < 0.7)  # no jump where the shoulder becomes a peak


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
        assert daily < cfg.kinetics_window
        assert abs(cont - daily) <= 0.5 + 1e-9, (cont, daily)  # the daily argmax is the nearest sample day


def test_window_end_logit_decides_the_daily_t_max_exactly():
    """Over 150 random patients at every dose (both classes occur): the simulator's ``t_max_at_window_end`` logit is
    > 0 exactly for the patients whose daily T_max is the window's last day, it moves continuously along a line of
    latents (no jump where the class changes), and ``t_max`` is the daily value to the nearest day for the others."""
    sim = CohortSimulator()
    cfg = CohortConfig()
    names = list(sim.observables)
    zero = {"scans": np.zeros(64), "markers": np.zeros(3), "crs": 0.0, "cmax": 0.0}
    thetas = np.random.default_rng(3).random((150, 6))
    ends = []
    for dose in (2.5e8, 3.75e8, 5e8):
        y = sim.simulate(thetas[::3], {"cart_doses": [dose]})[:, :, 0]
        # the emulator is fitted on t_max where the data can have its row (the cohort's tables: not at the end)
        seen = sim.emulation_mask(y[:, :, None])
        assert seen[:, [o != "t_max" for o in names]].all()
        for row, out, s in zip(thetas[::3], y, seen[:, names.index("t_max")]):
            daily = simulate_one(dict(zip(sim.parameter_names, row)), dose, zero, cfg)["t_max"]
            at_end = daily >= cfg.kinetics_window
            ends.append(at_end)
            assert (out[names.index("t_max_at_window_end")] > 0) == at_end, (row, daily)
            assert s == (not at_end)
            if not at_end:
                cont = out[names.index("t_max")]
                assert math.floor(cont) <= daily <= math.ceil(cont)  # a sample day next to the early peak
    assert 0 < sum(ends) < len(ends)
    # along θ_cyt at a patient that changes class: the margin crosses 0 without a jump
    y = sim.simulate(_crossing_line(sim, thetas, zero, cfg), {"cart_doses": [5e8]})[:, :, 0]
    margin = y[:, names.index("t_max_at_window_end")] * WINDOW_END_LOGIT_SCALE
    assert margin.min() < 0 < margin.max()
    assert np.abs(np.diff(margin)).max() < 0.05


def _crossing_line(sim, thetas, zero, cfg):
    """60 points along θ_cyt through the first random patient whose class differs at its ends."""
    for row in thetas:
        line = np.tile(row, (60, 1))
        line[:, 2] = np.linspace(0.02, 0.98, 60)
        ends = [simulate_one(dict(zip(sim.parameter_names, r)), 5e8, zero, cfg)["t_max"] >= cfg.kinetics_window
                for r in line[[0, -1]]]
        if ends[0] != ends[1]:
            return line
    raise AssertionError("no random patient changes class along θ_cyt")
