"""Seed 002 Figs 2, 3, 4, 5: the ten Dewan arms with Supp. Tables 1 (modified LQ), 2 (LQL), 3 (LQ + vascular
damage) against the digitised Dewan et al. 2009 group means, and the four Deng arms with the Deng column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

DEWAN_PRESETS = ("dewan_table1", "dewan_table2", "dewan_table3")
#: digitised Dewan conditions (calib/datasets/dewan2009) -> arms of immunocal.forward.rit.scenarios.dewan_arms
DATA_ARMS = {
    "tsa_fig2_0Gy+PBS": "no_treatment",
    "tsa_fig2_0Gy+9H10": "ctla4",
    "tsa_fig2_20Gyx1+PBS": "20Gy",
    "tsa_fig2_20Gyx1+9H10": "20Gy+ctla4",
    "tsa_fig2_8Gyx3+PBS": "8Gyx3",
    "tsa_fig2_8Gyx3+9H10": "8Gyx3+ctla4",
    "tsa_fig2_6Gyx5+PBS": "6Gyx5",
    "tsa_fig2_6Gyx5+9H10": "6Gyx5+ctla4",
    "tsa_fig3b_IR+9H10(12-15-18)": "8Gyx3+ctla4(0,3,6)",
    "tsa_fig3b_IR+9H10(16-18-21)": "8Gyx3+ctla4(4,6,9)",
}
TREATMENT_START_DAY = 12.0  # Dewan: treatment starts on inoculation day 12 (~32 mm^3) = model day 0
#: the ten most sensitive parameters of the seed's Table 1 (eq 29, Table 3 parameters), in order
SEED_TOP10 = [
    "immune_kill_exponent",
    "tumour_proliferation_rate",
    "immune_kill_half_saturation",
    "immune_kill_rate",
    "initial_naive_t_cells",
    "t_cell_elimination_rate",
    "naive_t_cell_production",
    "tumour_alpha",
    "tumour_beta",
    "antigen_activation_delay",
]


def load_dewan_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Arm -> (model days, mean volume mm^3) of the digitised Dewan TSA primary tumours (immunocal.calib.datasets)."""
    from immunocal.calib.datasets import dataset_dir

    rows = {}
    with open(dataset_dir("dewan2009") / "measurements.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            arm = DATA_ARMS.get(r["condition"])
            if arm is None or r["observable"] != "tumour_volume_mm3":
                continue
            rows.setdefault(arm, []).append((float(r["time"]) - TREATMENT_START_DAY, float(r["value"])))
    return {a: (np.array([t for t, _ in v]), np.array([y for _, y in v])) for a, v in sorted(rows.items())}


def log_residuals(model: np.ndarray, data: np.ndarray) -> np.ndarray:
    """log((V_model + 1) / (V_data + 1)): finite for the complete regressions (V = 0) of the digitised means."""
    return np.log((model + 1.0) / (data + 1.0))


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.rit import simulate, simulate_volumes
    from immunocal.forward.rit.analysis import sensitivity_indices
    from immunocal.forward.rit.scenarios import deng_arms, dewan_arms
    from immunocal.priors import registry

    reg = registry()
    arms = dewan_arms(t_end=30.0)
    data = load_dewan_data()
    result = {
        "treatment_start_inoculation_day": TREATMENT_START_DAY,
        "data": "calib/datasets/dewan2009 (digitised "
        "group means of Dewan et al. 2009, TSA primary tumours; no error bars: the seed's cost F (eq 26) needs "
        "the uncertainties u, so the fit is summarised by log residuals log((Vm+1)/(Vd+1)))",
        "dewan": {},
        "deng": {},
    }
    curves = {}
    for preset in DEWAN_PRESETS:
        ps = reg.parameter_set("rit", preset)
        per_arm, res_all = {}, []
        for name, s in arms.items():
            r = simulate(ps, s)
            curves[(preset, name)] = r
            entry = {
                "volume_mm3_days_0_3_30": r.at("volume_mm3", np.arange(0, 31, 3.0)).tolist(),
                "min_viable_cells": r.info["min_C"],
            }
            if name in data:
                t, y = data[name]
                m = r.at("volume_mm3", t)
                lr = log_residuals(m, y)
                res_all.append(lr)
                entry.update(
                    {
                        "data_days": t.tolist(),
                        "data_mm3": y.tolist(),
                        "model_mm3": m.tolist(),
                        "rms_log_residual": float(np.sqrt(np.mean(lr**2))),
                    }
                )
            per_arm[name] = entry
        allr = np.concatenate(res_all)
        v_none = np.array(per_arm["no_treatment"]["volume_mm3_days_0_3_30"])
        v_c4 = np.array(per_arm["ctla4"]["volume_mm3_days_0_3_30"])
        result["dewan"][preset] = {
            "options": reg.preset_options("rit", preset),
            "arms": per_arm,
            "n_data_points": int(allr.size),
            "rms_log_residual_all": float(np.sqrt(np.mean(allr**2))),
            "claims": {
                "ctla4_alone_within_3pct_of_no_treatment": bool(np.max(np.abs(v_c4 / v_none - 1)) < 0.03),
                "8Gyx3+ctla4_below_20Gy+ctla4_at_day_20": per_arm["8Gyx3+ctla4"]["volume_mm3_days_0_3_30"][7]
                < per_arm["20Gy+ctla4"]["volume_mm3_days_0_3_30"][7],
            },
        }
    # local sensitivity (eq 29) of the data misfit to a 10 % change of each free Table 3 parameter
    ps3 = reg.parameter_set("rit", "dewan_table3")
    free = reg.free_parameters("rit", "dewan_table3")

    def cost(values):
        try:
            ps = ps3.replace(**values)
        except ValueError:
            ps = ps3.replace(
                **{k: min(v, reg.record("rit", k).bounds_for("dewan_table3")[1]) for k, v in values.items()}
            )
        tot = 0.0
        for name, (t, y) in data.items():
            tot += float(np.sum(log_residuals(simulate_volumes(ps, arms[name], t), y) ** 2))
        return tot

    sens = sensitivity_indices(cost, {k: ps3[k] for k in free}, names=None if not quick else free[:8])
    top = list(sens)[:10]
    result["sensitivity_table3"] = {
        "cost": "sum over the 50 Dewan points of log((Vm+1)/(Vd+1))^2",
        "cost_at_table3": cost({}),
        "index": sens,
        "top10": top,
        "seed_top10": SEED_TOP10,
        "overlap_with_seed_top10": len(set(top) & set(SEED_TOP10)),
    }
    ps_deng = reg.parameter_set("rit", "deng_table1")
    deng = {}
    for name, s in deng_arms(t_end=21.0).items():
        r = simulate(ps_deng, s)
        curves[("deng_table1", name)] = r
        deng[name] = r.at("volume_mm3", np.arange(0, 22, 3.0)).tolist()
    result["deng"] = {
        "preset": "deng_table1",
        "volume_mm3_days_0_3_21": deng,
        "claims": {
            "pdl1_alone_within_3pct_of_no_treatment": bool(
                np.max(np.abs(np.array(deng["pdl1"]) / np.array(deng["no_treatment"]) - 1)) < 0.03
            ),
            "12Gy+pdl1_synergy_at_day_21": deng["12Gy+pdl1"][-1] < 0.5 * deng["12Gy"][-1],
        },
    }
    _figure(out, curves, data, list(arms))
    write_json(out, "rit_dewan_curves", result)
    return result


def _figure(out, curves, data, arm_names):
    use_agg()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 5, figsize=(20, 10))
    for ax, name in zip(axes.flat[:10], arm_names):
        for preset, style in zip(DEWAN_PRESETS, ("-", "--", ":")):
            r = curves[(preset, name)]
            ax.plot(r.t, r.volume, style, label=preset)
        if name in data:
            ax.plot(*data[name], "ko", label="Dewan 2009 (digitised)")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 400)
        ax.set_xlabel("day after start")
    axes.flat[0].legend(fontsize=7)
    for ax in axes.flat[10:14]:
        ax.axis("off")
    ax = axes.flat[14]
    for name in ("no_treatment", "12Gy", "pdl1", "12Gy+pdl1"):
        r = curves[("deng_table1", name)]
        ax.plot(r.t, r.volume, label=name)
    ax.set_title("Deng (Supp. Table 1, Deng column)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, "rit_dewan_curves.png")
