"""Serially correlated (Ornstein–Uhlenbeck) residuals of the observation layer: the density against the exact joint
Gaussian (scipy), predictive draws with the right correlation, recovery of τ, refusals."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats

from immunocal.calib.likelihoods import ObservableSpec, observe, residual_series, rows_logp_per_draw


def _rows(rng):
    """Two series with irregular times, rows shuffled (the layer must order them itself)."""
    t1 = np.cumsum(rng.uniform(0.05, 0.4, 12))
    t2 = np.cumsum(rng.uniform(0.05, 0.4, 9))
    keys = np.array(["a"] * 12 + ["b"] * 9)
    times = np.concatenate([t1, t2])
    perm = rng.permutation(len(times))
    return keys[perm], times[perm]


def _model(spec, y, mu, var, keys, times, censoring=None):
    n = len(y)
    with pm.Model(coords={"obs_y": np.arange(n)}) as m:
        observe("y", spec, pt.as_tensor_variable(mu), pt.as_tensor_variable(var), y,
                np.full(n, "none") if censoring is None else censoring, np.full(n, np.nan), "obs_y",
                series=(keys, times))
    return m


def _joint_cov(keys, times, s, tau):
    same = keys[:, None] == keys[None, :]
    return np.where(same, np.outer(s, s) * np.exp(-np.abs(times[:, None] - times[None, :]) / tau), 0.0)


def test_series_order_and_gaps():
    keys = np.array(["b", "a", "a", "b", "a"])
    times = np.array([2.0, 1.0, 0.5, 1.0, 3.0])
    prev, dt, rank = residual_series(keys, times)
    np.testing.assert_array_equal(rank, [1, 1, 0, 0, 2])
    assert prev[0] == 3 and prev[1] == 2 and prev[4] == 1
    np.testing.assert_allclose(dt, [1.0, 0.5, np.inf, np.inf, 2.0])
    with pytest.raises(ValueError, match="two rows at time"):
        residual_series(np.array(["a", "a"]), np.array([1.0, 1.0]))


@pytest.mark.parametrize("var_em", [0.0, 0.05])
def test_density_is_the_exact_joint_gaussian(var_em):
    rng = np.random.default_rng(3)
    keys, times = _rows(rng)
    n = len(times)
    mu = rng.normal(0.0, 1.0, n)
    var = np.full(n, var_em) * rng.uniform(0.5, 2.0, n)
    sigma, tau = 0.3, 0.45
    s = np.sqrt(sigma**2 + var)
    cov = _joint_cov(keys, times, s, tau)
    y = rng.multivariate_normal(mu, cov)
    m = _model(ObservableSpec(sigma=sigma, correlation_time=tau), y, mu, var, keys, times)
    got = m.compile_logp(vars=[m["y_y"]], jacobian=False)({})
    np.testing.assert_allclose(got, stats.multivariate_normal(mu, cov).logpdf(y), rtol=1e-10)
    # far apart rows are independent: τ → 0 gives the independent normal density
    m0 = _model(ObservableSpec(sigma=sigma, correlation_time=1e-6), y, mu, var, keys, times)
    np.testing.assert_allclose(m0.compile_logp(vars=[m0["y_y"]], jacobian=False)({}),
                               stats.norm.logpdf(y, mu, s).sum(), rtol=1e-10)


def test_predictive_draws_are_joint_trajectories():
    rng = np.random.default_rng(4)
    keys, times = _rows(rng)
    n = len(times)
    mu, s, tau = np.linspace(-1, 1, n), 0.5, 0.3
    m = _model(ObservableSpec(sigma=s, correlation_time=tau), np.zeros(n), mu, np.zeros(n), keys, times)
    draws = pm.draw(m["y_y"], draws=20000, random_seed=5)
    emp = np.cov(draws.T)
    np.testing.assert_allclose(emp, _joint_cov(keys, times, np.full(n, s), tau), atol=0.02)
    np.testing.assert_allclose(draws.mean(0), mu, atol=0.02)


def test_correlation_time_is_recovered():
    """Simulated OU residuals (true τ 0.2, σ 0.15) around a known mean: the MAP of (τ, σ) lands on the truth."""
    rng = np.random.default_rng(6)
    times = np.tile(np.arange(200) * 0.02, 6)
    keys = np.repeat(np.arange(6).astype(str), 200)
    tau, sigma = 0.2, 0.15
    cov = _joint_cov(keys, times, np.full(len(times), sigma), tau)
    mu = np.sin(times)
    y = rng.multivariate_normal(mu, cov)
    spec = ObservableSpec(sigma={"distribution": "HalfNormal", "sigma": 0.5},
                          correlation_time={"distribution": "LogNormal", "mu": np.log(0.1), "sigma": 1.5})
    m = _model(spec, y, mu, np.zeros(len(y)), keys, times)
    with m:
        mp = pm.find_MAP(progressbar=False)
    assert mp["tau_y"] == pytest.approx(tau, rel=0.25)
    assert mp["sigma_y"] == pytest.approx(sigma, rel=0.2)


def test_refusals_are_named():
    with pytest.raises(ValueError, match="normal family only"):
        ObservableSpec("student_t", correlation_time=1.0)
    with pytest.raises(ValueError, match="number > 0"):
        ObservableSpec(correlation_time=-1.0)
    keys, times = np.array(["a", "a"]), np.array([0.0, 1.0])
    with pytest.raises(ValueError, match="censored rows"):
        _model(ObservableSpec(sigma=0.1, correlation_time=1.0), np.zeros(2), np.zeros(2), np.zeros(2), keys, times,
               censoring=np.array(["none", "left"]))
    with pytest.raises(ValueError, match="personalisation"):
        rows_logp_per_draw(ObservableSpec(sigma=0.1, correlation_time=1.0), np.zeros(2), np.zeros(2), np.zeros(2),
                           np.full(2, "none"), np.full(2, np.nan))
