"""Per-mouse hierarchical calibration of the RIT model on Morisada et al. 2018 (MOC1 and MC38), by config alone.

Each cell line is one config next to its data (``calib/datasets/morisada2018/{moc1,mc38}_exact.toml``: the RIT kernel
and its exact gradients in the likelihood): fit on Control, anti-PD-1, 8 Gy×2 and 2 Gy×10; predict the held-out
combinations anti-PD-1 + 8 Gy×2 and anti-PD-1 + 2 Gy×10 for new mice by the true forward model at posterior draws.
This script runs the two configs and collects: coverage of the held-out observations by the 50 %/90 % predictive
intervals, MCMC diagnostics, the route (its gradient cost, the resolution ladder at posterior draws and for the
predicted mice), and predicted vs observed tumour-control fractions — including whether the paper's finding
(anti-PD-1 + 8 Gy×2 controls MOC1 far better than + 2 Gy×10) is reproduced.

**Routes compared** (issue 14, deliverable 4): each config is also run on the surrogate route — the same model,
priors and sampler with one PCA-GP surrogate per fitted arm (the design of ``{moc1,mc38}.toml``: 160 runs) — and
its posterior set beside the exact one: per parameter the largest |Δmean| / sd_exact and the sd ratio, the wall
clock, the surrogate's error at posterior draws and the route triage's advice. The exact route is itself checked
against the gradient-free reference, SMC on the true model (black-box kernel, 2000 particles; as for the Dewan and
DLN fits): per parameter |Δmean| / sd_SMC and the sd ratio over all 45 parameters, per-mouse ones element by element,
where each sample's log-likelihood sits and, when they disagree, where NUTS restarted at SMC's particles goes
(``studies._common.restart_at``; for these posteriors SMC misses and the restarts return to NUTS's: docs/rit.md).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from immunocal.studies._common import smc_check, write_json

NAME = "rit_morisada_hierarchical"
CONFIGS = {"MOC1": "moc1_exact.toml", "MC38": "mc38_exact.toml"}
#: the surrogate route's design: that of the surrogate configs moc1.toml / mc38.toml
SURROGATE_DESIGN = {"n": 160, "seed": 1}
#: ``--quick``: shorter chains, fewer prediction draws (same design, same model)
QUICK = {"draws": 300, "tune": 300, "chains": 2}


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


def surrogate_config(cfg: dict) -> dict:
    """The same calibration on the surrogate route: one PCA-GP surrogate per fitted arm over the config's box (the
    surrogate configs' design); no prediction (the comparison is of posteriors)."""
    surrogate = copy.deepcopy(cfg)
    surrogate["emulator"] = {"kind": "surrogate"}
    surrogate["design"].update(SURROGATE_DESIGN)
    surrogate["predict"]["draws"] = 0
    return surrogate


def compare_routes(exact, summary: dict, out: Path, smc_out: Path, quick: bool = False) -> dict:
    """The surrogate route of ``exact``'s calibration (in ``out``), its posterior beside the exact one; and the exact
    one beside SMC on the true model (in ``smc_out``). A failing run is recorded with its error."""
    from immunocal.calib.diagnostics import posterior_agreement
    from immunocal.calib.workflow import Calibration

    names = [n for n in summary["posterior"] if n in exact.idata.posterior]
    try:
        smc = smc_check(exact, smc_out, quick, names)
    except Exception as err:  # recorded, not hidden
        smc = {"failed": f"{type(err).__name__}: {err}"}
    cal = Calibration(surrogate_config(exact.cfg), out, force=True)
    try:
        res = cal.load_finished() or cal.run()
    except Exception as err:  # recorded, not hidden: the route comparison says the surrogate route failed
        return {"smc_true": smc, "surrogate_nuts": {"failed": f"{type(err).__name__}: {err}"}}
    names = [n for n in names if n in cal.idata.posterior]
    return {"reference": "exact-route NUTS (true model), itself checked against SMC on the true model",
            "smc_true": smc,
            "surrogate_nuts": posterior_agreement(cal.idata.posterior, exact.idata.posterior, names),
            "diagnostics": {"exact_nuts": summary["diagnostics"], "surrogate_nuts": res["diagnostics"]},
            "wall_clock_s": {"exact_nuts": summary.get("seconds"), "surrogate_nuts": res.get("seconds")},
            "surrogate_at_posterior": res.get("surrogate_at_posterior"),
            "surrogate_importance": res.get("surrogate_importance"),
            "route_advice": {"exact_nuts": summary.get("route"), "surrogate_nuts": res.get("route")}}


def run(out: Path, quick: bool = False, cell_lines=("MOC1", "MC38"), routes: bool = True) -> dict:
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    out = Path(out)
    result = {"settings": {"configs": {}, "sampler_overrides": QUICK if quick else {}}, "cell_lines": {},
              "routes_compared": {}}
    for line in cell_lines:
        config = dataset_dir("morisada2018") / CONFIGS[line]
        cfg = load_config(config)
        if quick:
            cfg["sampler"].update(QUICK)
            cfg["predict"]["draws"] = 200
        cal = Calibration(cfg, out / f"morisada_{line}", force=True)
        res = cal.load_finished() or cal.run()  # a rerun after a kill reuses the finished fits
        for src, dst in (("predictions_fit.png", "fit_ppc"), ("predictions_heldout.png", "heldout")):
            shutil.copyfile(cal.out / src, out / f"morisada_{line}_{dst}.png")
        result["settings"]["configs"][line] = str(config.relative_to(config.parents[3]))  # calib/datasets/…
        result["cell_lines"][line] = res
        if routes:
            result["routes_compared"][line] = compare_routes(cal, res, out / f"morisada_{line}_surrogate_route",
                                                             out / f"morisada_{line}_smc_true", quick)
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
