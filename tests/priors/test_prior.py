"""Priors as data: round-trips, scipy log-densities, sampling, and the PyMC variables they create."""

import json
import math
import tomllib

import numpy as np
import pytest
import tomli_w
from scipy import integrate, stats

from immunocal.priors import Prior, default_prior, registry

PRIORS = [
    Prior("Normal", {"mu": 1.0, "sigma": 2.0}),
    Prior("LogNormal", {"mu": -1.0, "sigma": 0.5}),
    Prior("Uniform", {"lower": 0.0, "upper": 3.0}),
    Prior("HalfNormal", {"sigma": 1.5}),
    Prior("TruncatedNormal", {"mu": 0.5, "sigma": 1.0, "lower": 0.0, "upper": 1.0}),
    Prior("TruncatedLogNormal", {"mu": 0.0, "sigma": 1.0, "lower": 0.5, "upper": 4.0}),
    Prior("BoundedLogitNormal", {"mu": 0.3, "sigma": 1.2, "lower": 0.02, "upper": 0.35, "scale": "linear"}),
    Prior("BoundedLogitNormal", {"mu": -0.5, "sigma": 1.0, "lower": 1e-3, "upper": 1e3, "scale": "log"}),
]


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.distribution)
def test_round_trip_dict_json_toml(prior):
    assert Prior.from_dict(prior.to_dict()) == prior
    assert Prior.from_dict(json.loads(json.dumps(prior.to_dict()))) == prior
    assert Prior.from_dict(tomllib.loads(tomli_w.dumps(prior.to_dict()))) == prior


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.distribution)
def test_density_integrates_to_one_and_matches_samples(prior, rng):
    lo, hi = prior.support
    if math.isinf(lo) or math.isinf(hi):
        lo, hi = (max(lo, -50.0), min(hi, 200.0))
    # integrate in log space for the log-scaled prior to resolve its mass near the lower bound
    if prior.parameters.get("scale") == "log":
        mass, _ = integrate.quad(lambda y: math.exp(y + prior.logpdf(math.exp(y))), math.log(lo), math.log(hi),
                                 limit=200)
    else:
        mass, _ = integrate.quad(lambda x: math.exp(prior.logpdf(x)), lo, hi, limit=200)
    assert mass == pytest.approx(1.0, abs=2e-4)
    draws = prior.sample(rng, size=2000)
    assert np.all((draws >= prior.support[0]) & (draws <= prior.support[1]))
    # KS test of the draws against the exact CDF at a fixed seed
    assert stats.kstest(draws, lambda x: _cdf(prior, x)).pvalue > 1e-3


def _cdf(prior, x):
    p = prior.parameters
    d = prior.distribution
    if d == "BoundedLogitNormal":
        g = prior._g
        u = (g(x) - g(p["lower"])) / (g(p["upper"]) - g(p["lower"]))
        z = np.log(u) - np.log1p(-u)
        return stats.norm(p["mu"], p["sigma"]).cdf(z)
    if d == "TruncatedLogNormal":
        base = stats.lognorm(s=p["sigma"], scale=math.exp(p["mu"]))
        return (base.cdf(x) - base.cdf(p["lower"])) / (base.cdf(p["upper"]) - base.cdf(p["lower"]))
    return prior._scipy().cdf(x)


def test_invalid_priors_rejected():
    with pytest.raises(ValueError, match="unknown prior distribution 'Gama'"):
        Prior("Gama", {})
    with pytest.raises(ValueError, match=r"missing parameters \['sigma'\]"):
        Prior("Normal", {"mu": 0.0})
    with pytest.raises(ValueError, match="sigma must be > 0"):
        Prior("Normal", {"mu": 0.0, "sigma": -1.0})
    with pytest.raises(ValueError, match="lower < upper"):
        Prior("Uniform", {"lower": 1.0, "upper": 1.0})
    with pytest.raises(ValueError, match="not a number"):
        Prior("Normal", {"mu": float("nan"), "sigma": 1.0})
    with pytest.raises(TypeError, match="Generator"):
        PRIORS[0].sample(np.random.RandomState(0))


def test_registry_priors_cover_defaults():
    reg = registry()
    for model in ("cart", "rit"):
        for preset in reg.presets(model):
            for rec in reg.records(model):
                prior, default = rec.prior(preset), rec.default_for(preset)
                assert prior.support == pytest.approx(rec.scale_bounds_for(preset))
                if default not in rec.scale_bounds_for(preset):  # a default on a bound has density 0 or inf
                    assert np.isfinite(prior.logpdf(default)), (model, preset, rec.name)
    p = default_prior(0.05, 0.0, 1.0, "linear")
    assert p.sample(np.random.default_rng(1), 20000).mean() == pytest.approx(0.05, abs=0.08)


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.distribution)
def test_pymc_variable_logp_matches_scipy(prior):
    """STYLE.md: compare PyMC's compiled log-density with the scipy one."""
    pm = pytest.importorskip("pymc")
    with pm.Model() as model:
        prior.create_variable("theta")
    lo, hi = prior.support
    lo = lo if math.isfinite(lo) else -3.0
    hi = hi if math.isfinite(hi) else 5.0
    xs = np.linspace(lo, hi, 9)[1:-1]
    if prior.distribution == "BoundedLogitNormal":
        # PyMC samples the unconstrained z; its density is the normal one
        logp = model.compile_logp()
        z = np.linspace(-3, 3, 7)
        ref = stats.norm(prior.parameters["mu"], prior.parameters["sigma"]).logpdf(z)
        got = [logp({"theta_z": v}) for v in z]
        np.testing.assert_allclose(got, ref, rtol=1e-10)
        # and the deterministic maps z to theta exactly as Prior.sample does
        f = model.compile_fn(model["theta"], inputs=[model["theta_z"]])
        g = prior._g
        u = (g(f({"theta_z": 0.7})) - g(prior.parameters["lower"])) / (
            g(prior.parameters["upper"]) - g(prior.parameters["lower"]))
        assert u == pytest.approx(1 / (1 + math.exp(-0.7)))
        return
    got = pm.logp(model["theta"], xs).eval()
    np.testing.assert_allclose(got, prior.logpdf(xs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("prior", [
    Prior("Normal", {"mu": 0.0, "sigma": 1.0}),
    Prior("LogNormal", {"mu": 0.0, "sigma": 1.0}),
    Prior("BoundedLogitNormal", {"mu": 0.0, "sigma": 1.5, "lower": 0.02, "upper": 0.35, "scale": "linear"}),
    Prior("BoundedLogitNormal", {"mu": 0.0, "sigma": 1.5, "lower": 1e-3, "upper": 1e3, "scale": "log"}),
])
def test_link_is_one_implementation_for_numpy_and_pytensor(prior):
    import pytensor.tensor as pt

    z = np.linspace(-6.0, 6.0, 13)
    theta = prior.link_inverse(z)
    np.testing.assert_allclose(prior.link(theta), z, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(prior.link_inverse(pt.as_tensor_variable(z)).eval(), theta, rtol=1e-12)
    if prior.distribution == "BoundedLogitNormal":
        lo, hi = prior.support
        assert np.all((theta > lo) & (theta < hi))


def test_link_needs_a_link_space():
    with pytest.raises(ValueError, match="HalfNormal prior has no link space"):
        Prior("HalfNormal", {"sigma": 1.0}).link_inverse(0.0)
