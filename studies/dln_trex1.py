"""Seed 003 Fig 4 (Vanpouille-Box): anti-CTLA-4 with 8 Gy x 3 vs 20 Gy x 1 to the primary; primary and distant."""

from pathlib import Path

from immunocal.forward.dln import default_parameters, param_array, scenarios
from immunocal.forward.dln.plotting import plot_arms, trajectories

from ._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    use_agg()
    prm = param_array(default_parameters())
    arms = scenarios.trex1_arms()
    traj = trajectories(arms, prm)
    d = scenarios.READOUT_DAY
    control = trajectories({"control": scenarios.irradiation_arms()["control"]}, prm)
    result = {
        "readout_day": d,
        "units": "mm^3",
        "primary_day30": {k: traj[k]["primary"][d] for k in arms},
        "distant_day30": {k: traj[k]["distant"][d] for k in arms},
        "control_day30": control["control"]["primary"][d],
        "plans": {k: p.describe() for k, p in arms.items()},
    }
    result["distant_ratio_8x3_over_20x1"] = result["distant_day30"]["8x3"] / result["distant_day30"]["20x1"]
    result["primary_ratio_8x3_over_20x1"] = result["primary_day30"]["8x3"] / result["primary_day30"]["20x1"]
    result["claim_met"] = bool(
        result["distant_ratio_8x3_over_20x1"] <= 0.8 and abs(result["primary_ratio_8x3_over_20x1"] - 1) < 0.25
    )
    result["trajectories"] = {**traj, **control}
    fig = plot_arms(
        {**{f"{k} + anti-CTLA-4": v for k, v in traj.items()}, **control},
        ["primary", "distant"],
        "Trex1 (Fig 4)",
        d,
    )
    save_figure(fig, out, "dln_trex1.png")
    write_json(out, "dln_trex1", result)
    return result
