"""Seed 003 generalisation protocol on simulated data: calibrate on control + monotherapy arms, predict combinations.

Truth = registry defaults with the free immune parameters perturbed (log-normal, sd 0.3); noisy log-volumes
(sd 0.15) on days 10-30; scipy least_squares on the training arms; prediction error on RT + anti-PD-1 and
RT + anti-CTLA-4 (see forward/dln/generalisation.py).
"""

from pathlib import Path

import numpy as np

from forward.dln import generalisation

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
    write_json(out, "dln_generalisation", result)
    return result
