"""The main job for a new user: ``immunocal quickstart [--out DIR]``.

It runs what the toolkit has so far and writes a report folder. Today: a registry check (every preset of every
model validated against its admissible ranges), each preset exported as a parameter file that every command taking
parameters can read back, and ``report.json`` summarising it. The calibration on bundled data joins it with the
real-data calibration work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from priors import registry


def run_quickstart(out: str | Path = "immunocal-out", quick: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
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
        models[model] = {
            "title": reg.entry(model).title,
            "seed": reg.entry(model).seed,
            "n_parameters": len(records),
            "n_pending": sum(r.pending for r in records),
            "presets": presets,
        }
    report = {"immunocal_quickstart": "registry check and parameter export", "models": models,
              "seconds": round(time.perf_counter() - start, 3)}
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out / "report.json")
    return report


