"""New-subject posteriors given a fitted population (immunocal.calib.personalise): the per-draw observation densities equal
PyMC's own, and the posterior of a linear-Gaussian subject is the exact conjugate one (one population draw) and the
exact two-component mixture (two draws)."""

import numpy as np
import pytest
from scipy import stats

from immunocal.calib.data import Conditions, Measurements
from immunocal.calib.likelihoods import ObservableSpec, rows_logp_per_draw
from immunocal.calib.model import ParameterSpec
from immunocal.calib.personalise import new_subject_model
from immunocal.calib.surrogate import ExactEmulator
from immunocal.calib.toy import LinearModel, linear_gaussian_posterior
from immunocal.priors import Prior


def _eval(expr):
    return np.asarray(expr.eval())


@pytest.mark.parametrize("censored", [True, False])
@pytest.mark.parametrize("family", ["normal", "student_t"])
def test_continuous_rows_per_draw_match_scipy_with_censoring(family, censored):
    import pytensor.tensor as pt

    spec = ObservableSpec(family=family, nu=4.0)
    mu, var = np.array([0.1, 0.5, -0.3, 1.0]), np.array([0.01, 0.0, 0.04, 0.02])
    y = np.array([0.2, 0.0, -1.0, 0.9])
    cz = np.array(["none", "left", "right", "none"]) if censored else np.full(4, "none")
    sig_data = np.array([np.nan, 0.3, np.nan, np.nan])
    sig_draws = np.array([0.5, 1.2])
    got = _eval(rows_logp_per_draw(spec, pt.as_tensor_variable(mu), pt.as_tensor_variable(var), y, cz, sig_data,
                                   sigma_draws=sig_draws))
    dist = stats.norm if family == "normal" else stats.t(4.0)
    for s, sig in enumerate(sig_draws):
        sd = np.sqrt(np.where(np.isfinite(sig_data), sig_data, sig) ** 2 + var)
        want = dist.logpdf((y - mu) / sd) - np.log(sd)
        if censored:
            want[1:3] = dist.logcdf((y[1] - mu[1]) / sd[1]), dist.logsf((y[2] - mu[2]) / sd[2])
        np.testing.assert_allclose(got[s], want, rtol=1e-6)  # PyMC's log-ccdf is accurate to ~1e-8


def test_rows_per_draw_densities_are_derived_without_the_emulator_graph(monkeypatch):
    """PyMC's logprob rewrites walk every ancestor of what pm.logp is given: mu and var (an emulator's graph in
    use) reach them only as stand-ins, grafted on afterwards — and the result is still a function of them."""
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.basic import ancestors

    x = pt.vector("x")  # the emulator's input
    mu, var = pt.exp(x) - 1.0, 0.01 * pt.square(x)
    seen = []
    logp = pm.logp

    def spy(rv, value, **kw):
        seen.append(set(ancestors([rv])))
        return logp(rv, value, **kw)

    monkeypatch.setattr(pm, "logp", spy)
    spec = ObservableSpec(family="normal")
    y, cz, sig = np.array([0.2, 0.0, -1.0]), np.array(["none", "left", "right"]), np.full(3, np.nan)
    out = rows_logp_per_draw(spec, mu, var, y, cz, sig, sigma_draws=np.array([0.5, 1.2]))
    assert seen and all(x not in a for a in seen)
    assert x in set(ancestors([out]))
    xv = np.array([0.1, -0.2, 0.3])
    got = pytensor.function([x], out)(xv)
    want = _eval(rows_logp_per_draw(spec, pt.as_tensor_variable(np.exp(xv) - 1.0),
                                    pt.as_tensor_variable(0.01 * xv**2), y, cz, sig, sigma_draws=np.array([0.5, 1.2])))
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("link", ["probit", "logistic"])
def test_ordinal_rows_per_draw_match_pymc(link):
    import pymc as pm
    import pytensor.tensor as pt

    spec = ObservableSpec(family=f"ordinal_{link}", cutpoints=[-1.0, 0.5, 2.0])
    mu, var = np.array([0.3, -0.8, 2.5, 1.1]), np.zeros(4)
    y = np.array([0, 1, 3, 2])
    cuts = np.array([[-1.0, 0.5, 2.0], [-0.5, 0.2, 1.0]])
    got = _eval(rows_logp_per_draw(spec, pt.as_tensor_variable(mu), pt.as_tensor_variable(var), y,
                                   np.full(4, "none"), np.full(4, np.nan), cutpoint_draws=cuts))
    for s in range(2):
        if link == "probit":
            d = pm.OrderedProbit.dist(eta=mu, cutpoints=cuts[s], sigma=1.0)
        else:
            d = pm.OrderedLogistic.dist(eta=mu, cutpoints=cuts[s])
        np.testing.assert_allclose(got[s], _eval(pm.logp(d, y)), rtol=1e-6)  # PyMC: erf approximations


def _linear_setup(sd_noise=0.4):
    model = LinearModel(times=(0.0, 1.0, 2.0, 3.0))
    em = ExactEmulator(model)
    specs = [ParameterSpec("level", role="latent", prior=Prior("Normal", {"mu": 0.0, "sigma": 5.0}),
                           covariates=("age",)),
             ParameterSpec("slope", role="latent", prior=Prior("Normal", {"mu": 0.0, "sigma": 5.0}))]
    links = {s.name: s.prior for s in specs}
    t = np.array([0.0, 1.0, 2.0, 3.0, 0.0, 2.0])
    y = np.array([1.3, 1.9, 2.2, 3.1, -0.4, 0.7])
    subj = np.array(["a"] * 4 + ["b"] * 2)
    rows = Measurements.from_arrays(subj, np.full(6, "arm"), np.full(6, "y"), t, y, np.full(6, sd_noise),
                                    source="new subjects")
    cond = Conditions(schedules={"arm": {}}, covariates={"a": {"age": 70.0}, "b": {"age": 50.0},
                                                          "f1": {"age": 40.0}, "f2": {"age": 60.0}})
    return em, specs, links, rows, cond, t, y, subj


def _draws(locs, sds, betas):
    S = len(locs)
    return {"n": S, "latent": {"level": {"loc": np.array([l[0] for l in locs]), "sd": np.array([s[0] for s in sds]),
                                         "beta": np.array(betas, float).reshape(S, 1)},
                               "slope": {"loc": np.array([l[1] for l in locs]), "sd": np.array([s[1] for s in sds]),
                                         "beta": np.zeros((S, 0))}},
            "observables": {"y": {}}}


def _subject_posterior(prior_mean, prior_sd, t, y, sd_noise):
    H = np.column_stack([np.ones_like(t), t])
    return linear_gaussian_posterior(np.asarray(prior_mean), np.diag(np.square(prior_sd)), H, y,
                                     sd_noise**2 * np.eye(len(t)))


def test_one_population_draw_gives_the_conjugate_posterior():
    import pymc as pm

    em, specs, links, rows, cond, t, y, subj = _linear_setup()
    draws = _draws([(1.0, 0.5)], [(0.8, 0.3)], [[0.6]])
    m = new_subject_model({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond, ["f1", "f2"])
    with m:
        idata = pm.sample(draws=3000, tune=1000, chains=2, random_seed=3, progressbar=False,
                          compute_convergence_checks=False)
    x_std = (np.array([70.0, 50.0]) - 50.0) / 10.0  # scaled as the fitted subjects f1 (40), f2 (60)
    for i, s in enumerate(("a", "b")):
        mean, cov = _subject_posterior([1.0 + 0.6 * x_std[i], 0.5], [0.8, 0.3], t[subj == s], y[subj == s], 0.4)
        got = idata.posterior["z"].sel(subject=s).stack(k=("chain", "draw")).values
        se = np.sqrt(np.diag(cov)) / np.sqrt(600)  # Monte Carlo error at an effective sample size >= 600
        assert np.all(np.abs(got.mean(1) - mean) <= 4 * se), (got.mean(1), mean)
        np.testing.assert_allclose(got.std(1), np.sqrt(np.diag(cov)), rtol=0.1)


def test_two_population_draws_give_the_exact_mixture():
    import pymc as pm

    em, specs, links, rows, cond, t, y, subj = _linear_setup()
    locs, sds, betas = [(1.0, 0.5), (-0.5, 0.0)], [(0.8, 0.3), (0.5, 0.5)], [[0.6], [0.0]]
    draws = _draws(locs, sds, betas)
    m = new_subject_model({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond, ["f1", "f2"])
    with m:
        idata = pm.sample(draws=4000, tune=1000, chains=2, random_seed=4, progressbar=False,
                          compute_convergence_checks=False)
    s, x = "b", 0.0  # subject b at the fitted subjects' mean age
    tb, yb = t[subj == s], y[subj == s]
    H = np.column_stack([np.ones_like(tb), tb])
    comps, logw = [], []
    for (loc, sd, beta) in zip(locs, sds, betas):
        m0 = np.array([loc[0] + beta[0] * x, loc[1]])
        P0 = np.diag(np.square(sd))
        comps.append(_subject_posterior(m0, sd, tb, yb, 0.4))
        logw.append(stats.multivariate_normal(H @ m0, H @ P0 @ H.T + 0.16 * np.eye(len(tb))).logpdf(yb))
    w = np.exp(np.array(logw) - max(logw))
    w /= w.sum()
    mean = sum(wi * c[0] for wi, c in zip(w, comps))
    got = idata.posterior["z"].sel(subject=s).stack(k=("chain", "draw")).values.mean(1)
    assert 0.05 < w[0] < 0.95  # both components matter: a real mixture
    np.testing.assert_allclose(got, mean, atol=0.05)


def test_importance_sampling_gives_the_conjugate_posterior_and_flags_nothing():
    from immunocal.calib.personalise import importance_posterior

    em, specs, links, rows, cond, t, y, subj = _linear_setup()
    draws = _draws([(1.0, 0.5)], [(0.8, 0.3)], [[0.6]])
    idata = importance_posterior({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond,
                                 ["f1", "f2"], particles=4000, block=1000, stages=3, draws=4000, seed=5)
    x_std = (np.array([70.0, 50.0]) - 50.0) / 10.0
    for i, s in enumerate(("a", "b")):
        mean, cov = _subject_posterior([1.0 + 0.6 * x_std[i], 0.5], [0.8, 0.3], t[subj == s], y[subj == s], 0.4)
        got = idata.posterior["z"].sel(subject=s).values[0]  # (draw, latent)
        ess = float(idata.importance["ess_importance"].sel(subject=s))
        assert ess > 1000  # the adapted proposal matches a Gaussian posterior closely
        assert float(idata.importance["pareto_k"].sel(subject=s)) < 0.5
        se = np.sqrt(np.diag(cov)) / np.sqrt(ess)
        assert np.all(np.abs(got.mean(0) - mean) <= 4 * se + 1e-3), (got.mean(0), mean)
        np.testing.assert_allclose(got.std(0), np.sqrt(np.diag(cov)), rtol=0.1)
        # the latents are the link image of z (a Normal prior: identity)
        np.testing.assert_allclose(idata.posterior["level"].sel(subject=s).values[0], got[:, 0])


def test_importance_sampling_weighs_separated_modes_exactly():
    """Two population draws far apart give a bimodal posterior: a sampler that moves along the density has to
    cross the gap, importance sampling weighs the modes directly — the mixture weight of each mode is exact."""
    from immunocal.calib.personalise import importance_posterior

    em, specs, links, rows, cond, t, y, subj = _linear_setup(sd_noise=1.5)
    locs, sds, betas = [(2.0, 0.3), (-1.5, 0.3)], [(0.2, 0.1), (0.2, 0.1)], [[0.0], [0.0]]
    draws = _draws(locs, sds, betas)
    idata = importance_posterior({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond,
                                 ["f1", "f2"], particles=4000, block=2000, stages=3, draws=4000, seed=6)
    s = "b"
    tb, yb = t[subj == s], y[subj == s]
    H = np.column_stack([np.ones_like(tb), tb])
    logw = [stats.multivariate_normal(H @ np.array(loc), H @ np.diag(np.square(sd)) @ H.T
                                      + 1.5**2 * np.eye(len(tb))).logpdf(yb) for loc, sd in zip(locs, sds)]
    w = np.exp(np.array(logw) - max(logw))
    w /= w.sum()
    assert 0.1 < w[0] < 0.9
    level = idata.posterior["z"].sel(subject=s).values[0][:, 0]
    frac_upper = np.mean(level > 0.25)  # the modes are ~3.5 apart with sd ≤ 0.2
    ess = float(idata.importance["ess_importance"].sel(subject=s))
    assert abs(frac_upper - w[0]) <= 4 * np.sqrt(w[0] * (1 - w[0]) / ess), (frac_upper, w[0], ess)
    # each posterior draw carries the population draw it came from: the upper mode is draw 0's
    which = idata.posterior["population_sample"].sel(subject=s).values[0]
    np.testing.assert_array_equal(which, np.where(level > 0.25, 0, 1))


class _Shifted:
    """A surrogate that is the true model plus a constant output bias (a badly trained emulator)."""

    family = "shifted"

    def __init__(self, em, shift):
        self.em, self.shift = em, shift

    def __getattr__(self, name):
        return getattr(self.em, name)

    def predict_pt(self, theta, **kw):
        mean, var = self.em.predict_pt(theta, **kw)
        return mean + self.shift, var


def test_reweighting_to_the_true_model_recovers_its_posterior_from_a_biased_surrogates():
    """A subject personalised through a surrogate biased by +0.3 (the noise sd is 0.4) has the wrong posterior;
    reweighted to the true model (true / surrogate mixture density at each draw, PSIS, resampled) it is the exact
    conjugate posterior of the true model, with its k̂ and ESS reported; reweighting to the surrogate itself changes
    nothing (unit weights), and a personalisation without importance draws is refused by name."""
    from immunocal.calib.personalise import importance_posterior, true_model_reweighting

    em, specs, links, rows, cond, t, y, subj = _linear_setup()
    draws = _draws([(1.0, 0.5)], [(0.8, 0.3)], [[0.6]])
    obs = {"y": ObservableSpec("normal")}
    biased = {"arm": _Shifted(em, 0.3)}
    idata = importance_posterior(biased, specs, links, draws, rows, obs, cond, ["f1", "f2"], particles=4000,
                                 block=1000, stages=3, draws=4000, seed=5)
    moved = true_model_reweighting(idata, biased, {"arm": em}, specs, links, draws, rows, obs, cond, ["f1", "f2"],
                                   block=1000, seed=1)
    same = true_model_reweighting(idata, biased, biased, specs, links, draws, rows, obs, cond, ["f1", "f2"],
                                  block=1000, seed=1)
    x_std = (np.array([70.0, 50.0]) - 50.0) / 10.0
    for i, s in enumerate(("a", "b")):
        mean, cov = _subject_posterior([1.0 + 0.6 * x_std[i], 0.5], [0.8, 0.3], t[subj == s], y[subj == s], 0.4)
        sd = np.sqrt(np.diag(cov))
        before = idata.posterior["z"].sel(subject=s).values[0]
        after = moved.posterior["z"].sel(subject=s).values[0]
        k, ess = float(moved.true_model["pareto_k"].sel(subject=s)), float(moved.true_model["ess"].sel(subject=s))
        assert k < 0.7 and ess > 500
        assert abs(before.mean(0)[0] - mean[0]) > 4 * sd[0] / np.sqrt(ess)  # the bias moved the level
        assert np.all(np.abs(after.mean(0) - mean) <= 4 * sd / np.sqrt(ess) + 1e-3), (after.mean(0), mean)
        np.testing.assert_allclose(after.std(0), sd, rtol=0.15)
        np.testing.assert_allclose(moved.posterior["level"].sel(subject=s).values[0], after[:, 0])
        assert float(same.true_model["log_weight_sd"].sel(subject=s)) == 0.0
        np.testing.assert_array_equal(np.sort(same.posterior["z"].sel(subject=s).values[0], axis=0),
                                      np.sort(before, axis=0))
    assert moved.true_model.attrs["failures"] == "" and set(moved.posterior["population_sample"].values.ravel()) == {0}
    with pytest.raises(ValueError, match="needs an importance personalisation"):
        true_model_reweighting(_without_z(idata), biased, {"arm": em}, specs, links, draws, rows, obs, cond,
                               ["f1", "f2"])


def _without_z(idata):
    import arviz as az

    return az.InferenceData(posterior=idata.posterior.drop_vars("z"))


def test_importance_settings_are_checked():
    from immunocal.calib.personalise import importance_posterior

    em, specs, links, rows, cond, *_ = _linear_setup()
    draws = _draws([(1.0, 0.5)], [(0.8, 0.3)], [[0.6]])
    args = ({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond, ["f1", "f2"])
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['tune'\]"):
        importance_posterior(*args, tune=100)
    with pytest.raises(ValueError, match="multiple of block"):
        importance_posterior(*args, particles=1000, block=300)


def test_category_probabilities_pair_each_draw_with_its_population_cutpoints():
    """P(category k) = mean over draws d of Φ(c_k[s_d] − μ(z_d)) − Φ(c_{k−1}[s_d] − μ(z_d)), with s_d the population
    sample of draw d (here μ = level at t = 0 through the exact linear emulator)."""
    from types import SimpleNamespace

    import arviz as az

    from immunocal.calib.personalise import category_probabilities

    em = ExactEmulator(LinearModel(times=(0.0, 1.0)))
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.normal(size=(2, 5, 3)), axis=-1)  # (chain, draw, K-1) of the fit
    fit = az.from_dict(posterior={"cutpoints_y": cuts})
    D = 50
    level, slope = rng.normal(size=(1, D, 1)), rng.normal(size=(1, D, 1))
    sample = rng.integers(0, 10, size=(1, D, 1))
    pers = az.from_dict(posterior={"level": level, "slope": slope, "population_sample": sample},
                        coords={"subject": ["a"]}, dims={"level": ["subject"], "slope": ["subject"],
                                                          "population_sample": ["subject"]})
    meas = Measurements.from_arrays(["a"], ["arm"], ["y"], [0.0], [1.0])
    cal = SimpleNamespace(observables={"y": ObservableSpec("ordinal_probit", cutpoints=[-1.0, 0.0, 1.0])},
                          idata=fit, tables=(meas, None), emulators={"arm": em}, ensure_emulators=lambda: None)
    subjects, probs = category_probabilities(cal, pers, "y")
    flat_cuts = cuts.reshape(10, 3)[sample[0, :, 0]]  # stacked (chain, draw) order
    edges = np.column_stack([np.full(D, -np.inf), flat_cuts, np.full(D, np.inf)])
    mu = level[0, :, 0]
    want = (stats.norm.cdf(edges[:, 1:] - mu[:, None]) - stats.norm.cdf(edges[:, :-1] - mu[:, None])).mean(0)
    assert subjects == ["a"]
    np.testing.assert_allclose(probs[0], want, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="importance"):
        category_probabilities(cal, az.from_dict(posterior={"level": level, "slope": slope},
                                                 coords={"subject": ["a"]},
                                                 dims={"level": ["subject"], "slope": ["subject"]}), "y")


def test_map_estimates_are_the_conjugate_posterior_mode_and_the_higher_of_two_modes():
    from immunocal.calib.personalise import map_estimates

    em, specs, links, rows, cond, t, y, subj = _linear_setup()
    draws = _draws([(1.0, 0.5)], [(0.8, 0.3)], [[0.6]])
    subjects, theta = map_estimates({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond,
                                    ["f1", "f2"], starts=200, block=100)
    x_std = (np.array([70.0, 50.0]) - 50.0) / 10.0
    assert subjects == ["a", "b"]
    for i, s in enumerate(subjects):
        mean, _ = _subject_posterior([1.0 + 0.6 * x_std[i], 0.5], [0.8, 0.3], t[subj == s], y[subj == s], 0.4)
        np.testing.assert_allclose(theta[i], mean, atol=1e-5)  # a Gaussian's mode is its mean
    # two separated population draws: the mode of the mixture with the larger mass wins, wherever it is
    em, specs, links, rows, cond, t, y, subj = _linear_setup(sd_noise=1.5)
    locs, sds = [(2.0, 0.3), (-1.5, 0.3)], [(0.2, 0.1), (0.2, 0.1)]
    draws = _draws(locs, sds, [[0.0], [0.0]])
    _, theta = map_estimates({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond,
                             ["f1", "f2"], starts=400, block=200, seed=1)
    tb, yb = t[subj == "b"], y[subj == "b"]
    modes = [_subject_posterior(np.array(loc), sd, tb, yb, 1.5)[0] for loc, sd in zip(locs, sds)]
    H = np.column_stack([np.ones_like(tb), tb])
    heights = [stats.multivariate_normal(H @ np.array(loc), H @ np.diag(np.square(sd)) @ H.T
                                         + 1.5**2 * np.eye(len(tb))).logpdf(yb)
               - 0.5 * np.linalg.slogdet(_subject_posterior(np.array(loc), sd, tb, yb, 1.5)[1])[1]
               for loc, sd in zip(locs, sds)]  # peak height of each (well separated) Gaussian component
    np.testing.assert_allclose(theta[1], modes[int(np.argmax(heights))], atol=1e-3)


def test_point_population_takes_the_latent_priors_and_the_fitted_noise():
    import arviz as az

    from immunocal.calib.personalise import point_population

    _, specs, *_ = _linear_setup()
    fit = az.from_dict(posterior={"sigma_y": np.full((2, 5), 0.3), "cutpoints_r": np.tile([-1.0, 1.0], (2, 5, 1))})
    pop = point_population(fit, specs, {"y": None, "r": None})
    assert pop["n"] == 1 and pop["latent"]["level"]["loc"].tolist() == [0.0]
    assert pop["latent"]["level"]["sd"].tolist() == [5.0] and pop["latent"]["level"]["beta"].shape == (1, 1)
    np.testing.assert_allclose(pop["observables"]["y"]["sigma"], [0.3], rtol=1e-12)
    np.testing.assert_allclose(pop["observables"]["r"]["cutpoints"], [[-1.0, 1.0]], rtol=1e-12)


def test_importance_sampling_adds_stages_while_the_weights_fail_the_psis_check():
    from immunocal.calib.personalise import importance_posterior

    em, specs, links, rows, cond, *_ = _linear_setup()
    draws = _draws([(0.0, 0.0)], [(5.0, 5.0)], [[0.0]])  # a population ~20× wider than the posterior
    args = ({"arm": em}, specs, links, draws, rows, {"y": ObservableSpec("normal")}, cond, ["f1", "f2"])
    once = importance_posterior(*args, particles=1000, block=500, stages=1, max_stages=1, draws=200, seed=3)
    assert once.importance.attrs["stages"] == 1 and float(once.importance["pareto_k"].max()) > 0.7  # reported
    more = importance_posterior(*args, particles=1000, block=500, stages=1, max_stages=6, draws=200, seed=3)
    assert 1 < more.importance.attrs["stages"] <= 6 and float(more.importance["pareto_k"].max()) <= 0.7
