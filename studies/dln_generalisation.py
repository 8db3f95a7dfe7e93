"""Seed 003 generalisation protocol on simulated data: calibrate on control + monotherapy arms, predict combinations.

Truth = registry defaults with the free immune parameters perturbed (log-normal, sd 0.3); noisy log-volumes
(sd 0.15) on days 10-30; prediction error on RT + anti-PD-1 and RT + anti-CTLA-4.

1. The seed's point-estimate protocol over replicates: scipy least_squares on the training arms
   (forward/dln/generalisation.py).
2. The same protocol as a Bayesian calibration by config alone (``calib/data/dln_generalisation/calibrate.toml``,
   one replicate shipped with its truth): the true model with exact gradients in the likelihood, NUTS, the held-out
   arms predicted by the true model at posterior draws — coverage of their data, the truth inside the 90 % intervals,
   and the test RMSE of the posterior-median prediction against the noise-free truth (comparable with 1.). The same
   config with the gradient-free route (black-box true model + SMC) is run beside it: two independent samplers on
   the same posterior, compared parameter by parameter (|Δ mean| / sd, sd ratio).
"""

from pathlib import Path

import numpy as np

from immunocal.forward.dln import generalisation

from ._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    use_agg()
    import matplotlib.pyplot as plt

    result = generalisation.run(replicates=2 if quick else 10)
    result["quick"] = quick
    cal = [r["test_rmse_log_calibrated"] for r in result["replicates"]]
    dflt = [r["test_rmse_log_defaults"] for r in result["replicates"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].scatter(dflt, cal)
    lim = max(max(dflt), max(cal)) * 1.1
    axes[0].plot([0, lim], [0, lim], color="0.5", lw=0.8)
    axes[0].set_xlabel("test RMSE (log volume), default parameters")
    axes[0].set_ylabel("test RMSE, calibrated on monotherapies")
    ratios = np.array(
        [[r["estimate_over_truth"][n] for n in result["free_parameters"]] for r in result["replicates"]]
    )
    axes[1].boxplot(np.log10(ratios), tick_labels=result["free_parameters"])
    axes[1].axhline(0, color="0.5", lw=0.8)
    axes[1].set_ylabel("log10(estimate / truth)")
    axes[1].tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    save_figure(fig, out, "dln_generalisation.png")
    result["bayesian"] = _bayesian(Path(out), quick)
    write_json(out, "dln_generalisation", result)
    return result


def _bayesian(out: Path, quick: bool) -> dict:
    """The shipped replicate through the calibration workflow (its config), checked against its known truth."""
    import copy
    import json

    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    folder = dataset_dir("morisada2018").parents[1] / "data" / "dln_generalisation"
    cfg = load_config(folder / "calibrate.toml")
    smc = copy.deepcopy(cfg)
    smc["emulator"] = {"kind": "blackbox"}
    smc["sampler"] = {"method": "smc", "draws": 2000, "chains": 2, "seed": cfg["sampler"]["seed"]}
    if quick:  # a smoke run, not converged (and without the SMC comparison)
        cfg["sampler"].update(draws=100, tune=100)
        cfg["predict"]["draws"] = 100
    cal = Calibration(cfg, out / "dln_generalisation_bayes", force=True)
    summary = cal.run()
    smc_cal = None if quick else Calibration(smc, out / "dln_generalisation_bayes_smc", force=True)
    smc_summary = None if smc_cal is None else smc_cal.run()
    truth = json.loads((folder / "truth.json").read_text())["truth"]
    post = cal.idata.posterior
    inside = {n: bool(summary["posterior"][n]["q05"] <= truth[n] <= summary["posterior"][n]["q95"]) for n in cal.free}
    median = np.array([[float(post[n].median()) for n in cal.free]])
    true_theta = np.array([[truth[n] for n in cal.free]])
    days = np.searchsorted(cal.forward.times, generalisation.OBS_DAYS)
    sq = []
    for c in cal.conditions[1]:
        pred = cal.forward.simulate(median, cal.schedule(c))[0][:, days]
        ref = cal.forward.simulate(true_theta, cal.schedule(c))[0][:, days]
        floor = np.log(generalisation.DETECTION_MM3)  # the protocol's read-out floor, as in 1.
        sq.append((np.maximum(pred, floor) - np.maximum(ref, floor)) ** 2)
    return {"config": "calib/data/dln_generalisation/calibrate.toml", "diagnostics": summary["diagnostics"],
            "posterior": summary["posterior"], "truth": truth, "truth_inside_90": inside,
            "truth_inside_90_fraction": float(np.mean(list(inside.values()))),
            "contraction": summary["contraction"], "prediction": summary["prediction"],
            "test_rmse_log_posterior_median": float(np.sqrt(np.mean(np.concatenate(sq)))),
            "seconds": summary["seconds"],
            "smc_blackbox": None if smc_cal is None else _agreement(cal, smc_cal, smc_summary)}


def _agreement(nuts, smc, smc_summary: dict) -> dict:
    """The black-box SMC run beside the NUTS run (``Calibration`` objects after their runs): per parameter
    |Δ mean| / sd_SMC and the sd ratio NUTS / SMC (``calib.diagnostics.posterior_agreement``)."""
    from immunocal.calib.diagnostics import posterior_agreement

    agreement = posterior_agreement(nuts.idata.posterior, smc.idata.posterior, nuts.free)
    rows = agreement["parameters"].values()
    return {"diagnostics": smc_summary["diagnostics"], "seconds": smc_summary["seconds"],
            "prediction_heldout": {k: v for k, v in smc_summary["prediction"]["heldout"].items()
                                   if k != "per_condition"},
            "agreement_with_nuts": agreement,
            "max_abs_mean_difference_over_sd": max(r["mean_diff_in_sd"] for r in rows),
            "sd_ratio_range": [min(r["sd_ratio"] for r in rows), max(r["sd_ratio"] for r in rows)]}
