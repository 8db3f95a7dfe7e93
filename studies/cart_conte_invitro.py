"""The CAR-T model on real killing kinetics: Conte et al. 2025 (PBT030 glioblastoma + IL13Rα2 CAR-T, xCELLigence
Cell Index, 3 wells per arm), through the calibration workflow with the configs as shipped:

* ``calib/datasets/conte2025/invitro.toml`` — fit tumour alone + E:T 1:10 + 1:50, predict the 1:25 wells;
* ``calib/datasets/conte2025/invitro_reverse.toml`` — fit tumour alone + 1:25, predict 1:10 and 1:50.

The model (:mod:`immunocal.forward.cart.invitro`) is seed 001's homogeneous CAR-T equations in a well; NUTS runs on the
true model with exact gradients (forward sensitivities). Reported per split: diagnostics, the fitted parameters and
their contraction, held-out coverage of the 50 % / 90 % predictive intervals of new wells, and the killing time —
the time of the Cell Index peak of a CAR-T arm (killing overtakes growth) and the first time it falls below half its
peak (None if never within 72 h) — predicted (median over new wells at posterior draws, noise-free) vs observed (mean
over the arm's wells). The fitted kill rate γ is shown in the seed's units: γ·K (per K_T per day, the registry's
``normalised`` preset: 2.5) and γ·V (cm³ per cell per day, the ``paper`` value 0.41) with V the medium volume of an
E-plate 96 well, :data:`WELL_VOLUME_CM3` (an assumption: the source does not state it). Writes
``OUT/cart_conte_invitro.json`` and ``cart_conte_invitro.png``; ``--quick``: short chains (a smoke test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "cart_conte_invitro"
SPLITS = {"fit_1to10_1to50": "invitro.toml", "fit_1to25": "invitro_reverse.toml"}
QUICK = {"draws": 200, "tune": 300}
#: medium volume of an xCELLigence E-plate 96 well (cm³): 200 µL — ASSUMED (typical; not stated by the source)
WELL_VOLUME_CM3 = 0.2
#: the registry's CAR-T kill rate: normalised preset (per K_T per day) and paper value (cm³ per cell per day)
KILL_RATE_NORMALISED, KILL_RATE_PAPER = 2.5, 0.41


def killing_times(times: np.ndarray, ci: np.ndarray) -> dict:
    """Time of the Cell Index peak and the first time after it below half the peak (None if never)."""
    k = int(np.argmax(ci))
    below = np.flatnonzero(ci[k:] < 0.5 * ci[k])
    return {"peak_day": float(times[k]), "half_peak_day": float(times[k + below[0]]) if len(below) else None}


def _heldout_killing(cal) -> dict:
    """Per held-out CAR-T arm: observed (mean of the wells' curves) and predicted (each new well's noise-free curve at
    each posterior draw; median, 5 %, 95 %) killing times."""
    import arviz as az

    pred = az.from_netcdf(cal.out / "predictions.nc")
    meas, _ = cal.tables
    rows = cal.prediction_rows(cal.conditions[0] + cal.conditions[1])  # the run predicted fit + held-out arms
    if len(rows) != pred.predictions["mu_cell_index"].shape[-1]:
        raise ValueError(f"{cal.out}/predictions.nc has {pred.predictions['mu_cell_index'].shape[-1]} rows, the "
                         f"fitted + held-out prediction rows are {len(rows)}: not this run's predictions")
    mu = pred.predictions["mu_cell_index"].stack(s=("chain", "draw")).values  # (rows, samples)
    out = {}
    for cond in cal.conditions[1]:
        sel = meas.condition == cond
        days = np.unique(meas.time[sel])
        curve = np.array([meas.value[sel & (meas.time == d)].mean() for d in days])
        observed = killing_times(days, curve)
        per = []
        for subject in dict.fromkeys(rows.subject[rows.condition == cond]):
            m = (rows.condition == cond) & (rows.subject == subject)
            order = np.argsort(rows.time[m])
            t, y = rows.time[m][order], mu[m][order]
            per.extend(killing_times(t, y[:, j]) for j in range(y.shape[1]))
        peak = np.array([p["peak_day"] for p in per])
        half = np.array([np.nan if p["half_peak_day"] is None else p["half_peak_day"] for p in per])
        out[cond] = {"observed": observed,
                     "predicted_peak_day": np.quantile(peak, [0.05, 0.5, 0.95]).tolist(),
                     "peak_day_error": float(np.median(peak) - observed["peak_day"]),
                     "predicted_half_peak_fraction_reached": float(np.isfinite(half).mean()),
                     "predicted_half_peak_day_median": float(np.nanmedian(half)) if np.isfinite(half).any() else None,
                     "half_peak_day_error": (float(np.nanmedian(half) - observed["half_peak_day"])
                                             if observed["half_peak_day"] is not None and np.isfinite(half).any()
                                             else None)}
    return out


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    use_agg()
    out = Path(out)
    result = {"quick": quick, "well_volume_cm3_assumed": WELL_VOLUME_CM3, "splits": {},
              "data_assumptions": {
                  "wells": "3 replicate wells per arm (xCELLigence E-plate), one subject each",
                  "cart_added": "at each arm's first data time, 2.5013 h after plating (UNCERTAIN: shared/data README)",
                  "effector_target_ratio": "CAR-T cells = E:T x the well's plated tumour cells T0 (its latent value)",
                  "cell_index": "CI = 1.946e-4 x adherent tumour cells + 0.1602 (the source's conversion); its "
                                "per-well error is absorbed by Ornstein-Uhlenbeck residuals (tau learned)",
                  "time_window_days": [0.5, 3.1],
                  "why_the_window": "the first ~10 h are cell attachment and spreading (every arm, tumour alone "
                                    "included, rises by ~1 CI), not cell number",
                  "well_volume_cm3": f"{WELL_VOLUME_CM3} (ASSUMED, 200 uL: only for the kill rate in cm^3/cell/day)"}}
    for split, config in SPLITS.items():
        print(f"[{NAME}] {split}: {config}", flush=True)
        cal = Calibration(dataset_dir("conte2025") / config, out / f"conte_{split}", force=True,
                          sampler=QUICK if quick else None)
        if quick:
            cal.cfg["predict"]["draws"] = 100
        res = cal.load_finished() or cal.run()  # a rerun after a kill reuses a finished fit
        post = res["posterior"]
        # the population's kill rate: the per-well hierarchy's median, link⁻¹(kill_rate_loc), at each draw
        prior = next(p.prior for p in cal.parameters if p.name == "kill_rate")
        gamma_draws = np.asarray(prior.link_inverse(cal.idata.posterior["kill_rate_loc"].values.ravel()), float)
        gamma, cap = float(np.median(gamma_draws)), post["well_capacity_cells"]["mean"]
        held = res["prediction"]["heldout"]
        result["splits"][split] = {
            "config": f"calib/datasets/conte2025/{config}", "fit": cal.conditions[0], "heldout": cal.conditions[1],
            "diagnostics": res["diagnostics"], "posterior": post, "contraction": res.get("contraction"),
            "heldout_coverage_50": held["coverage_50"], "heldout_coverage_90": held["coverage_90"],
            "heldout_per_condition": {c: {k: v[k] for k in ("coverage_50", "coverage_90", "n_obs") if k in v}
                                      for c, v in held.get("per_condition", {}).items()},
            "killing": _heldout_killing(cal),
            "kill_rate": {"per_cell_day": gamma, "per_cell_day_q05_q95": np.quantile(gamma_draws, [0.05, 0.95]).tolist(),
                          "normalised_per_KT_day": gamma * cap,
                          "registry_normalised": KILL_RATE_NORMALISED,
                          "cm3_per_cell_day": gamma * WELL_VOLUME_CM3, "registry_paper": KILL_RATE_PAPER},
            "seconds": res.get("seconds")}
        shutil.copyfile(cal.out / "predictions_heldout.png", out / f"{NAME}_{split}_heldout.png")
    _figure(out, result)
    write_json(out, NAME, result)
    return result


def _figure(out: Path, result: dict) -> None:
    import matplotlib.pyplot as plt

    splits = result["splits"]
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.6))
    for ax, (split, r) in zip(np.atleast_1d(axes), splits.items()):
        for cond, k in r["killing"].items():
            lo, mid, hi = k["predicted_peak_day"]
            ax.errorbar([cond.split("_", 1)[1]], [mid], yerr=[[mid - lo], [hi - mid]], fmt="o", color="C0",
                        label="predicted peak day (90 %)" if cond == next(iter(r["killing"])) else None)
            ax.plot([cond.split("_", 1)[1]], [k["observed"]["peak_day"]], "kx",
                    label="observed" if cond == next(iter(r["killing"])) else None)
        ax.set_title(f"{split}: coverage 50/90 % = {r['heldout_coverage_50']:.2f}/{r['heldout_coverage_90']:.2f}",
                     fontsize=9)
        ax.set_ylabel("day of the Cell Index peak")
        ax.legend(fontsize=7)
    fig.suptitle("Conte et al. 2025 (PBT030 + IL13Rα2 CAR-T): held-out E:T ratios, killing time")
    save_figure(fig, out, f"{NAME}.png")
