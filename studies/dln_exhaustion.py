"""Seed 003 Fig 3 (Chamoto): control, anti-CD8, anti-PD-L1, bezafibrate, bezafibrate + anti-PD-L1 (one tumour)."""

from pathlib import Path

from immunocal.forward.dln import default_parameters, param_array, scenarios
from immunocal.forward.dln.plotting import plot_arms, trajectories

from ._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    use_agg()
    prm = param_array(default_parameters())
    arms = scenarios.exhaustion_arms()
    traj = trajectories(arms, prm)
    d = scenarios.READOUT_DAY
    vol = {k: traj[k]["tumour"][d] for k in arms}
    result = {
        "readout_day": d,
        "units": "mm^3",
        "volume_day30": vol,
        "ratios": {
            "anti_cd8_over_control": vol["anti_cd8"] / vol["control"],
            "anti_pdl1_over_control": vol["anti_pdl1"] / vol["control"],
            "bezafibrate_over_control": vol["bezafibrate"] / vol["control"],
            "bezafibrate_anti_pdl1_over_anti_pdl1": vol["bezafibrate_anti_pdl1"] / vol["anti_pdl1"],
        },
        "plans": {k: p.describe() for k, p in arms.items()},
        "trajectories": {k: v["tumour"] for k, v in traj.items()},
    }
    r = result["ratios"]
    result["claims_met"] = {
        "anti_cd8_faster": r["anti_cd8_over_control"] >= 1.2,
        "anti_pdl1_slows": r["anti_pdl1_over_control"] <= 0.8,
        "bezafibrate_alone_like_control": abs(r["bezafibrate_over_control"] - 1) < 0.05,
        "bezafibrate_synergy": r["bezafibrate_anti_pdl1_over_anti_pdl1"] <= 0.8,
    }
    save_figure(plot_arms(traj, ["tumour"], "Exhaustion (Fig 3)", d), out, "dln_exhaustion.png")
    write_json(out, "dln_exhaustion", result)
    return result
