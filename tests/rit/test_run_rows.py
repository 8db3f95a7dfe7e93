"""``kernels.run_rows`` — all rows of a batch in one compiled call — against the per-row path it replaced (one
:func:`~forward.rit.model._run_kernel` call per row, ``np.interp`` onto the observation days): the same bits for
values, info vectors and tangents, with per-row horizons and days before day 0 (the free-growth record)."""

import numpy as np
import pytest

from immunocal.forward.rit import RitConfig, Schedule
from immunocal.forward.rit import kernels as K
from immunocal.forward.rit import model as M
from immunocal.priors import registry

NAMES = ("tumour_proliferation_rate", "immune_kill_rate", "tumour_alpha")
TIMES = np.array([-3.0, -0.5, 0.0, 1.0, 2.5, 7.0, 12.0, 20.0])
HORIZONS = np.array([20.0, 3.0, 0.0, 12.2, 100.0])  # mid-run, at day 0, past the schedule's end
SCHEDULES = {"8Gyx3_ctla4": Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=30),
             "untreated": Schedule.from_strings(t_end=20),
             "20Gy_vascular": Schedule.from_strings(rt="20@0", t_end=25)}


def _rows(seed):
    ps = registry().parameter_set("rit", "dewan_table3")
    rng = np.random.default_rng(seed)
    thetas = np.repeat(M.parameter_array(ps)[None], len(HORIZONS), axis=0)
    cols = [K.PARAM_NAMES.index(n) for n in NAMES]
    thetas[:, cols] = np.column_stack([rng.uniform(0.1, 0.3, 5), rng.uniform(5, 50, 5), rng.uniform(0.05, 0.2, 5)])
    return thetas, rng.uniform(50.0, 80.0, 5), cols


def _per_row(thetas, v_pre, sched, cfg, jac_cols):
    """The replaced path: one kernel call per row, its volume record read off at the days by np.interp."""
    arrays = M._schedule_arrays(sched, cfg.dt)
    n_steps = arrays[-1]
    pos = M._obs_positions(TIMES, cfg.dt, sched.t_end)
    pre = pos < 0
    pre_times = np.ascontiguousarray(TIMES[pre])
    states, cohorts = np.zeros((n_steps + 1, K.N_STATES)), np.zeros((n_steps + 1, len(arrays[0])))
    out, info = np.zeros((len(thetas), len(TIMES))), np.zeros((len(thetas), K.N_INFO))
    jac = np.zeros((len(thetas), len(TIMES), len(jac_cols)))
    for r in range(len(thetas)):
        n_r = int(min(n_steps, max(0, np.ceil(HORIZONS[r] / cfg.dt - 1e-9))))
        grid = np.arange(n_r + 1.0)
        out_pre = np.zeros(pre.sum())
        tangents = None
        if jac_cols:
            dth, dvpre = np.zeros((K.N_PARAMS, len(jac_cols))), np.zeros(len(jac_cols))
            for j, c in enumerate(jac_cols):
                if c < 0:
                    dvpre[j] = 1.0
                else:
                    dth[c, j] = 1.0
            tangents = (dth, dvpre, np.zeros((n_steps + 1, len(jac_cols))), np.zeros((pre.sum(), len(jac_cols))))
        M._run_kernel(np.ascontiguousarray(thetas[r]), float(v_pre[r]), cfg, (*arrays[:-1], n_r), states, cohorts,
                      info[r], pre_times, out_pre, tangents)
        out[r] = np.interp(pos, grid, states[:n_r + 1, K.S_V])
        out[r, pre] = out_pre
        for j in range(len(jac_cols)):
            jac[r, :, j] = np.interp(pos, grid, tangents[2][:n_r + 1, j])
            jac[r, pre, j] = tangents[3][:, j]
    return out, info, jac


def _check(sched_name, with_tangents):
    cfg = RitConfig.from_preset("dewan_table3")
    thetas, v_pre, cols = _rows(sum(map(ord, sched_name)))
    jac_cols = (*cols, -1) if with_tangents else ()
    out, info, jac = M._batch(thetas, SCHEDULES[sched_name], TIMES, cfg, v_pre, jac_cols, "tangent", HORIZONS)
    ref_out, ref_info, ref_jac = _per_row(thetas, v_pre, SCHEDULES[sched_name], cfg, jac_cols)
    assert np.all(info[:, K.I_STATUS] == K.OK) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(info, ref_info)
    if with_tangents:
        assert np.all(np.isfinite(jac)) and np.any(jac != 0.0)
        np.testing.assert_array_equal(jac, ref_jac)
    # the horizons did stop the runs: the row stopped at day 3 holds its day-3 value at days 7, 12, 20
    assert out[1, -1] == out[1, -2] == out[1, -3] and out[4, -1] != out[4, -2]


@pytest.mark.parametrize("sched_name", list(SCHEDULES))
def test_run_rows_values_equal_the_per_row_kernel_path(sched_name):
    _check(sched_name, with_tangents=False)


@pytest.mark.slow  # the tangent specialisation's cold compile (≈ 80 s; tests/rit/test_sensitivities.py)
@pytest.mark.parametrize("sched_name", list(SCHEDULES))
def test_run_rows_tangents_equal_the_per_row_kernel_path(sched_name):
    _check(sched_name, with_tangents=True)


def test_shared_grid_pieces_are_read_only_in_use():
    """``_batch`` shares the schedule's kernel arrays and the observation positions between calls (``_batch_grid``,
    built once per schedule, config and days): a run — values and tangents — must leave them as built, and a second
    call must give the same bits as the first."""
    thetas, v_pre, cols = _rows(5)
    cfg = RitConfig.from_preset("dewan_table3", dt=0.25, substeps=2)
    sched = SCHEDULES["8Gyx3_ctla4"]
    key = np.ascontiguousarray(TIMES).tobytes()
    arrays, pos, pre, pre_times = M._batch_grid(sched, cfg, key)
    before = [np.array(a, copy=True) for a in (*arrays[:-1], pos, pre, pre_times)]
    first = M._batch(thetas, sched, TIMES, cfg, v_pre, (*cols, -1), horizons=HORIZONS)
    second = M._batch(thetas, sched, TIMES, cfg, v_pre, (*cols, -1), horizons=HORIZONS)
    again = M._batch_grid(sched, cfg, key)
    assert again[1] is pos  # the same objects were used, not rebuilt
    for a, b in zip((*again[0][:-1], *again[1:]), before):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_simulator_schedule_follows_the_condition_content():
    """The simulator remembers a condition's schedule by the row's content: the same row edited in place is a new
    schedule (an RT arm becomes untreated), not the remembered one."""
    from immunocal.forward.rit.simulator import RitSimulator

    sim = RitSimulator(parameter_names=NAMES, dt=0.5, substeps=1)
    theta = np.array([[0.15, 10.0, 0.1]])
    condition = {"rt_days": [8.0], "rt_doses_gy": [20.0]}
    treated = sim.simulate(theta, condition)
    condition["rt_days"], condition["rt_doses_gy"] = [], []
    untreated = sim.simulate(theta, condition)
    np.testing.assert_array_equal(untreated, sim.simulate(theta, {}))
    as_arrays = {"rt_days": np.array([8.0]), "rt_doses_gy": np.array([20.0])}  # NumPy cells: keyed by value
    np.testing.assert_array_equal(sim.simulate(theta, as_arrays), treated)
    assert untreated[0, 0, -1] > treated[0, 0, -1] + 1.0  # 20 Gy shrinks the tumour
    with pytest.raises(ValueError, match="unknown column"):
        sim.simulate(theta, {"rt_day": [8.0]})
