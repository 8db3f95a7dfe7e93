"""Seed 003 Fig 2 (Park): RT to the primary with or without anti-PD-1; primary and distant (volume and area)."""

from pathlib import Path

from immunocal.forward.dln import default_parameters, param_array, scenarios, tumour_area
from immunocal.forward.dln.plotting import plot_arms, trajectories

from ._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    use_agg()
    prm = param_array(default_parameters())
    arms = scenarios.abscopal_pd1_arms()
    traj = trajectories(arms, prm)
    d = scenarios.READOUT_DAY
    result = {
        "readout_day": d,
        "units": {"volume": "mm^3", "area": "mm^2 (cross-section of a sphere, proportional to n^(2/3))"},
        "primary_day30": {k: traj[k]["primary"][d] for k in arms},
        "distant_day30": {k: traj[k]["distant"][d] for k in arms},
        "distant_area_day30": {k: float(tumour_area(traj[k]["distant"][d])) for k in arms},
        "plans": {k: p.describe() for k, p in arms.items()},
        "trajectories": traj,
    }
    result["distant_ratio_rt_pd1_over_rt"] = (
        result["distant_day30"]["rt_anti_pd1"] / result["distant_day30"]["rt"]
    )
    result["claim_met"] = bool(result["distant_ratio_rt_pd1_over_rt"] <= 0.8)
    area = {k: {t: [float(tumour_area(v)) for v in vs] for t, vs in tr.items()} for k, tr in traj.items()}
    save_figure(
        plot_arms(area, ["primary", "distant"], "Park (Fig 2)", d, ylabel="tumour area (mm$^2$)"),
        out,
        "dln_abscopal_pd1.png",
    )
    write_json(out, "dln_abscopal_pd1", result)
    return result
