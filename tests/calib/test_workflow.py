"""The one calibration workflow: a data set the test writes to a folder is calibrated and predicted by config alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from immunocal.calib.toy import LogisticModel

TRUE_K = 1500.0
ARMS = {"control": 1.0, "treated": 0.5, "combo": 0.25}


def write_dataset(folder, seed=3, n_per_arm=4, noise=0.08):
    """Per-mouse logistic growth, mice numbered 1..n in every arm (ids qualified by arm), one held-out arm."""
    rng = np.random.default_rng(seed)
    fm = LogisticModel()
    lines = ["subject,condition,observable,time,value,sigma,censoring"]
    for arm, factor in ARMS.items():
        for k in range(1, n_per_arm + 1):
            r = float(np.exp(np.log(0.3) + 0.15 * rng.standard_normal()))
            y = fm.simulate([[r, TRUE_K, 50.0]], {"growth_factor": factor})[0, 0]
            y = y + noise * rng.standard_normal(len(y))
            for t, v in zip(fm.times, y):
                lines.append(f"{arm}/{k},{arm},volume_mm3,{t:g},{np.exp(v):.6g},,")
    (folder / "measurements.csv").write_text("\n".join(lines) + "\n")
    (folder / "conditions.csv").write_text("condition,growth_factor\n" +
                                           "".join(f"{a},{f}\n" for a, f in ARMS.items()))
    (folder / "calibrate.toml").write_text(CONFIG)
    return folder / "calibrate.toml"


CONFIG = """
[model]
forward = "toy.logistic"

[data]
measurements = "measurements.csv"
conditions = "conditions.csv"
log_transform = { volume_mm3 = "log_volume" }

[conditions]
fit = ["control", "treated"]
heldout = ["combo"]

[design]
n = 64
seed = 1
bounds = { growth_rate = [0.1, 0.8], carrying_capacity = [500.0, 4000.0] }

[emulator]
kind = "surrogate"

[parameters.growth_rate]
role = "latent"
prior = { distribution = "LogNormal", mu = -1.2, sigma = 0.5 }
sd = { distribution = "HalfNormal", sigma = 0.3 }

[parameters.carrying_capacity]
role = "population"
prior = { distribution = "LogNormal", mu = 7.3, sigma = 0.5 }

[parameters.initial_volume]
role = "fixed"
value = 50.0

[observables.log_volume]
family = "student_t"
nu = 5
sigma = { distribution = "HalfNormal", sigma = 0.3 }

[sampler]
draws = 300
tune = 400
chains = 2
seed = 1
target_accept = 0.95

[predict]
draws = 200
subjects_per_draw = 3
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from immunocal.calib.pipeline import calibrate

    folder = tmp_path_factory.mktemp("dataset")
    cfg = write_dataset(folder)
    summary = calibrate(cfg, out_dir=folder / "run")
    return cfg, folder / "run", summary


def test_a_new_data_set_is_calibrated_and_a_held_out_arm_predicted_by_config_alone(finished_run):
    cfg, run, summary = finished_run
    for f in ("idata.nc", "predictions.nc", "summary.json", "diagnostics.json", "config.toml",
              "predictions_fit.png", "predictions_heldout.png"):
        assert (run / f).exists(), f
    assert summary["conditions"] == {"fit": ["control", "treated"], "heldout": ["combo"]}
    # the triage rule compared the surrogate's error at posterior draws with the fitted noise (docs/calib.md)
    route = summary["route"]
    assert route["route"] == "surrogate" and route["advice"] in ("keep", "escalate_to_exact")
    ratio = route["surrogate_rmse_over_noise"]["log_volume"]
    imp = summary["surrogate_importance"]  # and the importance weights true model / surrogate at posterior draws
    assert route["pareto_k"] == imp["pareto_k"] and imp["n_draws"] == 200
    assert (route["advice"] == "keep") == (ratio <= 1.0 and imp["pareto_k"] <= 0.7)
    # beside the held-out prediction: which parameters drive it and whether the fit informed them
    ident = summary["prediction"]["heldout"]["identifiability"]["combo"]["log_volume"]
    assert set(ident["parameters"]) == set(summary["contraction"]) and ident["prediction_sd"] > 0
    for n, r in ident["parameters"].items():
        assert r["contraction"] == pytest.approx(summary["contraction"][n], abs=1e-9)
        assert r["prior_driven"] == (r["contraction"] < 0.5 and (r["first_order_share"] or 0) >= 0.2)
    assert ident["prior_driven_by"] == sorted(n for n, r in ident["parameters"].items() if r["prior_driven"])
    # the population carrying capacity is recovered (truth 1500; data reach it in the control arm)
    k = summary["posterior"]["carrying_capacity"]
    assert k["q05"] < TRUE_K < k["q95"] and k["sd"] < 300
    # the surrogates were checked against the true model where the posterior is
    assert summary["surrogate_at_posterior"]["max_abs_error"] < 0.2
    # both chains in one mode, which the true model scores as the emulators do (an accurate surrogate)
    modes = summary["chain_modes"]
    assert set(modes["per_chain"]) == {"chain_0", "chain_1"} and modes["true_model_spread"] < 5
    for c in modes["per_chain"].values():
        assert abs(c["log_likelihood_emulator"] - c["log_likelihood_true_model"]) < 5
    # the held-out arm (never fitted, growth halved again) is predicted by the true forward model for new mice:
    # its observations fall inside the 90 % predictive interval about as often as promised
    held = summary["prediction"]["heldout"]
    assert held["n_obs"] == 4 * len(LogisticModel().times)
    assert 0.75 <= held["coverage_90"] <= 1.0
    assert 0.25 <= held["coverage_50"] <= 0.85
    # and its median prediction is far from what the fitted arms look like (the condition is applied)
    bands = json.loads((run / "predictions.json").read_text())["bands"]
    assert bands["combo"]["log_volume"]["q50"][-1] < bands["control"]["log_volume"]["q50"][-1] - 1.0


def test_predict_command_reproduces_the_run_and_refuses_changed_data(finished_run, tmp_path):
    from immunocal.calib.pipeline import predict

    cfg, run, summary = finished_run
    res = predict(run, ["combo"])
    assert res["coverage_90"] == pytest.approx(summary["prediction"]["heldout"]["coverage_90"], abs=1e-12)
    assert (run / "predict_combo.json").exists()
    with pytest.raises(ValueError, match="no row in the conditions table"):
        predict(run, ["combo_typo"])
    # the fitted data change -> the posterior no longer belongs to them
    meas = cfg.parent / "measurements.csv"
    original = meas.read_text()
    try:
        meas.write_text(original.replace("control/1,control,volume_mm3,2,", "control/1,control,volume_mm3,2.5,", 1))
        with pytest.raises(ValueError, match="fitted data or their schedules changed"):
            predict(run, ["combo"])
    finally:
        meas.write_text(original)


def test_rerun_needs_force_and_reuses_the_campaigns(finished_run, capsys):
    from immunocal.calib.workflow import Calibration

    cfg, run, _ = finished_run
    with pytest.raises(ValueError, match="pass --force"):
        Calibration(cfg, run).run()
    cal = Calibration(cfg, run, force=True)
    cal.train()  # cached campaigns: nothing to simulate again
    assert all(c.status()["pending"] == 0 and c.n == 64 for c in cal.campaigns.values())
    assert "0 of 64 runs pending" in capsys.readouterr().err
    # a refinement round recorded by another run (other settings) never leaks into this config's surrogates
    from immunocal.calib.surrogate import refine

    before = {c: e.surrogate_id for c, e in cal.emulators.items()}
    camp = cal.campaigns["control"]
    refine(camp, np.array([[0.3, 1500.0]] * 8), 4, tag="round1")
    assert camp.n == 68
    again = Calibration(cfg, run, force=True, progress=False)
    again.train()
    assert {c: e.surrogate_id for c, e in again.emulators.items()} == before


@pytest.mark.parametrize("edit, message", [
    (("heldout = [\"combo\"]", "heldout = [\"comb\"]"), "held-out condition 'comb' is neither in the data"),
    (("fit = [\"control\", \"treated\"]", "fit = [\"control\", \"treated\", \"combo\"]"), "both fitted and held out"),
    (("n = 64", "n = 64.5"), r"line \d+: design.n must be an integer"),
    (("growth_rate = [0.1, 0.8]", "growth_rate = [0.8, 0.1]"), "lower < upper"),
    (("seed = 1\nbounds", "sed = 1\nbounds"), r"unknown key design.sed"),
    (("volume_mm3 = \"log_volume\"", "volume_mm = \"log_volume\""), r"observable\(s\) \['volume_mm'\] are not in"),
    (("[parameters.initial_volume]", "[parameters.initial_volum]"), "not a parameter of forward model"),
])
def test_workflow_config_errors_are_named_before_any_computation(tmp_path, edit, message):
    from immunocal.calib.workflow import Calibration

    cfg = write_dataset(tmp_path)
    cfg.write_text(cfg.read_text().replace(*edit))
    with pytest.raises(ValueError, match=message):
        cal = Calibration(cfg, tmp_path / "run", progress=False)
        cal.conditions, cal.data, cal.parameters, cal.fixed  # noqa: B018 - what run() resolves first
    assert not (tmp_path / "run" / "campaigns").exists()


def test_a_surrogate_of_another_condition_is_refused(finished_run, tmp_path):
    """The trained surrogate of 'control' offered as the surrogate of 'treated' is refused before sampling."""
    from immunocal.calib.workflow import Calibration

    cfg, run, _ = finished_run
    cal = Calibration(cfg, run, force=True, progress=False)
    cal.train()
    cal.emulators["control"].save(tmp_path / "control.npz")
    text = cfg.read_text().replace('kind = "surrogate"', 'kind = "surrogate"\npath = "%s"' % (tmp_path / "control.npz"))
    (tmp_path / "c.toml").write_text(text.replace('"measurements.csv"', '"%s"' % (cfg.parent / "measurements.csv"))
                                     .replace('"conditions.csv"', '"%s"' % (cfg.parent / "conditions.csv")))
    with pytest.raises(ValueError, match="trained for condition .* but data condition 'treated'"):
        Calibration(tmp_path / "c.toml", tmp_path / "run2", progress=False).train()
    # the same surrogate for its own condition, but the config's design box changed since it was trained
    text = (tmp_path / "c.toml").read_text().replace('fit = ["control", "treated"]', 'fit = ["control"]')
    (tmp_path / "c2.toml").write_text(text.replace("growth_rate = [0.1, 0.8]", "growth_rate = [0.1, 0.9]"))
    with pytest.raises(ValueError, match="trained over the box .* but the config's \\[design\\] box"):
        Calibration(tmp_path / "c2.toml", tmp_path / "run3", progress=False).train()
    (tmp_path / "c3.toml").write_text(text)
    assert list(Calibration(tmp_path / "c3.toml", tmp_path / "run4", progress=False).train()) == ["control"]


def test_subject_ids_repeated_across_groups_are_refused(tmp_path):
    from immunocal.calib.workflow import Calibration

    cfg = write_dataset(tmp_path)
    meas = tmp_path / "measurements.csv"
    meas.write_text(meas.read_text().replace("control/", "").replace("treated/", ""))
    cal = Calibration(cfg, tmp_path / "run", progress=False)
    cal.cfg["emulator"] = {"kind": "exact"}
    cal.train()
    with pytest.raises(ValueError, match="subject '1' appears under conditions 'control' and 'treated'"):
        cal.model()


def test_wide_to_long_command_makes_the_shipped_example_table(tmp_path, capsys):
    """`immunocal data wide-to-long` on the lab-sheet tables reproduces the shipped long table exactly (ids
    qualified by group, zeros left-censored at the limit, the endpoint right-censored)."""
    from immunocal.calib.cli.main import main
    from immunocal.calib.data import read_measurements
    from immunocal.calib.datasets import dataset_dir

    folder = dataset_dir("morisada2018").parents[1] / "data" / "rit_two_drugs"
    out = tmp_path / "m.csv"
    wide = sorted(str(p) for p in (folder / "wide").glob("*.csv"))
    assert main(["data", "wide-to-long", *wide, "--detection-limit", "10", "--endpoint", "1500",
                 "--out", str(out)]) == 0
    made, shipped = read_measurements(out), read_measurements(folder / "measurements.csv")
    assert made.digest() == shipped.digest()
    assert "RT/3" in made.subjects and "Control/3" in made.subjects       # the same "3" in two groups: two mice
    assert main(["data", "wide-to-long", *wide, "--out", str(out)]) == 2  # never overwritten silently
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["data", "wide-to-long", f"A={wide[0]}", f"A={wide[1]}", "--out", str(tmp_path / "x.csv")]) == 2
    assert "condition 'A' comes from two tables" in capsys.readouterr().err


@pytest.mark.slow
def test_two_drug_example_predicts_its_held_out_arm(tmp_path):
    """The README's per-mouse example (synthetic, known truth) with shorter chains: the held-out two-drug arm is
    covered by the new-mouse predictive, and the shared radiosensitivity is recovered."""
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    cfg = load_config(dataset_dir("morisada2018").parents[1] / "data" / "rit_two_drugs" / "calibrate.toml")
    cfg["sampler"].update(draws=300, tune=400)
    cfg["predict"]["draws"] = 100
    cal = Calibration(cfg, tmp_path / "run", progress=False)
    summary = cal.run()
    # each mouse's day-7 volume is its day-0 input (24 rows conditioned on); its day-4 rows, before day 0, are fitted
    assert summary["observed_inputs"]["pretreatment_volume_mm3"]["rows_conditioned_on"] == 24
    assert np.sum(cal.data.time == 4.0) == 24 and not np.any(cal.data.time == 7.0)
    held = summary["prediction"]["heldout"]
    assert held["n_obs"] > 30 and held["coverage_90"] >= 0.7
    a = summary["posterior"]["tumour_alpha"]
    assert a["q05"] < 0.05 < a["q95"]


def test_readme_shows_the_shipped_two_drug_config_verbatim():
    """The README's complete config is the shipped file (a copy that drifted would no longer run as written)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    shipped = (root / "calib" / "data" / "rit_two_drugs" / "calibrate.toml").read_text()
    block = readme.split("## Calibrating your own data", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert block == shipped


def test_problem_is_built_once_from_registry_and_config(tmp_path):
    """The problem object: free parameters in the model's order, their box, fixed values, the full input vector."""
    from immunocal.calib.design import ParameterSpace
    from immunocal.calib.problem import Problem
    from immunocal.calib.workflow import Calibration

    cal = Calibration(write_dataset(tmp_path), tmp_path / "run", progress=False)
    p = cal.problem
    assert p.free == ("growth_rate", "carrying_capacity") and p.latent == ("growth_rate",)
    assert p.population == ("carrying_capacity",) and dict(p.fixed) == {"initial_volume": 50.0}
    assert p.space.lower == (0.1, 500.0) and p.space.scales == ("log", "log")   # [design.bounds], toy's scales
    np.testing.assert_array_equal(p.full_vector([[0.3, 1500.0]]), [[0.3, 1500.0, 50.0]])
    assert set(p.priors) == {"growth_rate_loc", "carrying_capacity"}
    with pytest.raises(ValueError, match="neither calibrated nor fixed"):
        Problem(("a", "b"), ("a",), ParameterSpace(("a",), (0.0,), (1.0,), ("linear",)), {})


OBSERVED_V0 = """
[parameters.initial_volume]
role = "observed"             # each mouse's own day-0 measurement
observable = "volume_mm3"
time = 0.0
"""


def write_varied_start(folder, seed=5, noise=0.05):
    """Mice that start at different volumes (log-normal around 40 mm³): the case a shared initial volume gets wrong."""
    rng = np.random.default_rng(seed)
    fm = LogisticModel()
    lines = ["subject,condition,observable,time,value,sigma,censoring"]
    for arm, factor in ARMS.items():
        for k in range(1, 5):
            v0 = float(np.clip(40.0 * np.exp(0.4 * rng.standard_normal()), 12.0, 95.0))
            y = fm.simulate([[0.3, TRUE_K, v0]], {"growth_factor": factor})[0, 0]
            y = y + noise * rng.standard_normal(len(y))
            lines += [f"{arm}/{k},{arm},volume_mm3,{t:g},{np.exp(v):.6g},," for t, v in zip(fm.times, y)]
    (folder / "measurements.csv").write_text("\n".join(lines) + "\n")
    (folder / "conditions.csv").write_text("condition,growth_factor\n" +
                                           "".join(f"{a},{f}\n" for a, f in ARMS.items()))
    text = CONFIG.replace('[parameters.initial_volume]\nrole = "fixed"\nvalue = 50.0\n', OBSERVED_V0)
    (folder / "calibrate.toml").write_text(text.replace('kind = "surrogate"', 'kind = "exact"'))
    return folder / "calibrate.toml"


def test_per_subject_initial_volume_from_the_observed_first_measurement(tmp_path):
    """Role "observed": each mouse's day-0 measurement is its initial volume (an emulator input per subject, not
    sampled); those rows are conditioned on, not fitted again; new mice of a prediction start at volumes of their
    arm's real mice (a categorical pick per posterior draw)."""
    from immunocal.calib.workflow import Calibration

    cfg = write_varied_start(tmp_path)
    cal = Calibration(cfg, tmp_path / "run", progress=False)
    raw = cal.raw_measurements
    first = {s: v for s, t, v in zip(raw.subject, raw.time, raw.value) if t == 0.0}
    assert cal.observed_inputs == {"initial_volume": first}
    assert cal.problem.observed == ("initial_volume",) and "initial_volume" not in cal.problem.population
    assert not np.any(cal.data.time == 0.0) and len(cal.data) == 8 * (len(LogisticModel().times) - 1)
    summary = cal.run()
    assert summary["observed_inputs"]["initial_volume"]["rows_conditioned_on"] == 8
    assert summary["route"]["route"] == "exact" and summary["route"]["advice"] == "keep"
    # the resolution check at posterior draws: a closed form has nothing to refine; a simulator whose refinements
    # differ by 0.04 and then 0.01 in log volume (a second-order scheme's ratio 4) is compared along that ladder,
    # the run against the finest in units of the fitted noise sd
    assert "numerics_at_posterior" not in summary and cal.numerics_check(cal.idata) is None
    assert "numerics" not in summary["prediction"]
    base = cal.forward

    class Shifted:
        def __init__(self, shift, tag, finer=None):
            self.shift, self.numerics_tag, self.finer = shift, tag, finer

        def __getattr__(self, name):  # everything else (times, observables, ...) of the model itself
            return getattr(base, name)

        def refined(self):
            return self.finer

        def simulate(self, theta, condition=None):
            return base.simulate(theta, condition) + self.shift

    object.__setattr__(base, "refined", lambda: Shifted(0.04, "h/2", Shifted(0.05, "h/4")))
    try:
        check = cal.numerics_check(cal.idata, n=5)
        pred_check = cal.prediction_numerics_check(cal.idata, ["combo"], n=3)
    finally:
        object.__delattr__(base, "refined")
    sigma = float(cal.idata.posterior["sigma_log_volume"].median())
    assert check["n_draws"] == 5 and check["max_abs_diff"]["log_volume"] == pytest.approx(0.05, rel=1e-9)
    assert [d["log_volume"] for d in check["consecutive_max_abs_diff"]] == pytest.approx([0.04, 0.01], rel=1e-6)
    assert check["refinement_ratio"]["log_volume"] == pytest.approx(4.0, rel=1e-5)
    assert check["ladder"] == [getattr(base, "numerics_tag", ""), "h/2", "h/4"]
    assert check["max_diff_over_noise"]["log_volume"] == pytest.approx(0.05 / sigma)
    assert check["converged"] == (0.05 / sigma < 0.1)
    # the predicted new mice along the same ladder, with the same random draws: only the shift differs (no
    # censoring limit in these data, so nothing is clipped)
    assert pred_check["n_draws"] == 3 and pred_check["conditions"] == ["combo"]
    assert pred_check["max_abs_diff"]["log_volume"] == pytest.approx(0.05, rel=1e-6)
    assert pred_check["refinement_ratio"]["log_volume"] == pytest.approx(4.0, rel=1e-4)
    assert summary["diagnostics"]["rhat_max"] < 1.05
    r = cal.idata.posterior["growth_rate"].values  # every mouse's growth rate near its truth (0.3)
    assert np.all(np.abs(np.median(r, axis=(0, 1)) / 0.3 - 1) < 0.15)
    np.testing.assert_allclose(cal.idata.posterior["initial_volume"].values[0, 0],
                               [first[s] for s in cal.idata.posterior.subject.values])
    held = summary["prediction"]["heldout"]
    assert 0.75 <= held["coverage_90"] <= 1.0
    pred = cal.predict(cal.idata, ["combo"])["idata"].predictions["initial_volume"].values
    pool = {v for s, v in first.items() if s.startswith("combo/")}
    assert set(np.unique(pred)) == pool  # new combo mice start at the combo mice's observed volumes, all of them


def test_prediction_refinements_need_a_refinable_simulator(tmp_path):
    """``[predict] refinements`` predicts on a refined resolution; asked of a closed form (nothing to refine) it is
    a named error, and an invalid count is refused at load time."""
    from immunocal.calib.config import ConfigError
    from immunocal.calib.workflow import Calibration

    cfg = write_varied_start(tmp_path)
    cfg.write_text(cfg.read_text().replace("[predict]\n", "[predict]\nrefinements = 1\n", 1))
    cal = Calibration(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"\[predict\] refinements = 1, but the forward model .* no refined"):
        cal.prediction_forward()
    cfg.write_text(cfg.read_text().replace("refinements = 1", "refinements = -1"))
    with pytest.raises(ConfigError, match="refinements"):
        Calibration(cfg, tmp_path / "run2", progress=False)


@pytest.mark.parametrize("edit, message", [
    (("time = 0.0", "time = 1.0"), r"no volume_mm3 measured at day 1"),
    (('observable = "volume_mm3"\n', ""), r"role 'observed' and needs 'observable'"),
    (('role = "observed"', 'role = "fixed"'), r"parameters.initial_volume.observable belongs to role"),
    (("combo/1,combo,volume_mm3,0,", "combo/1,combo,volume_mm3,0,500"),
     r"subject 'combo/1' has initial_volume = [\d.]+ \(observed\), outside the design box"),
])
def test_observed_inputs_errors_are_named(tmp_path, edit, message):
    from immunocal.calib.workflow import Calibration

    cfg = write_varied_start(tmp_path)
    for f in (cfg, tmp_path / "measurements.csv"):
        f.write_text(f.read_text().replace(*edit, 1))
    with pytest.raises(ValueError, match=message):
        cal = Calibration(cfg, tmp_path / "run", progress=False)
        cal.conditions, cal.data, cal.parameters, cal.problem  # noqa: B018


def test_a_finished_run_is_reused_only_for_the_same_config_data_and_numerics(finished_run):
    """Studies resume after a kill: a finished run of the same config, fitted data and numerics is loaded (summary
    and posterior), anything else is not."""
    from immunocal.calib.config import load_config
    from immunocal.calib.workflow import Calibration

    cfg, run, summary = finished_run
    cal = Calibration(cfg, run, force=True, progress=False)
    again = cal.load_finished()
    assert again is not None and again["config_hash"] == summary["config_hash"]
    k = summary["posterior"]["carrying_capacity"]  # the loaded posterior is the run's
    assert float(cal.idata.posterior["carrying_capacity"].mean()) == pytest.approx(k["mean"], rel=1e-12)
    other = load_config(cfg)
    other["sampler"]["draws"] = other["sampler"].get("draws", 1000) + 1
    assert Calibration(other, run, force=True, progress=False).load_finished() is None
    assert Calibration(cfg, run.parent / "elsewhere", force=True, progress=False).load_finished() is None


def test_a_finished_fit_is_predicted_again_when_only_predict_changed(finished_run, tmp_path):
    """[predict] does not touch the posterior: a finished run whose config differs only there keeps its posterior
    and predicts again (files and summary rewritten, under the new config's hash); a change elsewhere refits."""
    import shutil

    import arviz as az

    from immunocal.calib.config import load_config, public
    from immunocal.calib.outputs import config_hash
    from immunocal.calib.workflow import Calibration

    cfg, run, summary = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    other = load_config(cfg)
    other["predict"]["draws"] = 100
    cal = Calibration(other, copy, force=True, progress=False)
    again = cal.load_finished()
    assert again is not None and again["config_hash"] == config_hash(public(other)) != summary["config_hash"]
    assert again["posterior"] == summary["posterior"]  # the posterior is the run's
    pred = az.from_netcdf(copy / "predictions.nc").predictions
    assert pred.sizes["chain"] * pred.sizes["draw"] == 100  # predicted again with the new draws
    assert json.loads((copy / "summary.json").read_text())["config_hash"] == again["config_hash"]
    assert Calibration(other, copy, force=True, progress=False).load_finished()["config_hash"] == again["config_hash"]
    elsewhere = load_config(cfg)
    elsewhere["predict"]["draws"] = 100
    elsewhere["sampler"]["draws"] = elsewhere["sampler"].get("draws", 1000) + 1
    assert Calibration(elsewhere, copy, force=True, progress=False).load_finished() is None


def test_importance_weights_flag_a_surrogate_that_misrepresents_the_true_model(finished_run):
    """The surrogate posterior stands in for the true model's when the importance weights true model / surrogate at
    its draws are reliable (Pareto k <= 0.7): so for the run's accurate surrogates; the control arm's surrogate put
    in for the treated arm's (growth halved there) is flagged and the triage rule escalates, whatever the RMSE."""
    from immunocal.calib.diagnostics import route_advice
    from immunocal.calib.workflow import Calibration

    cfg, run, summary = finished_run
    good = summary["surrogate_importance"]
    assert good["reliable"] and good["pareto_k"] <= 0.7 and good["log_weight_sd"] < 1.0
    assert good["relative_ess"] > 0.5
    cal = Calibration(cfg, run, force=True, progress=False)
    assert cal.load_finished() is not None
    cal.ensure_emulators()
    again = cal.surrogate_importance(cal.idata)
    assert again["pareto_k"] == pytest.approx(good["pareto_k"], rel=1e-9)  # deterministic: same draws, same weights
    cal.emulators["treated"] = cal.emulators["control"]
    assert set(good["per_observable"]) == {"log_volume"} and good["per_observable"]["log_volume"]["pareto_k"] <= 0.7
    bad = cal.surrogate_importance(cal.idata)
    assert not bad["reliable"] and bad["pareto_k"] > 0.7 and bad["log_weight_sd"] > 10.0
    # the one observable carries the whole failure, and the workflow's route names it
    assert bad["per_observable"]["log_volume"]["log_weight_sd"] == pytest.approx(bad["log_weight_sd"])
    assert "log_volume" in cal.route(cal.idata, None, bad)["reason"]
    adv = route_advice("surrogate", True, {"log_volume": 0.01}, {"log_volume": 0.1}, pareto_k=bad["pareto_k"])
    assert adv["advice"] == "escalate_to_exact" and "Pareto k" in adv["reason"]
    # an expensive true model: the check is skipped and says why (50 draws x 8 mice x 1 s > the 120 s budget)
    skipped = cal.surrogate_importance(cal.idata, seconds_per_simulation=1.0)
    assert skipped["pareto_k"] is None and "400 s" in skipped["skipped"] and "importance_draws" in skipped["skipped"]
    # a cost that fits 60 draws: the draws are cut to the budget
    assert cal.surrogate_importance(cal.idata, seconds_per_simulation=120.0 / (60 * 8))["n_draws"] == 60


def test_held_out_subjects_are_left_out_of_the_fit_and_personalised(tmp_path, monkeypatch):
    """``[data] heldout_subjects``: their rows leave the fit; after it each gets a posterior of its latents given
    the fitted population, close to its true growth rate; unknown ids and unfitted conditions are named errors."""
    from immunocal.calib.workflow import Calibration

    cfg = write_dataset(tmp_path, n_per_arm=5)
    text = cfg.read_text().replace('role = "population"\nprior = { distribution = "LogNormal", mu = 7.3, sigma = 0.5 }',
                                   'role = "fixed"\nvalue = 1500.0')
    text = text.replace(", carrying_capacity = [500.0, 4000.0]", "")
    text = text.replace("[data]\n", '[data]\nheldout_subjects = ["control/1", "treated/2"]\n')
    text = text.replace("[predict]\ndraws = 200", "[personalise]\ndraws = 500\ntune = 500\n\n[predict]\ndraws = 0")
    cfg.write_text(text)
    cal = Calibration(cfg, tmp_path / "run", progress=False)
    assert not np.isin(cal.data.subject, ["control/1", "treated/2"]).any() and len(cal.data.subjects) == 8
    summary = cal.run()
    pers = summary["personalised"]
    assert set(pers["subjects"]) == {"control/1", "treated/2"} and pers["rhat_max"] < 1.05
    rng = np.random.default_rng(3)  # the data set's own draws: the true growth rates in file order
    true_r = {}
    for arm in ARMS:
        for k in range(1, 6):
            true_r[f"{arm}/{k}"] = float(np.exp(np.log(0.3) + 0.15 * rng.standard_normal()))
            rng.standard_normal(len(LogisticModel().times))
    for s, post in pers["subjects"].items():
        g = post["growth_rate"]
        assert g["q05"] < true_r[s] < g["q95"] and g["sd"] < 0.1, (s, g, true_r[s])
    assert (tmp_path / "run" / "personalised.nc").is_file()
    ran = json.loads((tmp_path / "run" / "config_effective.json").read_text())
    assert ran["data"]["heldout_subjects"] == ["control/1", "treated/2"] and ran["personalise"]["draws"] == 500
    # the same posteriors by importance sampling ([personalise] method = "importance"): k̂ and ESS per subject
    from immunocal.calib.diagnostics import subject_posteriors

    cal.cfg["personalise"] = {"method": "importance", "particles": 2000, "block": 1000, "draws": 2000, "seed": 2}
    imp = subject_posteriors(cal.personalise(), cal.latent)
    assert imp["pareto_k_max"] < 0.7 and imp["ess_importance_min"] > 300 and imp["failures"] == []
    for s, post in pers["subjects"].items():
        a, b = post["growth_rate"], imp["subjects"][s]["growth_rate"]
        assert abs(a["mean"] - b["mean"]) < 0.25 * a["sd"] and b["sd"] == pytest.approx(a["sd"], rel=0.2), (a, b)
    # a resumed run (load_finished: no emulators loaded yet) personalises too
    resumed = Calibration(cfg, tmp_path / "run", progress=False)
    assert resumed.load_finished() is not None
    resumed.cfg["personalise"] = {"method": "importance", "particles": 1000, "block": 1000, "draws": 500}
    # ... with one BLAS thread (threads only oversubscribe its small products and 6 × 6 covariances) and the
    # caller's threading restored afterwards
    from threadpoolctl import threadpool_info

    import immunocal.calib.personalise as personalise_module

    original, seen = personalise_module.importance_posterior, []

    def spy(*args, **kwargs):
        seen.append(max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"))
        return original(*args, **kwargs)

    monkeypatch.setattr(personalise_module, "importance_posterior", spy)
    before = [d["num_threads"] for d in threadpool_info()]
    assert resumed.personalise().posterior.sizes["subject"] == 2
    assert seen == [1] and [d["num_threads"] for d in threadpool_info()] == before
    cal.cfg["personalise"] = {"method": "importance", "tune": 100}
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['tune'\]"):
        cal.personalise()

    for edit, message in ((('"control/1", "treated/2"', '"control/9"'), r"heldout_subjects \['control/9'\] have no"),
                          (('"control/1", "treated/2"', '"combo/1"'), r"condition\(s\) \['combo'\], which are not fit")):
        cfg.write_text(text.replace(*edit))
        with pytest.raises(ValueError, match=message):
            Calibration(cfg, tmp_path / "run2", progress=False).data  # noqa: B018


def test_refined_emulators_are_validated_and_keep_held_out_variance(tmp_path):
    """A refinement round refits each emulator holding out runs again (the design's and the new ones where the
    pilot posterior is), so ``[emulator] variance = "held_out"`` works with ``[refinement]`` (it used to fail after
    the refinement's runs: the refit had no held-out runs) and the design-only validation is kept for the record."""
    from immunocal.calib.config import load_config
    from immunocal.calib.workflow import Calibration

    path = write_dataset(tmp_path)
    path.write_text(CONFIG.replace('kind = "surrogate"', 'kind = "surrogate"\nvariance = "held_out"')
                    + "\n[refinement]\nrounds = 1\npoints = 8\ndraws = 60\n")
    cfg = load_config(path)
    cal = Calibration(cfg, tmp_path / "run", progress=False)
    cal.train()
    before = {c: r["n_test"] for c, r in cal.validation.items()}
    cal.refine()
    for c, em in cal.emulators.items():
        assert em.variance == "held_out" and em.heldout_var_ is not None
        assert cal.validation[c]["n_test"] > before[c] == cal.validation_design[c]["n_test"]
        assert cal.validation[c]["n_train"] + cal.validation[c]["n_test"] == 64 + 8


@pytest.mark.slow  # a full workflow run and a restart: 64 s warm, 387 s on a loaded 2-core machine
def test_restart_at_a_sample_off_the_posterior_returns_to_nuts(tmp_path):
    """A reference sample placed 4 sd off the posterior (every free variable shifted) and its log-likelihood: NUTS
    restarted at its draws goes back to the NUTS run's region — log-likelihood and means — and says so."""
    import arviz as az
    import numpy as np
    import pymc as pm

    from immunocal.calib.workflow import Calibration
    from immunocal.studies._common import restart_at

    cal = Calibration(write_varied_start(tmp_path), tmp_path / "run", progress=False)
    cal.run()
    model = cal.model()
    free = [v.name for v in model.free_RVs]
    post = cal.idata.posterior
    off = {n: (post[n] * 2.0 if float(post[n].min()) > 0 else post[n] + 4.0 * post[n].std(("chain", "draw")))
           for n in free}  # positive (sd-like) variables doubled, the others shifted by 4 sd
    reference = az.InferenceData(posterior=post[[]].assign(off))
    with model:
        pm.compute_log_likelihood(reference, progressbar=False)
    out = restart_at(cal, reference, free)
    assert abs(out["log_likelihood_vs_nuts"]["shift_in_reference_sd"]) < 1.5
    assert out["log_likelihood_vs_reference"]["shift_in_reference_sd"] > 3.0
    assert max(out["mean_diff_in_sd_vs_nuts"].values()) < 0.5
    assert max(out["mean_diff_in_sd_vs_reference"].values()) > 1.5


def test_posterior_emulator_variance_is_measured_after_refinement(tmp_path):
    """``[emulator] variance = "posterior"``: the pilot posteriors of ``[refinement]`` run on the held-out variance;
    after the last round each observable's error against the true model at the pilot's draws (the route check's
    scoring) becomes the emulator variance and is recorded beside the held-out error. Without a refinement round
    there is nothing to measure it at: a named error before any sampling."""
    from immunocal.calib.config import load_config
    from immunocal.calib.workflow import Calibration

    path = write_dataset(tmp_path)
    path.write_text(CONFIG.replace('kind = "surrogate"', 'kind = "surrogate"\nvariance = "posterior"')
                    + "\n[refinement]\nrounds = 1\npoints = 8\ndraws = 60\nvariance_draws = 30\n")
    cal = Calibration(load_config(path), tmp_path / "run", progress=False)
    cal.train()
    assert {em.variance for em in cal.emulators.values()} == {"held_out"}  # provisional, for the pilot
    cal.refine()
    for c, em in cal.emulators.items():
        assert em.variance == "posterior"
        rec = cal.posterior_error[c]
        assert set(rec) == {"log_volume"}
        i = em.observables.index("log_volume")
        np.testing.assert_allclose(em.posterior_var_[i], rec["log_volume"]["rmse"] ** 2, rtol=1e-12)
        assert rec["log_volume"]["held_out_rmse"] == pytest.approx(float(np.sqrt(em.heldout_var_[i].mean())))
        assert 0 < rec["log_volume"]["rmse"] < 0.5  # a measured error of an accurate emulator, not a placeholder
    path.write_text(path.read_text().replace("rounds = 1", "rounds = 0"))
    with pytest.raises(ValueError, match=r"variance 'posterior' needs .*\[refinement\] rounds >= 1"):
        Calibration(load_config(path), tmp_path / "run2", progress=False).train()


def test_a_resumed_run_gets_the_emulators_its_fit_used(finished_run, tmp_path):
    """A run that trained its emulators saves them (``emulator_<condition>.npz``); a resumed run loads exactly those
    (the summary's surrogate id) instead of retraining — which would not repeat a refinement's pilot. Files that
    are not the fit's, or missing files of a refined run, are named errors."""
    import shutil

    from immunocal.calib.config import load_config
    from immunocal.calib.workflow import Calibration

    cfg, run, summary = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert sorted(p.name for p in copy.glob("emulator_*.npz")) == ["emulator_control.npz", "emulator_treated.npz"]
    cal = Calibration(cfg, copy, force=True, progress=False)
    assert cal.load_finished() is not None
    ems = cal.ensure_emulators()
    assert cal.campaigns == {}  # loaded, not trained
    assert ";".join(sorted(f"{c}={e.surrogate_id}" for c, e in ems.items())) == summary["surrogate_id"]
    # another fit's emulator in the folder
    other = Calibration(cfg, copy, force=True, progress=False)
    assert other.load_finished() is not None
    sur = ems["treated"]
    sur.alpha_ = sur.alpha_ * 1.01
    sur.save(copy / "emulator_treated.npz")
    with pytest.raises(ValueError, match="are not the ones this run's fit used"):
        other.ensure_emulators()
    # a refined run whose emulator files are gone: no silent retrain on the design alone
    (copy / "emulator_treated.npz").unlink()
    refined = load_config(cfg)
    refined["refinement"] = {"rounds": 1, "points": 8, "draws": 60}
    again = Calibration(refined, copy, force=True, progress=False)
    again.idata = other.idata
    with pytest.raises(ValueError, match="refined its emulators, but they are not saved"):
        again.ensure_emulators()
    # --force replaces a previous run's emulator files with the rest of its outputs (a folder of its own: other
    # tests write prediction files into the shared run)
    from immunocal.calib.workflow import prepare_output_dir

    previous = tmp_path / "previous"
    previous.mkdir()
    for name in ("summary.json", "idata.nc", "emulator_control.npz", "emulator_a_b.npz"):
        (previous / name).write_text("")
    prepare_output_dir(previous, force=True)
    assert not list(previous.iterdir())


def test_a_fit_missing_the_thresholds_is_fitted_again_on_the_same_emulators(tmp_path):
    """``run_converged``: a fit that misses the diagnostics thresholds (here ESS ≥ 100,000, out of reach) is fitted
    once more in ``<folder>_retry`` with twice the draws and tuning and target_accept ≥ 0.95, on the emulators the
    first run trained (loaded from its folder: same surrogate id, nothing simulated again), with the emulators'
    validation carried into the retry's summary; a fit within the thresholds is returned as it is."""
    from immunocal.calib.config import load_config
    from immunocal.calib.workflow import run_converged

    path = write_dataset(tmp_path)
    strict = CONFIG.replace("draws = 300\ntune = 400", "draws = 60\ntune = 60") + "\n[diagnostics]\ness_min = 100000\n"
    path.write_text(strict.replace("[predict]\ndraws = 200", "[predict]\ndraws = 0"))
    cal, summary, first, folder = run_converged(load_config(path), tmp_path / "run")
    assert first is not None and first["ok"] is False and any("ESS" in v for v in first["violations"])
    assert folder == tmp_path / "run_retry" and summary["diagnostics"]["ok"] is False  # still missing: said
    assert cal.sampler["draws"] == 120 and cal.sampler["tune"] == 120 and cal.sampler["target_accept"] == 0.95
    assert cal.campaigns == {}  # loaded, not trained again
    first_summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["surrogate_id"] == first_summary["surrogate_id"]
    assert summary["surrogate_validation"] == first_summary["surrogate_validation"]
    assert summary["seconds_first_attempt"] == first_summary["seconds"] and "emulators" in first_summary["seconds"]
    lenient = strict.replace("ess_min = 100000", "ess_min = 5\nrhat_max = 2.0")
    path.write_text(lenient.replace("[predict]\ndraws = 200", "[predict]\ndraws = 0"))
    cal, summary, first, folder = run_converged(load_config(path), tmp_path / "ok")
    assert first is None and folder == tmp_path / "ok" and not (tmp_path / "ok_retry").exists()
