"""Exact sensitivities of the RIT model: the kernel's forward-mode tangents against complex-step runs of the same
kernel (to round-off), and both against central differences.

All carry the ``slow`` marker: on a cold cache (a clean CI run) the tangent specialisation of the kernel compiles in
≈ 80 s and the complex-step one in ≈ 50 s more (1 Dec 2026; ≈ 10 minutes before the big helpers stopped being
inlined at Numba-IR level), ≈ 2.5 minutes together — too much for the fast suite's 10-minute budget. Run them after any kernel change:
``pytest -m slow tests/rit/test_sensitivities.py`` (seconds once compiled)."""

import numpy as np
import pytest

from immunocal.forward.rit import RitConfig, Schedule, simulate_volumes_batch
from immunocal.forward.rit.kernels import PARAM_NAMES
from immunocal.forward.rit.simulator import RitSimulator
from immunocal.priors import registry

CASES = {  # preset, schedule: impulses of every kind, the vascular-damage switch (> 15 Gy, Table 3), survival models
    "table3_20Gy_ctla4": ("dewan_table3", Schedule(rt_days=(0.0,), rt_doses_gy=(20.0,), ctla4_days=(1.0, 4.0, 7.0),
                                                  t_end=30.0)),
    "table2_8Gyx3_pdl1": ("dewan_table2", Schedule(rt_days=(0.0, 1.0, 2.0), rt_doses_gy=(8.0,) * 3,
                                                  pdl1_days=(0.0, 3.0, 6.0), t_end=30.0)),
    "deng_2Gyx5_both": ("deng_table1", Schedule(rt_days=(0.0, 1.0, 2.0, 3.0, 4.0), rt_doses_gy=(2.0,) * 5,
                                               ctla4_days=(2.0,), pdl1_days=(1.0, 5.0), t_end=30.0)),
}
TIMES = np.arange(-6.0, 30.0, 1.5)  # from before day 0 (free growth) to the horizon


def _central(ps, names, x, sched, cfg, j, v_pre, rel=1e-6):
    up, dn = x.copy(), x.copy()
    h = rel * abs(x[0, j])
    up[0, j] += h
    dn[0, j] -= h
    f = [simulate_volumes_batch(ps, names, v, sched, TIMES, cfg, validate=False, pretreatment_volumes=[v_pre])[0][0]
         for v in (up, dn)]
    return (f[0] - f[1]) / (2 * h)


def _case(case):
    preset, sched = CASES[case]
    ps = registry().parameter_set("rit", preset)
    cfg = RitConfig.from_preset(preset)
    names = [n for n in PARAM_NAMES if ps[n] != 0.0]  # a zero value has no relative step (its column is tested
    x = np.array([[ps[n] for n in names]])              # where another preset makes it non-zero)
    return ps, sched, cfg, names, x, cfg.pretreatment_volume_mm3


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_tangents_match_central_differences_for_every_parameter(case):
    """All non-zero parameters of the kernel and the pre-treatment volume, on schedules with radiation, both drugs,
    the vascular-damage switch, an eradicated tumour and three survival models: the forward-mode tangents equal
    central differences to the differences' accuracy (1e-5 relative plus their round-off)."""
    ps, sched, cfg, names, x, v_pre = _case(case)
    v, ok, jac = simulate_volumes_batch(ps, names, x, sched, TIMES, cfg, validate=False,
                                        pretreatment_volumes=[v_pre], jacobian=True)
    assert ok[0] and jac.shape == (1, len(TIMES), len(names) + 1) and np.all(np.isfinite(jac))
    np.testing.assert_array_equal(v, simulate_volumes_batch(ps, names, x, sched, TIMES, cfg, validate=False,
                                                            pretreatment_volumes=[v_pre])[0])
    nonzero = 0
    for j, n in enumerate(names):
        fd = _central(ps, names, x, sched, cfg, j, v_pre)
        scale = np.abs(fd).max()
        nonzero += scale > 0
        # central differences: truncation O(h^2) and round-off eps |V| / h, so 1e-5 relative (plus round-off)
        tol = 1e-5 * scale + 1e3 * np.finfo(float).eps * np.abs(v).max() / (1e-6 * abs(x[0, j]))
        err = np.abs(jac[0, :, j] - fd).max()
        assert err <= tol, f"{n}: max |tangent - central| = {err:.3g} (scale {scale:.3g})"
    fd = (simulate_volumes_batch(ps, names, x, sched, TIMES, cfg, pretreatment_volumes=[v_pre * (1 + 1e-6)])[0][0]
          - simulate_volumes_batch(ps, names, x, sched, TIMES, cfg, pretreatment_volumes=[v_pre * (1 - 1e-6)])[0][0]
          ) / (2e-6 * v_pre)
    np.testing.assert_allclose(jac[0, :, -1], fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
    assert nonzero >= 20  # the check is not of zeros


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_tangents_equal_complex_step_to_round_off(case):
    """The same runs by the complex-step reference (a third compiled specialisation of the kernel, hence slow):
    tangents and complex step agree to 1e-9 of each column plus accumulated round-off (1e-10 of V per unit of the
    parameter: a column that is zero up to round-off, e.g. d V / d C(0) after day 0, differs only there)."""
    ps, sched, cfg, names, x, v_pre = _case(case)
    v, _, jac_c = simulate_volumes_batch(ps, names, x, sched, TIMES, cfg, validate=False, pretreatment_volumes=[
        v_pre], jacobian=True, jacobian_method="complex_step")
    _, _, jac_t = simulate_volumes_batch(ps, names, x, sched, TIMES, cfg, validate=False,
                                         pretreatment_volumes=[v_pre], jacobian=True)
    tol = 1e-9 * np.abs(jac_c[0]).max(0) + 1e-10 * np.abs(v).max() / np.abs(np.append(x[0], v_pre))
    worst = (np.abs(jac_t[0] - jac_c[0]) / tol).max(0)
    assert worst.max() < 1.0, f"tangent vs complex step: {dict(zip([*names, 'v_pre'], worst.round(9)))}"


@pytest.mark.slow
def test_simulator_jacobian_of_log_volume_and_its_column_order():
    """The simulator's Jacobian of log volume: per-row pre-treatment volumes in their own column, the value
    identical to ``simulate``, d log V / d log V_pre = 1 on day 0, rows independent of the batch."""
    names = ("tumour_proliferation_rate", "pretreatment_volume_mm3", "immune_kill_rate", "tumour_alpha")
    fm = RitSimulator(parameter_names=names, data_days=(4.0, 30.0), day_offset=7.0)
    cond = {"rt_days": [10.0, 11.0], "rt_doses_gy": [8.0, 8.0], "anti_pd1_days": [10.0, 13.0], "anti_ctla4_days": [10.0]}
    theta = np.array([[0.14, 45.0, 6.0, 0.05], [0.2, 60.0, 3.0, 0.08], [0.1, 30.0, 20.0, 0.03]])
    y, jac = fm.simulate_jacobian(theta, cond)
    np.testing.assert_array_equal(y, fm.simulate(theta, cond))
    assert jac.shape == (3, 1, len(fm.times), 4)
    day0 = list(fm.times).index(7.0)
    np.testing.assert_allclose(jac[:, 0, day0, 1] * theta[:, 1], 1.0, rtol=1e-10)
    # day 0 sits at V_pre whatever else (to the day-0 root finder's tolerance, 1e-14 relative in V)
    np.testing.assert_allclose(jac[:, 0, day0, [0, 2, 3]], 0.0, atol=1e-10)
    np.testing.assert_allclose(fm.simulate_jacobian(theta[1:2], cond)[1], jac[1:2], rtol=1e-12)
    for j in range(4):
        up, dn = theta.copy(), theta.copy()
        h = 1e-6 * theta[:, j]
        up[:, j] += h
        dn[:, j] -= h
        fd = (fm.simulate(up, cond) - fm.simulate(dn, cond)) / (2 * h[:, None, None])
        np.testing.assert_allclose(jac[..., j], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def _one_step_driver():
    from numba import njit

    from immunocal.forward.rit import kernels as K

    @njit(cache=False)
    def one_step(theta, y, Cd, t_rt, n_cd, t, h, q, fv, dec, kill_prev, rng, tg):
        inc, neg, cap, kl = K.step(theta, y, Cd, t_rt, n_cd, t, h, q[0], q[1], q[2], q[3], fv[0], fv[1], True, False,
                                   rng, dec, kill_prev, tg)
        return inc, kl

    return one_step


@pytest.mark.slow
@pytest.mark.parametrize("kill_prev", [-1.0, 3.7], ids=["kill_at_t", "kill_from_previous_midpoint"])
def test_step_tangent_equals_complex_step_in_every_input(kill_prev):
    """The forward-mode tangent of one exponential-scheme step (``step(..., tg)``) against complex-step runs of the
    same ``step``, in every direction at once: all 34 parameters, the 8 states, two doomed cohorts (one inside the
    mitotic-delay ramp), the step length, the four delayed-source integrals, the vascular factors, the drug decay
    factors and the previous kill rate — to round-off (1e-10 relative)."""
    from immunocal.forward.rit import kernels as K

    one_step = _one_step_driver()
    theta = np.array([registry().parameter_set("rit", "dewan_table3")[n] for n in PARAM_NAMES])
    y = np.array([5e6, 120.0, 8e5, 3e4, 2e4, 2e5, 0.4, 0.3])  # C, A^, T^, T^_a, T^_b, T_a, c4, p1
    cd = np.array([1e6, 4e5])
    t_rt, t, h = np.array([0.0, 1.0]), 2.2, 0.0125  # cohort 1: t - t_rt = 1.2 inside the ramp [1.0, 1.5]
    q = np.array([3e5, 6e5, 150.0, 310.0])
    fv, dec = np.array([0.7, 0.75]), np.array([np.exp(-0.01), np.exp(-0.02)])
    blocks = [("theta", theta), ("y", y), ("cd", cd), ("h", np.array([h])), ("q", q), ("fv", fv), ("dec", dec),
              ("kill_prev", np.array([kill_prev]))]
    sizes = [len(v) for _, v in blocks]
    nk = sum(sizes)
    seeds = np.eye(nk)
    off = np.cumsum([0, *sizes])
    seed = {name: seeds[off[i]:off[i + 1]] for i, (name, _) in enumerate(blocks)}
    dy, dcd = seed["y"].copy(), seed["cd"].copy()
    dinc, dkill = np.zeros(nk), np.zeros(nk)
    tg = (seed["theta"].copy(), dy, dcd, seed["h"][0].copy(), seed["q"].copy(), seed["fv"].copy(),
          seed["dec"].copy(), seed["kill_prev"][0].copy(), dinc, dkill, np.zeros((2, 7)))
    y1, cd1 = y.copy(), cd.copy()
    inc, kl = one_step(theta, y1, cd1, t_rt, 2, t, h, q, fv, dec, kill_prev, np.random.default_rng(0), tg)
    y0, c0 = y.copy(), cd.copy()
    inc0, kl0 = one_step(theta, y0, c0, t_rt, 2, t, h, q, fv, dec, kill_prev, np.random.default_rng(0), None)
    assert inc == inc0 and kl == kl0 and np.array_equal(y1, y0)  # the tangent leaves the values alone
    H = 1e-200
    for j in range(nk):
        pert = [v.astype(complex) for _, v in blocks]
        b = int(np.searchsorted(off, j, side="right") - 1)
        pert[b][j - off[b]] += 1j * H
        th_c, y_c, cd_c, h_c, q_c, fv_c, dec_c, kp_c = pert
        inc_c, kl_c = one_step(th_c, y_c, cd_c, t_rt, 2, t, h_c[0], q_c, fv_c, dec_c, kp_c[0],
                               np.random.default_rng(0), None)
        ref = np.concatenate([y_c.imag, cd_c.imag, [inc_c.imag, kl_c.imag]]) / H
        got = np.concatenate([dy[:, j], dcd[:, j], [dinc[j], dkill[j]]])
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * (np.abs(ref).max() + 1e-300),
                                   err_msg=f"direction {j} ({blocks[b][0]}[{j - off[b]}])")
    assert K.N_PARAMS == len(PARAM_NAMES)


@pytest.mark.slow
def test_tangents_with_per_row_horizons_equal_the_full_run_before_the_horizon():
    """``until`` stops each row's run at its own last data day: values and Jacobian up to it are those of the
    full run, bit for bit."""
    fm = RitSimulator(data_days=(7.0, 60.0), day_offset=7.0, pretreatment_volume_mm3=50.0)
    theta = np.array([[0.2, 5.0, 0.1], [0.15, 20.0, 0.05]])
    cond = {"rt_days": [8.0, 9.0], "rt_doses_gy": [8.0, 8.0]}
    y, jac = fm.simulate_jacobian(theta, cond)
    yp, jp = fm.simulate_jacobian(theta, cond, until=[25.0, 60.0])
    keep = fm.times <= 25.0
    np.testing.assert_array_equal(yp[0, 0, keep], y[0, 0, keep])
    np.testing.assert_array_equal(jp[0, 0, keep], jac[0, 0, keep])
    np.testing.assert_array_equal(yp[1], y[1])
    np.testing.assert_array_equal(jp[1], jac[1])
    assert np.all(np.isfinite(jp))
    # the first row really stopped: after its horizon it holds the value there (the full run keeps changing)
    late = fm.times > 26.0
    assert np.all(yp[0, 0, late] == yp[0, 0, late][0]) and not np.allclose(yp[0, 0, late], y[0, 0, late])
    assert not np.allclose(jp[0, 0, late], jac[0, 0, late])
