"""Identifiability known answers (calib/identify.py): a model that sees only the product of two parameters is
reported as such; linear-Gaussian information and profiles match their closed forms; profile classification and
quality checks."""

import numpy as np
import pytest

from immunocal.calib.diagnostics import profile_likelihood
from immunocal.calib.identify import (
    classify_profile,
    describe_direction,
    finite_difference_jacobian,
    likelihood_interval,
    local_identifiability,
)

TIMES = np.linspace(0.5, 5.0, 10)


def product_model(x):
    """y(t) = a·b·t with x = (log a, log b): only the product a·b is identifiable."""
    return np.exp(x[0] + x[1]) * TIMES


def test_product_of_two_parameters_is_reported_unidentifiable():
    x = np.array([np.log(2.0), np.log(0.5)])
    J = finite_difference_jacobian(product_model, x)
    rep = local_identifiability(J, 0.1, ["log_a", "log_b"])
    assert not rep["identifiable_locally"] and len(rep["poorly_determined"]) == 1
    weak = rep["poorly_determined"][0]
    assert weak["relative"] < 1e-8
    assert weak["direction"] == "0.71·log_a − 0.71·log_b"
    assert rep["condition_number"] > 1e8
    y = product_model(x) + np.random.default_rng(1).normal(0, 0.1, TIMES.size)

    def loglik(z):
        return -0.5 * np.sum((y - product_model(z)) ** 2) / 0.1**2

    grid = np.linspace(-2, 2, 41)
    prof = profile_likelihood(loglik, x, 0, grid, bounds=[(-6, 6), (-6, 6)], restarts=2)
    assert classify_profile(prof)["kind"] == "flat"
    assert np.ptp(prof["profile"]) < 1e-4  # the other parameter compensates everywhere


def test_finite_differences_step_inward_at_a_bound():
    """A parameter on its admissible bound (the RIT radiosensitivity preset sits on its lower bound): the function is
    never called outside [lower, upper], and the one-sided three-point formula is second-order accurate."""
    calls = []

    def f(z):
        assert np.all(z >= [0.02, -1.0]) and np.all(z <= [0.35, 1.0]), z
        calls.append(z.copy())
        return np.array([z[0] ** 3 + z[1], np.sin(z[0]) * z[1] ** 2])

    x = np.array([0.02, 1.0])  # first on its lower bound, second on its upper
    J = finite_difference_jacobian(f, x, lower=[0.02, -1.0], upper=[0.35, 1.0])
    exact = np.array([[3 * 0.02**2, 1.0], [np.cos(0.02), 2 * np.sin(0.02)]])
    np.testing.assert_allclose(J, exact, rtol=1e-6, atol=1e-8)  # round-off ~ eps · |f| / h, h = 2e-7
    assert len(calls) == 6
    with pytest.raises(AssertionError):  # without the bounds the central stencil leaves the box
        finite_difference_jacobian(f, x)


def test_linear_gaussian_information_and_profile_match_closed_forms():
    H = np.column_stack([np.ones_like(TIMES), TIMES])
    sd = 0.3
    rep = local_identifiability(H, sd, ["level", "slope"])
    exact = np.sqrt(np.diag(np.linalg.inv(H.T @ H))) * sd
    np.testing.assert_allclose(list(rep["standard_errors"].values()), exact, rtol=1e-12)
    np.testing.assert_allclose(finite_difference_jacobian(lambda b: H @ b, np.array([1.0, 0.5])), H, atol=1e-8)
    y = H @ np.array([1.0, 0.5]) + np.random.default_rng(2).normal(0, sd, TIMES.size)
    beta = np.linalg.lstsq(H, y, rcond=None)[0]

    def loglik(b):
        return -0.5 * np.sum((y - H @ b) ** 2) / sd**2

    grid = np.linspace(beta[0] - 4 * exact[0], beta[0] + 4 * exact[0], 201)
    prof = profile_likelihood(loglik, beta, 0, grid)
    np.testing.assert_allclose(prof["ci95"], beta[0] + np.array([-1, 1]) * 1.959964 * exact[0],
                               atol=0.02 * exact[0] + np.diff(grid)[0])
    # the interpolated interval ends: within 1 % of the standard error at this grid (the grid's own: ±1 step)
    ends = likelihood_interval(grid, np.asarray(prof["profile"]), 1.920729)
    np.testing.assert_allclose(ends, beta[0] + np.array([-1, 1]) * 1.959964 * exact[0], atol=0.01 * exact[0])
    cls = classify_profile(prof, optimum=loglik(beta))
    assert cls["kind"] == "identifiable" and cls["quality"] == ["ok"]
    assert classify_profile(prof, optimum=loglik(beta) + 1.0)["quality"] == ["below-optimum"]


def test_one_sided_and_non_smooth_profiles_are_named():
    grid = np.linspace(-4, 4, 81)
    one_sided = {"grid": grid.tolist(), "profile": (-0.5 * np.logaddexp(0, 3 * grid) ** 2).tolist()}
    assert classify_profile(one_sided)["kind"] == "one-sided"
    bumpy = -0.5 * grid**2
    bumpy[50] -= 3.0  # an inner optimisation that lost the optimum at one point
    res = classify_profile({"grid": grid.tolist(), "profile": bumpy.tolist()})
    assert res["kind"] == "identifiable" and "non-monotone" in res["quality"]


def test_direction_in_words():
    # sign fixed by the largest component; components below a tenth of it are left out
    assert describe_direction(["a", "b", "c"], np.array([0.6, -0.8, 0.01])) == "−0.60·a + 0.80·b"
    assert describe_direction(["a", "b"], np.array([0.8, 0.6])) == "0.80·a + 0.60·b"


def test_identify_command_on_the_toy_config(tmp_path, capsys):
    import json
    import shutil
    from pathlib import Path

    from immunocal.calib.cli.main import main

    toy = Path(__file__).resolve().parents[2] / "calib" / "data" / "toy_logistic"
    for f in toy.iterdir():
        shutil.copy(f, tmp_path / f.name)
    assert main(["identify", str(tmp_path / "calibrate.toml"), "--out", str(tmp_path / "id"), "--n-sobol", "256"]) == 0
    rep = json.loads((tmp_path / "id" / "identify.json").read_text())
    assert rep["parameters_in_scale"] == ["log growth_rate", "log carrying_capacity"]  # the toy space is log
    assert rep["local"]["all_conditions"]["identifiable_locally"]
    assert rep["method"]["jacobian"] == "central differences"
    for g in rep["global"].values():
        assert all(0 <= v <= 1.05 for v in g["ST_mean_over_rows"].values())
    assert "# Identifiability report" in capsys.readouterr().out
    assert (tmp_path / "id" / "identify_sensitivity.png").exists()
    assert rep["profiles"]["parameters"]["carrying_capacity"]["kind"] in ("identifiable", "one-sided", "flat")
    nxt = rep["measure_next"]["per_parameter"]
    for cands in nxt.values():  # ranked, each gain a fraction of the remaining variance
        gains = [c["expected_contraction_gain"] for c in cands]
        assert gains == sorted(gains, reverse=True) and all(0 <= g <= 1 for g in gains)
    # one more late measurement informs the carrying capacity more than an early one
    assert nxt["carrying_capacity"][0]["day"] >= 10


@pytest.mark.slow
def test_identify_at_a_runs_posterior(tmp_path, capsys):
    import json
    import shutil
    from pathlib import Path

    from immunocal.calib.cli.main import main

    toy = Path(__file__).resolve().parents[2] / "calib" / "data" / "toy_logistic"
    for f in toy.iterdir():
        shutil.copy(f, tmp_path / f.name)
    cfg = tmp_path / "calibrate.toml"
    assert main(["calibrate", str(cfg), "--out", str(tmp_path / "run"), "--draws", "300", "--tune", "300",
                 "--chains", "2", "--quiet"]) in (0, 3)
    capsys.readouterr()
    assert main(["identify", str(cfg), "--out", str(tmp_path / "id"), "--n-sobol", "256",
                 "--run", str(tmp_path / "run")]) == 0
    rep = json.loads((tmp_path / "id" / "identify.json").read_text())
    assert rep["nominal_is"] == "posterior median of the run"
    assert set(rep["bayesian"]["contraction"]) == {"growth_rate_loc", "carrying_capacity"}  # latent: its location
    assert rep["bayesian"]["contraction"]["carrying_capacity"] > 0.5  # the censored endpoints pin it
    # the true model's sensitivity of the fitted arms to a parameter across its box, at the run's posterior draws:
    # one entry per fitted arm, positive for the capacity, which the censored endpoints pin (the zero case, a dose the
    # fitted arms never see, is studies/rit_morisada_potency's: tests/calib_rit/test_morisada_potency.py, slow)
    from immunocal.calib.identify import fitted_arms_sensitivity
    from immunocal.calib.workflow import Calibration

    cal = Calibration(cfg, tmp_path / "run", progress=False)
    assert cal.load_finished() is not None
    sens = fitted_arms_sensitivity(cal, "carrying_capacity", n_draws=5)
    assert set(sens) == set(cal.conditions[0]) and max(sens.values()) > 0.1
    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace("seed = 1", "seed = 2"))
    assert main(["identify", str(other), "--out", str(tmp_path / "id2"), "--run", str(tmp_path / "run")]) == 2
    assert "a run of another config" in capsys.readouterr().err


def test_morris_elementary_effects_known_answers():
    """f = 3·x0 + 0·x1 + x2² on the unit cube (x3 on a log scale, f = log x3): a linear term's effects are all its
    slope (μ = μ* = 3, σ = 0), an absent parameter's are 0, a quadratic's vary (σ > 0) with μ* = 2·E[x] + Δ, and a
    log-scaled parameter is stepped in its scale (f = log x3 over [1, e^2]: effect 2 per box width)."""
    from immunocal.calib.design import ParameterSpace
    from immunocal.calib.identify import morris

    space = ParameterSpace(("a", "b", "c", "d"), (0.0, 0.0, 0.0, 1.0), (1.0, 1.0, 1.0, np.exp(2.0)),
                           ("linear", "linear", "linear", "log"))
    res = morris(lambda X: 3 * X[:, 0] + X[:, 2] ** 2 + np.log(X[:, 3]), space, r=40, levels=4, seed=3)
    mu, mu_star, sd = (np.asarray(res[k])[0] for k in ("mu", "mu_star", "sigma"))
    assert res["n_evaluations"] == 40 * 5 and res["delta"] == pytest.approx(2 / 3)
    assert mu[0] == pytest.approx(3.0) and mu_star[0] == pytest.approx(3.0) and sd[0] == pytest.approx(0.0, abs=1e-9)
    assert mu_star[1] == 0.0 and sd[1] == 0.0
    assert sd[2] > 0.1 and mu_star[2] == pytest.approx(1.0, abs=0.35)  # 2·E[x] + Δ·sign, E[x] over the levels
    assert mu[3] == pytest.approx(2.0) and sd[3] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="levels >= 2 and r >= 2"):
        morris(lambda X: X[:, 0], space, r=1)


def test_prediction_profile_matches_the_brute_force_interval(tmp_path):
    """The toy logistic mice fitted up to day 8, the later days held out: the prediction profiles' 95 % intervals
    (range over the parameter profiles' paths within χ²₁(0.95)/2) lie inside, and cover most of, the exact
    prediction-profile intervals found by brute force over a dense grid of the whole (log r, log K) box."""
    import csv
    import shutil
    from pathlib import Path

    from scipy import stats

    from immunocal.calib.identify import _box_in_scale, profiles
    from immunocal.calib.workflow import Calibration

    toy = Path(__file__).resolve().parents[2] / "calib" / "data" / "toy_logistic"
    for f in toy.iterdir():
        shutil.copy(f, tmp_path / f.name)
    rows = list(csv.reader((toy / "measurements.csv").read_text().splitlines()))
    for r in rows[1:]:
        r[1] = "early" if float(r[3]) <= 8 else "late"
    (tmp_path / "measurements.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    (tmp_path / "conditions.csv").write_text((toy / "conditions.csv").read_text().replace("control", "early")
                                             + "late,,\n")
    cfg = (toy / "calibrate.toml").read_text() + '\n[conditions]\nfit = ["early"]\nheldout = ["late"]\n'
    (tmp_path / "calibrate.toml").write_text(cfg)
    cal = Calibration(tmp_path / "calibrate.toml", tmp_path / "out", progress=False)
    res = profiles(cal, n_grid=21, restarts=1)
    pred = res["predictions"]["late"]["log_volume"]
    assert [e["day"] for e in pred] == sorted({float(r[3]) for r in rows[1:] if float(r[3]) > 8})
    # brute force: the pooled log-likelihood of the fitted rows (sd concentrated out) on a 241 x 241 grid
    prob, fm, data = cal.problem, cal.forward, cal.data
    log, lo, hi = _box_in_scale(prob.space)
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 241), np.linspace(lo[1], hi[1], 241), indexing="ij")
    U = np.column_stack([g0.ravel(), g1.ravel()])
    X = prob.full_vector(np.where(log, np.exp(U), U))
    fit = (data.condition == "early") & (data.censoring == "none")
    t_idx = [int(np.argmin(np.abs(np.asarray(fm.times) - t))) for t in data.time[fit]]
    sim = np.asarray(fm.simulate(X, cal.schedule("early")), float)[:, 0, t_idx]
    rss = ((data.value[fit][None, :] - sim) ** 2).sum(axis=1)
    n = fit.sum()
    ll = -0.5 * n * np.log(rss / n)
    assert ll.max() <= res["max_log_likelihood"] + 1e-6  # the profiles' optimum is the global one
    inside = ll >= res["max_log_likelihood"] - stats.chi2.ppf(0.95, 1) / 2
    late = np.asarray(fm.simulate(X[inside], cal.schedule("late")), float)[:, 0]
    for e in pred:
        q = late[:, int(np.argmin(np.abs(np.asarray(fm.times) - e["day"])))]
        a, b = e["interval"]
        width = q.max() - q.min()
        assert q.min() - 0.02 * width <= a <= e["at_optimum"] <= b <= q.max() + 0.02 * width
        assert b - a >= 0.75 * width, (e["day"], (a, b), (q.min(), q.max()))
    assert any(e["observed_inside"] is not None for e in pred)


@pytest.mark.slow
def test_identify_with_sbc_and_screening_sections(tmp_path, capsys):
    """`identify --sbc N` runs SBC of the config's own model (the toy's censored endpoint rows included) into the
    report; `--screen R` on a config without a registry model is a named error."""
    import json
    import shutil
    from pathlib import Path

    from immunocal.calib.cli.main import main

    toy = Path(__file__).resolve().parents[2] / "calib" / "data" / "toy_logistic"
    for f in toy.iterdir():
        shutil.copy(f, tmp_path / f.name)
    cfg = tmp_path / "calibrate.toml"
    cfg.write_text(cfg.read_text() + "\n[sbc.sampler]\ndraws = 200\ntune = 300\nchains = 2\n")
    assert main(["identify", str(cfg), "--out", str(tmp_path / "id"), "--n-sobol", "64", "--sbc", "4"]) == 0
    rep = json.loads((tmp_path / "id" / "identify.json").read_text())
    censored = sum(1 for line in (toy / "measurements.csv").read_text().splitlines()[1:]
                   if line.rsplit(",", 1)[1] in ("left", "right"))
    assert rep["sbc"]["replicates"] == 4 and rep["sbc"]["censored_rows"] == censored > 0
    assert {"growth_rate_loc", "carrying_capacity"} <= set(rep["sbc"]["variables"])
    assert all(0 <= v["p_value"] <= 1 for v in rep["sbc"]["variables"].values())
    # the carrying capacity is pinned by the censored endpoints: the posterior contracts; z-scores finite
    assert rep["sbc"]["variables"]["carrying_capacity"]["contraction"] > 0.5
    assert all(np.isfinite(v["zscore_mean_abs"]) for v in rep["sbc"]["variables"].values())
    assert (tmp_path / "id" / "sbc.json").exists() and "Simulation-based calibration" in capsys.readouterr().out
    assert main(["identify", str(cfg), "--out", str(tmp_path / "id2"), "--screen", "10"]) == 2
    assert "screening needs [model] registry_model" in capsys.readouterr().err


def test_pooled_likelihood_gradient_is_exact_where_the_simulator_has_sensitivities():
    """The profiles' inner optimisations use d log L / du from ``simulate_jacobian`` (here the in-vitro CAR-T model
    of the Conte config): equal to central differences of log L at a point inside the box."""
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.identify import pooled_likelihood
    from immunocal.calib.workflow import Calibration

    cal = Calibration(dataset_dir("conte2025") / "invitro.toml", "/nonexistent/never-written", progress=False)
    loglik, gradient, n, (log, lo, hi) = pooled_likelihood(cal)
    assert gradient is not None and n == int((cal.data.censoring == "none").sum()) and log.all()
    u = lo + np.array([0.55, 0.45, 0.6, 0.5, 0.4, 0.5]) * (hi - lo)
    g = gradient(u)
    fd = np.array([(loglik(u + h) - loglik(u - h)) / 2e-6 for h in np.eye(len(u)) * 1e-6])
    assert np.allclose(g, fd, rtol=1e-4, atol=1e-3 * np.abs(fd).max())


def test_identify_exact_and_central_jacobians_agree():
    """``jacobian="central"`` (what the quick identifiability study uses where a tangent kernel's first compile costs
    minutes) gives the exact route's sensitivities to central-difference accuracy (the Conte in-vitro model, whose
    simulator has both; the reverse config also calibrates the Cell Index offset, a linear-scale parameter); an unknown
    method is a named error."""
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.identify import identify
    from immunocal.calib.workflow import Calibration

    cal = Calibration(dataset_dir("conte2025") / "invitro_reverse.toml", "/nonexistent/never-written", progress=False)
    reps = {m: identify(cal, n_sobol=16, with_profiles=False, jacobian=m) for m in ("exact", "central")}
    assert reps["exact"]["method"]["jacobian"].startswith("exact")
    assert reps["central"]["method"]["jacobian"] == "central differences"
    a, b = [np.array([list(c["sensitivity_rms"].values()) for c in reps[m]["local"]["per_condition"].values()])
            for m in ("exact", "central")]
    assert a.shape == (2, 7) and np.all(a.max(axis=0) > 0)  # every parameter moves some arm (CAR-T ones: not alone)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="jacobian must be one of"):
        identify(cal, with_profiles=False, jacobian="forward")
