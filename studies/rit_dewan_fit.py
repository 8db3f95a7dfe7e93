"""Bayesian counterpart of seed 002's fit to Dewan et al. 2009 (TSA primary tumours, folder 2, all eight arms).

Two variants, each one config next to the data (``calib/datasets/dewan2009/{lq_vascular,modified_lq}.toml``): LQ +
vascular damage (Supp. Table 3) and modified LQ (Supp. Table 1). This script runs them through the workflow and
collects the posterior next to the seed's best fit, LOO and AICc, posterior contraction, coverage of the fitted arms
and of the folder-3 IT-timing arms (not fitted; predicted by the true forward model). Both configs put the true model
in the likelihood (``kind = "exact"``: NUTS with the kernel's forward-mode gradients).

Routes compared on a 3-parameter restriction of the first config (λ1, α_C, p; Table 3 otherwise): NUTS on the true
model (exact gradients), NUTS on PCA-GP surrogates (design + refinement rounds), both 2 × 1000 draws after 1000, and
SMC on the true model (2000 particles; the gradient-free reference): per parameter |Δmean| / sd_SMC and the sd
ratio, wall clock, the surrogate's error at posterior draws and its importance weights (pass: |Δmean| ≤ 0.2 sd, sd
within 20 %). Each variant's full fit is also run by SMC on the true model (2000 particles) and its NUTS posterior
compared with it the same way.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from immunocal.studies._common import smc_check, smc_on_true_model, write_json

NAME = "rit_dewan_fit"
VARIANTS = ("lq_vascular", "modified_lq")
RESTRICTED = ("tumour_proliferation_rate", "tumour_alpha", "immune_kill_rate")


def _config(variant: str, quick: bool) -> dict:
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir

    cfg = load_config(dataset_dir("dewan2009") / f"{variant}.toml")
    if quick:
        cfg["sampler"].update(draws=250, tune=300)
        cfg["predict"]["draws"] = 200
    return cfg


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.workflow import Calibration
    from immunocal.priors import registry

    out = Path(out)
    result: dict = {"settings": {"configs": [f"calib/datasets/dewan2009/{v}.toml" for v in VARIANTS],
                                 "quick": quick}, "variants": {}}
    for variant in VARIANTS:
        cal = Calibration(_config(variant, quick), out / f"dewan_{variant}", force=True)
        res = cal.load_finished() or cal.run()  # a rerun after a kill reuses the finished fits
        seed_values = registry().parameter_set("rit", cal.cfg["model"]["preset"])
        for n in cal.free:
            res["posterior"][n]["seed_best_fit"] = seed_values[n]
        res["slow_mixing"] = _slow_mixing(cal.idata, res["contraction"], res["diagnostics"]["thresholds"]["ess_min"])
        res["smc_true"] = smc_check(cal, out / f"dewan_{variant}_smc_true", quick)
        result["variants"][variant] = res
        shutil.copyfile(cal.out / "predictions_fit.png", out / f"dewan_fit_{variant}.png")
        shutil.copyfile(cal.out / "predictions_heldout.png", out / f"dewan_heldout_{variant}.png")
    main = result["variants"]["lq_vascular"]
    result["fit_arms_coverage_90"] = main["prediction"]["fit"]["coverage_90"]
    result["heldout_arms_coverage_90"] = main["prediction"]["heldout"]["coverage_90"]
    result["diagnostics"] = main["diagnostics"]
    result["identified"] = {v: sorted(n for n, c in r["contraction"].items() if c >= 0.5)
                            for v, r in result["variants"].items()}
    result["routes"] = _compare_routes(out, quick)
    write_json(out, NAME, result)
    return result


def _slow_mixing(idata, contraction: dict, ess_min: float) -> dict:
    """Which parameters miss the bulk-ESS threshold, next to their posterior contraction: a parameter the data do
    not identify (contraction < 0.5) leaves a flat direction along which NUTS moves slowly."""
    import arviz as az

    ess = az.ess(idata, var_names=list(contraction))
    slow = {n: {"ess_bulk": float(ess[n]), "contraction": c, "identified": c >= 0.5}
            for n, c in contraction.items() if float(ess[n]) < ess_min}
    return {"parameters": slow,
            "explanation": "no parameter below the ESS threshold" if not slow else
            "parameters below the ESS threshold that the group means do not identify (contraction < 0.5) mix slowly "
            "along their flat posterior direction; identified ones listed here are correlated with them"}


def _compare_routes(out: Path, quick: bool) -> dict:
    """Exact-gradient NUTS and surrogate NUTS against SMC on the true model (3 free parameters, Table 3 otherwise),
    all through the workflow on the lq_vascular config restricted in memory."""
    from immunocal.calib.diagnostics import posterior_agreement
    from immunocal.calib.workflow import Calibration

    base = _config("lq_vascular", quick)
    base["model"]["options"]["parameter_names"] = list(RESTRICTED)
    base["parameters"] = {n: base["parameters"][n] for n in RESTRICTED}
    base["design"]["bounds"] = {n: base["design"]["bounds"][n] for n in RESTRICTED}
    base["conditions"]["heldout"] = []
    base["predict"]["draws"] = 0
    base["sampler"].update(draws=500 if quick else 1000, tune=500 if quick else 1000)
    surrogate = copy.deepcopy(base)
    surrogate["emulator"] = {"kind": "surrogate"}
    surrogate["design"].update(n=96 if quick else 128, seed=1)
    surrogate["refinement"] = {"rounds": 1 if quick else 2, "points": 48, "draws": 200 if quick else 300}
    smc = smc_on_true_model(base, quick)
    runs, summaries = {}, {}
    for name, cfg in (("exact_nuts", base), ("surrogate_nuts", surrogate), ("smc_true", smc)):
        runs[name] = Calibration(cfg, out / f"dewan_restricted_{name}", force=True)
        summaries[name] = runs[name].load_finished() or runs[name].run()
    ref = runs["smc_true"].idata.posterior
    result: dict = {"wall_clock_s": {k: v["seconds"] for k, v in summaries.items()},
                    "diagnostics": {k: summaries[k]["diagnostics"] for k in ("exact_nuts", "surrogate_nuts")},
                    "surrogate_at_posterior": summaries["surrogate_nuts"]["surrogate_at_posterior"],
                    "surrogate_importance": summaries["surrogate_nuts"].get("surrogate_importance"),
                    "route_advice": {k: v["route"] for k, v in summaries.items()}}
    for name in ("exact_nuts", "surrogate_nuts"):
        result[name] = posterior_agreement(runs[name].idata.posterior, ref, RESTRICTED)
    result["criteria"] = result["exact_nuts"]["criteria"]
    return result
