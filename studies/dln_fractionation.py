"""Model prediction (not a seed figure): iso-effective fractionation schemes with anti-CTLA-4 — where does the Trex1
switch (eq 8) cost the abscopal effect? n = 1..6 fractions on consecutive days from day 10, dose per fraction chosen
so that the tumour's LQ biologically effective dose equals that of 8 Gy x 3 (same direct tumour kill)."""

import math
from pathlib import Path

from immunocal.forward.dln import TreatmentPlan, c_trex1, default_parameters, param_array, scenarios
from immunocal.forward.dln.plotting import trajectories

from ._common import save_figure, use_agg, write_json


def iso_bed_dose(n: int, bed: float, ab: float) -> float:
    """Dose per fraction d with n d (1 + d / ab) = bed."""
    return 0.5 * ab * (-1.0 + math.sqrt(1.0 + 4.0 * bed / (n * ab)))


def run(out: Path, quick: bool = False) -> dict:
    use_agg()
    import matplotlib.pyplot as plt

    ps = default_parameters()
    prm = param_array(ps)
    ab = ps["tumour_lq_alpha"] / ps["tumour_lq_beta"]
    bed = 3 * 8.0 * (1 + 8.0 / ab)
    net = scenarios.two_site_network()
    d30 = scenarios.READOUT_DAY
    rows = []
    for n in range(1, 4 if quick else 7):
        d = iso_bed_dose(n, bed, ab)
        days = list(range(10, 10 + n))
        for drug in ("none", "anti_ctla4"):
            drugs = [] if drug == "none" else [{"name": drug, "days": list(scenarios.ANTIBODY_DAYS)}]
            plan = TreatmentPlan.build(
                net, scenarios.HORIZON, [{"target": "primary", "days": days, "dose_gy": d}], drugs
            )
            tr = trajectories({"x": plan}, prm)["x"]
            rows.append(
                {
                    "fractions": n,
                    "dose_per_fraction_gy": d,
                    "drug": drug,
                    "c_trex1": c_trex1(
                        d, ps["trex1_level"], ps["trex1_steepness"], ps["trex1_threshold_dose"]
                    ),
                    "primary_day30": tr["primary"][d30],
                    "distant_day30": tr["distant"][d30],
                }
            )
    result = {
        "readout_day": d30,
        "units": "mm^3",
        "tumour_alpha_beta_gy": ab,
        "iso_bed_gy": bed,
        "schemes": rows,
    }
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for drug in ("none", "anti_ctla4"):
        sel = [r for r in rows if r["drug"] == drug]
        x = [r["dose_per_fraction_gy"] for r in sel]
        ax[0].plot(x, [r["primary_day30"] for r in sel], "o-", label=drug)
        ax[1].plot(x, [r["distant_day30"] for r in sel], "o-", label=drug)
    for a, t in zip(ax, ("primary", "distant")):
        a.set_xlabel("dose per fraction (Gy), iso-BED to 8 Gy x 3")
        a.set_ylabel(f"{t} volume day {d30} (mm$^3$)")
        a.set_yscale("log")
        a.axvline(ps["trex1_threshold_dose"], color="0.6", ls=":", lw=0.8)
    ax[1].legend()
    fig.tight_layout()
    save_figure(fig, out, "dln_fractionation.png")
    write_json(out, "dln_fractionation", result)
    return result
