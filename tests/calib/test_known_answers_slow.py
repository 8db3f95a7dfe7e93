"""Heavy known-answer checks (``pytest -m slow``)."""

import numpy as np
import pytest

from immunocal.calib.bench import hierarchical_linear_problem
from immunocal.calib.campaign import Campaign
from immunocal.calib.data import Measurements
from immunocal.calib.design import ParameterSpace, design
from immunocal.calib.inference import sample
from immunocal.calib.model import ObservableSpec, ParameterSpec, build_model
from immunocal.calib.surrogate import BlackBoxEmulator, ExactEmulator, GPSurrogate, fit_from_campaign, refine
from immunocal.calib.toy import LogisticModel
from immunocal.priors import Prior

pytestmark = pytest.mark.slow

R_PRIOR = Prior("LogNormal", {"mu": float(np.log(0.3)), "sigma": 0.3})
K_PRIOR = Prior("LogNormal", {"mu": float(np.log(1500.0)), "sigma": 0.3})


def _logistic_data(seed=5, n_subjects=3, sigma=0.1):
    rng = np.random.default_rng(seed)
    fm = LogisticModel()
    y = fm.simulate(np.array([[0.3, 1500.0, 50.0]]))[0, 0]
    rows = [(f"m{s}", t, y[k] + rng.normal(0, sigma)) for s in range(n_subjects)
            for k, t in enumerate(fm.times) if k > 0]
    subj, t, v = zip(*rows)
    return Measurements.from_arrays(subj, ["ctrl"] * len(v), ["log_volume"] * len(v), t, v)


def _fit_logistic(emulator, data, method="nuts", fixed_v0=True, **kw):
    params = [ParameterSpec("growth_rate", "population", prior=R_PRIOR),
              ParameterSpec("carrying_capacity", "population", prior=K_PRIOR)]
    if fixed_v0:
        params.append(ParameterSpec("initial_volume", "fixed", value=50.0))
    m = build_model(emulator, params, data, {"log_volume": ObservableSpec(sigma=0.1)})
    return sample(m, method=method, posterior_predictive=False, **kw)


def _moments(idata):
    p = idata.posterior
    return {n: (float(p[n].mean()), float(p[n].std())) for n in ("growth_rate", "carrying_capacity")}


@pytest.fixture(scope="module")
def exact_logistic():
    data = _logistic_data()
    return data, _moments(_fit_logistic(ExactEmulator(LogisticModel()), data, draws=2000, tune=1000, chains=4,
                                        seed=3))


def test_hierarchical_linear_gaussian_4_chains_matches_exact():
    prob = hierarchical_linear_problem(n_subjects=20, n_times=5, seed=9)
    m = build_model(prob["emulator"], prob["parameters"], prob["data"], prob["observables"])
    idata = sample(m, draws=1000, tune=1000, chains=4, seed=4, posterior_predictive=False)
    p = idata.posterior
    mean = np.concatenate([[float(p.level_loc.mean())], p.level.mean(("chain", "draw")).values])
    sd = np.concatenate([[float(p.level_loc.std())], p.level.std(("chain", "draw")).values])
    assert np.max(np.abs(mean - prob["exact_mean"]) / prob["exact_sd"]) < 0.15  # MCSE ≈ 0.02–0.03 sd
    assert np.max(np.abs(sd / prob["exact_sd"] - 1)) < 0.08
    # mean-field ADVI is an approximation: measured max |mean error| 0.56 posterior sd (on level_loc; the
    # subject levels within 0.1 sd) after 30 000 iterations — checked at 1 sd
    approx = sample(m, method="advi", draws=4000, advi_iterations=30000, seed=1, posterior_predictive=False)
    q = approx.posterior
    mean_q = np.concatenate([[float(q.level_loc.mean())], q.level.mean(("chain", "draw")).values])
    assert np.max(np.abs(mean_q - prob["exact_mean"]) / prob["exact_sd"]) < 1.0
    assert np.max(np.abs(mean_q - prob["exact_mean"])[1:] / prob["exact_sd"][1:]) < 0.2
    # Pathfinder (pymc-extras): measured means within 0.2 sd, subject-level sds within 5 %, sd of the
    # population location underestimated (ratio 0.66) — a known trait of this approximation
    pytest.importorskip("pymc_extras")
    pf = sample(m, method="pathfinder", draws=2000, seed=1, posterior_predictive=False).posterior
    mean_p = np.concatenate([[float(pf.level_loc.mean())], pf.level.mean(("chain", "draw")).values])
    sd_p = np.concatenate([[float(pf.level_loc.std())], pf.level.std(("chain", "draw")).values])
    assert np.max(np.abs(mean_p - prob["exact_mean"]) / prob["exact_sd"]) < 0.35
    assert np.max(np.abs(sd_p[1:] / prob["exact_sd"][1:] - 1)) < 0.1


def test_logistic_surrogate_posterior_matches_exact_likelihood(exact_logistic, tmp_path):
    data, exact = exact_logistic
    space = ParameterSpace(("growth_rate", "carrying_capacity"), (0.1, 500.0), (0.8, 4000.0), ("log", "log"))
    camp = Campaign.create(tmp_path / "c", "toy.logistic", design(space, 128, seed=2), chunk_size=32,
                           parameter_names=list(space.names), fixed={"initial_volume": 50.0}, space=space)
    camp.run(workers=0, progress=False)
    sur, _ = fit_from_campaign(camp, test_fraction=0.0)
    first = _fit_logistic(sur, data, fixed_v0=False, draws=500, tune=500, chains=2, seed=5)
    post = np.column_stack([first.posterior[n].values.ravel() for n in space.names])
    sur, _ = refine(camp, post, 24, workers=0)  # active refinement where the posterior puts mass
    sur.save(tmp_path / "s.npz")
    got = _moments(_fit_logistic(GPSurrogate.load(tmp_path / "s.npz"), data, fixed_v0=False, draws=2000,
                                 tune=1000, chains=4, seed=6))
    for n in exact:
        (m_e, s_e), (m_s, s_s) = exact[n], got[n]
        assert abs(m_s - m_e) < 0.1 * s_e, (n, exact[n], got[n])
        assert abs(s_s / s_e - 1) < 0.10, (n, exact[n], got[n])


def test_smc_black_box_forward_model_matches_exact(exact_logistic):
    data, exact = exact_logistic
    got = _moments(_fit_logistic(BlackBoxEmulator(LogisticModel()), data, method="smc", draws=2000, chains=2,
                                 seed=7))
    for n in exact:
        (m_e, s_e), (m_s, s_s) = exact[n], got[n]
        assert abs(m_s - m_e) < 0.2 * s_e, (n, exact[n], got[n])
        assert abs(s_s / s_e - 1) < 0.15, (n, exact[n], got[n])


def _sbc_problem(tmp_path, values, censoring=None):
    """One logistic subject, a 32-run GP surrogate of growth_rate and a config for ``sbc_from_config``."""
    fm = LogisticModel(times=(0.0, 3.0, 6.0, 9.0, 12.0, 15.0))
    space = ParameterSpace(("growth_rate",), (0.05,), (1.0,), ("log",))
    camp = Campaign.create(tmp_path / "c", "toy.logistic", design(space, 32, seed=0), chunk_size=32,
                           parameter_names=["growth_rate"], fixed={"carrying_capacity": 1500.0,
                                                                   "initial_volume": 50.0}, space=space)
    camp.run(workers=0, progress=False)
    sur, _ = fit_from_campaign(camp, test_fraction=0.0)
    sur.save(tmp_path / "s.npz")
    Measurements.from_arrays(["m1"] * 5, ["ctrl"] * 5, ["log_volume"] * 5, fm.times[1:], values,
                             censoring=censoring).to_csv(tmp_path / "m.csv")
    (tmp_path / "sbc.toml").write_text(
        '[model]\nforward = "toy.logistic"\n[data]\nmeasurements = "m.csv"\n'
        '[emulator]\nkind = "surrogate"\npath = "s.npz"\n'
        '[parameters.growth_rate]\nrole = "population"\n'
        'prior = { distribution = "LogNormal", mu = -1.2, sigma = 0.3 }\n'
        '[observables.log_volume]\nsigma = 0.2\n'
        '[sampler]\ndraws = 300\ntune = 300\nchains = 2\n')
    return tmp_path / "sbc.toml"


def test_sbc_surrogate_model_ranks_uniform(tmp_path):
    from immunocal.calib.pipeline import sbc_from_config

    res = sbc_from_config(_sbc_problem(tmp_path, np.zeros(5)), n_replicates=100, n_draws=99, seed=11, out_dir=tmp_path)
    assert res["growth_rate"]["n"] == 100
    assert res["growth_rate"]["p_value"] > 0.01, res["growth_rate"]["histogram"]


def test_sbc_with_censored_rows_ranks_uniform(tmp_path):
    """SBC on the actual observation model: the last measurement is right-censored at log(600 mm^3) (an endpoint
    many prior draws exceed); prior-predictive data are censored at the same bound by pm.Censored."""
    from immunocal.calib.pipeline import sbc_from_config

    cfg = _sbc_problem(tmp_path, np.array([0.0, 0.0, 0.0, 0.0, np.log(600.0)]), ["none"] * 4 + ["right"])
    res = sbc_from_config(cfg, n_replicates=100, n_draws=99, seed=12, out_dir=tmp_path)
    assert res["growth_rate"]["n"] == 100
    assert res["growth_rate"]["p_value"] > 0.01, res["growth_rate"]["histogram"]
