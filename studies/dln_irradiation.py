"""Seed 003 Figs 5-6 (Buchwald, Marciscano): tumour RT vs tumour + DLN RT, alone or with anti-PD-1 / anti-CTLA-4."""

from pathlib import Path

from immunocal.forward.dln import default_parameters, param_array, scenarios
from immunocal.forward.dln.plotting import plot_arms, trajectories

from ._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    use_agg()
    prm = param_array(default_parameters())
    arms = scenarios.irradiation_arms()
    traj = trajectories(arms, prm)
    d = scenarios.READOUT_DAY

    def at(arm, target):
        return traj[arm][target][d]

    result = {
        "readout_day": d,
        "units": "mm^3",
        "rt": "8 Gy x 3 (days 10-12) to the primary; DLN arms: same dose to the primary's DLN",
        "distant_day30": {
            "tumour_rt": at("tumour_rt", "distant"),
            "tumour_and_dln_rt": at("tumour_and_dln_rt", "distant"),
        },
        "primary_day30": {
            "tumour_rt": at("tumour_rt", "primary"),
            "tumour_and_dln_rt": at("tumour_and_dln_rt", "primary"),
        },
        "with_anti_pd1": {
            t: {
                "tumour_rt": at("tumour_rt+anti_pd1", t),
                "tumour_and_dln_rt": at("tumour_and_dln_rt+anti_pd1", t),
            }
            for t in ("primary", "distant")
        },
        "with_anti_ctla4": {
            t: {
                "tumour_rt": at("tumour_rt+anti_ctla4", t),
                "tumour_and_dln_rt": at("tumour_and_dln_rt+anti_ctla4", t),
            }
            for t in ("primary", "distant")
        },
        "all_arms_day30": {k: {t: v[d] for t, v in tr.items()} for k, tr in traj.items()},
        "trajectories": traj,
    }
    result["distant_ratio_dln_over_tumour_rt"] = (
        result["distant_day30"]["tumour_and_dln_rt"] / result["distant_day30"]["tumour_rt"]
    )
    result["primary_ratio_dln_over_tumour_rt"] = (
        result["primary_day30"]["tumour_and_dln_rt"] / result["primary_day30"]["tumour_rt"]
    )
    result["claim_met"] = bool(
        result["distant_ratio_dln_over_tumour_rt"] >= 1.2
        and abs(result["primary_ratio_dln_over_tumour_rt"] - 1) < 0.25
    )
    for drug in ("", "+anti_pd1", "+anti_ctla4"):
        sub = {
            k: v for k, v in traj.items() if k in (f"tumour_rt{drug}", f"tumour_and_dln_rt{drug}", "control")
        }
        name = drug.strip("+") or "rt_alone"
        save_figure(
            plot_arms(sub, ["primary", "distant"], f"DLN RT ({name})", d), out, f"dln_irradiation_{name}.png"
        )
    write_json(out, "dln_irradiation", result)
    return result
