"""The RIT model behind the calibration core: adapter, schedule mapping, Morisada set-up, quickstart end to end."""

import json

import numpy as np
import pytest

from calib.forward_api import ForwardModel, check_output
from calib.rit_calibration import (
    FitSettings,
    RitForwardModel,
    morisada_setup,
    schedule_from_condition,
    to_log_volume,
)
from forward.rit import simulate_volumes
from priors import registry


def test_adapter_matches_forward_model_and_protocol():
    fm = RitForwardModel(data_days=(7.0, 40.0), day_offset=7.0, pretreatment_volume_mm3=60.0)
    assert isinstance(fm, ForwardModel)
    cond = {"rt_days": [10.0, 11.0], "rt_doses_gy": [8.0, 8.0], "drug": "anti_pd1", "drug_days": [7.0, 12.0, 17.0]}
    theta = np.array([[0.1, 20.0, 0.05], [0.2, 5.0, 0.1]])
    out = check_output(fm, fm.simulate(theta, cond), 2)
    sched = schedule_from_condition(cond, 7.0, t_end=34.0)
    assert sched.rt_days == (3.0, 4.0) and sched.pdl1_days == (0.0, 5.0, 10.0)
    ps = registry().parameter_set("rit", "dewan_table3").replace(
        tumour_proliferation_rate=0.2, immune_kill_rate=5.0, tumour_alpha=0.1)
    direct = simulate_volumes(ps, sched, fm.times - 7.0, fm.config())
    np.testing.assert_allclose(out[1, 0], np.log(np.maximum(direct, 1e-6)), rtol=1e-12)
    assert out[0, 0, 0] == pytest.approx(np.log(60.0), rel=1e-6)  # day 0 sits at the pre-treatment volume


def test_refinement_shrinks_the_surrogate_error_where_the_posterior_is(tmp_path):
    """Dewan restricted variant, one irradiated arm: a coarse design, then one active-refinement round around a
    posterior-like cloud; the true-model check at fresh draws of that cloud improves and the round is recorded."""
    from calib.rit_calibration import posterior_check, refine_surrogates, train_surrogates
    from calib.rit_dewan import dewan_forward, load_dewan

    _, _, conds = load_dewan()
    fwd = dewan_forward("restricted")
    cond = "tsa_fig2_8Gyx3+PBS"
    settings = FitSettings(n_design=24, refine_points=16)
    trained = train_surrogates("calib.rit_dewan:dewan_restricted", fwd, [cond], conds, tmp_path, settings, False)
    rng = np.random.default_rng(0)
    centre = np.array([0.14, 0.03, 18.0])                        # near seed 002 Table 3 (λ1, α_C, p)
    cloud = centre * np.exp(rng.normal(0.0, 0.05, size=(400, 3)))
    before = posterior_check(trained["surrogates"], fwd, conds, cloud[200:], n=40)
    refine_surrogates(trained, cloud[:200], settings, round_no=1, progress=False)
    after = posterior_check(trained["surrogates"], fwd, conds, cloud[200:], n=40)
    assert after["worst_condition"] == cond and before["n_draws"] == 40
    assert after["max_rmse"] < 0.5 * before["max_rmse"]
    camp = trained["campaigns"][cond]
    assert len(camp.meta["refinement_rounds"]["round1"]) == 16 and len(camp.training_data()[0]) == 24 + 16


def test_schedule_mapping_errors():
    with pytest.raises(ValueError, match="before model day 0"):
        schedule_from_condition({"rt_days": [5.0], "rt_doses_gy": [2.0]}, 7.0, t_end=30.0)
    with pytest.raises(ValueError, match="unknown drug 'aspirin'"):
        schedule_from_condition({"drug": "aspirin", "drug_days": [8.0]}, 7.0, t_end=30.0)
    # a misspelled schedule column used to be dropped silently (an RT-only model for a drug arm)
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['drug_dayz'\]"):
        schedule_from_condition({"drug": "anti_pd1", "drug_dayz": [8.0]}, 7.0, t_end=30.0)
    with pytest.raises(ValueError, match="before day_offset"):
        RitForwardModel(data_days=(5.0, 30.0), day_offset=7.0)


def test_morisada_setup_log_volumes_and_assumptions():
    setup, meas, conds = morisada_setup("MOC1")
    assert set(meas.condition) == set(setup.fit_conditions + setup.heldout_conditions)
    assert set(meas.observable) == {"log_volume"}
    assert np.all(np.isfinite(meas.value)) and meas.value.max() < np.log(5e3)
    assert 20 < setup.assumptions["pretreatment_volume_mm3"] < 120
    assert setup.latent == ("tumour_proliferation_rate", "immune_kill_rate")
    for name, prior in setup.priors.items():
        lo, hi = setup.forward.space().lower[setup.forward.parameter_names.index(name)], \
            setup.forward.space().upper[setup.forward.parameter_names.index(name)]
        assert prior.support == pytest.approx((lo, hi))  # priors live on the surrogate's training box
    with pytest.raises(ValueError, match="unknown Morisada cell line"):
        morisada_setup("B16")


def test_to_log_volume_rejects_zeros():
    setup, meas, _ = morisada_setup("MC38")
    from calib.data import Measurements

    bad = Measurements.from_arrays(["m"], ["c"], ["v"], [1.0], [0.0], source="x.csv")
    with pytest.raises(ValueError, match="x.csv: volumes must be > 0"):
        to_log_volume(bad)


@pytest.mark.slow
def test_quickstart_end_to_end_tiny(tmp_path):
    from calib.quickstart import run_quickstart

    report = run_quickstart(tmp_path, settings=FitSettings(n_design=24, draws=40, tune=40, chains=2),
                            progress=False)
    cal = report["calibration"]
    assert 0.0 <= cal["heldout_coverage_90"] <= 1.0
    check = cal["surrogate_at_posterior"]               # surrogate vs true model at posterior mice, every arm
    assert check["n_draws"] == 40 and len(check["per_condition"]) == 6 and np.isfinite(check["max_rmse"])
    for f in ("report.json", "posterior_summary.json", "diagnostics.json", "ppc_fit_arms.png",
              "heldout_prediction.png"):
        assert (tmp_path / f).exists(), f
    diag = json.loads((tmp_path / "diagnostics.json").read_text())
    assert diag["ok"] is False and diag["violations"]  # 40 draws cannot meet ESS >= 400: reported, not hidden


@pytest.mark.slow
def test_dewan_fit_refines_checkpoints_and_resumes(tmp_path):
    """Tiny Dewan fit (restricted variant): one refinement round recorded in every campaign, the surrogate checked
    at posterior draws, and a rerun with the same settings loads the checkpoint instead of sampling again."""
    from calib.campaign import Campaign
    from calib.rit_dewan import dewan_forward, fit_variant

    settings = FitSettings(n_design=24, draws=60, tune=60, refine_rounds=1, refine_draws=40, refine_points=8)
    first = fit_variant("restricted", tmp_path, settings, heldout=False)
    assert set(first.surrogates) == {c for c in first.surrogates if c.startswith("tsa_fig2_")}
    assert len(first.surrogates) == 8
    tag = dewan_forward("restricted").config().numerics_tag  # campaigns are keyed by design and numerics
    assert tag == "exponential-dt0.05x4-k2"
    camp = Campaign(tmp_path / "restricted" / "campaigns" / f"sobol24-seed1-{tag}" / "tsa_fig2_8Gyx3+PBS")
    assert len(camp.meta["refinement_rounds"]["round1"]) == 8
    check = first.validation["at_posterior"]
    assert check["n_draws"] == 40 and np.isfinite(check["max_rmse"])
    again = fit_variant("restricted", tmp_path, settings, heldout=False)
    np.testing.assert_array_equal(again.idata.posterior["tumour_alpha"].values,
                                  first.idata.posterior["tumour_alpha"].values)
    assert again.seconds == first.seconds                   # loaded, not re-timed
