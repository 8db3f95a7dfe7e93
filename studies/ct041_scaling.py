"""Scaling and robustness of the Bayesian personalisation against LightGBM (the deliverable "N = 37, 200, 1,000; a
misspecified Bayesian variant reported beside the well-specified one") on VIRTUAL CT041-like cohorts.

Each run is :func:`immunocal.studies.ct041_bayes_vs_lgbm.compare` — the same folds, features, emulators design, population
fit, per-patient posteriors and scores as the headline study — at another cohort size or with a misspecified
Bayesian model (:data:`immunocal.studies.ct041_bayes_vs_lgbm.VARIANTS`: no covariate effects; RECIST as a normal score). The
well-specified N = 37 reference runs here at the variants' repeats, so every comparison is paired on identical folds;
the seed-000 θ_ref protocol is the headline study's and is not repeated. Writes ``OUT/ct041_scaling/<run>.json``
(each run's full result), ``OUT/ct041_scaling.json`` (per run and latent: MAE, R², 90 % coverage, CRPS for both
methods, contraction; the runs' seconds and folds) and ``ct041_scaling.png``, both rewritten after each run with the
runs still to come under ``pending`` (a run resumes from its finished folds' records, so a stopped study is run again
as it was). ``--quick``: N = 37 well specified and without
covariates, one repeat, short chains (a smoke test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "ct041_scaling"
#: (run, cohort size, variant, repeats)
RUNS = (("N37", 37, None, 2), ("N37_no_covariates", 37, "no_covariates", 2),
        ("N37_normal_recist", 37, "normal_recist", 2), ("N200", 200, None, 1), ("N1000", 1000, None, 1))
QUICK_RUNS = (("N37", 37, None, 1), ("N37_no_covariates", 37, "no_covariates", 1))
METRICS = ("mae", "r2", "coverage_90", "crps")


def run(out: Path, quick: bool = False, scheduler=None, processes: int = 1) -> dict:
    from immunocal.studies.ct041_bayes_vs_lgbm import VARIANTS, compare

    use_agg()
    out = Path(out)
    summary = {}
    runs = QUICK_RUNS if quick else RUNS
    for i, (name, n, variant, repeats) in enumerate(runs):
        print(f"[{NAME}] {name}: N = {n}, {VARIANTS.get(variant, 'well specified')}, {repeats} repeat(s)",
              flush=True)
        res = compare(out / NAME, name, n_patients=n, repeats=repeats, variant=variant, seed_protocol=False,
                      quick=quick, scheduler=scheduler, processes=processes)
        summary[name] = {"n": n, "variant": variant, "repeats": repeats, "seconds": res["seconds"],
                         "latents": {lat: {"bayes": {m: v["bayes"][m] for m in METRICS},
                                           "lightgbm": {m: v["lightgbm"][m] for m in METRICS},
                                           "contraction": res["identifiability"][lat]["contraction"]}
                                     for lat, v in res["table"].items()},
                         # each fold's population fit (diagnostics, top-ups, a refit) and seconds, for the report
                         "folds": [{k: f.get(k) for k in ("repeat", "fold", "population", "population_first_attempt",
                                                          "population_top_up", "seconds")} for f in res["folds"]]}
        # written after every run: the larger runs take hours each (N = 1,000: several sessions), and what has
        # finished is reported meanwhile, with the runs still to come named
        _figure(out, summary)
        result = {"virtual": True, "quick": quick, "runs": summary,
                  "pending": [r[0] for r in runs[i + 1:]]}
        write_json(out, NAME, result)
    return result


def _figure(out: Path, summary: dict) -> None:
    import matplotlib.pyplot as plt

    runs = list(summary)
    lats = list(next(iter(summary.values()))["latents"])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    x = np.arange(len(lats))
    width = 0.8 / (len(runs) + 1)
    for ax, m in zip(axes, METRICS):
        ax.bar(x - 0.4 + width / 2, [summary[runs[0]]["latents"][k]["lightgbm"][m] for k in lats], width,
               color="0.6", label=f"LightGBM ({runs[0]})")
        for i, r in enumerate(runs):
            ax.bar(x - 0.4 + width * (i + 1.5), [summary[r]["latents"][k]["bayes"][m] for k in lats], width,
                   label=f"Bayes {r}")
        if m == "coverage_90":
            ax.axhline(0.9, color="k", lw=0.6, ls="--")
        ax.set_xticks(x, [k.removeprefix("theta_") for k in lats], rotation=45)
        ax.set_title(m)
    axes[0].legend(fontsize=6)
    fig.suptitle("VIRTUAL cohorts: Bayesian personalisation by cohort size and misspecification (out-of-fold)")
    save_figure(fig, out, f"{NAME}.png")
