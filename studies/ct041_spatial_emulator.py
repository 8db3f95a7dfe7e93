"""The spatial CAR-T model in a calibration: the PDE emulator of the VIRTUAL spatial cohort, validated, refined where
the posterior puts its mass, its error carried into the likelihood, and the latents it lets the cohort recover.

The bundled data set ``calib/datasets/ct041_virtual_spatial`` (the N = 37, seed-1 spatial cohort's tables — checked
here to be the generator's, so a change of the model or the generator is an error, not a silent mismatch) is fitted
by its config through the one calibration workflow: one PCA-GP per dose level over a Sobol design of PDE runs
(2-D, the cohort's converged grid), held-out validation (R², RMSE, max |error|, coverage of the emulator's own 50 /
90 % intervals), the config's refinement rounds (new PDE runs per dose where a pilot posterior puts its mass), the
emulator's error carried into the likelihood as the config's ``[emulator] variance`` says, NUTS on the population and
every patient — the config the spatial head-to-head (``ct041_bayes_vs_lgbm_spatial``) fits every fold with. Reported: the emulator's validation, its
error at posterior draws against the true PDE, the sampler's diagnostics and, per latent, what the fitted patients'
posteriors recover of the truth (R², Spearman ρ, 90 % coverage, contraction 1 − mean posterior variance / the
cohort's variance of the truth). ``--quick``: 60 design runs, no refinement, short chains (a smoke test).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "ct041_spatial_emulator"
COHORT_SEED, N_PATIENTS = 1, 37


def recovery(table, latents) -> dict:
    """Per latent: the fitted patients' posterior means against the truth."""
    from scipy.stats import spearmanr

    out = {}
    for lat in latents:
        truth, mean = table[f"true_{lat}"].to_numpy(float), table[f"{lat}_mean"].to_numpy(float)
        inside = (table[f"{lat}_q05"] <= table[f"true_{lat}"]) & (table[f"true_{lat}"] <= table[f"{lat}_q95"])
        var_truth = truth.var()
        out[lat] = {"r2": float(1 - np.mean((mean - truth) ** 2) / var_truth),
                    "spearman": float(spearmanr(mean, truth).statistic),
                    "mae": float(np.mean(np.abs(mean - truth))), "coverage_90": float(inside.mean()),
                    "contraction": float(1 - np.mean(table[f"{lat}_sd"].to_numpy(float) ** 2) / var_truth)}
    return out


def emulator_value_grad_seconds(cal, repeats: int = 50) -> dict:
    """Seconds for the emulators' mean of every fitted patient (each under its dose's emulator) and the gradient of
    their sum with respect to all patients' latents — the emulator's cost per NUTS gradient (best of ``repeats``;
    PyTensor's default C backend)."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(0)
    inputs, values, total = [], [], 0.0
    for c, em in cal.emulators.items():
        n = len(np.unique(cal.data.subject[cal.data.condition == c]))
        th = pt.dmatrix(f"theta_{c}")
        inputs.append(th)
        values.append(rng.uniform(0.05, 0.95, (n, len(cal.latent))))
        total = total + em.predict_pt(th)[0].sum()
    f = pytensor.function(inputs, [total, *pytensor.grad(total, inputs)])
    f(*values)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(*values)
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "median_seconds": float(np.median(times)),
            "patients": int(sum(len(v) for v in values)), "target_seconds": 0.005}


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.cohort import CohortConfig, generate_cohort, patient_table, write_tables
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import run_converged

    use_agg()
    out = Path(out)
    work = out / NAME
    t0 = time.perf_counter()
    df = generate_cohort(N_PATIENTS, np.random.default_rng(COHORT_SEED), cfg=CohortConfig.spatial(), processes=2,
                         campaign=work / "cohort_campaign")
    meas, conds = write_tables(df, work / "data")
    bundled = dataset_dir("ct041_virtual_spatial")
    for table in (meas, conds):
        if table.read_text() != (bundled / table.name).read_text():
            raise ValueError(f"{bundled / table.name} is not the generator's table of the N = {N_PATIENTS}, seed "
                             f"{COHORT_SEED} spatial cohort (the model or the generator changed): regenerate it with "
                             "immunocal.calib.cohort.write_tables (PROVENANCE.md)")
    seconds = {"cohort": round(time.perf_counter() - t0, 1)}
    cfg = load_config(bundled / "personalise.toml")
    cfg["predict"] = {"draws": 0}
    if quick:
        cfg["design"]["n"] = 60
        cfg.pop("refinement", None)
        cfg["sampler"].update(draws=200, tune=300)
    # a fit that misses the diagnostics thresholds is fitted again on the same emulators with twice the draws and
    # target_accept 0.95 (the headline study's rule), and the first attempt is reported beside it
    # (a finished run of the same config and data is read back: a killed or repeated study does not fit again)
    cal, summary, first_attempt, _ = run_converged(cfg, work / "run", progress=True, resume=True, refit=not quick)
    cal.ensure_emulators()  # loaded when the run was read back
    seconds.update({f"first_attempt_{k}": v for k, v in (summary.get("seconds_first_attempt") or {}).items()})
    seconds.update(summary["seconds"])
    table = patient_table(df, cal.idata, None, cal.latent)
    table.to_csv(work / "patients.csv", index=False, float_format="%.6g")
    rec = recovery(table, cal.latent)
    try:
        timing = emulator_value_grad_seconds(cal)
    except Exception as exc:  # noqa: BLE001 - recorded in the result, never hidden
        timing = {"error": f"{type(exc).__name__}: {exc}"}
    result = {"virtual": True, "quick": quick, "cohort_seed": COHORT_SEED, "n_patients": N_PATIENTS,
              "numerics": summary["numerics"], "design": cfg["design"], "refinement": cfg.get("refinement"),
              "emulator_validation": summary.get("surrogate_validation"),
              "emulator_at_posterior": summary.get("surrogate_at_posterior"),
              "route": summary.get("route"), "diagnostics": summary["diagnostics"],
              "diagnostics_first_attempt": first_attempt, "sampler": cal.sampler,
              "contraction": summary.get("contraction"), "recovery": rec, "seconds": seconds,
              "emulator_value_grad": timing}
    _figure(out, table, cal.latent, rec)
    write_json(out, NAME, result)
    d = summary["diagnostics"]
    print(f"[{NAME}] R-hat {d.get('rhat_max')}, bulk ESS {d.get('ess_bulk_min')}, divergences "
          f"{d.get('divergences')}; recovery R² " + ", ".join(f"{k}: {v['r2']:.2f}" for k, v in rec.items()))
    return result


def _figure(out: Path, table, latents, rec) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(latents), figsize=(3 * len(latents), 3.2))
    for ax, lat in zip(axes, latents):
        t = table[f"true_{lat}"]
        ax.errorbar(t, table[f"{lat}_mean"], yerr=[table[f"{lat}_mean"] - table[f"{lat}_q05"],
                                                   table[f"{lat}_q95"] - table[f"{lat}_mean"]],
                    fmt="o", ms=3, lw=0.6)
        ax.plot([0, 1], [0, 1], "k--", lw=0.6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{lat.replace('theta_', 'θ_')}: R² {rec[lat]['r2']:.2f}, cov90 {rec[lat]['coverage_90']:.2f}",
                     fontsize=8)
        ax.set_xlabel("truth")
    axes[0].set_ylabel("posterior mean, 90 % interval")
    fig.suptitle("Spatial (PDE) VIRTUAL cohort, N = 37: fitted patients' latent posteriors through the PDE emulator",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, f"{NAME}.png")
