"""Seed-000 LightGBM nested-CV baseline (calib/baseline.py)."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    r2_score,
    roc_auc_score,
)
from sklearn.utils.estimator_checks import parametrize_with_checks

from immunocal.calib.baseline import (
    LATENT_FEATURES,
    SMALL_GRID,
    LatentLGBMRegressor,
    StagedGridSearchCV,
    _classifier_search,
    _grid,
    _split,
    binary_metrics,
    bootstrap_ci,
    cliffs_delta,
    cliffs_delta_table,
    make_preprocessor,
    nested_cv_binary,
    nested_cv_latents,
    outer_folds,
    regression_metrics,
    response_landscape,
)
from immunocal.calib.cohort import generate_cohort

TINY = {"n_estimators": [20], "max_depth": [2], "learning_rate": [0.1], "min_child_samples": [2]}


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(40, np.random.default_rng(3))


# sklearn conventions. With the default admissible range [0, 1] every check that feeds unbounded regression
# targets fails by design (targets outside [a, b] are rejected, never clipped), so the checks run on a wide range.
@parametrize_with_checks([LatentLGBMRegressor(param_grid=TINY, inner_cv=2, lower=-1e3, upper=1e3, random_state=0)],
                         expected_failed_checks=lambda est: {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_metrics_match_hand_values_and_sklearn():
    y, yhat = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 4.0])
    m = regression_metrics(y, yhat)
    assert m == pytest.approx({"spearman": 1.0, "mae": 0.25, "rmse": 0.5, "r2": 0.8})
    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30)
    m = regression_metrics(a, b)
    assert m["spearman"] == pytest.approx(spearmanr(a, b)[0]) and m["r2"] == pytest.approx(r2_score(a, b))
    assert m["mae"] == pytest.approx(np.mean(np.abs(a - b))) and m["rmse"] == pytest.approx(np.sqrt(np.mean((a - b) ** 2)))
    yb, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])
    assert binary_metrics(yb, p) == pytest.approx({"balanced_accuracy": 0.5, "f1": 0.5, "auroc": 0.75,
                                                   "auprc": 0.5 + 0.5 * 2 / 3})
    yb, p = (rng.random(50) < 0.4).astype(int), rng.random(50)
    m = binary_metrics(yb, p)
    lab = (p >= 0.5).astype(int)
    assert m == pytest.approx({"balanced_accuracy": balanced_accuracy_score(yb, lab), "f1": f1_score(yb, lab),
                               "auroc": roc_auc_score(yb, p), "auprc": average_precision_score(yb, p)})


def test_cliffs_delta_hand_computed():
    assert cliffs_delta([3, 4], [1, 2, 3]) == pytest.approx(5 / 6)   # 5 wins, 1 tie, 0 losses of 6 pairs
    assert cliffs_delta([1, 2, 3], [2, 2]) == pytest.approx(0.0)     # 2 losses, 2 ties, 2 wins
    assert cliffs_delta([0, 0], [1]) == -1.0
    assert np.isnan(cliffs_delta([], [1]))


def test_bootstrap_ci_brackets_the_estimate(rng):
    x = rng.normal(1.0, 1.0, 200)
    ci = bootstrap_ci(lambda a: {"mean": float(a.mean())}, [x], rng, n_boot=400)["mean"]
    assert ci[0] < x.mean() < ci[1] and ci[1] - ci[0] == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_staged_search_equals_gridsearchcv(cohort, kind):
    """Reading n_estimators = 100 off the 200-tree fit chooses, scores and refits exactly as GridSearchCV."""
    from lightgbm import LGBMRegressor
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline

    feats = list(LATENT_FEATURES)
    cont, cat = _split(feats)
    cont, cat = [feats.index(c) for c in cont], [feats.index(c) for c in cat]
    X = cohort[feats].to_numpy(object)
    grid = {"n_estimators": [10, 30, 20], "max_depth": [2, 3], "learning_rate": [0.05, 0.3], "min_child_samples": [1, 3]}
    if kind == "regressor":
        y = cohort["true_theta_env"].to_numpy()
        pipe = Pipeline([("prep", make_preprocessor(cont, cat)),
                         ("model", LGBMRegressor(objective="huber", alpha=0.9, subsample=0.8, subsample_freq=1,
                                                 random_state=4, n_jobs=1, verbose=-1))])
        cv, scoring = KFold(3, shuffle=True, random_state=4), "neg_mean_absolute_error"
        staged = StagedGridSearchCV(pipe, _grid(grid), scoring, cv).fit(X, y)
    else:
        y = cohort["dcr"].to_numpy().astype(int)
        staged = _classifier_search(cont, cat, seed=4, param_grid=grid).fit(X, y)
        pipe, cv, scoring = staged.estimator, staged.cv, staged.scoring
    ref = GridSearchCV(pipe, _grid(grid), scoring=scoring, cv=cv, error_score="raise").fit(X, y)
    assert [dict(p) for p in ref.cv_results_["params"]] == staged.cv_results_["params"]
    np.testing.assert_allclose(staged.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], rtol=1e-12)
    assert staged.best_params_ == ref.best_params_ and staged.best_score_ == pytest.approx(ref.best_score_, rel=1e-12)
    out = staged.predict_proba(X)[:, 1] if kind == "classifier" else staged.predict(X)
    ref_out = ref.predict_proba(X)[:, 1] if kind == "classifier" else ref.predict(X)
    np.testing.assert_array_equal(out, ref_out)


def test_staged_search_rejects_unsupported_settings(cohort):
    with pytest.raises(ValueError, match="scoring 'r2' not supported"):
        StagedGridSearchCV(None, {"model__n_estimators": [1]}, scoring="r2").fit(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="needs 'model__n_estimators'"):
        StagedGridSearchCV(None, {"model__max_depth": [1]}).fit(np.zeros((4, 1)), np.zeros(4))


def test_predictions_bounded_and_targets_checked(cohort):
    cont, cat = _split(LATENT_FEATURES)
    X, Y = cohort[list(LATENT_FEATURES)], cohort[[f"true_theta_{n}" for n in ("inf", "env")]].to_numpy()
    est = LatentLGBMRegressor(continuous=cont, categorical=cat, param_grid=TINY, random_state=0).fit(X, Y)
    pred = est.predict(X)
    assert pred.shape == (40, 2) and np.all((pred >= 0) & (pred <= 1))
    assert est.estimators_[0].best_estimator_.named_steps["model"].get_params()["subsample_freq"] == 1
    assert est.estimators_[0].best_estimator_.named_steps["model"].objective == "huber"
    with pytest.raises(ValueError, match=r"targets must lie in the admissible range \[0.0, 1.0\]"):
        est.fit(X, Y * 2)


def test_preprocessing_statistics_from_training_folds_only(cohort):
    cont, cat = _split(LATENT_FEATURES)
    folds = outer_folds(len(cohort), 5, seed=0)
    tr = folds != 0
    X = cohort[list(LATENT_FEATURES)]
    est = LatentLGBMRegressor(continuous=cont, categorical=cat, param_grid=TINY, random_state=0)
    est.fit(X[tr], cohort.loc[tr, "true_theta_exh"].to_numpy())
    prep = est.estimators_[0].best_estimator_.named_steps["prep"]
    train_med = np.median(np.log1p(X.loc[tr, cont].to_numpy(float)), axis=0)
    all_med = np.median(np.log1p(X[cont].to_numpy(float)), axis=0)
    assert np.allclose(prep.medians_, train_med)
    assert not np.allclose(prep.medians_, all_med)
    assert list(prep.categories_[0]) == sorted(set(X.loc[tr, "tumour_type"]))


def test_missing_observed_features_are_imputed_with_training_medians(cohort):
    cont, cat = _split(LATENT_FEATURES)
    X = cohort[list(LATENT_FEATURES)].copy()
    X.loc[0:4, "ferritin_peak"] = np.nan
    est = LatentLGBMRegressor(continuous=cont, categorical=cat, param_grid=TINY, random_state=0)
    est.fit(X[5:], cohort["true_theta_env"][5:])
    prep = est.estimators_[0].best_estimator_.named_steps["prep"]
    Z = prep.transform(X[:5].to_numpy(object))
    j = list(LATENT_FEATURES).index("ferritin_peak")
    assert np.allclose(Z[:, j], prep.medians_[cont.index("ferritin_peak")])


def test_no_leakage_from_a_fold_index_copy(cohort):
    """A feature that is a noisy copy of the outer fold index must not improve out-of-fold recovery."""
    feats = [f for f in LATENT_FEATURES]
    lat = ("theta_inf", "theta_esc")
    base = nested_cv_latents(cohort, feats, latents=lat, param_grid=TINY, seed=4)
    df = cohort.copy()
    df["fold_copy"] = outer_folds(len(df), 5, seed=4) + np.random.default_rng(0).normal(0, 0.1, len(df))
    leak = nested_cv_latents(df, feats + ["fold_copy"], latents=lat, param_grid=TINY, seed=4)
    for n in lat:
        assert leak["latents"][n]["mae"] >= base["latents"][n]["mae"] - 0.02, n


def test_no_leakage_from_the_target_on_training_rows_only(cohort):
    """A feature equal to the target on training rows but noise on test rows cannot help under nested CV;
    the in-sample fit (no CV) would look almost perfect."""
    feats = list(LATENT_FEATURES)
    folds = outer_folds(len(cohort), 5, seed=4)
    df = cohort.copy()
    rng = np.random.default_rng(1)
    oof = []
    for k in range(5):
        tr, te = folds != k, folds == k
        d = df.copy()
        d["leak"] = np.where(tr, d["true_theta_esc"], rng.random(len(d)))
        cont, cat = _split(feats)
        est = LatentLGBMRegressor(continuous=cont, categorical=cat, param_grid=TINY, random_state=0)
        est.fit(d.loc[tr, feats + ["leak"]], d.loc[tr, "true_theta_esc"])
        oof.append((te, est.predict(d.loc[te, feats + ["leak"]]), est.predict(d.loc[tr, feats + ["leak"]])))
    pred = np.empty(len(df))
    for te, p, _ in oof:
        pred[te] = p
    y = df["true_theta_esc"].to_numpy()
    assert regression_metrics(y, pred)["r2"] < 0.3
    te, _, p_tr = oof[0]
    assert regression_metrics(y[~te], p_tr)["r2"] > 0.8       # the leak is learnt in-sample


def test_nested_cv_outputs_and_determinism(cohort):
    a = nested_cv_latents(cohort, repeats=2, param_grid=TINY, seed=1)
    b = nested_cv_latents(cohort, repeats=2, param_grid=TINY, seed=1)
    assert np.array_equal(a["oof"], b["oof"])
    assert a["oof"].shape == (2, 40, 6) and np.all((a["oof"] >= 0) & (a["oof"] <= 1))
    assert set(a["latents"]) == {"theta_inf", "theta_exh", "theta_cyt", "theta_esc", "theta_env", "theta_init"}
    assert len(a["latents"]["theta_env"]["per_fold"]["mae"]) == 10
    m = regression_metrics(cohort["true_theta_init"], a["oof"][0, :, 5])
    assert m["mae"] == pytest.approx(regression_metrics(cohort["true_theta_init"], a["oof"][0, :, 5])["mae"])


def test_binary_baseline_and_interpretation(cohort):
    r = nested_cv_binary(cohort, "dcr", param_grid=TINY, n_boot=200)
    for k in ("balanced_accuracy", "f1", "auroc", "auprc"):
        lo, hi = r["ci95"][k]
        assert 0 <= lo <= hi <= 1
    assert r["observed_frequency"] == pytest.approx(cohort["dcr"].mean())
    assert len(r["oof_probability"]) == 40
    cd = cliffs_delta_table(cohort, "orr", n_boot=200)
    assert cd["theta_cyt"]["ci95"][0] <= cd["theta_cyt"]["delta"] <= cd["theta_cyt"]["ci95"][1]
    land = response_landscape(cohort, "orr", n_grid=11)
    assert np.array(land["probability"]).shape == (11, 11)
    with pytest.raises(ValueError, match="'dcr' has .* patients per class"):
        nested_cv_binary(cohort.assign(dcr=[1] * 38 + [0] * 2), "dcr", param_grid=TINY)
    with pytest.raises(ValueError, match=r"row 1, column 'orr': value 2 is not 0/1"):
        nested_cv_binary(cohort.assign(orr=[2] + [0] * 39), "orr", param_grid=TINY)


def test_cli_baseline_json_contract(cohort, tmp_path):
    from immunocal.calib.cli.main import main
    from immunocal.calib.cohort import save_cohort

    # a cohort file the generator did not write: only the contract columns, reordered, no 'cohort' label
    cols = ["patient_id", *LATENT_FEATURES, "orr", "dcr", *[f"true_theta_{n}" for n in
                                                            ("init", "env", "esc", "cyt", "exh", "inf")]]
    path = save_cohort(cohort[cols], tmp_path / "other.csv")
    rc = main(["baseline", "lgbm", "--cohort", str(path), "--out", str(tmp_path / "out"), "--grid", "small",
               "--n-boot", "50"])
    assert rc == 0
    res = json.loads((tmp_path / "out" / "lgbm_baseline.json").read_text())
    assert set(res["latents"]) == {f"theta_{n}" for n in ("inf", "exh", "cyt", "esc", "env", "init")}
    for v in res["latents"].values():
        assert {"spearman", "mae", "rmse", "r2"} <= set(v)
    assert {"balanced_accuracy", "f1", "auroc", "auprc"} <= set(res["binary"]["orr"]) and "dcr" in res["binary"]
    assert res["param_grid"] == {k: list(v) for k, v in SMALL_GRID.items()}


def test_cli_generate_and_errors(tmp_path, capsys):
    from immunocal.calib.cli.main import main

    out = tmp_path / "c.csv"
    assert main(["cohort", "generate", "--n", "5", "--seed", "1", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cohort"] == "virtual"
    assert main(["baseline", "lgbm", "--cohort", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 2
    assert "immunocal: error: cohort file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(out.read_text().replace("pancreatic", "liver").replace("gastric", "liver").replace("other", "liver"))
    assert main(["baseline", "lgbm", "--cohort", str(bad), "--out", str(tmp_path), "--grid", "small"]) == 2
    assert "column 'tumour_type': unknown tumour type 'liver'" in capsys.readouterr().err


def test_cli_generate_params_file(tmp_path, capsys):
    from immunocal.calib.cli.main import main
    from immunocal.priors import registry

    good = registry().parameter_set("cart", "normalised").replace(tumour_growth_rate=0.1).to_file(tmp_path / "c.toml")
    assert main(["cohort", "generate", "--n", "2", "--out", str(tmp_path / "a.csv"), "--params", str(good)]) == 0
    bad = registry().parameter_set("cart", "paper").to_file(tmp_path / "p.toml")
    assert main(["cohort", "generate", "--n", "2", "--out", str(tmp_path / "b.csv"), "--params", str(bad)]) == 2
    assert "needs parameters of model 'cart', preset 'normalised'" in capsys.readouterr().err
