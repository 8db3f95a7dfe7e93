"""Per-mouse hierarchical calibration of the RIT model on Morisada et al. 2018 (MOC1 and MC38), by config alone.

Each cell line is one config next to its data (``calib/datasets/morisada2018/{moc1,mc38}.toml``): fit on Control,
anti-PD-1, 8 Gy×2 and 2 Gy×10; predict the held-out combinations anti-PD-1 + 8 Gy×2 and anti-PD-1 + 2 Gy×10 for new
mice by the true forward model at posterior draws. This script only runs the two configs and collects: coverage of
the held-out observations by the 50 %/90 % predictive intervals, MCMC diagnostics, the route (what the likelihood
simulated: its gradient cost, the surrogate's error at posterior draws when a surrogate, the resolution ladder at
posterior draws and for the predicted mice), and predicted vs observed tumour-control fractions — including whether the paper's finding (anti-PD-1 + 8 Gy×2
controls MOC1 far better than + 2 Gy×10) is reproduced.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from immunocal.studies._common import write_json

NAME = "rit_morisada_hierarchical"
#: ``--quick``: shorter chains, fewer prediction draws (same design, same model)
QUICK = {"draws": 400, "tune": 500, "target_accept": 0.9}


def _route(res: dict) -> dict:
    """What the likelihood simulated and how well: the route (exact: the true model with its tangents; surrogate:
    PCA-GPs), the seconds per exact gradient, the surrogate's error at posterior draws, the resolution ladder at
    posterior draws and for the predicted new mice (in noise sd), and the run's wall clock."""
    route, num, pred = res.get("route", {}), res.get("numerics_at_posterior", {}), res["prediction"].get("numerics", {})
    return {"route": route.get("route"), "gradient_seconds": route.get("gradient_seconds"),
            "surrogate_max_abs_error": (res.get("surrogate_at_posterior") or {}).get("max_abs_error"),
            "resolution": num.get("resolution"), "ladder": num.get("ladder"),
            "numerics_at_posterior_over_noise": num.get("max_diff_over_noise"),
            "numerics_refinement_ratio": num.get("refinement_ratio"),
            "prediction_resolution": pred.get("resolution"),
            "prediction_numerics_over_noise": pred.get("max_diff_over_noise"),
            "seconds": res.get("seconds", {}).get("total")}


def run(out: Path, quick: bool = False, cell_lines=("MOC1", "MC38")) -> dict:
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    result = {"settings": {"configs": {}, "sampler_overrides": QUICK if quick else {}}, "cell_lines": {}}
    for line in cell_lines:
        config = dataset_dir("morisada2018") / f"{line.lower()}.toml"
        cal = Calibration(config, Path(out) / f"morisada_{line}", force=True, sampler=QUICK if quick else None)
        if quick:
            cal.cfg["predict"]["draws"] = 200
        res = cal.run()
        for src, dst in (("predictions_fit.png", "fit_ppc"), ("predictions_heldout.png", "heldout")):
            shutil.copyfile(cal.out / src, Path(out) / f"morisada_{line}_{dst}.png")
        result["settings"]["configs"][line] = str(config.relative_to(config.parents[3]))  # calib/datasets/…
        result["cell_lines"][line] = res
    cells = result["cell_lines"].values()
    held = [r["prediction"]["heldout"] for r in cells]
    n = sum(h["n_obs"] for h in held)
    result["heldout_coverage_50"] = sum(h["coverage_50"] * h["n_obs"] for h in held) / n
    result["heldout_coverage_90"] = sum(h["coverage_90"] * h["n_obs"] for h in held) / n
    diags = [r["diagnostics"] for r in cells]
    result["diagnostics"] = {
        "max_rhat": max(d["rhat_max"] or 0.0 for d in diags), "min_ess_bulk": min(d["ess_bulk_min"] for d in diags),
        "min_ess_tail": min(d["ess_tail_min"] for d in diags), "divergences": sum(d["divergences"] for d in diags),
        "ok": all(d["ok"] for d in diags), "thresholds": "R-hat <= 1.01, bulk/tail ESS >= 400, no divergences"}
    result["route"] = {line: _route(r) for line, r in result["cell_lines"].items()}
    keys = ("observed_control_fraction", "predicted_control_fraction", "predicted_control_fraction_noise_free",
            "n_subjects")
    result["tumour_control"] = {
        line: {c.split("_", 1)[1]: {k: v[k] for k in keys}
               for c, v in r["prediction"]["heldout"]["per_condition"].items()}
        for line, r in result["cell_lines"].items()}
    if "MOC1" in result["tumour_control"]:
        tc = result["tumour_control"]["MOC1"]
        obs_gap = tc["antiPD1_8Gyx2"]["observed_control_fraction"] - tc["antiPD1_2Gyx10"]["observed_control_fraction"]
        pred_gap = tc["antiPD1_8Gyx2"]["predicted_control_fraction"] - tc["antiPD1_2Gyx10"]["predicted_control_fraction"]
        result["paper_finding"] = {
            "claim": "anti-PD-1 + 8 Gy x 2 controls MOC1 far better than anti-PD-1 + 2 Gy x 10",
            "observed_difference": obs_gap, "predicted_difference": pred_gap, "reproduced": bool(pred_gap >= 0.3)}
    write_json(out, NAME, result)
    return result
