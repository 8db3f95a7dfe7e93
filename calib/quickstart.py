"""The main job for a new user: ``immunocal quickstart [--out DIR]``.

1. Registry check: every preset of every model validated against its admissible ranges and exported as a parameter
   file that every command taking ``--params`` reads back.
2. A small real-data calibration: the radioimmunotherapy model (seed 002) fitted hierarchically to the bundled
   Morisada et al. 2018 MOC1 per-mouse tumour volumes (Control, anti-PD-1, 8 Gy×2, 2 Gy×10; per-mouse growth rate
   and immune kill rate, population radiosensitivity) through per-condition PCA-GP surrogates and NUTS, with quick
   settings; then the held-out combination arms (anti-PD-1 + 8 Gy×2, anti-PD-1 + 2 Gy×10) predicted for new mice.

Writes ``report.json`` (what ran, diagnostics, coverage, where the figures are), ``posterior_summary.json``,
``diagnostics.json``, ``ppc_fit_arms.png``, ``heldout_prediction.png`` and the InferenceData (netCDF).
"""

from __future__ import annotations

import time
from pathlib import Path

from priors import registry

from .outputs import write_json


def registry_check(out: Path) -> dict:
    reg = registry()
    models = {}
    for model in reg.models:
        records = reg.records(model)
        presets = {}
        for preset in reg.presets(model):
            ps = reg.parameter_set(model, preset)  # validates every default against its range
            path = ps.to_file(out / f"params_{model}_{preset}.toml")
            presets[preset] = {"n_values": len(ps), "file": path.name,
                               "free": len(reg.free_parameters(model, preset))}
        models[model] = {"title": reg.entry(model).title, "seed": reg.entry(model).seed,
                         "n_parameters": len(records), "n_pending": sum(r.pending for r in records),
                         "presets": presets}
    return models


def run_quickstart(out: str | Path = "immunocal-out", calibrate: bool = True, settings=None,
                   progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict = {"immunocal_quickstart": "registry check + hierarchical RIT calibration on Morisada MOC1",
                    "models": registry_check(out)}
    if calibrate:
        from .outputs import use_agg

        use_agg()
        from calib.rit_calibration import FitSettings, fit_hierarchical, morisada_setup, plot_fit

        setup, meas, conds = morisada_setup("MOC1")
        res = fit_hierarchical(setup, meas, conds, out / "morisada_MOC1", settings or FitSettings.quick(),
                               progress=progress)
        plot_fit(setup, meas, res["predictions"], setup.fit_conditions, out / "ppc_fit_arms.png",
                 "MOC1 fitted arms: data (lines) and posterior predictive for new mice")
        plot_fit(setup, meas, res["predictions"], setup.heldout_conditions, out / "heldout_prediction.png",
                 "MOC1 held-out combination arms: prediction (not fitted)")
        res.pop("predictions")
        write_json(out / "posterior_summary.json", res["posterior"])
        write_json(out / "diagnostics.json", res["diagnostics"])
        report["calibration"] = {
            "data": "Morisada et al. OncoImmunology 2018 (bundled, calib/datasets/morisada2018)",
            "diagnostics": res["diagnostics"], "heldout_coverage_50": res["heldout"]["coverage_50"],
            "heldout_coverage_90": res["heldout"]["coverage_90"],
            "tumour_control": {c: {k: v for k, v in r.items() if k.endswith("control_fraction")}
                               for c, r in res["heldout"]["per_condition"].items()},
            "surrogate_validation": res["surrogate_validation"],
            "surrogate_at_posterior": res["surrogate_at_posterior"], "assumptions": res["assumptions"],
            "figures": ["ppc_fit_arms.png", "heldout_prediction.png"], "idata": res["idata"],
        }
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json(out / "report.json", report)
    return report
