import numpy as np
import pytest
from scipy import stats

from immunocal.calib import diagnostics as D
from immunocal.calib.design import ParameterSpace, design, unit_design
from immunocal.calib.toy import ISHIGAMI_SPACE, ishigami, ishigami_indices


def test_design_log_and_linear_scales():
    sp = ParameterSpace(("a", "b"), (1e-3, -1.0), (1e1, 1.0), ("log", "linear"))
    X = design(sp, 256, "sobol", seed=1)
    assert X.shape == (256, 2)
    assert np.all((X[:, 0] >= 1e-3) & (X[:, 0] <= 10) & (X[:, 1] >= -1) & (X[:, 1] <= 1))
    # uniform in log10: each decade holds a quarter of a balanced Sobol block
    counts = np.histogram(np.log10(X[:, 0]), bins=[-3, -2, -1, 0, 1])[0]
    assert np.all(np.abs(counts - 64) <= 2)
    np.testing.assert_allclose(sp.from_unit(sp.to_unit(X)), X, rtol=1e-12)
    L = unit_design(10, 3, "lhs", seed=2)
    for j in range(3):  # Latin hypercube: one point per stratum in every dimension
        assert sorted(np.floor(L[:, j] * 10).astype(int)) == list(range(10))
    with pytest.raises(ValueError, match="unknown design method 'grid'"):
        unit_design(4, 2, "grid")
    with pytest.raises(ValueError, match="parameter 'a': log scale needs lower > 0"):
        ParameterSpace(("a",), (0.0,), (1.0,), ("log",))
    with pytest.raises(ValueError, match="parameter 'a': a design needs a finite range"):
        ParameterSpace(("a",), (0.0,), (np.inf,), ("linear",))


def test_design_from_registry():
    from immunocal.priors import registry

    reg = registry()
    model = reg.models[0]
    recs = [r for r in reg.records(model) if np.all(np.isfinite(r.bounds)) and r.bounds[0] < r.bounds[1]][:3]
    sp = ParameterSpace.from_registry(model, [r.name for r in recs])
    assert sp.lower == tuple(float(r.bounds[0]) for r in recs)
    X = design(sp, 32)
    for j, r in enumerate(recs):
        for x in X[:, j]:
            r.check(x)
    from immunocal.priors import ParameterError

    with pytest.raises(ParameterError, match="no_such_parameter"):
        ParameterSpace.from_registry(model, ["no_such_parameter"])


def test_sobol_indices_ishigami():
    from immunocal.calib.identify import sobol

    res = sobol(ishigami, ISHIGAMI_SPACE, n=2**13, seed=3, n_resamples=50)
    ref = ishigami_indices()
    np.testing.assert_allclose(res["S1"][0], ref["S1"], atol=0.03)
    np.testing.assert_allclose(res["ST"][0], ref["ST"], atol=0.03)
    lo, hi = np.array(res["ST_ci"][0][0]), np.array(res["ST_ci"][1][0])
    assert np.all(lo < hi) and np.all(hi - lo < 0.1)  # bootstrap intervals, narrow at this n


def test_crps_matches_normal_closed_form(rng):
    mu, s, y = 0.5, 1.3, np.array([-1.0, 0.5, 3.0])
    draws = rng.normal(mu, s, size=(20000, 1)) * np.ones((1, 3))
    z = (y - mu) / s
    exact = s * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    np.testing.assert_allclose(D.crps_ensemble(y, draws), exact, rtol=0.03)


def test_coverage_contraction_uniformity(rng):
    truth = rng.normal(size=4000)
    draws = rng.normal(size=(2000, 1)) * np.ones((1, 4000))
    cov = D.interval_coverage(truth, draws)
    assert abs(cov["coverage_50"] - 0.5) < 0.03 and abs(cov["coverage_90"] - 0.9) < 0.02
    cz = D.contraction_zscores([0.0], rng.normal(0.1, 0.5, size=(10000, 1)), [1.0])
    assert abs(cz["contraction"][0] - 0.75) < 0.02 and abs(cz["zscore"][0] - 0.2) < 0.03
    u = D.uniformity_test(rng.integers(0, 100, 500), 99)
    assert u["p_value"] > 0.01
    bad = D.uniformity_test(np.concatenate([np.zeros(250, int), np.full(250, 99)]), 99)
    assert bad["p_value"] < 1e-6
    bands = D.ppc_bands(np.zeros(3), rng.normal(size=(4000, 3)))
    assert bands["fraction_inside_90"] == 1.0 and abs(bands["upper_90"][0] - 1.645) < 0.1


def test_profile_likelihood_gaussian():
    C = np.array([[1.0, 0.6], [0.6, 2.0]])
    Ci = np.linalg.inv(C)

    def ll(x):
        return -0.5 * x @ Ci @ x

    grid = np.linspace(-4, 4, 161)
    res = D.profile_likelihood(ll, np.zeros(2), 0, grid)
    half = 1.959964 * np.sqrt(C[0, 0])  # profile of a Gaussian = its marginal
    assert abs(res["ci95"][0] + half) < 0.06 and abs(res["ci95"][1] - half) < 0.06
    assert abs(res["argmax"]) < 1e-9


def test_profile_likelihood_through_emulator_matches_least_squares(rng):
    from immunocal.calib.surrogate import ExactEmulator
    from immunocal.calib.toy import LinearModel

    fm = LinearModel(times=np.arange(6.0))
    y = fm.simulate(np.array([[1.0, 0.5]]))[0] + rng.normal(0, 0.2, size=(1, 6))
    H = np.column_stack([np.ones(6), fm.times])
    beta, *_ = np.linalg.lstsq(H, y[0], rcond=None)
    se = 0.2 * np.sqrt(np.linalg.inv(H.T @ H)[0, 0])
    grid = np.linspace(beta[0] - 4 * se, beta[0] + 4 * se, 401)
    res = D.profile_likelihood_emulator(ExactEmulator(fm), y, 0.2, 0, grid, x0=beta)
    assert abs(res["ci95"][0] - (beta[0] - 1.959964 * se)) < 0.03 * se
    assert abs(res["ci95"][1] - (beta[0] + 1.959964 * se)) < 0.03 * se
