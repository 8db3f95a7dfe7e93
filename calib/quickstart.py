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

from immunocal.priors import registry

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


#: the quickstart's settings on top of the MOC1 config: shorter chains and fewer prediction draws, with a longer warm-up
#: than draws/2: the tail ESS of the kill-rate location and the radiosensitivity is set by the mass matrix NUTS adapts
#: (seed 1, tune 800 + 1600 draws: tail ESS 356; tune 1500 + 1200 draws: 717, R-hat 1.01, bulk 518 — one-off runs of
#: run_quickstart with these settings, session 11). At seed 2 the chains sit in two modes of the radiosensitivity with
#: either setting (R-hat 1.83–1.84): the MOC1 posterior through the surrogates is multimodal (docs/rit.md), which the
#: quickstart reports as a violation rather than averaging. On the 2-core CI machine type the result is deterministic and
#: misses the thresholds (R-hat 1.020, bulk ESS 364, 2 divergences; sessions 12 and 13, fresh venv); variants measured
#: 2026-11-30 (run_quickstart with the settings, seed 1): λ1 centred R-hat 1.93; 2000 draws / 1500 tune / 0.95:
#: R-hat 1.01, bulk 422, tail 211 (α); 2000 / 2500 / 0.95: bulk 352, tail 96 (α) — α's tail through the surrogates
#: is the bottleneck, not the chain length. The same data on the true model with exact gradients
#: (``moc1_exact.toml``, one kill rate for all mice) meets the thresholds in about 25 minutes and shows the quick
#: route's posterior biased by the surrogates (tumour_alpha 0.054 here against 0.021; docs/rit.md)
QUICK = {"sampler": {"draws": 1200, "tune": 1500, "target_accept": 0.9}, "predict": {"draws": 200}}


def run_quickstart(out: str | Path = "immunocal-out", calibrate: bool = True, settings: dict | None = None,
                   progress: bool = True) -> dict:
    """Registry check, then the MOC1 config (``calib/datasets/morisada2018/moc1.toml``) through the calibration
    workflow with ``settings`` (``{section: {key: value}}`` over the config; default :data:`QUICK`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict = {"immunocal_quickstart": "registry check + hierarchical RIT calibration on Morisada MOC1",
                    "models": registry_check(out)}
    if calibrate:
        import shutil

        from .config import load_config
        from .datasets import dataset_dir
        from .workflow import Calibration

        config = dataset_dir("morisada2018") / "moc1.toml"
        cfg = load_config(config)
        for section, over in (QUICK if settings is None else settings).items():
            cfg.setdefault(section, {}).update(over)
        cal = Calibration(cfg, out / "morisada_MOC1", force=True, progress=progress)
        res = cal.run()
        shutil.copyfile(cal.out / "predictions_fit.png", out / "ppc_fit_arms.png")
        shutil.copyfile(cal.out / "predictions_heldout.png", out / "heldout_prediction.png")
        write_json(out / "posterior_summary.json", res["posterior"])
        write_json(out / "diagnostics.json", res["diagnostics"])
        held = res["prediction"]["heldout"]
        report["calibration"] = {
            "data": "Morisada et al. OncoImmunology 2018 (bundled, calib/datasets/morisada2018)",
            "config": "calib/datasets/morisada2018/moc1.toml", "settings": QUICK if settings is None else settings,
            "diagnostics": res["diagnostics"], "heldout_coverage_50": held["coverage_50"],
            "heldout_coverage_90": held["coverage_90"],
            "tumour_control": {c: {k: v for k, v in r.items() if "control_fraction" in k}
                               for c, r in held["per_condition"].items()},
            "surrogate_validation": res["surrogate_validation"],
            "surrogate_at_posterior": res["surrogate_at_posterior"],
            "figures": ["ppc_fit_arms.png", "heldout_prediction.png"], "run": str(cal.out),
        }
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json(out / "report.json", report)
    return report
