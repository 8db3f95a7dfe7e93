"""Seed 000's LightGBM nested-CV baseline (§2.5–2.6, Table 2, Figs 5–9) on a (virtual) cohort table.

* :class:`LatentLGBMRegressor` — one ``LGBMRegressor`` per latent (Huber objective) on bounded-logit targets
  z = log((θ − a + ε)/(b − θ + ε)) (``immunocal.priors.bounded_logit``), continuous features log-transformed (log1p) and
  median-imputed, categorical features ordinal-encoded and kept, ordinal features passed through — all inside an
  sklearn ``Pipeline`` tuned by an inner grid search scored by MAE (:class:`StagedGridSearchCV`: ``GridSearchCV``'s
  candidates, scores and choice, with each grid point's smaller ``n_estimators`` read off the larger fit), so every
  statistic is fitted on the training rows only. Predictions are mapped back with the seed's θ = a + (b − a)·σ(ẑ) and projected
  onto [a, b] (Π_A).
* :func:`nested_cv_latents` — outer patient-level ``KFold`` (default 5), repeated with different shuffles:
  out-of-fold Spearman ρ, MAE, RMSE, R² per latent (pooled per repeat, then mean ± SD over repeats) and per fold.
* :func:`nested_cv_binary` — the direct empirical ORR/DCR baseline (``LGBMClassifier``, same grid, inner CV scored
  by log-loss): balanced accuracy, F1, AUROC, AUPRC with patient-level bootstrap 95 % CIs, observed vs predicted
  frequency.
* :func:`cliffs_delta`, :func:`cliffs_delta_table`, :func:`response_landscape` — Figs 8–9.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    RegressorMixin,
    TransformerMixin,
    clone,
    is_classifier,
)
from sklearn.model_selection import KFold, ParameterGrid, StratifiedKFold, check_cv
from sklearn.pipeline import Pipeline

from immunocal.priors import bounded_expit, bounded_logit, project
from immunocal.priors.latents import LATENTS

#: seed 000 §2.5 grid ("minimum number of samples per leaf" = LightGBM's min_child_samples)
SMALL_GRID = {"n_estimators": [50], "max_depth": [2], "learning_rate": [0.1], "min_child_samples": [2]}
PARAM_GRID = {"n_estimators": [100, 200], "max_depth": [2, 3], "learning_rate": [0.05, 0.1],
              "min_child_samples": [1, 2]}
CONTINUOUS = ("dose", "baseline_burden", "c_max", "t_max", "persistence", "il6_peak", "crp_peak", "ferritin_peak",
              "pfs_months")
CATEGORICAL = ("tumour_type",)
ORDINAL = ("cldn18_2", "prior_lines", "recist_score", "crs_grade", "pfs_event")
#: features of the latent regression: covariates and every observed output (x(p) of seed 000 §2.3 together with the
#: observations the seed's reference latents were fitted to)
LATENT_FEATURES = ("tumour_type", "cldn18_2", "prior_lines", "dose", "baseline_burden", "recist_score", "c_max",
                   "t_max", "persistence", "crs_grade", "il6_peak", "crp_peak", "ferritin_peak", "pfs_months",
                   "pfs_event")
#: features of the binary ORR/DCR baseline: pre-treatment covariates and early post-infusion observations
#: (RECIST, PFS and persistence are excluded: they define or follow the outcome)
BINARY_FEATURES = ("tumour_type", "cldn18_2", "prior_lines", "dose", "baseline_burden", "c_max", "t_max",
                   "crs_grade", "il6_peak", "crp_peak", "ferritin_peak")
REQUIRED_COVARIATES = ("tumour_type", "cldn18_2", "prior_lines", "dose", "baseline_burden")


class FoldPreprocessor(TransformerMixin, BaseEstimator):
    """Seed 000 §2.5 preprocessing, fitted on the training rows only (a light numpy ColumnTransformer).

    ``continuous`` columns (indices): log1p, then NaN replaced by the training medians ``medians_`` (of the
    log values); ``categorical`` columns: ordinal codes of the training categories ``categories_`` (unseen or
    missing → NaN, which LightGBM treats as missing); all other columns are passed through unchanged (kept in their
    original form, e.g. ordinal scores)."""

    def __init__(self, continuous=(), categorical=()):
        self.continuous = continuous
        self.categorical = categorical

    def _log(self, X):
        V = np.asarray(X[:, list(self.continuous)], dtype=float)
        if np.any(V[np.isfinite(V)] <= -1.0):
            raise ValueError("log-transformed (continuous) features must be > -1; got a value ≤ -1")
        return np.log1p(V)

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=object if len(self.categorical) else float)
        self.n_features_in_ = X.shape[1]
        if len(self.continuous):
            L = self._log(X)
            med = np.full(L.shape[1], 0.0)
            for j in range(L.shape[1]):
                f = L[np.isfinite(L[:, j]), j]
                med[j] = np.median(f) if f.size else 0.0
            self.medians_ = med
        self.categories_ = [np.array(sorted({v for v in X[:, c] if isinstance(v, str) or pd.notna(v)}, key=str),
                                     dtype=object) for c in self.categorical]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=object if len(self.categorical) else float)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, expected {self.n_features_in_}")
        out = np.empty(X.shape, dtype=float)
        special = set(self.continuous) | set(self.categorical)
        rest = [j for j in range(X.shape[1]) if j not in special]
        if rest:
            out[:, rest] = np.asarray(X[:, rest], dtype=float)
        if len(self.continuous):
            L = self._log(X)
            bad = ~np.isfinite(L)
            L[bad] = np.broadcast_to(self.medians_, L.shape)[bad]
            out[:, list(self.continuous)] = L
        for c, cats in zip(self.categorical, self.categories_):
            lookup = {v: float(i) for i, v in enumerate(cats)}
            out[:, c] = [lookup.get(v, np.nan) for v in X[:, c]]
        return out


def make_preprocessor(continuous: Sequence[int] = (), categorical: Sequence[int] = ()) -> FoldPreprocessor:
    """The per-fold preprocessor (column indices)."""
    return FoldPreprocessor(tuple(continuous), tuple(categorical))


def _grid(param_grid: Mapping | None) -> dict:
    return {f"model__{k}": list(v) for k, v in (param_grid or PARAM_GRID).items()}


STAGE_PARAM = "model__n_estimators"


class StagedGridSearchCV(MetaEstimatorMixin, BaseEstimator):
    """``GridSearchCV`` for a ``Pipeline`` ending in a LightGBM model, with the boosting rounds read off one fit.

    Boosting is sequential and LightGBM draws each iteration's bag from its seed, so the first n trees of an N-tree
    model *are* the n-tree model (``predict(num_iteration=n)``; exact, tested). Each combination of the other grid
    parameters is therefore fitted once per inner fold with the largest ``n_estimators`` and scored at every
    ``n_estimators`` of the grid. Candidates, their order, the per-fold scores (MAE or log-loss, as sklearn's
    ``neg_mean_absolute_error``/``neg_log_loss`` scorers), the mean, the rank with its tie rule and the refit on all
    rows are ``GridSearchCV``'s — tests/cohort/test_baseline.py checks the equality — at 2/3 of the boosting
    iterations and half the model fits for seed 000's grid ({100, 200}): what brings the N = 37 × 10-repeat nested CV
    under two minutes.
    """

    SCORERS = ("neg_mean_absolute_error", "neg_log_loss")

    def __init__(self, estimator, param_grid, scoring="neg_mean_absolute_error", cv=3, n_jobs=1):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.cv = cv
        self.n_jobs = n_jobs

    def _fold_scores(self, others, stages, X, y, train, test):
        from sklearn.metrics import log_loss, mean_absolute_error

        pipe = clone(self.estimator).set_params(**others, **{STAGE_PARAM: stages[-1]}).fit(X[train], y[train])
        Xt, model = pipe[:-1].transform(X[test]), pipe[-1]
        if self.scoring == "neg_log_loss":
            return [-log_loss(y[test], model.predict_proba(Xt, num_iteration=n)[:, 1]) for n in stages]
        return [-mean_absolute_error(y[test], model.predict(Xt, num_iteration=n)) for n in stages]

    def fit(self, X, y):
        from joblib import Parallel, delayed
        from scipy.stats import rankdata

        if self.scoring not in self.SCORERS:
            raise ValueError(f"StagedGridSearchCV: scoring {self.scoring!r} not supported (one of {self.SCORERS})")
        grid = dict(self.param_grid)
        if STAGE_PARAM not in grid:
            raise ValueError(f"StagedGridSearchCV: the grid needs '{STAGE_PARAM}'")
        candidates = list(ParameterGrid(self.param_grid))                     # GridSearchCV's order
        stages = sorted(grid.pop(STAGE_PARAM))
        position = {tuple(sorted(c.items())): i for i, c in enumerate(candidates)}
        splits = list(check_cv(self.cv, y, classifier=is_classifier(self.estimator)).split(X, y))
        others = list(ParameterGrid(grid))
        scores = Parallel(n_jobs=self.n_jobs)(delayed(self._fold_scores)(o, stages, X, y, tr, te)
                                              for o in others for tr, te in splits)
        table = np.empty((len(candidates), len(splits)))
        for t, fold_scores in enumerate(scores):
            o, f = others[t // len(splits)], t % len(splits)
            for n, v in zip(stages, fold_scores):
                table[position[tuple(sorted({**o, STAGE_PARAM: n}.items()))], f] = v
        mean = np.average(table, axis=1)
        rank = rankdata(-mean, method="min").astype(np.int32)
        self.best_index_ = int(rank.argmin())                                # first of the ties, as GridSearchCV
        self.best_params_ = candidates[self.best_index_]
        self.best_score_ = float(mean[self.best_index_])
        self.cv_results_ = {"params": candidates, "mean_test_score": mean, "rank_test_score": rank,
                            **{f"split{f}_test_score": table[:, f] for f in range(len(splits))}}
        self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_).fit(X, y)
        self.n_splits_ = len(splits)
        return self

    def predict(self, X):
        return self.best_estimator_.predict(X)

    def predict_proba(self, X):
        return self.best_estimator_.predict_proba(X)


class LatentLGBMRegressor(RegressorMixin, BaseEstimator):
    """Seed 000 §2.5 regressor: one Huber ``LGBMRegressor`` per target column on bounded-logit targets, tuned by an
    inner grid search (MAE; :class:`StagedGridSearchCV`), predictions mapped back and projected onto [lower, upper].

    Parameters
    ----------
    continuous, categorical : column names (DataFrame input) or indices (array input) to log-transform /
        ordinal-encode; all other columns pass through.
    lower, upper, eps : admissible range [a, b] of every target and ε of the bounded logit.
    param_grid : grid over LGBMRegressor arguments (default :data:`PARAM_GRID`).
    inner_cv : folds of the inner KFold.  huber_alpha : LightGBM's Huber δ (on the logit scale).
    subsample : row subsampling (``subsample_freq=1`` so it is active).
    """

    def __init__(self, continuous=(), categorical=(), lower=0.0, upper=1.0, eps=1e-6, param_grid=None, inner_cv=3,
                 huber_alpha=0.9, subsample=0.8, random_state=None, n_jobs=1):
        self.continuous = continuous
        self.categorical = categorical
        self.lower = lower
        self.upper = upper
        self.eps = eps
        self.param_grid = param_grid
        self.inner_cv = inner_cv
        self.huber_alpha = huber_alpha
        self.subsample = subsample
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _search(self, seed):
        from lightgbm import LGBMRegressor

        model = LGBMRegressor(objective="huber", alpha=self.huber_alpha, subsample=self.subsample, subsample_freq=1,
                              random_state=seed, n_jobs=1, verbose=-1)
        pipe = Pipeline([("prep", make_preprocessor(self.continuous_idx_, self.categorical_idx_)), ("model", model)])
        cv = KFold(self.inner_cv, shuffle=True, random_state=seed)
        return StagedGridSearchCV(pipe, _grid(self.param_grid), scoring="neg_mean_absolute_error", cv=cv,
                                  n_jobs=self.n_jobs)

    def _resolve(self, cols, names):
        idx = []
        for c in cols:
            if isinstance(c, str):
                if names is None or c not in names:
                    raise ValueError(f"column '{c}' not found in X (columns: {None if names is None else list(names)})")
                idx.append(names.index(c))
            else:
                idx.append(int(c))
        return tuple(idx)

    def _check_X(self, X, reset):
        from sklearn.utils.validation import check_array

        names = list(map(str, X.columns)) if isinstance(X, pd.DataFrame) else None
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy(dtype=object if len(self.categorical) else float)
        else:
            X = check_array(X, ensure_all_finite="allow-nan", dtype=object if len(self.categorical) else "numeric")
        if reset:
            self.n_features_in_ = X.shape[1]
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self.continuous_idx_ = self._resolve(self.continuous, names)
            self.categorical_idx_ = self._resolve(self.categorical, names)
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    def fit(self, X, y):
        from sklearn.utils.validation import check_random_state

        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        X = self._check_X(X, reset=True)
        y_arr = np.asarray(y, dtype=float)
        if y_arr.ndim not in (1, 2) or y_arr.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_targets) with n_samples = {X.shape[0]}, "
                             f"got {y_arr.shape}")
        if not np.all(np.isfinite(y_arr)):
            raise ValueError("y contains NaN or infinity; every training patient needs a reference latent")
        self.output_1d_ = y_arr.ndim == 1
        Y = y_arr.reshape(len(y_arr), -1)
        if np.any(Y < self.lower) or np.any(Y > self.upper):
            raise ValueError(f"targets must lie in the admissible range [{self.lower}, {self.upper}]; got values in "
                             f"[{Y.min():.4g}, {Y.max():.4g}]")
        rs = check_random_state(self.random_state)
        self.estimators_ = []
        for j in range(Y.shape[1]):
            z = bounded_logit(Y[:, j], self.lower, self.upper, self.eps)    # seed 000 §2.5 transform
            search = self._search(int(rs.randint(0, 2**31 - 1)))
            self.estimators_.append(search.fit(X, z))
        self.n_outputs_ = Y.shape[1]
        self.best_params_ = [{k.removeprefix("model__"): v for k, v in s.best_params_.items()}
                             for s in self.estimators_]
        return self

    def predict_logit(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "estimators_")
        X = self._check_X(X, reset=False)
        return np.column_stack([s.predict(X) for s in self.estimators_])

    def predict(self, X):
        z = self.predict_logit(X)
        theta = project(bounded_expit(z, self.lower, self.upper, self.eps, seed_form=True), self.lower, self.upper)
        return theta[:, 0] if self.output_1d_ else theta

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.multi_output = True
        return tags


# --------------------------------------------------------------------------------------------- metrics
def regression_metrics(y_true, y_pred) -> dict:
    """Spearman ρ (scipy), MAE, RMSE, R² (scikit-learn) of one latent; ρ is NaN for constant input."""
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    const = np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    rho = float("nan") if const else float(spearmanr(y_true, y_pred)[0])
    return {"spearman": rho, "mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}


def binary_metrics(y_true, p, threshold: float = 0.5) -> dict:
    """Balanced accuracy, F1 (label = p ≥ threshold), AUROC and AUPRC (average precision) — scikit-learn."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

    y_true, p = np.asarray(y_true, int), np.asarray(p, float)
    lab = (p >= threshold).astype(int)
    two = len(np.unique(y_true)) == 2
    return {"balanced_accuracy": float(balanced_accuracy_score(y_true, lab)),
            "f1": float(f1_score(y_true, lab, zero_division=0.0)),
            "auroc": float(roc_auc_score(y_true, p)) if two else float("nan"),
            "auprc": float(average_precision_score(y_true, p)) if two else float("nan")}


def bootstrap_ci(fn, arrays: Sequence[np.ndarray], rng: np.random.Generator, n_boot: int = 1000,
                 level: float = 0.95) -> dict:
    """Patient-level percentile bootstrap: resample rows of all ``arrays`` together; ``fn(*arrays) -> dict``.
    Resamples where a metric is NaN (e.g. one class only) are dropped for that metric."""
    n = len(arrays[0])
    draws: dict[str, list] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, v in fn(*(a[idx] for a in arrays)).items():
            draws.setdefault(k, []).append(v)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    out = {}
    for k, v in draws.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        out[k] = [float(x) for x in np.quantile(v, q)] if v.size else [float("nan")] * 2
    return out


def cliffs_delta(x, y) -> float:
    """Cliff's δ = P(X > Y) − P(X < Y) over all pairs (x from group 1, y from group 2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0 or y.size == 0:
        return float("nan")
    s = np.sign(x[:, None] - y[None, :])
    return float(s.mean())


def cliffs_delta_table(df: pd.DataFrame, outcome: str, latents: Sequence[str] = LATENTS, prefix: str = "true_",
                       rng: np.random.Generator | None = None, n_boot: int = 1000) -> dict:
    """Cliff's δ of each latent between outcome = 1 and outcome = 0, with a stratified bootstrap 95 % CI."""
    rng = rng or np.random.default_rng(0)
    y = df[outcome].to_numpy(int)
    out = {}
    for lat in latents:
        v = df[prefix + lat].to_numpy(float)
        a, b = v[y == 1], v[y == 0]
        d = cliffs_delta(a, b)
        boots = [cliffs_delta(rng.choice(a, a.size), rng.choice(b, b.size)) for _ in range(n_boot)] \
            if a.size and b.size else []
        ci = [float(x) for x in np.quantile(boots, [0.025, 0.975])] if boots else [float("nan")] * 2
        out[lat] = {"delta": d, "ci95": ci}
    return out


def response_landscape(df: pd.DataFrame, outcome: str = "orr", x: str = "true_theta_inf",
                       y: str = "true_theta_env", n_grid: int = 41) -> dict:
    """Response probability over the (θ_inf, θ_env) plane (Fig 9): logistic regression with an interaction term on
    the cohort's latents, evaluated on an ``n_grid``² grid of [0, 1]²."""
    from sklearn.linear_model import LogisticRegression

    X = df[[x, y]].to_numpy(float)
    feats = lambda A: np.column_stack([A, A[:, 0] * A[:, 1]])
    yy = df[outcome].to_numpy(int)
    if len(np.unique(yy)) < 2:
        raise ValueError(f"response_landscape: '{outcome}' has one class only")
    clf = LogisticRegression(C=10.0, max_iter=1000).fit(feats(X), yy)
    g = np.linspace(0.0, 1.0, n_grid)
    G = np.array(np.meshgrid(g, g)).reshape(2, -1).T
    return {"grid": g.tolist(), "x": x, "y": y,
            "probability": clf.predict_proba(feats(G))[:, 1].reshape(n_grid, n_grid).tolist(),
            "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0])}


# ------------------------------------------------------------------------------------------- nested CV
def outer_folds(n: int, n_splits: int = 5, seed: int = 0, y=None) -> np.ndarray:
    """Fold id (0..n_splits−1) of every patient for one outer split (stratified when ``y`` is given)."""
    folds = np.empty(n, dtype=int)
    if y is None:
        split = KFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(n))
    else:
        split = StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(n), y)
    for k, (_, test) in enumerate(split):
        folds[test] = k
    return folds


def _split(features: Sequence[str]):
    cont = [f for f in features if f in CONTINUOUS]
    cat = [f for f in features if f in CATEGORICAL]
    return cont, cat


def check_table(df: pd.DataFrame, features: Sequence[str], targets: Sequence[str], where: str = "cohort") -> None:
    """Required columns present; covariates and targets finite; tumour types known (error names row and column).
    Observed (non-covariate) features may be missing (NaN): they are median-imputed inside each training fold."""
    from immunocal.calib.cohort import validate_columns

    required = [f for f in features if f in REQUIRED_COVARIATES] + list(targets)
    missing = [c for c in list(features) + list(targets) if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing required column(s) {missing}")
    numeric = [c for c in required if c != "tumour_type"]
    validate_columns(df, required, numeric=numeric, where=where)
    for c in features:
        if c != "tumour_type" and not pd.api.types.is_numeric_dtype(df[c]):
            bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            i = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise ValueError(f"{where}: row {i + 1}, column '{c}': value {df[c].iat[i]!r} is not a number")


def _timed(fn, *args):
    import time

    t0 = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t0


def _map(fn, args: list, n_jobs: int, progress: bool, desc: str) -> tuple[list, float]:
    """Outer-fold tasks in order (:func:`immunocal.calib.parallel.map_tasks`, ``n_jobs`` processes). Returns the results and
    the CPU seconds spent in the tasks (summed over workers)."""
    from functools import partial

    from .parallel import map_tasks

    res = map_tasks(partial(_timed_star, fn), args, processes=n_jobs, progress=progress, desc=desc, unit="fold")
    return [r for r, _ in res], float(sum(c for _, c in res))


def _timed_star(fn, args):
    return _timed(fn, *args)


def _fit_latent_fold(base, X, Y, tr, te, seed):
    est = clone(base).set_params(random_state=seed).fit(X[tr], Y[tr])
    return est.predict(X[te]).reshape(int(te.sum()), -1), est.best_params_


def _fit_latent_fold_conformal(base, X, Y, tr, te, seed, inner_splits: int = 5):
    """Point predictions of the test rows and their conformal predictive ensembles: the test prediction's logit plus
    each out-of-fold residual (logit scale) of the training rows, from an inner ``inner_splits``-fold refit — split
    conformal with cross-validated residuals, fitted on the training rows only."""
    est = clone(base).set_params(random_state=seed).fit(X[tr], Y[tr])
    z_te = est.predict_logit(X[te])
    tr_idx = np.flatnonzero(tr)
    z_oof = np.empty((len(tr_idx), Y.shape[1]))
    for k, (a, b) in enumerate(KFold(inner_splits, shuffle=True, random_state=seed).split(tr_idx)):
        fit_rows, pred_rows = np.zeros(len(Y), bool), np.zeros(len(Y), bool)
        fit_rows[tr_idx[a]], pred_rows[tr_idx[b]] = True, True
        z_oof[b] = clone(base).set_params(random_state=seed + k + 1).fit(X[fit_rows], Y[fit_rows]).predict_logit(
            X[pred_rows])
    lo, hi, eps = base.lower, base.upper, base.eps
    resid = bounded_logit(Y[tr], lo, hi, eps) - z_oof  # (n_train, latents)
    ens = project(bounded_expit(z_te[:, None, :] + resid[None, :, :], lo, hi, eps, seed_form=True), lo, hi)
    return est.predict(X[te]).reshape(int(te.sum()), -1), ens


def conformal_latents(df: pd.DataFrame, features: Sequence[str] = LATENT_FEATURES, latents: Sequence[str] = LATENTS,
                      n_splits: int = 5, repeats: int = 1, seed: int = 0, n_jobs: int = 1,
                      param_grid: Mapping | None = None, progress: bool = False, inner_splits: int = 5) -> dict:
    """LightGBM latent predictions with uncertainty on the same outer folds as :func:`nested_cv_latents`: per
    repeat and patient the out-of-fold point prediction ``oof`` ``(repeats, n, latents)`` and a conformal
    predictive ensemble ``ensembles[r][i]`` ``(n_train, latents)`` (:func:`_fit_latent_fold_conformal`), so
    intervals, coverage and CRPS compare with a posterior's on equal terms."""
    targets = [f"true_{lat}" for lat in latents]
    check_table(df, features, targets)
    cont, cat = _split(features)
    base = LatentLGBMRegressor(continuous=cont, categorical=cat, param_grid=param_grid)
    X = df[list(features)].reset_index(drop=True)
    Y = df[targets].to_numpy(float)
    n = len(df)
    tasks = [(r, k, folds) for r in range(repeats) for folds in [outer_folds(n, n_splits, seed + r)]
             for k in range(n_splits)]
    fits, cpu = _map(_fit_latent_fold_conformal, [(base, X, Y, folds != k, folds == k, seed * 1000 + r * 100 + k,
                                                   inner_splits) for r, k, folds in tasks],
                     n_jobs, progress, "nested CV + conformal (latents)")
    oof = np.empty((repeats, n, len(latents)))
    ensembles: list[list] = [[None] * n for _ in range(repeats)]
    for (r, k, folds), (pred, ens) in zip(tasks, fits):
        te = np.flatnonzero(folds == k)
        oof[r, te] = pred
        for j, i in enumerate(te):
            ensembles[r][i] = ens[j]
    return {"oof": oof, "ensembles": ensembles, "latents": list(latents), "cpu_seconds": cpu,
            "method": f"split conformal with {inner_splits}-fold cross-validated residuals (logit scale)"}


def _fit_binary_fold(cont, cat, X, y, tr, te, seed, param_grid=None):
    inner = int(min(3, np.bincount(y[tr], minlength=2).min()))
    s = _classifier_search(cont, cat, seed, param_grid, inner_cv=max(inner, 2)).fit(X[tr], y[tr])
    return s.predict_proba(X[te])[:, 1]


def nested_cv_latents(df: pd.DataFrame, features: Sequence[str] = LATENT_FEATURES, latents: Sequence[str] = LATENTS,
                      n_splits: int = 5, repeats: int = 1, seed: int = 0, estimator: LatentLGBMRegressor | None = None,
                      progress: bool = False, n_jobs: int = 1, param_grid: Mapping | None = None) -> dict:
    """Out-of-fold recovery of the latents (seed 000 Table 2, Fig 5). Targets are the ``true_<latent>`` columns.
    ``estimator`` replaces the default :class:`LatentLGBMRegressor` (``param_grid`` its grid)."""
    targets = [f"true_{lat}" for lat in latents]
    check_table(df, features, targets)
    cont, cat = _split(features)
    base = estimator if estimator is not None else LatentLGBMRegressor(continuous=cont, categorical=cat,
                                                                       param_grid=param_grid)
    X = df[list(features)].reset_index(drop=True)
    Y = df[targets].to_numpy(float)
    n = len(df)
    if n < 2 * n_splits:
        raise ValueError(f"nested CV with {n_splits} outer folds needs at least {2 * n_splits} patients, got {n}")
    oof = np.empty((repeats, n, len(latents)))
    per_fold = {lat: {m: [] for m in ("spearman", "mae", "rmse", "r2")} for lat in latents}
    tasks = [(r, k, folds) for r in range(repeats) for folds in [outer_folds(n, n_splits, seed + r)]
             for k in range(n_splits)]
    fits, cpu = _map(_fit_latent_fold, [(base, X, Y, folds != k, folds == k, seed * 1000 + r * 100 + k)
                                   for r, k, folds in tasks], n_jobs, progress, "nested CV (latents)")
    best = []
    for (r, k, folds), (pred, bp) in zip(tasks, fits):
        te = folds == k
        oof[r, te] = pred
        best.append(bp)
        for j, lat in enumerate(latents):
            for m, v in regression_metrics(Y[te, j], pred[:, j]).items():
                per_fold[lat][m].append(v)
    res = {}
    for j, lat in enumerate(latents):
        reps = [regression_metrics(Y[:, j], oof[r, :, j]) for r in range(repeats)]
        res[lat] = {m: float(np.nanmean([x[m] for x in reps])) for m in ("spearman", "mae", "rmse", "r2")}
        res[lat]["sd_over_repeats"] = {m: float(np.nanstd([x[m] for x in reps])) for m in ("spearman", "mae", "rmse",
                                                                                            "r2")}
        res[lat]["per_fold"] = per_fold[lat]
    return {"latents": res, "oof": oof, "best_params": best, "n": n, "n_splits": n_splits, "repeats": repeats,
            "features": list(features), "cpu_seconds": cpu}


def _classifier_search(cont: Sequence[int], cat: Sequence[int], seed: int, param_grid=None, inner_cv: int = 3):
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(objective="binary", subsample=0.8, subsample_freq=1, random_state=seed, n_jobs=1,
                           verbose=-1)
    pipe = Pipeline([("prep", make_preprocessor(cont, cat)), ("model", model)])
    return StagedGridSearchCV(pipe, _grid(param_grid), scoring="neg_log_loss",
                              cv=StratifiedKFold(inner_cv, shuffle=True, random_state=seed))


def nested_cv_binary(df: pd.DataFrame, outcome: str, features: Sequence[str] = BINARY_FEATURES, n_splits: int = 5,
                     repeats: int = 1, seed: int = 0, n_boot: int = 1000, progress: bool = False,
                     n_jobs: int = 1, param_grid: Mapping | None = None) -> dict:
    """Direct empirical baseline for a binary outcome (seed 000 §3.2, Figs 6–7): out-of-fold probabilities from
    stratified outer folds, averaged over repeats per patient, then metrics with patient-level bootstrap CIs."""
    check_table(df, features, [outcome])
    y = df[outcome].to_numpy()
    if not np.isin(y, (0, 1)).all():
        i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
        raise ValueError(f"cohort: row {i + 1}, column '{outcome}': value {y[i].item()!r} is not 0/1")
    y = y.astype(int)
    counts = np.bincount(y, minlength=2)
    if counts.min() < n_splits:
        raise ValueError(f"'{outcome}' has {counts.tolist()} patients per class; stratified {n_splits}-fold CV needs "
                         f"at least {n_splits} in each")
    cont, cat = _split(features)
    cont = [list(features).index(c) for c in cont]
    cat = [list(features).index(c) for c in cat]
    X = df[list(features)].to_numpy(dtype=object)
    n = len(df)
    P = np.empty((repeats, n))
    tasks = [(r, k, folds) for r in range(repeats) for folds in [outer_folds(n, n_splits, seed + r, y=y)]
             for k in range(n_splits)]
    probs, cpu = _map(_fit_binary_fold, [(cont, cat, X, y, folds != k, folds == k, seed * 1000 + r * 100 + k, param_grid)
                                    for r, k, folds in tasks], n_jobs, progress, f"nested CV ({outcome})")
    for (r, k, folds), pr in zip(tasks, probs):
        P[r, folds == k] = pr
    p = P.mean(axis=0)
    rng = np.random.default_rng(seed)
    per_rep = [binary_metrics(y, P[r]) for r in range(repeats)]
    out = binary_metrics(y, p)
    out["ci95"] = bootstrap_ci(binary_metrics, [y, p], rng, n_boot)
    out["per_repeat_mean"] = {m: float(np.nanmean([x[m] for x in per_rep])) for m in per_rep[0]}
    out["observed_frequency"] = float(y.mean())
    out["predicted_frequency"] = float((p >= 0.5).mean())
    out["mean_predicted_probability"] = float(p.mean())
    out["frequency_ci95"] = bootstrap_ci(lambda a, b: {"observed": float(a.mean()), "predicted": float((b >= 0.5).mean())},
                                         [y, p], rng, n_boot)
    out["oof_probability"] = p.tolist()
    out["cpu_seconds"] = cpu
    return out


def run_baseline(df: pd.DataFrame, n_splits: int = 5, repeats: int = 1, seed: int = 0, n_boot: int = 1000,
                 progress: bool = False, n_jobs: int = 1, param_grid: Mapping | None = None) -> dict:
    """Everything of seed 000 §3 on one cohort table: latents (Table 2), binary ORR/DCR, Cliff's δ, landscape.
    ``param_grid`` replaces seed 000's grid (:data:`PARAM_GRID`; smaller grids are for smoke tests only)."""
    lat = nested_cv_latents(df, n_splits=n_splits, repeats=repeats, seed=seed, progress=progress, n_jobs=n_jobs,
                            param_grid=param_grid)
    out = {"n": lat["n"], "n_splits": n_splits, "repeats": repeats, "seed": seed,
           "param_grid": {k: list(v) for k, v in (param_grid or PARAM_GRID).items()},
           "virtual": bool("cohort" in df.columns and (df["cohort"] == "virtual").all()),
           "latent_features": lat["features"], "binary_features": list(BINARY_FEATURES),
           "latents": lat["latents"], "binary": {}, "cliffs_delta": {}, "landscape": None}
    rng = np.random.default_rng(seed)
    for outcome in ("orr", "dcr"):
        if outcome in df.columns:
            out["binary"][outcome] = nested_cv_binary(df, outcome, n_splits=n_splits, repeats=repeats, seed=seed,
                                                      n_boot=n_boot, progress=progress, n_jobs=n_jobs,
                                                      param_grid=param_grid)
            out["cliffs_delta"][outcome] = cliffs_delta_table(df, outcome, rng=rng, n_boot=n_boot)
    if "orr" in df.columns and df["orr"].nunique() == 2:
        out["landscape"] = response_landscape(df, "orr")
    out["cpu_seconds"] = lat["cpu_seconds"] + sum(b["cpu_seconds"] for b in out["binary"].values())
    out["_oof"] = lat["oof"]
    return out
