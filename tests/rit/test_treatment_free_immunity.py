"""studies/rit_treatment_free_immunity (issue 14, deliverable 6) in quick mode: without radiation the model's only
route for anti-PD-1 is antigen from viable cells (ρ), so at the presets' ρ (≤ 1e-19) anti-PD-1 alone changes nothing
whatever the activation rate, dose or kill rate; on ρ's log scale the effect grows with ρ; the data's growth rates
per mouse are recomputed from the bundled table; the report renders the section."""

import csv
import json

import numpy as np

from immunocal.calib.cli.main import main
from immunocal.calib.datasets import dataset_dir
from immunocal.calib.report import render


def test_treatment_free_immunity_study_quick(tmp_path):
    assert main(["study", "rit_treatment_free_immunity", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "rit_treatment_free_immunity.json").read_text())
    for line, r in res["lines"].items():
        effect = r["max_abs_model_effect_by_rho"]
        assert effect["preset"] == 0.0 and not r["representable_at_preset_rho"], line
        steps = [effect[k] for k in ("1e-15", "1e-12", "1e-09", "1e-07", "1e-06")]
        assert np.all(np.diff(steps) > 0) and steps[-1] > 0.1, (line, steps)
        assert r["nearest_grid_point"]["step_error_substeps_4_vs_16"] < 0.01
        data = r["data"]
        assert data["mice_with_rates"] == {f"{line}_Control": 10, f"{line}_antiPD1": 10}
        rates = data["growth_rate_per_day_median"]
        assert rates[f"{line}_antiPD1"] < rates[f"{line}_Control"]  # the monotherapy arm grows slower
    # the per-mouse rates recomputed from the bundled CSV itself (not through the workflow's tables)
    rows = list(csv.DictReader((dataset_dir("morisada2018") / "measurements.csv").open()))
    for cond in ("MOC1_Control", "MC38_antiPD1"):
        mice = {}
        for row in rows:
            if row["condition"] == cond and not row["censoring"]:
                mice.setdefault(row["subject"], []).append((float(row["time"]), np.log(float(row["value"]))))
        rate = np.median([np.polyfit(*np.array(v).T, 1)[0] for v in mice.values() if len(v) >= 3])
        line = cond.split("_")[0]
        assert abs(res["lines"][line]["data"]["growth_rate_per_day_median"][cond] - rate) < 1e-12
    text = render(tmp_path, tmp_path / "figs", tmp_path)
    assert "anti-PD-1 alone" in text and "rit_treatment_free_immunity.png" in text
