"""Virtual CT041-like cohort generator (calib/cohort.py)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from immunocal.calib.baseline import LATENT_FEATURES, check_table
from immunocal.calib.cohort import (
    TRUTH,
    CohortConfig,
    generate_cohort,
    load_cohort,
    sample_patients,
    save_cohort,
    simulate_one,
    summary,
)
from immunocal.priors.latents import LATENTS


@pytest.fixture(scope="module")
def cohort40():
    return generate_cohort(40, np.random.default_rng(7))


def test_columns_truth_and_virtual_label(cohort40, tmp_path):
    df = cohort40
    assert list(df.columns[:2]) == ["cohort", "patient_id"]
    assert (df["cohort"] == "virtual").all()
    assert set(TRUTH) == {f"true_{n}" for n in LATENTS} <= set(df.columns)
    assert df[list(TRUTH)].apply(lambda c: c.between(0, 1).all()).all()
    assert set(df["best_recist"]) <= {"CR", "PR", "SD", "PD"}
    assert (df["orr"] == df["best_recist"].isin(["CR", "PR"])).all()
    assert (df["dcr"] == df["best_recist"].isin(["CR", "PR", "SD"])).all()
    assert df["crs_grade"].between(0, 4).all() and set(df["dose"]) <= {2.5e8, 3.75e8, 5.0e8}
    path = save_cohort(df, tmp_path / "c.csv", seed=7)
    assert path.read_text().startswith("# VIRTUAL cohort")
    back = load_cohort(path)
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-7, check_dtype=False)


def test_deterministic_for_a_seed_and_independent_of_processes(cohort40):
    again = generate_cohort(40, np.random.default_rng(7), processes=2)
    pd.testing.assert_frame_equal(again, cohort40)
    other = generate_cohort(40, np.random.default_rng(8))
    assert not np.allclose(other["true_theta_inf"], cohort40["true_theta_inf"])


def test_covariate_effects_visible_in_a_large_cohort():
    # latents only (no simulation): signs of the documented effects
    df = sample_patients(5000, np.random.default_rng(3))
    pan = (df["tumour_type"] == "pancreatic").astype(float)
    assert spearmanr(pan, df["true_theta_env"])[0] > 0.1
    assert spearmanr(pan, df["true_theta_inf"])[0] < -0.05
    assert spearmanr(df["cldn18_2"], df["true_theta_esc"])[0] < -0.1
    assert spearmanr(df["cldn18_2"], df["true_theta_cyt"])[0] > 0.1
    assert spearmanr(df["prior_lines"], df["true_theta_exh"])[0] > 0.1
    assert abs(spearmanr(df["dose"], df["true_theta_inf"])[0]) < 0.05      # dose has no latent effect


def test_covariate_and_latent_effects_on_outcomes():
    df = generate_cohort(300, np.random.default_rng(11))
    assert spearmanr(df["baseline_burden"], df["true_theta_init"])[0] > 0.6
    assert spearmanr(df["true_theta_cyt"], df["orr"])[0] > 0.2
    assert spearmanr(df["true_theta_esc"], df["orr"])[0] < -0.1
    assert spearmanr(df["cldn18_2"], df["orr"])[0] > 0.0


def test_model_resolution_is_converged(rng):
    """Cheapest resolution (rtol 1e-6, 1/4-day output) vs refined (1e-9, 1/16 day): < 5 % change, same RECIST."""
    cfg = CohortConfig()
    df = sample_patients(6, rng, cfg)
    noise = df.attrs["noise"]
    for i in range(6):
        th = {n: df[f"true_{n}"].iat[i] for n in LATENTS}
        nz = {k: noise[k][i] for k in ("cmax", "crs", "markers", "scans")}
        a = simulate_one(th, df["dose"].iat[i], nz, cfg)
        b = simulate_one(th, df["dose"].iat[i], nz, cfg, rtol=1e-9, obs_step=1 / 16)
        assert a["best_recist"] == b["best_recist"] and a["crs_grade"] == b["crs_grade"]
        for k in ("model_best_response", "model_c_max", "model_k_peak", "pfs_months", "c_max", "t_max",
                  "il6_peak", "ferritin_peak"):
            assert abs(b[k] - a[k]) <= 0.05 * max(abs(a[k]), 1e-3), (k, a[k], b[k])


def test_bad_config_and_arguments():
    with pytest.raises(ValueError, match="tumour_type_p must be probabilities summing to 1"):
        CohortConfig(tumour_type_p=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="unknown latent or covariate"):
        CohortConfig(effects={"theta_inf": {"age": 1.0}})
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        sample_patients(5, 1)
    with pytest.raises(ValueError, match="at least one patient"):
        sample_patients(0, np.random.default_rng(0))


def test_bad_input_names_row_and_column(cohort40):
    feats, targets = LATENT_FEATURES, list(TRUTH)
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['c_max'\]"):
        check_table(cohort40.drop(columns="c_max"), feats, targets)
    df = cohort40.copy()
    df.loc[2, "dose"] = np.nan
    with pytest.raises(ValueError, match=r"row 3 \(patient_id V0003\), column 'dose': value nan is missing"):
        check_table(df, feats, targets)
    df = cohort40.copy()
    df.loc[1, "tumour_type"] = "liver"
    with pytest.raises(ValueError, match=r"row 2 \(patient_id V0002\), column 'tumour_type': unknown tumour type "
                                         r"'liver'"):
        check_table(df, feats, targets)
    df = cohort40.copy()
    df.loc[4, "true_theta_env"] = np.nan
    with pytest.raises(ValueError, match=r"row 5 .*column 'true_theta_env'"):
        check_table(df, feats, targets)


@pytest.mark.slow
def test_orr_dcr_tuned_over_1000_patients():
    s = summary(generate_cohort(1000, np.random.default_rng(2026), processes=2))
    assert abs(s["orr"] - 0.49) <= 0.05 and abs(s["dcr"] - 0.73) <= 0.05, s
