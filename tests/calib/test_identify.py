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
    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace("seed = 1", "seed = 2"))
    assert main(["identify", str(other), "--out", str(tmp_path / "id2"), "--run", str(tmp_path / "run")]) == 2
    assert "a run of another config" in capsys.readouterr().err
