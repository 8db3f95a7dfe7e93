"""Model builder and inference on problems with exact answers (one compiled NUTS model in the fast suite)."""

import warnings

import arviz as az
import numpy as np
import pytest

from immunocal.calib.bench import hierarchical_linear_problem
from immunocal.calib.data import Measurements
from immunocal.calib.inference import pathfinder_available, sample
from immunocal.calib.model import ObservableSpec, ParameterSpec, build_model
from immunocal.calib.outputs import ConvergenceWarning, check_diagnostics, provenance, save_idata
from immunocal.calib.surrogate import ExactEmulator
from immunocal.calib.toy import LinearModel
from immunocal.priors import Prior


@pytest.fixture(scope="module")
def hier_fit():
    prob = hierarchical_linear_problem(n_subjects=6, n_times=3, seed=3)
    m = build_model(prob["emulator"], prob["parameters"], prob["data"], prob["observables"])
    idata = sample(m, draws=1000, tune=600, chains=2, cores=1, seed=2)
    return prob, m, idata


def test_nuts_recovers_exact_hierarchical_linear_gaussian_posterior(hier_fit):
    prob, _, idata = hier_fit
    post = idata.posterior
    draws = np.column_stack([post.level_loc.stack(s=("chain", "draw")).values,
                             post.level.stack(s=("chain", "draw")).values.T])
    ess = az.ess(idata, var_names=["level_loc", "level"])
    ess = np.concatenate([[float(ess.level_loc)], ess.level.values])
    mean_hat, sd_hat = draws.mean(0), draws.std(0)
    # Monte-Carlo standard error of the mean: sd/sqrt(ESS); allow 4 MCSE
    assert np.all(np.abs(mean_hat - prob["exact_mean"]) < 4 * prob["exact_sd"] / np.sqrt(ess))
    # sd of a Gaussian sample: relative MCSE ≈ 1/sqrt(2·ESS); allow 4 of them
    assert np.all(np.abs(sd_hat / prob["exact_sd"] - 1) < 4 / np.sqrt(2 * ess))


def test_nuts_is_pymc_sample_draw_for_draw():
    """``sample`` initialises NUTS up front (``pm.init_nuts``) to skip PyMC's per-variable gradient probing; the
    chains must be exactly those of ``pm.sample`` with the same seed (same jitter, same adaptation, same draws)."""
    import pymc as pm

    with pm.Model() as m:
        s = pm.HalfNormal("s", 1.0)
        mu = pm.Normal("mu", 0.0, 2.0, shape=3)
        pm.Normal("y", mu.sum(), s, observed=np.array([0.3, 1.2, -0.4]))
        ref = pm.sample(draws=100, tune=100, chains=2, cores=1, random_seed=5, target_accept=0.9,
                        progressbar=False, compute_convergence_checks=False)
    ours = sample(m, draws=100, tune=100, chains=2, cores=1, seed=5, target_accept=0.9, posterior_predictive=False)
    for v in ("s", "mu"):
        np.testing.assert_array_equal(ours.posterior[v].values, ref.posterior[v].values)
    np.testing.assert_array_equal(ours.sample_stats.step_size.values, ref.sample_stats.step_size.values)


def test_outputs_diagnostics_provenance_and_posterior_predictive(hier_fit, tmp_path):
    prob, m, idata = hier_fit
    assert {"posterior", "posterior_predictive", "observed_data", "sample_stats"} <= set(idata.groups())
    rep = check_diagnostics(idata, ess_min=300)
    assert rep["ok"] and rep["divergences"] == 0 and rep["rhat_max"] <= 1.01
    with pytest.warns(ConvergenceWarning, match=r"bulk ESS .* < 1000000"):
        bad = check_diagnostics(idata, ess_min=1e6, loud=False)
    assert not bad["ok"]
    with pytest.raises(RuntimeError, match="CONVERGENCE CHECK FAILED"):
        check_diagnostics(idata, ess_min=1e6, strict=True)
    attrs = provenance({"a": 1}, prob["data"].digest(), "exact-toy.linear")
    path = save_idata(idata, tmp_path / "run" / "idata.nc", attrs)
    back = az.from_netcdf(path)
    for key in ("immunocal_version", "config_hash", "data_hash", "surrogate_id"):
        assert back.posterior.attrs[key] == str(attrs[key])
    assert back.posterior.attrs["surrogate_id"] == "exact-toy.linear"
    assert m.calib_info.latent == ["level"] and m.calib_info.fixed == {"slope": 0.5}


def test_ragged_records_with_nan_are_saved_as_json_without_a_warning(tmp_path):
    """SMC's per-stage statistics are ragged object arrays: saved as JSON text, a NaN or an infinity kept as such,
    and no RuntimeWarning from NumPy's object loop (it printed after every SMC run)."""
    import json
    import warnings

    import xarray as xr

    stages = np.empty(2, dtype=object)
    stages[0], stages[1] = np.array([0.0, -np.inf, np.nan]), np.array([1.0, 2.0])
    idata = az.InferenceData(
        posterior=xr.Dataset({"a": (("chain", "draw"), np.zeros((2, 3)))}, coords={"chain": [0, 1], "draw": [0, 1, 2]}),
        sample_stats=xr.Dataset({"log_marginal_likelihood": (("chain",), stages)}, coords={"chain": [0, 1]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = save_idata(idata, tmp_path / "smc.nc")
    back = [json.loads(x) for x in az.from_netcdf(path).sample_stats["log_marginal_likelihood"].values]
    assert back[1] == [1.0, 2.0] and back[0][0] == 0.0 and back[0][1] == -np.inf and np.isnan(back[0][2])


def test_builder_structure_covariates_censoring_and_families(rng):
    """Compile only the log-density (no sampling): censored rows, covariates, binomial, ordinal."""
    from immunocal.calib.data import Conditions

    fm = LinearModel(times=(0.0, 1.0, 2.0), observables=("y", "n", "r"))
    em = ExactEmulator(fm)
    data = Measurements.from_arrays(
        ["a", "a", "b", "b", "a", "b", "a"], ["c"] * 7, ["y", "y", "y", "y", "n", "n", "r"],
        [0.0, 1.5, 0.0, 2.0, 1.0, 1.0, 2.0], [0.1, 0.4, 1.2, 3.0, 3, 7, 2],
        censoring=["none", "left", "none", "right", "none", "none", "none"])
    cond = Conditions(covariates={"a": {"w": 1.0}, "b": {"w": 3.0}})
    params = [ParameterSpec("level", "latent", prior=Prior("Normal", {"mu": 0.0, "sigma": 1.0}), sd=0.5,
                            covariates=("w",)),
              ParameterSpec("slope", "population", prior=Prior("Normal", {"mu": 0.0, "sigma": 1.0}))]
    obs = {"y": ObservableSpec(sigma=0.3), "n": ObservableSpec("binomial", n_trials=10),
           "r": ObservableSpec("ordinal_logistic", cutpoints=[-1.0, 0.0, 1.0])}
    m = build_model(em, params, data, obs, cond)
    pt_ = {"level_loc": 0.2, "level_eta": np.array([0.5, -1.0]), "level_beta": np.array([0.3]), "slope": 0.4,
           "cutpoints_r_ordered__": m.rvs_to_transforms[m["cutpoints_r"]].forward(np.array([-1.0, 0.0, 1.0])).eval()}
    from scipy import stats
    from scipy.special import expit

    lp = m.compile_logp(sum=False, jacobian=False, mode="FAST_COMPILE")  # no C compilation needed here
    terms = dict(zip([v.name for v in m.free_RVs] + [v.name for v in m.observed_RVs] + [p.name for p in m.potentials],
                     lp(pt_)))
    lvl = 0.2 + 0.5 * np.array([0.5, -1.0]) + 0.3 * np.array([-1.0, 1.0])  # standardised covariate ±1
    mu = lambda s, t: lvl[s] + 0.4 * t
    # one observed variable over the four y rows: density, left-censored (logcdf), density, right-censored (logsf)
    np.testing.assert_allclose(terms["y_y"], [stats.norm.logpdf(0.1, mu(0, 0), 0.3),
                                              stats.norm.logcdf(0.4, mu(0, 1.5), 0.3),
                                              stats.norm.logpdf(1.2, mu(1, 0), 0.3),
                                              stats.norm.logsf(3.0, mu(1, 2.0), 0.3)], rtol=1e-8)
    np.testing.assert_allclose(terms["y_n"], stats.binom.logpmf([3, 7], 10, expit([mu(0, 1), mu(1, 1)])), rtol=1e-10)
    c = np.concatenate([[0.0], expit(np.array([-1.0, 0.0, 1.0]) - mu(0, 2)), [1.0]])
    np.testing.assert_allclose(terms["y_r"], np.log(c[3] - c[2]), rtol=1e-8)


def test_builder_errors():
    fm = LinearModel(times=(0.0, 1.0))
    em = ExactEmulator(fm)
    data = Measurements.from_arrays(["a"], ["c"], ["y"], [5.0], [1.0])
    pri = Prior("Normal", {"mu": 0.0, "sigma": 1.0})
    with pytest.raises(ValueError, match=r"time 5.0 is outside the emulator's time grid \[0.0, 1.0\]"):
        build_model(em, [ParameterSpec("level", prior=pri), ParameterSpec("slope", "fixed", value=0.0)], data)
    data = Measurements.from_arrays(["a"], ["c"], ["z"], [0.0], [1.0])
    with pytest.raises(ValueError, match=r"observable 'z' is not an output of the emulator"):
        build_model(em, [ParameterSpec("level", prior=pri), ParameterSpec("slope", "fixed", value=0.0)], data)
    with pytest.raises(ValueError, match=r"parameter spec\(s\) \['nope'\] are not inputs"):
        build_model(em, [ParameterSpec("nope", prior=pri)], data)
    with pytest.raises(ValueError, match=r"parameter 'slope' has no spec and no registry model"):
        build_model(em, [ParameterSpec("level", prior=pri)], data)
    with pytest.raises(ValueError, match=r"no emulator for condition\(s\) \['c'\]"):
        build_model({"other": em}, [ParameterSpec("level", prior=pri)], data)
    with pytest.raises(ValueError, match="role must be one of 'population', 'latent', 'fixed', 'observed'"):
        ParameterSpec("level", "global")
    with pytest.raises(ValueError, match="unknown observation family 'poisson'"):
        ObservableSpec("poisson")
    data = Measurements.from_arrays(["a"], ["c"], ["y"], [0.0], [1.0])
    with pytest.raises(ValueError, match="latent parameters need a Normal, LogNormal or BoundedLogitNormal prior"):
        build_model(em, [ParameterSpec("level", "latent", prior=Prior("Uniform", {"lower": 0, "upper": 1})),
                         ParameterSpec("slope", "fixed", value=0.0)], data)
    with pytest.raises(ValueError, match="has neither a PyTensor form"):
        ExactEmulator(type("F", (), {"name": "f"})())
    with pytest.raises(ValueError, match="unknown inference method 'hmc'"):
        sample(None, method="hmc")
    if not pathfinder_available():
        with pytest.raises(ValueError, match="Pathfinder needs pymc-extras"):
            sample(build_model(em, [ParameterSpec("level", prior=pri), ParameterSpec("slope", "fixed", value=0.0)],
                               data), method="pathfinder")


def _one_parameter_emulator(space, family: str):
    """A zero-variance emulator whose output at both times is its single parameter (family "pca_gp" makes
    build_model treat it as a GP with a training box)."""

    class OneParameter:
        observables = ("y",)
        times = np.array([0.0, 1.0])
        surrogate_id = family

        def predict_pt(self, theta):
            import pytensor.tensor as pt

            mean = pt.stack([theta[:, 0], theta[:, 0]], axis=1)[:, None, :]
            return mean, pt.zeros_like(mean)

    em = OneParameter()
    em.family, em.space = family, space
    return em


def test_registry_priors_and_fixed_values_are_used():
    """A registry model's parameter: prior from registry().record(...).prior(preset), others fixed at presets."""
    from immunocal.priors import registry

    reg = registry()
    model = reg.models[0]
    preset = next(iter(reg.presets(model)))
    rec = next(r for r in reg.records(model) if not r.pending and np.all(np.isfinite(r.bounds_for(preset)))
               and r.bounds_for(preset)[0] < r.bounds_for(preset)[1])

    from immunocal.calib.design import ParameterSpace

    lo, hi = rec.bounds_for(preset)
    em = _one_parameter_emulator(ParameterSpace((rec.name,), (lo,), (hi,), ("linear",)), family="test")

    data = Measurements.from_arrays(["a"], ["c"], ["y"], [0.0], [1.0])
    m = build_model(em, [ParameterSpec(rec.name, "population")], data, {"y": ObservableSpec(sigma=1.0)},
                    model=model, preset=preset)
    assert rec.name in m.named_vars
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = m.initial_point()
    assert np.isfinite(m.compile_logp(mode="FAST_COMPILE")(init))


def test_surrogate_domain_wall_keeps_posterior_in_training_box():
    from immunocal.calib.design import ParameterSpace

    em = _one_parameter_emulator(ParameterSpace(("level",), (0.0,), (1.0,), ("linear",)), family="pca_gp")

    data = Measurements.from_arrays(["a"], ["c/1"], ["y"], [0.0], [0.5])
    m = build_model(em, [ParameterSpec("level", prior=Prior("Normal", {"mu": 0.5, "sigma": 1.0}))], data,
                    {"y": ObservableSpec(sigma=1.0)})
    pot = m.replace_rvs_by_values([m.potentials[0]])[0]
    wall = m.compile_fn(pot, inputs=m.value_vars, mode="FAST_COMPILE")
    assert m.potentials[0].name == "emulator_domain_c_1"
    assert wall({"level": 0.7}) == 0.0
    np.testing.assert_allclose(wall({"level": 1.03}), -0.5 * 3.0**2)
    np.testing.assert_allclose(wall({"level": -0.02}), -0.5 * 2.0**2)


def test_subject_ids_shared_across_conditions_are_refused_unless_declared():
    """Per-group numbering ("1", "2" in every arm) must not merge different animals into one latent subject."""
    em = ExactEmulator(LinearModel(times=(0.0, 1.0)))
    data = Measurements.from_arrays(["1", "2", "1", "2"], ["ctrl", "ctrl", "rt", "rt"], ["y"] * 4,
                                    [0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4])
    params = [ParameterSpec("level", "latent", prior=Prior("Normal", {"mu": 0.0, "sigma": 1.0}), sd=0.5),
              ParameterSpec("slope", "fixed", value=0.0)]
    with pytest.raises(ValueError, match=r"subject '1' appears under conditions 'ctrl' and 'rt'.*'rt/1'"):
        build_model(em, params, data, {"y": ObservableSpec(sigma=0.3)})
    m = build_model(em, params, data, {"y": ObservableSpec(sigma=0.3)}, shared_subjects=True)
    assert m.calib_info.subjects == ["1", "2"]  # declared: the same two subjects under both conditions


def test_centred_latents_are_the_same_model_in_other_coordinates():
    """parametrization = "centred" samples z_s = loc + sd η_s directly: its joint density at z equals the non-centred
    one at η = (z − loc)/sd minus n log sd (the change of variables) — the same posterior, other coordinates; with
    a learned sd too. Bad settings are named."""
    from dataclasses import replace

    prob = hierarchical_linear_problem(n_subjects=5, n_times=3, seed=4)
    sd_prior = Prior("HalfNormal", {"sigma": 0.7})
    latent = [replace(p, sd=sd_prior) if p.role == "latent" else p for p in prob["parameters"]]
    centred = [replace(p, parametrization="centred") if p.role == "latent" else p for p in latent]
    m_nc = build_model(prob["emulator"], latent, prob["data"], prob["observables"])
    m_c = build_model(prob["emulator"], centred, prob["data"], prob["observables"])
    assert "level_link" in m_c.named_vars and "level_eta" not in m_c.named_vars
    rng = np.random.default_rng(0)
    lp_nc, lp_c = m_nc.compile_logp(), m_c.compile_logp()
    for _ in range(3):
        pt_nc = {k: rng.normal(0, 0.5, np.shape(v)) for k, v in m_nc.initial_point().items()}
        sd = np.exp(pt_nc["level_sd_log__"])
        loc = pt_nc["level_loc"]
        pt_c = {k: v for k, v in pt_nc.items() if k != "level_eta"}
        pt_c["level_link"] = loc + sd * pt_nc["level_eta"]
        np.testing.assert_allclose(lp_c(pt_c), lp_nc(pt_nc) - 5 * np.log(sd), rtol=1e-10)
    with pytest.raises(ValueError, match="parametrization must be one of"):
        ParameterSpec("level", "latent", parametrization="centered")
    with pytest.raises(ValueError, match="latent parameters only"):
        ParameterSpec("level", "population", parametrization="centred")


def test_nuts_initialisation_is_handed_to_pymc(monkeypatch):
    """``[sampler] init`` reaches PyMC's own ``init_nuts`` (a dense mass matrix with ``jitter+adapt_full``); an
    unknown one is refused by name before anything runs."""
    import pymc as pm

    from immunocal.calib.inference import sample

    seen = []
    real = pm.init_nuts

    def spy(*args, **kwargs):
        seen.append(kwargs["init"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pm, "init_nuts", spy)
    with pm.Model() as m:
        x = pm.Normal("x", 0.0, 1.0, shape=2)
        pm.Normal("y", x.sum(), 1.0, observed=0.5)
    idata = sample(m, draws=20, tune=50, chains=1, cores=1, seed=3, init="jitter+adapt_full",
                   posterior_predictive=False)
    assert seen == ["jitter+adapt_full"] and idata.posterior["x"].shape == (1, 20, 2)
    with pytest.raises(ValueError, match="unknown NUTS initialisation 'adapt_dense'"):
        sample(m, draws=20, tune=50, chains=1, init="adapt_dense")


def test_top_up_adds_chains_only_where_the_effective_sample_size_alone_misses(monkeypatch):
    """``[sampler] top_up``: chains that miss only the ESS threshold get ``chains`` more at the same settings, pooled
    with them — the first chains are the draws of the run without top-up, the new ones start afresh (the sampler's
    untuned state, new seeds) and sample the exact posterior, and each batch is recorded with the diagnostics before
    it. No top-up where the thresholds are met, where the chains disagree (R-hat above ``TOP_UP_RHAT_MAX``), or for
    a method other than NUTS."""
    import json

    import pymc as pm

    from immunocal.calib import inference

    with pm.Model() as m:  # x ~ N(0, I), y ~ N(x1 + x2, 1), y = 0.5: posterior mean 1/6 each, variance 2/3
        x = pm.Normal("x", 0.0, 1.0, shape=2)
        pm.Normal("y", x.sum(), 1.0, observed=0.5)
    kw = {"draws": 200, "tune": 200, "chains": 2, "cores": 1, "seed": 4, "posterior_predictive": False}
    base = sample(m, **kw)
    first = check_diagnostics(base, loud=False)
    assert first["divergences"] == 0 and first["rhat_max"] <= inference.TOP_UP_RHAT_MAX
    short = {"rhat_max": 1.05, "ess_min": 1.5 * first["ess_bulk_min"]}  # missed on the ESS alone
    topped = sample(m, top_up=1, thresholds=short, **kw)
    assert topped.posterior.sizes["chain"] == 4
    np.testing.assert_array_equal(topped.posterior["x"].values[:2], base.posterior["x"].values)
    new = topped.posterior["x"].values[2:].reshape(-1, 2)
    assert not np.array_equal(new, base.posterior["x"].values.reshape(-1, 2))
    ess_new = float(az.ess(topped.sel(chain=[2, 3]), var_names=["x"])["x"].min())
    assert np.all(np.abs(new.mean(0) - 0.5 / 3) < 4 * np.sqrt(2 / 3 / ess_new))
    assert np.all(np.abs(new.var(0) / (2 / 3) - 1) < 4 / np.sqrt(2 * ess_new))
    record = json.loads(topped.sample_stats.attrs["top_up"])
    assert [r["batch"] for r in record] == [1] and record[0]["chains_added"] == 2
    assert record[0]["before"]["ess_bulk_min"] == pytest.approx(first["ess_bulk_min"])
    assert check_diagnostics(topped, loud=False)["ess_bulk_min"] > first["ess_bulk_min"]
    unreachable = sample(m, top_up=2, thresholds={"rhat_max": 1.05, "ess_min": 1e9}, **kw)
    assert unreachable.posterior.sizes["chain"] == 6  # at most `top_up` batches, each recorded
    assert len(json.loads(unreachable.sample_stats.attrs["top_up"])) == 2
    met = sample(m, top_up=1, thresholds={"rhat_max": 1.05, "ess_min": 10}, **kw)
    assert met.posterior.sizes["chain"] == 2 and "top_up" not in met.sample_stats.attrs
    monkeypatch.setattr(inference, "TOP_UP_RHAT_MAX", 0.5)  # every R-hat now says the chains disagree
    apart = sample(m, top_up=1, thresholds=short, **kw)
    assert apart.posterior.sizes["chain"] == 2 and "top_up" not in apart.sample_stats.attrs
    with pytest.raises(ValueError, match="top_up = 1: more chains are drawn for NUTS only"):
        sample(m, method="advi", top_up=1, draws=10)


def test_laplace_start_is_exact_on_a_gaussian_posterior():
    """``laplace+adapt_full``: on a conjugate Gaussian model (correlated posterior: y_i ~ N(a + b t_i, 0.5), flat-ish
    normal priors) the mode and covariance it finds are the analytic posterior's, a log-scale variable is handled in
    its unconstrained space, the chains start at distinct Laplace draws, and NUTS samples from that start with the
    search's cost recorded in the InferenceData."""
    import json

    import pymc as pm

    from immunocal.calib.inference import laplace_start

    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([1.1, 2.9, 5.2, 6.8, 9.1])
    with pm.Model() as m:
        ab = pm.Normal("ab", 0.0, 10.0, shape=2)
        pm.Normal("y", ab[0] + ab[1] * t, 0.5, observed=y)
    design = np.column_stack([np.ones_like(t), t])
    precision = design.T @ design / 0.25 + np.eye(2) / 100.0
    cov = np.linalg.inv(precision)
    mean = cov @ (design.T @ y / 0.25)
    points, potential, info, _ = laplace_start(m, 2, [11, 12])
    np.testing.assert_allclose(potential._foreground_cov.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(potential._cov, cov, rtol=1e-4)
    assert info["dimensions"] == 2 and info["hessian_eigenvalues"][0] > 0 and info["evaluations"] > 4
    assert len(points) == 2 and not np.allclose(points[0]["ab"], points[1]["ab"])
    with pm.Model() as lognormal:  # a positive variable: its mode is found on the log scale PyMC samples
        s = pm.LogNormal("s", 0.3, 0.2)
        pm.Normal("z", 0.0, 1.0, observed=0.0)
    pts, pot, _, _ = laplace_start(lognormal, 1, [5])
    # PyMC samples log s, whose density (the log transform's Jacobian included) is exactly N(0.3, 0.2^2)
    np.testing.assert_allclose(pot._foreground_cov.mean, [0.3], atol=1e-6)
    np.testing.assert_allclose(pot._cov, [[0.04]], rtol=1e-4)
    assert "s_log__" in pts[0]
    from immunocal.calib.inference import sample

    idata = sample(m, draws=200, tune=100, chains=2, cores=1, seed=3, init="laplace+adapt_full",
                   posterior_predictive=False)
    rec = json.loads(idata.sample_stats.attrs["laplace_init"])
    assert rec["dimensions"] == 2 and rec["prior_weight"] > 0
    draws = idata.posterior["ab"].values.reshape(-1, 2)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * np.sqrt(np.diag(cov)) / np.sqrt(50))


def test_laplace_start_refuses_a_density_without_a_usable_mode():
    """No silent fallback: an improper direction (a flat likelihood along a + b with flat priors is not concave)
    and a failed search raise :class:`LaplaceInitError` naming the init."""
    import pymc as pm

    from immunocal.calib.inference import LaplaceInitError, laplace_start

    with pm.Model() as flat:
        ab = pm.Flat("ab", shape=2)
        pm.Normal("y", ab[0] + ab[1], 1.0, observed=1.0)  # only the sum is identified: -H is singular
    with pytest.raises(LaplaceInitError, match="laplace"):
        laplace_start(flat, 1, [1])
    with pm.Model() as unbounded:
        pm.Flat("x")
        pm.Potential("up", pm.math.exp(unbounded["x"]))  # the log density grows without bound: no mode
    with pytest.raises(LaplaceInitError, match="no posterior mode|not concave"):
        laplace_start(unbounded, 1, [1])


def test_laplace_start_names_where_a_hierarchical_funnel_has_no_mode():
    """A centred hierarchy whose groups agree (the between-group sd's density grows without bound as sd -> 0, the
    funnel): the search finds no stationary point and the error names the sd's coordinate (seen on Morisada MC38)."""
    import pymc as pm

    from immunocal.calib.inference import LaplaceInitError, laplace_start

    with pm.Model() as funnel:
        loc = pm.Normal("loc", 0.0, 1.0)
        sd = pm.HalfNormal("sd", 1.0)
        g = pm.Normal("g", loc, sd, shape=8)
        pm.Normal("y", g, 1.0, observed=np.zeros(8))
    with pytest.raises(LaplaceInitError, match=r"sd_log__"):
        laplace_start(funnel, 1, [1])


def test_chains_in_parallel_processes_or_one_after_another_give_the_same_draws(monkeypatch):
    """``[sampler] cores`` says where the chains run, not what they draw: NUTS with both chains in processes and
    with the chains one after another gives identical draws (why it is left out of the config hash). In a daemonic
    process (a Dask worker under its nanny, a pool worker), which may not start processes, ``cores`` > 1 is refused
    by name before anything runs, and ``cores = 1`` samples."""
    import multiprocessing

    import pymc as pm

    from immunocal.calib.inference import DaemonProcessError, sample

    with pm.Model() as m:
        x = pm.Normal("x", 0.0, 1.0, shape=2)
        pm.Normal("y", x.sum(), 1.0, observed=0.5)
    kw = {"draws": 30, "tune": 30, "chains": 2, "seed": 4, "posterior_predictive": False}
    parallel, serial = sample(m, cores=2, **kw), sample(m, cores=1, **kw)
    np.testing.assert_array_equal(parallel.posterior["x"].values, serial.posterior["x"].values)
    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)
    with pytest.raises(DaemonProcessError, match="cores = 2.*is a daemon.*cores = 1"):
        sample(m, cores=2, **kw)
    with pytest.raises(DaemonProcessError, match="cores = 2"):
        sample(m, **kw)  # NUTS's default: as many processes as chains, up to 2
    np.testing.assert_array_equal(sample(m, cores=1, **kw).posterior["x"].values, serial.posterior["x"].values)


def test_config_hash_leaves_out_where_the_work_runs():
    """``[sampler] cores`` and ``[design] workers`` change where a run's work happens, not its results: a finished
    run is recognised with either; every other setting still changes the hash, and the config is not modified."""
    from immunocal.calib.outputs import config_hash

    cfg = {"sampler": {"draws": 100, "chains": 2}, "design": {"n": 50}, "model": {"forward": "toy.linear"}}
    run_elsewhere = {"sampler": {"draws": 100, "chains": 2, "cores": 1}, "design": {"n": 50, "workers": 4},
                     "model": {"forward": "toy.linear"}}
    assert config_hash(run_elsewhere) == config_hash(cfg)
    assert run_elsewhere["sampler"]["cores"] == 1 and run_elsewhere["design"]["workers"] == 4
    assert config_hash({**cfg, "sampler": {"draws": 101, "chains": 2}}) != config_hash(cfg)
    assert config_hash({**cfg, "design": {"n": 50, "seed": 1}}) != config_hash(cfg)


def test_divergences_are_located_in_the_tails_they_happened_in():
    """``check_diagnostics`` says where divergent draws sit: flagged exactly where one subject's latent is in its
    top 1 %, that scalar ranks first (high side, tiny tail probability) and is the deepest at every divergent draw;
    a funnel-free quantity independent of the flags is not singled out; without divergences nothing is added, and
    the violation's wording is unchanged (records and reports count it)."""
    import xarray as xr

    rng = np.random.default_rng(0)
    chains, draws = 2, 1000
    b = rng.standard_normal((chains, draws, 3))
    a = rng.standard_normal((chains, draws))
    diverging = b[:, :, 1] > np.quantile(b[:, :, 1], 0.99)
    post = xr.Dataset({"a": (("chain", "draw"), a), "b": (("chain", "draw", "subject"), b)},
                      coords={"chain": [0, 1], "draw": np.arange(draws), "subject": ["s0", "s1", "s2"]})
    stats = xr.Dataset({"diverging": (("chain", "draw"), diverging)},
                       coords={"chain": [0, 1], "draw": np.arange(draws)})
    idata = az.InferenceData(posterior=post, sample_stats=stats)
    with pytest.warns(ConvergenceWarning):
        rep = check_diagnostics(idata, loud=False, ess_min=10)
    assert rep["violations"] == [f"{int(diverging.sum())} divergent transitions (allowed 0)"]
    where = rep["divergence_locations"]
    assert where["divergent_draws"] == int(diverging.sum()) == 20
    top = where["consistent"][0]
    assert top["variable"] == "b[s1]" and top["side"] == "high" and top["median_tail_probability"] < 0.006
    assert {r["variable"] for r in where["consistent"][1:]} <= {"a", "b[s0]", "b[s2]"}
    assert all(r["median_tail_probability"] > 0.05 for r in where["consistent"][1:])
    assert list(where["deepest"]) == ["b"] and where["deepest"]["b"]["draws"] == 20
    assert {e["variable"] for e in where["deepest"]["b"]["examples"]} == {"b[s1]"}
    calm = az.InferenceData(posterior=post, sample_stats=stats.assign(diverging=stats["diverging"] & False))
    assert "divergence_locations" not in check_diagnostics(calm, loud=False, ess_min=10)
