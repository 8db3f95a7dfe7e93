import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

from calib import likelihoods as L


def _f(expr):
    return pytensor.function([], expr)()


def test_censored_normal_matches_scipy_logcdf_including_tails():
    y = np.array([-40.0, -3.0, 0.0, 1.5, 4.0, 40.0, -2.0, 0.5, 25.0])
    side = np.array(["left"] * 6 + ["right"] * 3)
    mu, sd = 0.3, 0.7
    got = _f(L.censored_logp(y, pt.as_tensor_variable(np.full(9, mu)), pt.as_tensor_variable(np.full(9, sd)), side))
    ref = np.where(side == "left", stats.norm.logcdf(y, mu, sd), stats.norm.logsf(y, mu, sd))
    # PyTensor's normal_lcdf uses an erfc-based formula: ~6e-8 relative error near z = -2 (measured)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-10)
    assert np.all(np.isfinite(got))


def test_censored_student_t_matches_scipy():
    y = np.array([-5.0, 0.2, 3.0, 8.0])
    side = np.array(["left", "left", "right", "right"])
    got = _f(L.censored_logp(y, pt.as_tensor_variable(np.zeros(4)), pt.as_tensor_variable(np.full(4, 1.3)), side,
                             family="student_t", nu=4.0))
    ref = np.where(side == "left", stats.t.logcdf(y, 4, 0, 1.3), stats.t.logsf(y, 4, 0, 1.3))
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    with pytest.raises(ValueError, match="censoring is defined for 'normal' and 'student_t'"):
        L.censored_logp(y, 0.0, 1.0, side, family="bernoulli")


def test_gaussian_with_emulator_variance_and_student_t():
    y, mu, sig, var_em = np.array([1.0, 2.5]), np.array([1.2, 2.0]), 0.3, np.array([0.04, 0.0])
    sd = L.total_sd(sig, pt.as_tensor_variable(var_em))
    np.testing.assert_allclose(_f(L.gaussian_logp(y, mu, sd)), stats.norm.logpdf(y, mu, np.sqrt(sig**2 + var_em)))
    np.testing.assert_allclose(_f(L.student_t_logp(y, mu, 0.3, 3.0)), stats.t.logpdf(y, 3.0, mu, 0.3))


def test_ordinal_bernoulli_binomial():
    from scipy.special import expit

    eta, cuts = np.array([0.0, 1.0, -2.0]), np.array([-1.0, 0.5, 2.0])
    k = np.array([0, 2, 3])
    cdf = np.array([np.concatenate([[0.0], expit(cuts - e), [1.0]]) for e in eta])
    ref = np.log(cdf[np.arange(3), k + 1] - cdf[np.arange(3), k])
    np.testing.assert_allclose(_f(L.ordinal_logp(k, eta, cuts)), ref, rtol=1e-6)
    cdfp = np.array([np.concatenate([[0.0], stats.norm.cdf(cuts - e), [1.0]]) for e in eta])
    refp = np.log(cdfp[np.arange(3), k + 1] - cdfp[np.arange(3), k])
    np.testing.assert_allclose(_f(L.ordinal_logp(k, eta, cuts, link="probit")), refp, rtol=1e-6)
    with pytest.raises(ValueError, match="ordinal link must be"):
        L.ordinal_logp(k, eta, cuts, link="cloglog")
    np.testing.assert_allclose(_f(L.bernoulli_logp(np.array([1, 0]), np.array([0.3, 0.3]))),
                               stats.bernoulli.logpmf([1, 0], expit(0.3)))
    np.testing.assert_allclose(_f(L.binomial_logp(np.array([3, 9]), 10, np.array([-1.0, 2.0]))),
                               stats.binom.logpmf([3, 9], 10, expit(np.array([-1.0, 2.0]))))
