"""The RIT model behind the calibration workflow: its simulator, the bundled configs (Morisada, Dewan), refinement,
the quickstart end to end."""

import copy
import json
import math

import numpy as np
import pytest

from immunocal.calib.config import load_config
from immunocal.calib.datasets import dataset_dir
from immunocal.calib.forward_api import ForwardModel, check_output, load_forward_model
from immunocal.calib.workflow import Calibration
from immunocal.forward.rit import Schedule, simulate_volumes
from immunocal.forward.rit.simulator import RitSimulator
from immunocal.priors import registry

CONFIGS = [dataset_dir("morisada2018") / "moc1.toml", dataset_dir("morisada2018") / "mc38.toml",
           dataset_dir("morisada2018") / "moc1_exact.toml", dataset_dir("morisada2018") / "mc38_exact.toml",
           dataset_dir("dewan2009") / "lq_vascular.toml", dataset_dir("dewan2009") / "modified_lq.toml"]


def test_simulator_matches_forward_model_and_protocol():
    fm = RitSimulator(data_days=(7.0, 40.0), day_offset=7.0, pretreatment_volume_mm3=60.0)
    assert isinstance(fm, ForwardModel)
    cond = {"rt_days": [10.0, 11.0], "rt_doses_gy": [8.0, 8.0], "drug": "anti_pd1", "drug_days": [7.0, 12.0, 17.0]}
    theta = np.array([[0.1, 20.0, 0.05], [0.2, 5.0, 0.1]])
    out = check_output(fm, fm.simulate(theta, cond), 2)
    sched = Schedule.from_condition(cond, 7.0, 34.0)
    assert sched.rt_days == (3.0, 4.0) and sched.pdl1_days == (0.0, 5.0, 10.0)
    ps = registry().parameter_set("rit", "dewan_table3").replace(
        tumour_proliferation_rate=0.2, immune_kill_rate=5.0, tumour_alpha=0.1)
    direct = simulate_volumes(ps, sched, fm.times - 7.0, fm.config())
    np.testing.assert_allclose(out[1, 0], np.log(np.maximum(direct, 1e-6)), rtol=1e-12)
    assert out[0, 0, 0] == pytest.approx(np.log(60.0), rel=1e-6)  # day 0 sits at the pre-treatment volume


def test_simulator_reads_data_days_before_day_0_off_the_free_growth_phase():
    """Measurements before the model's day 0 (before treatment) are usable: those data days come from the untreated
    free growth that precedes day 0 (exponential for the Table 3 preset: log V falls linearly back in time)."""
    fm = RitSimulator(data_days=(3.0, 20.0), day_offset=7.0, pretreatment_volume_mm3=50.0)
    theta = [[0.2, 5.0, 0.1]]
    out = fm.simulate(theta, {"rt_days": [9.0], "rt_doses_gy": [8.0]})[0, 0]
    assert fm.times[0] == 3.0 and out[4] == pytest.approx(math.log(50.0), rel=1e-12)
    np.testing.assert_allclose(out[:5], math.log(50.0) + 0.2 * (fm.times[:5] - 7.0), rtol=1e-10)
    later = RitSimulator(data_days=(7.0, 20.0), day_offset=7.0, pretreatment_volume_mm3=50.0)
    np.testing.assert_array_equal(out[4:], later.simulate(theta, {"rt_days": [9.0], "rt_doses_gy": [8.0]})[0, 0])
    with pytest.raises(ValueError, match="before model day 0"):  # treatment before day 0 stays refused
        fm.simulate(theta, {"rt_days": [5.0], "rt_doses_gy": [8.0]})


def test_simulator_descriptor_rebuilds_the_same_model():
    """Campaign workers rebuild the simulator from its descriptor (class + options): no data file is read."""
    opts = {"preset": "dewan_table3", "parameter_names": ["tumour_alpha"], "data_days": [12.0, 20.0],
            "day_offset": 12.0}
    fm = load_forward_model("immunocal.forward.rit.simulator:RitSimulator", **opts)
    again = load_forward_model(fm.descriptor)
    assert again.descriptor == fm.descriptor and again.parameter_names == ("tumour_alpha",)
    np.testing.assert_array_equal(again.simulate([[0.1]], {}), fm.simulate([[0.1]], {}))
    with pytest.raises(ValueError, match="bad options"):
        load_forward_model("immunocal.forward.rit.simulator:RitSimulator", day_ofset=12.0)


def test_schedule_and_simulator_errors():
    with pytest.raises(ValueError, match="before model day 0"):
        Schedule.from_condition({"rt_days": [5.0], "rt_doses_gy": [2.0]}, 7.0, 30.0)
    with pytest.raises(ValueError, match="unknown drug 'aspirin'"):
        Schedule.from_condition({"drug": "aspirin", "drug_days": [8.0]}, 7.0, 30.0)
    # a misspelled schedule column used to be dropped silently (an RT-only model for a drug arm)
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['drug_dayz'\]"):
        Schedule.from_condition({"drug": "anti_pd1", "drug_dayz": [8.0]}, 7.0, 30.0)
    with pytest.raises(ValueError, match="pretreatment_volume_mm3 must be > 0"):
        RitSimulator(pretreatment_volume_mm3=0.0)
    with pytest.raises(ValueError, match="substeps must be an integer >= 1"):
        RitSimulator(substeps=0)
    with pytest.raises(ValueError, match=r"time step dt must be in \(0, 1\]"):
        RitSimulator(dt=0.0)


def test_simulator_numerics_settings_and_refinement():
    """dt and substeps are simulator settings (part of every campaign key through numerics_tag); refined() halves
    the grid step dt — and with it the substep and the free-growth step (the workflow's resolution checks)."""
    base = RitSimulator(data_days=(7.0, 20.0))
    assert base.numerics_tag == "exponential-dt0.05x4-k2"
    coarse = RitSimulator(data_days=(7.0, 20.0), dt=0.1)
    assert coarse.numerics_tag == "exponential-dt0.1x4-k2" and coarse.refined().numerics_tag == base.numerics_tag
    assert coarse.refined().config().free_growth_step == base.config().free_growth_step == 0.5
    assert RitSimulator(data_days=(7.0, 20.0), dt=0.25, substeps=1).refined().numerics_tag == "exponential-dt0.125x1-k2"
    theta = np.array([[0.2, 5.0, 0.1]])
    cond = {"rt_days": [8.0], "rt_doses_gy": [8.0]}
    a, b = coarse.simulate(theta, cond), base.simulate(theta, cond)
    assert a.shape == b.shape and 0 < np.abs(a - b).max() < 0.05  # the same model at another resolution


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_bundled_configs_resolve_their_data_conditions_and_priors(config):
    cal = Calibration(config, "/nonexistent/never-written", progress=False)
    fit, held = cal.conditions
    assert fit and held and not set(fit) & set(held)
    assert set(cal.data.observables) == {"log_volume"} and np.all(np.isfinite(cal.data.value))
    assert cal.data.value.max() < math.log(5e3)
    space = cal.space(cal.free)
    for s in cal.parameters:  # priors live on the surrogates' training box
        j = list(space.names).index(s.name)
        assert s.prior.support == pytest.approx((space.lower[j], space.upper[j]))
    for c in fit + held:
        Schedule.from_condition(cal.schedule(c), cal.forward.day_offset, 100.0)  # every schedule is valid


@pytest.mark.parametrize("line", ["moc1", "mc38"])
def test_exact_route_config_is_the_surrogate_config_on_the_true_model(line):
    """{line}_exact.toml fits what {line}.toml fits (same tables, arms, box, priors, observation model, forward model
    and pre-treatment volume); it differs only where it says: the route, the integration step (checked at posterior
    draws by the run), the growth rate's parametrisation, one kill rate for all mice, and the sampler."""
    from immunocal.calib.config import load_config

    a, b = (load_config(dataset_dir("morisada2018") / f) for f in (f"{line}.toml", f"{line}_exact.toml"))
    for section in ("data", "conditions", "observables", "diagnostics"):
        assert a[section] == b[section], section
    assert a["design"]["bounds"] == b["design"]["bounds"]
    assert {k: v for k, v in a["model"]["options"].items()} == {
        k: v for k, v in b["model"]["options"].items() if k not in ("dt", "substeps")}
    assert (b["model"]["options"]["dt"], b["model"]["options"]["substeps"]) == (1.0, 1)
    assert {n: p["prior"] for n, p in a["parameters"].items()} == {n: p["prior"] for n, p in b["parameters"].items()}
    assert (a["emulator"]["kind"], b["emulator"]["kind"]) == ("surrogate", "exact")
    assert b["parameters"]["immune_kill_rate"]["role"] == "population"
    # MOC1's growth rates centred; MC38's mice grow alike and centred rates have no mode (a funnel): non-centred
    assert b["parameters"]["tumour_proliferation_rate"]["parametrization"] == {"moc1": "centred",
                                                                                "mc38": "non_centred"}[line]
    cal = Calibration(b, "/nonexistent/never-written", progress=False)
    assert cal.forward.numerics_tag == "exponential-dt1x1-k2"
    assert cal.forward.refined().numerics_tag == "exponential-dt0.5x1-k2"
    assert b["sampler"]["init"] == "laplace+adapt_full"
    assert cal.prediction_forward().numerics_tag == {"moc1": "exponential-dt0.25x1-k2",  # new mice two rungs finer
                                                     "mc38": "exponential-dt0.125x1-k2"}[line]  # MC38: three


@pytest.mark.parametrize("line", ["MOC1", "MC38"])
def test_morisada_pretreatment_volume_follows_its_stated_rule(line):
    """The config states a number; the rule in its comment (median control volume on the first measurement day,
    extrapolated back to day 7 with the median control growth between the first two days) reproduces it."""
    cal = Calibration(dataset_dir("morisada2018") / f"{line.lower()}.toml", "/nonexistent", progress=False)
    meas = cal.tables[0]
    ok = (meas.condition == f"{line}_Control") & (meas.censoring == "none")
    d0, d1 = np.unique(meas.time[ok])[:2]
    v0, v1 = (np.median(np.exp(meas.value[ok & (meas.time == d)])) for d in (d0, d1))  # median volume (mm³)
    rate = math.log(v1 / v0) / (d1 - d0)
    assert cal.forward.pretreatment_volume_mm3 == pytest.approx(v0 * math.exp(-rate * (d0 - 7.0)), rel=1e-6)
    # the detection limit of the predictions is the data's own (10 mm³, left-censored rows)
    assert cal.censor_limits()["log_volume"] == (pytest.approx(math.log(10.0)), math.inf)


def test_log_transform_rejects_zeros(tmp_path):
    from immunocal.calib.data import Measurements
    from immunocal.calib.workflow import log_transform

    bad = Measurements.from_arrays(["m"], ["c"], ["v"], [1.0], [0.0], source="x.csv")
    with pytest.raises(ValueError, match="x.csv, data row 1: v = 0.0 cannot be log-transformed"):
        log_transform(bad, {"v": "log_v"})


def _restricted_dewan(fit_conditions, n_design):
    cfg = load_config(dataset_dir("dewan2009") / "lq_vascular.toml")
    names = ["tumour_proliferation_rate", "tumour_alpha", "immune_kill_rate"]
    cfg["model"]["options"]["parameter_names"] = names
    cfg["parameters"] = {n: cfg["parameters"][n] for n in names}
    cfg["design"]["bounds"] = {n: cfg["design"]["bounds"][n] for n in names}
    cfg["design"]["n"] = n_design
    cfg["emulator"] = {"kind": "surrogate"}  # the shipped config uses the true model: these test the surrogate route
    cfg["conditions"] = {"fit": list(fit_conditions), "heldout": []}
    return cfg


def test_refinement_shrinks_the_surrogate_error_where_the_posterior_is(tmp_path):
    """Dewan restricted variant, one irradiated arm: a coarse design, then one active-refinement round around a
    posterior-like cloud; the true-model check at fresh draws of that cloud improves and the round is recorded."""
    from immunocal.calib.surrogate import refine

    cond = "tsa_fig2_8Gyx3+PBS"
    cal = Calibration(_restricted_dewan([cond], 24), tmp_path, progress=False)
    cal.train()
    rng = np.random.default_rng(0)
    centre = np.array([0.14, 0.03, 18.0])                        # near seed 002 Table 3 (λ1, α_C, p)
    cloud = centre * np.exp(rng.normal(0.0, 0.05, size=(400, 3)))
    before = cal.surrogate_check(cloud[200:], n=40)
    camp = cal.campaigns[cond]
    cal.emulators[cond], _ = refine(camp, cloud[:200], 16, tag="round1", seed=1)
    after = cal.surrogate_check(cloud[200:], n=40)
    assert after["worst_condition"] == cond and before["n_draws"] == 40
    assert after["max_rmse"] < 0.5 * before["max_rmse"]
    assert len(camp.meta["refinement_rounds"]["round1"]) == 16 and len(camp.training_data()[0]) == 24 + 16


@pytest.mark.slow
def test_quickstart_end_to_end_tiny(tmp_path):
    from immunocal.calib.quickstart import run_quickstart

    report = run_quickstart(tmp_path, settings={"sampler": {"draws": 40, "tune": 40, "chains": 2},
                                                "predict": {"draws": 20}}, progress=False)
    cal = report["calibration"]
    assert cal["config"].endswith("moc1_exact.toml") and cal["route"]["route"] == "exact"
    assert 0.0 <= cal["heldout_coverage_90"] <= 1.0
    ladder = cal["numerics_at_posterior"]                # the fit's resolution checked at posterior draws
    assert ladder["ladder"][0] == "exponential-dt1x1-k2" and np.isfinite(ladder["max_diff_over_noise"]["log_volume"])
    assert cal["prediction_numerics"]["resolution"] == "exponential-dt0.25x1-k2"
    assert cal["sampler_init"]["init"] == "laplace+adapt_full" and cal["sampler_init"]["dimensions"] == 45
    for f in ("report.json", "posterior_summary.json", "diagnostics.json", "ppc_fit_arms.png",
              "heldout_prediction.png"):
        assert (tmp_path / f).exists(), f
    diag = json.loads((tmp_path / "diagnostics.json").read_text())
    assert diag["ok"] is False and diag["violations"]  # 40 draws cannot meet ESS >= 400: reported, not hidden


@pytest.mark.slow
def test_dewan_workflow_refines_and_a_rerun_reuses_campaigns_and_rounds(tmp_path):
    """Tiny Dewan fit (restricted variant, 8 arms): one refinement round recorded in every campaign (keyed by the
    forward descriptor, numerics and design), the surrogates checked at posterior draws, LOO over every row, and a
    forced rerun simulates nothing again (the finished runs and the recorded round are reused)."""
    cfg = _restricted_dewan([f"tsa_fig2_{a}" for a in ("0Gy+PBS", "0Gy+9H10", "20Gyx1+PBS", "20Gyx1+9H10",
                                                      "8Gyx3+PBS", "8Gyx3+9H10", "6Gyx5+PBS", "6Gyx5+9H10")], 24)
    cfg["refinement"] = {"rounds": 1, "draws": 40, "points": 8}
    cfg["sampler"].update(draws=60, tune=60, compile_mode="C")
    cfg["predict"]["draws"] = 0
    first = Calibration(copy.deepcopy(cfg), tmp_path / "run")
    summary = first.run()
    assert len(first.campaigns) == 8
    key = first.campaign_key()
    assert "exponential-dt0.05x4-k2" in key                  # campaigns are keyed by numerics and design
    for camp in first.campaigns.values():
        assert len(camp.meta["refinement_rounds"]["round1"]) == 8 and camp.n >= 32
    check = summary["surrogate_at_posterior"]
    assert check["n_draws"] == 40 and np.isfinite(check["max_rmse"])
    assert summary["information_criteria"]["n_data"] == 40 and summary["information_criteria"]["aicc"] is not None
    again = Calibration(copy.deepcopy(cfg), tmp_path / "run", force=True, progress=False)
    again.train()
    again.refine()                                           # round1 is recorded: its runs are not proposed again
    sizes = {c: camp.n for c, camp in again.campaigns.items()}
    assert sizes == {c: camp.n for c, camp in first.campaigns.items()}
    assert all(camp.status()["pending"] == 0 for camp in again.campaigns.values())


def test_pretreatment_volume_can_be_a_per_row_parameter(tmp_path):
    """The day-0 volume as a simulator parameter (per mouse in a calibration) gives exactly the runs of simulators
    built with that volume; the workflow takes its range from [design.bounds] and its scale from [design.scales]."""
    from immunocal.forward.rit.simulator import PRETREATMENT_VOLUME

    cond = {"rt_days": [10.0, 11.0], "rt_doses_gy": [8.0, 8.0]}
    fm = RitSimulator(parameter_names=("tumour_alpha", PRETREATMENT_VOLUME), data_days=(7.0, 30.0))
    out = fm.simulate([[0.05, 40.0], [0.08, 70.0]], cond)
    for row, (alpha, v0) in enumerate([(0.05, 40.0), (0.08, 70.0)]):
        ref = RitSimulator(parameter_names=("tumour_alpha",), data_days=(7.0, 30.0), pretreatment_volume_mm3=v0)
        np.testing.assert_array_equal(out[row], ref.simulate([[alpha]], cond)[0])
    cfg = load_config(dataset_dir("morisada2018") / "moc1.toml")
    cfg["model"]["options"]["parameter_names"].append(PRETREATMENT_VOLUME)
    cfg["model"]["options"].pop("pretreatment_volume_mm3")
    cfg["parameters"][PRETREATMENT_VOLUME] = {"role": "latent", "prior": {"distribution": "LogNormal", "mu": 4.1,
                                                                         "sigma": 0.3}}
    cal = Calibration(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"no range for \['pretreatment_volume_mm3'\]"):
        cal.space(cal.free)
    cfg["design"]["bounds"][PRETREATMENT_VOLUME] = [20.0, 150.0]
    cfg["design"]["scales"] = {PRETREATMENT_VOLUME: "log"}
    space = Calibration(cfg, tmp_path, progress=False).space(cal.free)
    assert space.names[-1] == PRETREATMENT_VOLUME and space.scales[-1] == "log" and space.upper[-1] == 150.0


def test_per_row_horizons_cost_nothing_beyond_and_change_nothing_before():
    """``until``: each row simulated only to its own last data day (later outputs hold the value there); values up
    to that day are bit-identical to the full run, including a row whose horizon lies before day 0."""
    fm = RitSimulator(data_days=(3.0, 60.0), day_offset=7.0, pretreatment_volume_mm3=50.0)
    theta = np.array([[0.2, 5.0, 0.1], [0.15, 20.0, 0.05], [0.1, 2.0, 0.2]])
    cond = {"rt_days": [8.0, 9.0], "rt_doses_gy": [8.0, 8.0]}
    until = np.array([20.0, 60.0, 5.0])
    full = fm.simulate(theta, cond)
    part = fm.simulate(theta, cond, until=until)
    for r, u in enumerate(until):
        keep = fm.times <= u
        np.testing.assert_array_equal(part[r, 0, keep], full[r, 0, keep])
        assert np.all(part[r, 0, ~keep] == part[r, 0, keep][-1]) or u < fm.day_offset
    assert not np.array_equal(part[0], full[0])  # row 0 really stopped at day 20
    with pytest.raises(ValueError, match="one finite data day per row"):
        fm.simulate(theta, cond, until=[20.0, 30.0])


@pytest.mark.slow
def test_bench_exact_route_times_value_and_gradient_of_the_40_moc1_mice():
    from immunocal.calib.bench import bench_exact_rit

    res = bench_exact_rit(repeats=1)
    assert res["exact_rit_moc1_subjects"] == 40 and res["exact_rit_numerics"] == "exponential-dt1x1-k2"
    assert 0 < res["exact_rit_moc1_40_value_s"] < res["exact_rit_moc1_40_value_grad_s"]


@pytest.mark.slow
def test_bench_quickstart_nuts_times_nuts_on_the_quickstart_model(tmp_path):
    """The NUTS-wall benchmark of ``immunocal bench calib`` runs the quickstart's config (short here) and reports
    PyMC's own sampling time, within the whole fit's, with the run's diagnostics."""
    from immunocal.calib.bench import bench_quickstart_nuts

    res = bench_quickstart_nuts(draws=20, tune=20, chains=2, cores=1)
    assert res["quickstart_nuts_settings"]["config"].endswith("moc1_exact.toml")
    assert res["quickstart_nuts_settings"]["init"] == "laplace+adapt_full"
    assert 0 < res["quickstart_nuts_s"] < res["quickstart_fit_s"]
    assert res["quickstart_nuts_leapfrog_per_draw"] >= 1 and res["quickstart_gradient_s"] > 0
    assert res["quickstart_nuts_divergences"] >= 0 and res["quickstart_nuts_target_s"] == 180.0
