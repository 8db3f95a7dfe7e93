"""Bayesian personalisation vs the seed-000 LightGBM mapping on the same VIRTUAL CT041-like cohort, truth and folds.

The cohort is ``ct041_lgbm``'s (N = 37, seed 1; homogeneous CAR-T ODE). For each of ``repeats`` × 5 outer folds
(``immunocal.calib.baseline.outer_folds``, the LightGBM study's folds):

* **Bayes** — the config ``calib/datasets/ct041_virtual/personalise.toml`` through the calibration workflow with the
  fold's test patients as ``[data] heldout_subjects``: the population (covariate regression of the logit latents,
  non-centred patient effects, learned noise and cut-points) is fitted to the training patients by NUTS; each test
  patient's latents then get their posterior given that population and the patient's own covariates and
  observations (:mod:`immunocal.calib.personalise`). One set of PCA-GP emulators (one per dose level), refined once
  where the whole cohort's pilot posterior puts mass (the config's ``[refinement]``) with its error there as the
  emulator variance (``[emulator] variance = "posterior"``), serves every fold.
* **LightGBM** — seed 000's regressor on the same features and folds, with conformal predictive ensembles from
  cross-validated training residuals (:func:`immunocal.calib.baseline.conformal_latents`) so intervals and CRPS compare.

Reported per latent and method: MAE, RMSE, Spearman ρ and R² of the point estimate (posterior mean / LightGBM
prediction) against the truth, 50 %/90 % interval coverage and width, CRPS (mean over repeats, SD over repeats);
for Bayes also SBC ranks of the truth among each test patient's posterior draws (uniformity test) and the
contraction of each latent (1 − mean posterior variance / the cohort's variance of the truth): the
identifiability table. ORR/DCR: each test patient's posterior given only the early observations
(:data:`EARLY_OBSERVABLES`, the LightGBM classifiers' features) and its posterior-predictive best RECIST, against
seed 000's LightGBM classifiers (AUROC, Brier score, calibration curve). ``--quick``: one repeat, short chains,
LightGBM's small grid (smoke test only). The seed's protocol: θ_ref per patient (seed 000 §2.3, the per-patient
inverse problem with the whole-cohort fit's noise and cut-points fixed; :func:`immunocal.calib.personalise.inverse_problem`),
LightGBM trained on θ_ref and scored against θ_ref (as the seed's Table 2) and against the truth.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "ct041_bayes_vs_lgbm"
COHORT_SEED = 1  # the cohort of ct041_lgbm
N_SPLITS = 5
POSTERIOR_DRAWS = 400  # per test patient, thinned evenly from the chains
#: what the ORR/DCR predictions may see: the LightGBM classifiers' features (immunocal.calib.baseline.BINARY_FEATURES: no
#: RECIST, PFS or persistence, which define or follow the outcome) as the workflow's observables
EARLY_OBSERVABLES = ("log_baseline_burden", "log_c_max", "t_max", "t_max_at_window_end", "crs_grade", "log_il6_peak",
                     "log_crp_peak", "log_ferritin_peak")


#: misspecified Bayesian variants (issue deliverable 4), each a change of the well-specified config
VARIANTS = {
    "no_covariates": "the population regression drops every covariate (tumour type, CLDN18.2, prior lines, dose): "
                     "one location per latent",
    "normal_recist": "best RECIST fitted as a continuous normal score (wrong noise family) instead of the ordinal "
                     "probit",
}


def _base_config(data_dir: Path, quick: bool, variant: str | None = None) -> dict:
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir

    cfg = load_config(dataset_dir("ct041_virtual") / "personalise.toml")
    cfg["data"]["measurements"] = str((data_dir / "measurements.csv").resolve())
    cfg["data"]["conditions"] = str((data_dir / "conditions.csv").resolve())
    cfg["predict"] = {"draws": 0}
    if quick:
        cfg["sampler"].update(draws=200, tune=300)
        cfg["personalise"] = {**cfg.get("personalise", {}), "particles": 1000, "stages": 2, "draws": 300}
        if cfg.get("refinement"):
            cfg["refinement"].update(points=24, draws=100)
    if variant == "no_covariates":
        for spec in cfg["parameters"].values():
            spec.pop("covariates", None)
            spec.pop("coef_sd", None)
    elif variant == "normal_recist":
        cfg["observables"]["recist_score"] = {"family": "normal", "sigma": {"distribution": "HalfNormal",
                                                                            "sigma": 1.0}}
    elif variant is not None:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return cfg


def _emulators(cfg: dict, folder: Path) -> tuple[dict, dict, dict | None]:
    """Train the per-dose emulators once (the design of the config), refine them (the config's ``[refinement]``:
    pilot posteriors of the whole cohort, new runs where they put mass) and save them; every fold loads them.

    The refinement reads every patient's observations — never a truth — to decide where the emulators must be
    accurate: a numerical approximation of the simulator shared by all folds, as a prospective user would refine it
    at a new patient's posterior. Each fold's population fit still sees only its training patients. Returns the
    paths, the validation of the emulators the folds use and that of the design-only ones (None without
    ``[refinement]``). A restarted study reads them back (``emulators.json``: the hash of the config and the tables,
    the surrogate ids) unless the config, the data or a saved file changed."""
    import hashlib
    import json

    from immunocal.calib.config import public
    from immunocal.calib.outputs import config_hash
    from immunocal.calib.surrogate import GPSurrogate
    from immunocal.calib.workflow import Calibration

    # a restarted study reads them back: training and refining again would cost two pilot posteriors and could
    # change the emulators (and with them every finished fold's config)
    tables = [Path(cfg["data"][k]) for k in ("measurements", "conditions")]
    key = config_hash({"config": public(cfg), "tables": [hashlib.sha256(t.read_bytes()).hexdigest() for t in tables]})
    record = folder / "emulators.json"
    if record.exists():
        rec = json.loads(record.read_text())
        ids = {c: GPSurrogate.load(p).surrogate_id if Path(p).exists() else None for c, p in rec["paths"].items()}
        if rec["key"] == key and ids == rec["surrogate_ids"]:
            print(f"[emulators] {record}: the shared emulators of this config and data, read back", flush=True)
            return rec["paths"], rec["validation"], rec["validation_design"]
        print(f"[emulators] {record}: made for another config or data, or its files changed: training again",
              flush=True)
    cal = Calibration(cfg, folder, force=True, progress=False)
    cal.train()
    cal.refine()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {c: str(em.save(folder / f"{c}.npz").resolve()) for c, em in cal.emulators.items()}
    validation_design = getattr(cal, "validation_design", None)
    write_json(folder, "emulators", {"key": key, "paths": paths, "surrogate_ids": {
        c: em.surrogate_id for c, em in cal.emulators.items()}, "validation": cal.validation,
        "validation_design": validation_design})
    return paths, cal.validation, validation_design


def _with_emulators(base: dict, paths: dict) -> dict:
    """A fold's (or the θ_ref fit's) config: ``base`` with the saved, already refined emulators and no
    ``[refinement]`` of its own."""
    cfg = copy.deepcopy(base)
    cfg["emulator"] = {**base["emulator"], "paths": paths}  # the config's variance mode with the saved GPs
    cfg.pop("refinement", None)
    return cfg


def _early_response(cal, folder: Path, test_ids: list[str], config_hash: str) -> dict:
    """P(ORR), P(DCR) of each test patient from the early observations only (:data:`EARLY_OBSERVABLES`): the
    patient's posterior given the fold's population and those rows, then the posterior-predictive RECIST category
    (:func:`immunocal.calib.personalise.category_probabilities`). Saved in the fold (``personalised_early.nc``, stamped with the
    fold's config hash) and read back while the fold is unchanged."""
    import arviz as az

    from immunocal.calib.outputs import save_idata
    from immunocal.calib.personalise import category_probabilities
    from immunocal.calib.workflow import subset

    path = folder / "personalised_early.nc"
    idata = az.from_netcdf(path) if path.exists() else None
    if idata is None or idata.posterior.attrs.get("fold_config_hash") != config_hash:
        meas, _ = cal.tables
        idata = cal.personalise(subset(meas, np.isin(meas.subject, test_ids)
                                       & np.isin(meas.observable, EARLY_OBSERVABLES)))
        save_idata(idata, path, {"fold_config_hash": config_hash})
    subjects, probs = category_probabilities(cal, idata, "recist_score")  # PD < SD < PR < CR
    return {s: {"orr": float(p[2:].sum()), "dcr": float(p[1:].sum())} for s, p in zip(subjects, probs)}


def _fit_fold(cfg: dict, folder: Path):
    """The fold's calibration (population fit + personalised test patients) — read back when finished."""
    from immunocal.calib.workflow import Calibration

    cal = Calibration(cfg, folder, force=True, progress=False)
    summary = cal.load_finished() if (folder / "personalised.nc").exists() else None
    return cal, summary if summary is not None else cal.run()


def _fold_draws(cfg: dict, folder: Path, test_ids: list[str], latents: list[str],
                retry: bool = True) -> tuple[dict, dict, dict]:
    """Fit the fold's population and personalise its test patients; ``{patient: (draws, latents)}``, the
    fold's diagnostics and the early-data response probabilities. A finished fold (same config and data) is read
    back. A population fit that misses the diagnostics thresholds (R-hat, ESS, divergences) is not used: the fold is
    fitted again with twice the draws and tuning and ``target_accept`` ≥ 0.95 (in ``<fold>_retry``), and the fold
    reports both attempts — a retry that still misses is used and says so (``retry=False``: a smoke test's short
    chains, never refitted)."""
    import arviz as az

    cal, summary = _fit_fold(cfg, folder)
    first = None
    if retry and summary["diagnostics"].get("ok") is False:
        first = summary["diagnostics"]
        retry = copy.deepcopy(cfg)
        sampler = retry["sampler"]
        sampler.update(draws=2 * sampler["draws"], tune=2 * sampler["tune"],
                       target_accept=max(0.95, sampler.get("target_accept", 0.9)))
        folder = folder.with_name(folder.name + "_retry")
        cal, summary = _fit_fold(retry, folder)
    post = az.from_netcdf(folder / "personalised.nc").posterior
    out = {}
    for s in test_ids:
        x = np.column_stack([post[n].sel(subject=s).stack(k=("chain", "draw")).values for n in latents])
        idx = np.unique(np.linspace(0, len(x) - 1, min(POSTERIOR_DRAWS, len(x))).astype(int))
        out[s] = x[idx]
    diag = {"population": summary["diagnostics"], "population_first_attempt": first, "fit_folder": folder.name,
            "personalised_rhat_max": summary["personalised"].get("rhat_max"),
            "personalised_ess_bulk_min": summary["personalised"].get("ess_bulk_min"),
            "personalised_pareto_k_max": summary["personalised"].get("pareto_k_max"),
            "personalised_failures": summary["personalised"].get("failures", []),
            "route": _route_record(summary.get("route")), "seconds": summary["seconds"]}
    ordinal = cal.observables["recist_score"].family.startswith("ordinal")  # no categories from a normal score
    return out, diag, _early_response(cal, folder, test_ids, summary["config_hash"]) if ordinal else {}


def _route_record(route: dict | None) -> dict | None:
    """What the workflow's route check said of the fold's emulators at its posterior (``summary["route"]``): the
    advice, the importance check's Pareto k̂ (true model vs surrogate posterior), each observable's share of it (its
    log weights' k̂ on their own) and each checked observable's surrogate RMSE over its fitted noise sd."""
    if not route:
        return None
    return {"advice": route.get("advice"), "pareto_k": route.get("pareto_k"),
            "surrogate_rmse_over_noise": route.get("surrogate_rmse_over_noise") or {},
            "pareto_k_by_observable": route.get("pareto_k_by_observable") or {}}


def _pseudo_labels(base: dict, paths: dict, folder: Path, ids: list[str], latents: list[str]) -> np.ndarray:
    """θ_ref of seed 000 §2.3 for every patient: the population fitted once to the whole cohort (its noise sds and
    cut-points are the fixed θ_pop), then each patient's own penalised maximum-likelihood latents
    (:func:`immunocal.calib.personalise.inverse_problem`). Saved with the fit's config hash and read back while unchanged."""
    import pandas as pd

    from immunocal.calib.personalise import inverse_problem
    from immunocal.calib.workflow import Calibration

    cal = Calibration(_with_emulators(base, paths), folder, force=True, progress=False)
    summary = cal.load_finished() or cal.run()
    path = folder / "theta_ref.csv"
    if path.exists():
        table = pd.read_csv(path)
        if table["config_hash"].iloc[0] == summary["config_hash"]:
            return table.set_index("patient_id").loc[ids, latents].to_numpy(float)
    subjects, theta = inverse_problem(cal)
    order = [s.name for s in cal.parameters if s.role == "latent"]
    table = pd.DataFrame(theta, columns=order)[latents]
    table.insert(0, "patient_id", subjects)
    table["config_hash"] = summary["config_hash"]
    tmp = path.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    return table.set_index("patient_id").loc[ids, latents].to_numpy(float)


def _fold_task(task: tuple) -> tuple[dict, dict, dict]:
    cfg, folder, test, latents, retry = task
    out = _fold_draws(cfg, folder, test, latents, retry)
    diag = out[1]
    print(f"[{folder.parent.name}] {folder.name}: population R-hat {diag['population'].get('rhat_max')}, personalised Pareto k "
          f"max {diag['personalised_pareto_k_max']}", flush=True)
    return out


def _scores(truth: np.ndarray, point: np.ndarray, ensembles: list[np.ndarray]) -> dict:
    """Point and probabilistic scores of one latent over the cohort (one repeat)."""
    from immunocal.calib.baseline import regression_metrics
    from immunocal.calib.diagnostics import crps_ensemble

    res = regression_metrics(truth, point)
    for lev in (0.5, 0.9):
        lo = np.array([np.quantile(e, 0.5 - lev / 2) for e in ensembles])
        hi = np.array([np.quantile(e, 0.5 + lev / 2) for e in ensembles])
        res[f"coverage_{int(lev * 100)}"] = float(np.mean((lo <= truth) & (truth <= hi)))
        res[f"width_{int(lev * 100)}"] = float(np.mean(hi - lo))
    res["crps"] = float(np.mean([crps_ensemble(np.array([t]), e[:, None])[0] for t, e in zip(truth, ensembles)]))
    return res


def _binary_scores(y: np.ndarray, p: np.ndarray) -> dict:
    """AUROC, AUPRC, balanced accuracy, F1 (:func:`immunocal.calib.baseline.binary_metrics`), Brier score and a 5-bin
    calibration curve of out-of-fold probabilities ``p`` (averaged over repeats per patient)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    from immunocal.calib.baseline import binary_metrics

    frac, mean_p = calibration_curve(y, p, n_bins=5, strategy="quantile")
    return {**binary_metrics(y, p), "brier": float(brier_score_loss(y, p)), "probability": p.tolist(),
            "calibration": {"mean_predicted": mean_p.tolist(), "observed_fraction": frac.tolist()}}


def _aggregate(per_repeat: list[dict]) -> dict:
    keys = per_repeat[0].keys()
    return {k: float(np.nanmean([r[k] for r in per_repeat])) for k in keys} | {
        "sd_over_repeats": {k: float(np.nanstd([r[k] for r in per_repeat])) for k in keys}}


def _figures(out: Path, name: str, n: int, table: dict, sbc: dict, binary: dict) -> None:
    import matplotlib.pyplot as plt

    lats = list(table)
    short = [k.removeprefix("theta_") for k in lats]
    x = np.arange(len(lats))
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    for ax, m in zip(axes, ("mae", "r2", "coverage_90", "crps")):
        for j, meth in enumerate(("bayes", "lightgbm")):
            ax.bar(x + (j - 0.5) * 0.38, [table[k][meth][m] for k in lats], 0.38,
                   yerr=[table[k][meth]["sd_over_repeats"][m] for k in lats], label=meth)
        if m == "coverage_90":
            ax.axhline(0.9, color="k", lw=0.6, ls="--")
        ax.set_xticks(x, short, rotation=45)
        ax.set_title(m)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"VIRTUAL cohort (N = {n}): Bayesian personalisation vs LightGBM, out-of-fold")
    save_figure(fig, out, f"{name}_scores.png")
    fig, axes = plt.subplots(1, len(lats), figsize=(2.4 * len(lats), 2.4), sharey=True)
    for ax, k in zip(np.atleast_1d(axes), lats):
        ax.hist(sbc[k]["ranks"], bins=10, range=(0, 1), color="0.5")
        ax.set_title(f"{k.removeprefix('theta_')} (p = {sbc[k]['p_value']:.2f})", fontsize=8)
    fig.suptitle("SBC: rank of the true latent among each test patient's posterior draws (normalised)")
    save_figure(fig, out, f"{name}_sbc.png")
    fig, axes = plt.subplots(1, len(binary), figsize=(4 * len(binary), 3.6))
    for ax, (outcome, v) in zip(np.atleast_1d(axes), binary.items()):
        for meth in ("bayes", "lightgbm"):
            c = v[meth].get("calibration")
            if c:
                ax.plot(c["mean_predicted"], c["observed_fraction"], "o-",
                        label=f"{meth} (Brier {v[meth]['brier']:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.6)
        ax.set(xlabel="predicted probability", ylabel="observed fraction", title=outcome.upper())
        ax.legend(fontsize=7)
    fig.suptitle("Out-of-fold response probabilities from early observations: calibration")
    save_figure(fig, out, f"{name}_response.png")


def run(out: Path, quick: bool = False, scheduler=None, processes: int = 1) -> dict:
    """The study (module docstring); ``scheduler``: a Dask scheduler address or client — each fold becomes a task
    (the workers must see ``out``); ``processes``: that many folds at once on this machine."""
    return compare(Path(out), NAME, n_patients=37, repeats=1 if quick else 10, quick=quick, scheduler=scheduler,
                   processes=processes)


def compare(out: Path, name: str, *, n_patients: int = 37, repeats: int = 10, variant: str | None = None,
            seed_protocol: bool = True, quick: bool = False, scheduler=None, processes: int = 1) -> dict:
    """Bayes vs LightGBM on a virtual cohort of ``n_patients`` (seed :data:`COHORT_SEED`), ``repeats`` × 5 outer
    folds, the Bayesian side well specified or a :data:`VARIANTS` entry; work files in ``out/name``, results in
    ``out/name.json`` and ``out/name_*.png``. ``seed_protocol``: also the θ_ref protocol (one full-cohort fit).

    The folds run one at a time (each fold's NUTS chains in parallel processes), ``processes`` at a time in local
    worker processes, or as tasks on the Dask ``scheduler``; in the last two each fold's chains run one after
    another in its worker (``[sampler] cores = 1``: the same draws, and one core per task as the pool or Dask
    schedules it — a worker process may not start the chains' own). Two folds at a time fill the core a fold leaves
    idle outside NUTS (compilation, the route checks, the personalisations)."""

    from immunocal.calib.baseline import SMALL_GRID, conformal_latents, nested_cv_binary, outer_folds
    from immunocal.calib.cohort import generate_cohort, write_tables
    from immunocal.calib.parallel import map_tasks
    from immunocal.priors.latents import LATENTS

    use_agg()
    work = out / name
    latents = list(LATENTS)
    df = generate_cohort(n_patients, np.random.default_rng(COHORT_SEED))
    write_tables(df, work / "data")
    ids = df["patient_id"].tolist()
    truth = df[[f"true_{n}" for n in latents]].to_numpy(float)
    base = _base_config(work / "data", quick, variant)
    ordinal_recist = base["observables"]["recist_score"]["family"].startswith("ordinal")
    t0 = time.perf_counter()
    paths, validation, validation_design = _emulators(base, work / "emulators")
    t_emulators = time.perf_counter() - t0
    bayes_draws: list[dict] = []
    bayes_response: list[dict] = []
    fold_diag = []
    t0 = time.perf_counter()
    tasks = []
    for r in range(repeats):
        folds = outer_folds(len(df), N_SPLITS, r)
        for k in range(N_SPLITS):
            cfg = _with_emulators(base, paths)
            if scheduler is not None or processes > 1:
                cfg["sampler"]["cores"] = 1
            test = [ids[i] for i in np.flatnonzero(folds == k)]
            cfg["data"]["heldout_subjects"] = test
            tasks.append((cfg, work / f"repeat{r}_fold{k}", test, latents, not quick))
    # one fold at a time (its NUTS chains take both cores), `processes` at a time, or every fold a task on Dask
    results = map_tasks(_fold_task, tasks, scheduler=scheduler, processes=processes, progress=True, desc="folds",
                        unit="fold")
    for r in range(repeats):
        draws: dict = {}
        response: dict = {}
        for k in range(N_SPLITS):
            d, diag, resp = results[r * N_SPLITS + k]
            draws.update(d)
            response.update(resp)
            fold_diag.append({"repeat": r, "fold": k, **diag})
        bayes_draws.append(draws)
        bayes_response.append(response)
    t_bayes = time.perf_counter() - t0
    t0 = time.perf_counter()
    lgbm = conformal_latents(df, latents=latents, n_splits=N_SPLITS, repeats=repeats, n_jobs=2,
                             param_grid=SMALL_GRID if quick else None)
    protocol = {}
    if seed_protocol:  # seed 000's own protocol on pseudo-labels θ_ref
        protocol = _seed_protocol(base, paths, work, df, ids, truth, latents, repeats, quick)

    binary = {}
    for outcome in ("orr", "dcr"):
        y = df[outcome].to_numpy(int)
        binary[outcome] = {"observed_frequency": float(y.mean())}
        if ordinal_recist:
            p_bayes = np.mean([[bayes_response[r][s][outcome] for s in ids] for r in range(repeats)], axis=0)
            binary[outcome]["bayes"] = _binary_scores(y, p_bayes)
        else:  # said, not skipped: a continuous RECIST score has no category probabilities
            binary[outcome]["bayes"] = {"not_run": "RECIST fitted as a continuous score (variant "
                                                   f"{variant!r}): no posterior-predictive category"}
        try:
            lg = nested_cv_binary(df, outcome, n_splits=N_SPLITS, repeats=repeats, n_jobs=2,
                                  param_grid=SMALL_GRID if quick else None)
            binary[outcome]["lightgbm"] = _binary_scores(y, np.asarray(lg["oof_probability"]))
        except ValueError as err:  # too few patients of a class for stratified folds: said, not skipped
            binary[outcome]["lightgbm"] = {"not_run": str(err)}
    t_lgbm = time.perf_counter() - t0
    return _summarise(out, name, df, truth, latents, repeats, bayes_draws, lgbm, protocol, binary, {
        "quick": quick, "variant": variant, "variant_description": VARIANTS.get(variant, "well specified"),
        "emulator_validation": validation, "emulator_validation_before_refinement": validation_design,
        "refinement": base.get("refinement"), "folds": fold_diag,
        "seconds": {"emulators": t_emulators, "bayes": t_bayes, "lightgbm": t_lgbm}})


def _seed_protocol(base, paths, work, df, ids, truth, latents, repeats, quick) -> dict:
    """Seed 000's own protocol: LightGBM trained on and scored against pseudo-labels θ_ref — and against the
    truth."""
    from immunocal.calib.baseline import SMALL_GRID, nested_cv_latents, regression_metrics
    from immunocal.studies.ct041_lgbm import METRICS, SEED_TABLE2

    theta_ref = _pseudo_labels(base, paths, work / "full_cohort", ids, latents)
    df_ref = df.copy()
    df_ref[[f"true_{n}" for n in latents]] = theta_ref
    on_ref = nested_cv_latents(df_ref, latents=latents, n_splits=N_SPLITS, repeats=repeats, n_jobs=2,
                               param_grid=SMALL_GRID if quick else None)
    seed_protocol = {}
    for j, lat in enumerate(latents):
        vs_truth = [regression_metrics(truth[:, j], on_ref["oof"][r, :, j]) for r in range(repeats)]
        seed_protocol[lat] = {
            "lightgbm_on_ref_vs_ref": {m: on_ref["latents"][lat][m] for m in METRICS},
            "lightgbm_on_ref_vs_truth": {m: float(np.nanmean([x[m] for x in vs_truth])) for m in METRICS},
            "ref_vs_truth": regression_metrics(truth[:, j], theta_ref[:, j]),
            "seed000_table2": dict(zip(METRICS, SEED_TABLE2[lat]))}
    return seed_protocol


def _summarise(out, name, df, truth, latents, repeats, bayes_draws, lgbm, seed_protocol, binary, extra) -> dict:
    """Scores, SBC and identifiability over the repeats; printed, drawn and written to ``out/name.json``."""
    from scipy import stats

    ids = df["patient_id"].tolist()
    table, sbc, ident = {}, {}, {}
    for j, lat in enumerate(latents):
        per = {"bayes": [], "lightgbm": []}
        for r in range(repeats):
            ens_b = [bayes_draws[r][s][:, j] for s in ids]
            per["bayes"].append(_scores(truth[:, j], np.array([e.mean() for e in ens_b]), ens_b))
            ens_l = [lgbm["ensembles"][r][i][:, j] for i in range(len(ids))]
            per["lightgbm"].append(_scores(truth[:, j], lgbm["oof"][r, :, j], ens_l))
        table[lat] = {m: _aggregate(v) for m, v in per.items()}
        ranks = np.array([np.mean(bayes_draws[r][s][:, j] < truth[i, j]) for r in range(repeats)
                          for i, s in enumerate(ids)])
        counts = np.histogram(ranks, bins=10, range=(0, 1))[0]
        sbc[lat] = {"ranks": ranks.tolist(), "counts": counts.tolist(),
                    "p_value": float(stats.chisquare(counts).pvalue)}
        post_var = np.mean([bayes_draws[r][s][:, j].var() for r in range(repeats) for s in ids])
        z = np.array([(bayes_draws[r][s][:, j].mean() - truth[i, j]) / bayes_draws[r][s][:, j].std()
                      for r in range(repeats) for i, s in enumerate(ids)])
        ident[lat] = {"contraction": float(1 - post_var / truth[:, j].var()),
                      "mean_posterior_sd": float(np.sqrt(post_var)), "cohort_sd": float(truth[:, j].std()),
                      "z_score_mean": float(z.mean()), "z_score_sd": float(z.std()),
                      "identified": bool(1 - post_var / truth[:, j].var() >= 0.5)}
    print("latent      MAE bayes/lgbm    R² bayes/lgbm    cov90 bayes/lgbm   CRPS bayes/lgbm   contraction")
    for k, v in table.items():
        b, g = v["bayes"], v["lightgbm"]
        print(f"{k:11s} {b['mae']:.3f}/{g['mae']:.3f}     {b['r2']:6.3f}/{g['r2']:6.3f}   "
              f"{b['coverage_90']:.2f}/{g['coverage_90']:.2f}        {b['crps']:.3f}/{g['crps']:.3f}       "
              f"{ident[k]['contraction']:.2f}")
    print("seed protocol (LightGBM on θ_ref):  R² vs θ_ref / vs truth;  θ_ref vs truth R²;  seed Table 2 R²")
    for k, v in seed_protocol.items():
        print(f"{k:11s} {v['lightgbm_on_ref_vs_ref']['r2']:6.3f} / {v['lightgbm_on_ref_vs_truth']['r2']:6.3f}      "
              f"{v['ref_vs_truth']['r2']:6.3f}            {v['seed000_table2']['r2']:6.3f}")
    for outcome, v in binary.items():
        b, g = v["bayes"], v["lightgbm"]
        print(f"{outcome.upper()} (observed {v['observed_frequency']:.2f}): AUROC bayes "
              f"{b.get('auroc', float('nan')):.3f} / lightgbm {g.get('auroc', float('nan')):.3f}; Brier "
              f"{b.get('brier', float('nan')):.3f} / {g.get('brier', float('nan')):.3f}")
    _figures(out, name, len(df), table, sbc, binary)
    result = {"virtual": True, "cohort_seed": COHORT_SEED, "n": len(df), "repeats": repeats,
              "outer_folds": N_SPLITS, "config": "calib/datasets/ct041_virtual/personalise.toml",
              "table": table, "sbc": {k: {kk: vv for kk, vv in v.items() if kk != "ranks"} for k, v in sbc.items()},
              "identifiability": ident, "lightgbm_intervals": lgbm["method"],
              "seed_protocol": seed_protocol,
              "response": {"early_observables": list(EARLY_OBSERVABLES), "folds": "Bayes: the latent folds; "
                           "LightGBM: stratified outer folds (seed 000's protocol); out-of-fold for both",
                           **binary}, **extra}
    write_json(out, name, result)
    return result
