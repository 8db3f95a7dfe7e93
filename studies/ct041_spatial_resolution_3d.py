"""The spatial CAR-T cohort in 3-D (``immunocal cohort generate --model spatial --dim 3``): is its default grid
(24³ nodes, Δt 0.05 d — the 2-D default) converged?

The 2-D cohort's resolution ladder (:func:`studies.ct041_spatial_cohort.resolution_ladder`: the same patients,
latents and noise draws at every setting; largest relative change of each continuous observable, every RECIST/CRS
category and daily T_max that changes listed with the score behind it) run in 3-D on :data:`N_PATIENTS` patients.
The ladder separates the two errors: 24³/32³/48³ at Δt 0.05 (space at the default step) and 24³ at Δt 0.025 (time
at the default grid), each against 48³ at Δt 0.025 — the finest affordable here (≈ 2 min per patient on 2 cores;
64³ at Δt 0.0125 would be ≈ 15 min). Criterion as in 2-D: every continuous change < 5 % (the daily T_max
through its two continuous parts, as the likelihood observes it; the global peak time reported beside).

The runs are campaigns (``OUT/ct041_spatial_resolution_3d/campaigns/``, one per setting, one patient per chunk, 2
worker processes): the study takes ≈ 1.5 hours, and a killed run started again resumes from the finished patients.

Writes ``ct041_spatial_resolution_3d.json`` and ``.png``.
"""

from __future__ import annotations

from pathlib import Path

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "ct041_spatial_resolution_3d"
N_PATIENTS = 10
#: 3-D (nodes per axis, step in days) settings compared with REFERENCE
LADDER = ((24, 0.05), (32, 0.05), (48, 0.05), (24, 0.025))
REFERENCE = (48, 0.025)
QUICK_LADDER, QUICK_REFERENCE, QUICK_PATIENTS = ((10, 0.05),), (12, 0.05), 2


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.studies.ct041_spatial_cohort import resolution_ladder

    use_agg()
    out = Path(out)
    res = resolution_ladder(QUICK_PATIENTS if quick else N_PATIENTS, QUICK_LADDER if quick else LADDER,
                            QUICK_REFERENCE if quick else REFERENCE, dim=3,
                            campaigns=out / NAME / ("campaigns_quick" if quick else "campaigns"), processes=2)
    result = {"virtual": True, "quick": quick, "resolution": res}
    _figure(out, res)
    write_json(out, NAME, result)
    print(f"[{NAME}] default {res['default']} converged: {res['default_converged']}; "
          + "; ".join(f"{s['n_grid']}³ Δt {s['dt']:g}: {s['largest']:.3f}" for s in res["settings"]))
    return result


def _figure(out: Path, res: dict) -> None:
    import matplotlib.pyplot as plt

    from immunocal.studies.ct041_spatial_cohort import resolution_panel

    fig, ax = plt.subplots(figsize=(5.5, 4))
    resolution_panel(ax, res)
    ax.set_title(f"3-D spatial cohort resolution ({res['n_patients']} VIRTUAL patients)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, f"{NAME}.png")
