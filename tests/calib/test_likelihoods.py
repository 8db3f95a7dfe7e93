"""The observation layer (immunocal.calib.likelihoods.observe) against scipy: densities, censoring, predictive draws, LOO."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats

from immunocal.calib.likelihoods import ObservableSpec, censoring_bounds, observe


def _model(spec, y, censoring, mu, var=0.0, sigma_data=None, nu=None):
    n = len(y)
    sigma_data = np.full(n, np.nan) if sigma_data is None else sigma_data
    with pm.Model(coords={"obs_y": np.arange(n)}) as m:
        observe("y", spec, pt.as_tensor_variable(np.asarray(mu, float)), pt.as_tensor_variable(np.full(n, var)),
                np.asarray(y, float), np.asarray(censoring), sigma_data, "obs_y")
    return m


def _elementwise_logp(m):
    return m.compile_logp(vars=[m["y_y"]], sum=False, jacobian=False, mode="FAST_COMPILE")({})[0]


def test_censored_normal_matches_scipy_including_tails():
    y = np.array([-40.0, -3.0, 0.0, 1.5, 4.0, 40.0, -2.0, 0.5, 25.0, 0.7, -1.0])
    cz = np.array(["left"] * 6 + ["right"] * 3 + ["none"] * 2)
    mu, sd = 0.3, 0.7
    got = _elementwise_logp(_model(ObservableSpec(sigma=sd), y, cz, np.full(len(y), mu)))
    ref = np.select([cz == "left", cz == "right"], [stats.norm.logcdf(y, mu, sd), stats.norm.logsf(y, mu, sd)],
                    stats.norm.logpdf(y, mu, sd))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-10)
    assert np.all(np.isfinite(got))


def test_censored_student_t_with_emulator_variance_matches_scipy():
    y = np.array([-5.0, 0.2, 3.0, 8.0, 1.0])
    cz = np.array(["left", "left", "right", "right", "none"])
    var_em, sig, nu = 0.2, 1.1, 3.0
    got = _elementwise_logp(_model(ObservableSpec("student_t", sigma=sig, nu=nu), y, cz, np.zeros(5), var=var_em))
    s = np.sqrt(sig**2 + var_em)
    ref = np.select([cz == "left", cz == "right"], [stats.t.logcdf(y, nu, 0, s), stats.t.logsf(y, nu, 0, s)],
                    stats.t.logpdf(y, nu, 0, s))
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_student_t_predictive_intervals_match_scipy_quantiles():
    """Predictive draws come from the same family (Student-t with its nu), censored at the row's bound."""
    mu, sig, nu = np.array([0.0, 2.0, 1.0]), 0.5, 4.0
    m = _model(ObservableSpec("student_t", sigma=sig, nu=nu), [0.0, 2.0, 1.5], ["none", "none", "right"], mu)
    draws = pm.draw(m["y_y"], draws=40000, random_seed=1)
    for r in (0, 1):
        q = np.quantile(draws[:, r], [0.05, 0.95])
        np.testing.assert_allclose(q, stats.t.ppf([0.05, 0.95], nu, mu[r], sig), atol=0.02)
    # right-censored at 1.5: draws above the bound sit on it, with probability P(Y >= 1.5)
    assert draws[:, 2].max() == 1.5
    assert np.mean(draws[:, 2] == 1.5) == pytest.approx(stats.t.sf(1.5, nu, 1.0, sig), abs=0.01)


def test_loo_and_log_likelihood_include_censored_rows():
    import arviz as az

    y = np.array([0.1, 0.4, 1.2, 3.0])
    cz = np.array(["none", "left", "none", "right"])
    with pm.Model(coords={"obs_y": np.arange(4)}) as m:
        level = pm.Normal("level", 0.0, 1.0)
        observe("y", ObservableSpec(sigma=0.5), level + pt.zeros(4), pt.zeros(4), y, cz, np.full(4, np.nan),
                "obs_y")
    draws = np.random.default_rng(0).normal(1.0, 0.2, size=(2, 200))
    idata = az.from_dict(posterior={"level": draws})
    pm.compute_log_likelihood(idata, model=m, progressbar=False)
    ll = idata.log_likelihood["y_y"].values
    assert ll.shape == (2, 200, 4)
    lv = draws[..., None]
    ref = np.stack([stats.norm.logpdf(0.1, lv[..., 0], 0.5), stats.norm.logcdf(0.4, lv[..., 0], 0.5),
                    stats.norm.logpdf(1.2, lv[..., 0], 0.5), stats.norm.logsf(3.0, lv[..., 0], 0.5)], axis=-1)
    np.testing.assert_allclose(ll, ref, rtol=1e-6)  # PyTensor normal_lcdf: ~1e-8 relative (erfc form)
    loo = az.loo(idata)
    assert loo.n_data_points == 4 and np.isfinite(loo.elpd_loo)


def test_discrete_families_match_scipy():
    from scipy.special import expit

    eta = np.array([0.3, -0.8])
    got = _elementwise_logp(_model(ObservableSpec("binomial", n_trials=10), [3, 9], ["none", "none"], eta))
    np.testing.assert_allclose(got, stats.binom.logpmf([3, 9], 10, expit(eta)), rtol=1e-10)
    got = _elementwise_logp(_model(ObservableSpec("bernoulli"), [1, 0], ["none", "none"], eta))
    np.testing.assert_allclose(got, stats.bernoulli.logpmf([1, 0], expit(eta)), rtol=1e-10)
    cuts = np.array([-1.0, 0.5])
    m = _model(ObservableSpec("ordinal_probit", link="probit", cutpoints=cuts), [0, 2], ["none", "none"], eta)
    lp = m.compile_logp(vars=[m["y_y"]], sum=False, jacobian=False, mode="FAST_COMPILE")
    got = lp({"cutpoints_y_ordered__": m.rvs_to_transforms[m["cutpoints_y"]].forward(cuts).eval()})[0]
    ref = [np.log(stats.norm.cdf(cuts[0] - eta[0])), np.log(stats.norm.sf(cuts[1] - eta[1]))]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_ordinal_probit_with_a_learned_scale_and_emulator_variance_is_exact():
    """P(y = k) = Φ((c_k − μ)/√(s² + v)) − Φ((c_{k−1} − μ)/√(s² + v)): the score's noise scale s (learned,
    ``sigma_y``) and the emulator variance v combine exactly (a Gaussian emulator error)."""
    from immunocal.priors import Prior

    mu, cuts, s, v = np.array([0.3, 0.05, 0.5]), np.array([0.1, 0.36]), 0.08, 0.002
    spec = ObservableSpec("ordinal_probit", cutpoints=cuts, sigma=Prior("HalfNormal", {"sigma": 0.2}))
    m = _model(spec, [0, 1, 2], ["none"] * 3, mu, var=v)
    assert "sigma_y" in m.named_vars
    lp = m.compile_logp(vars=[m["y_y"]], sum=False, jacobian=False, mode="FAST_COMPILE")
    point = {"cutpoints_y_ordered__": m.rvs_to_transforms[m["cutpoints_y"]].forward(cuts).eval(),
             "sigma_y_log__": np.log(s)}
    sd = np.sqrt(s**2 + v)
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    want = [np.log(stats.norm.cdf((edges[k + 1] - mu[k]) / sd) - stats.norm.cdf((edges[k] - mu[k]) / sd))
            for k in range(3)]
    np.testing.assert_allclose(lp(point)[0], want, rtol=1e-6)
    # the per-draw form used for new subjects gives the same numbers
    from immunocal.calib.likelihoods import rows_logp_per_draw

    got = rows_logp_per_draw(spec, pt.as_tensor_variable(mu), pt.as_tensor_variable(np.full(3, v)),
                             np.array([0.0, 1.0, 2.0]), np.full(3, "none"), np.full(3, np.nan),
                             sigma_draws=np.array([s]), cutpoint_draws=cuts[None]).eval()
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    with pytest.raises(ValueError, match="not to 'ordinal_logistic'"):
        ObservableSpec("ordinal_logistic", cutpoints=cuts, sigma=0.1)


def test_bad_observations_are_named():
    with pytest.raises(ValueError, match="unknown censoring flag"):
        censoring_bounds(np.zeros(2), np.array(["none", "upper"]))
    with pytest.raises(ValueError, match="censoring flags on bernoulli observable 'y'"):
        _model(ObservableSpec("bernoulli"), [1, 0], ["left", "none"], np.zeros(2))
    with pytest.raises(ValueError, match="needs 0/1 values"):
        _model(ObservableSpec("bernoulli"), [2, 0], ["none", "none"], np.zeros(2))
    with pytest.raises(ValueError, match="has the logistic link; got link = 'cloglog'"):
        ObservableSpec("ordinal_logistic", link="cloglog", cutpoints=[0.0, 1.0])
    # the family name decides the link (an ordinal_probit observable was once built as a logistic one)
    assert ObservableSpec("ordinal_probit", cutpoints=[0.0]).link == "probit"
    with pytest.raises(ValueError, match="has the probit link"):
        ObservableSpec("ordinal_probit", link="logistic", cutpoints=[0.0])
    with pytest.raises(ValueError, match="ordinal families only"):
        ObservableSpec("normal", link="probit")
    with pytest.raises(ValueError, match="nu > 0"):
        ObservableSpec("student_t", nu=0.0)
