"""The VIRTUAL CT041-like cohort simulated by the spatial CAR-T model (seed 001 PDE; seed 000's latents θ_inf → D_C,
χ0 with no infiltration fraction): its resolution, its response rates and what its observables can tell.

1. **Resolution**: on a sample of patients (the cohort's latents and noise draws), each 2-D (nodes per axis, step)
   setting of :data:`LADDER` against the finest, :data:`REFERENCE`: largest relative change of each continuous
   observable — the daily T_max through its two continuous parts as the likelihood observes them (the early peak's
   time, relative; the window-end margin, absolute in log units) — and every RECIST/CRS category or daily T_max that
   changes, listed with the continuous score behind it (noisy scan nadir ratio, PR at ≤ 0.7; CRS score against its
   cut-points; early and global peak times, margin) — a patient on a threshold flips at any resolution, so flips
   are reported, and the criterion is the continuous change: the default (:meth:`CohortConfig.spatial`) must be
   the cheapest setting with every continuous change < 5 % — checked here, not assumed. The global peak time
   (which jumps between the early peak and day 28 at the threshold) is reported beside it.
2. **Cohort**: ``N`` spatial patients (1,000; ``--quick`` 40) at the default resolution — ORR, DCR, RECIST and CRS
   distributions, seconds per patient; the homogeneous-ODE cohort of the same seed (same covariates, latents and
   noise draws) beside it.
3. **Information**: per observable, its spread over the cohort and its Spearman correlation with each true latent,
   in both cohorts; an observable constant over the cohort, or with |ρ| < 0.1 against every latent, carries no
   information about the latents.

Writes ``ct041_spatial_cohort.json``, ``ct041_spatial_cohort.png`` and the cohort ``ct041_spatial_n<N>.csv``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "ct041_spatial_cohort"
COHORT_SEED = 2026
#: 2-D (nodes per axis, step in days) settings compared with REFERENCE (each step divides the 1/4-day output grid;
#: 1/8 day is unstable for high-infiltration patients — the solver's guard names it)
LADDER = ((24, 0.05), (32, 0.05), (48, 0.05))
REFERENCE = (96, 0.0125)
QUICK_LADDER, QUICK_REFERENCE = ((24, 0.05), (32, 0.05)), (48, 0.025)
#: observables compared on refinement (noise draws fixed) and scored for information
OBSERVABLES = ("model_best_response", "model_pfs_days", "model_c_max", "model_k_peak", "t_max", "persistence",
               "pfs_months", "recist_score", "crs_grade", "il6_peak", "crp_peak", "ferritin_peak")
#: the continuous observables of the criterion, by relative change: the daily T_max enters through its two
#: continuous parts as the likelihood sees them — the early peak's time here, the window-end margin below
CONTINUOUS = ("model_best_response", "model_pfs_days", "model_c_max", "model_k_peak", "model_first_peak_time",
              "persistence", "il6_peak", "crp_peak", "ferritin_peak")
#: log-scale observables of the criterion, by absolute change (0.05 in log ≈ 5 %): the window-end margin
#: log (C + E)(day 28) − log max earlier, which crosses 0 where the daily T_max jumps to day 28
LOG_CONTINUOUS = ("model_window_end_margin",)
#: what a flipped patient's record shows (coarse, reference); model_t_peak is the global maximum's time, which jumps
#: between the early peak and the window's end at the T_max threshold (reported, not a criterion)
FLIP_DETAIL = ("best_recist", "crs_grade", "t_max", "scan_nadir_ratio", "crs_score", "model_t_peak",
               "model_first_peak_time", "model_window_end_margin", "model_pfs_days")


def resolution_ladder(n_patients: int, ladder, reference, seed: int = 7, dim: int = 2,
                      campaigns: Path | None = None, processes: int = 1) -> dict:
    """Each setting of ``ladder`` against ``reference`` on ``n_patients`` spatial patients (module docstring, 1),
    in ``dim`` dimensions. ``campaigns``: a folder holding one campaign per setting (``processes`` workers; a
    killed study resumes from the finished patients), else the runs are in-process."""
    from immunocal.calib.cohort import CohortConfig, sample_patients, simulate_sample

    base = CohortConfig.spatial(dim=dim)
    df = sample_patients(n_patients, np.random.default_rng(seed), base)
    runs, seconds = {}, {}
    for n, dt in (*ladder, reference):
        folder = None if campaigns is None else Path(campaigns) / f"n{n}_dt{dt:g}"
        runs[(n, dt)] = simulate_sample(df, replace(base, n_grid=n, dt=dt), campaign=folder, processes=processes)
        seconds[(n, dt)] = float(np.mean([r["run_seconds"] for r in runs[(n, dt)]]))
        print(f"[{NAME}] resolution {dim}-D {n} nodes/axis, dt {dt:g}: {seconds[(n, dt)]:.2f} s/patient "
              f"(wall per run{'' if campaigns is None else f', {processes} worker processes'})", flush=True)
    ref = runs[reference]
    settings = []
    for n, dt in ladder:
        pairs = list(zip(runs[(n, dt)], ref))
        change = {k: max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-3) for a, b in pairs) for k in CONTINUOUS}
        change |= {k: max(abs(a[k] - b[k]) for a, b in pairs) for k in LOG_CONTINUOUS}
        global_peak = max(abs(a["model_t_peak"] - b["model_t_peak"]) / max(abs(b["model_t_peak"]), 1e-3)
                          for a, b in pairs)
        flips = [{"patient": i, **{k: [a[k], b[k]] for k in FLIP_DETAIL}} for i, (a, b) in enumerate(pairs)
                 if a["best_recist"] != b["best_recist"] or a["crs_grade"] != b["crs_grade"] or a["t_max"] != b["t_max"]]
        settings.append({"n_grid": n, "dt": dt, "seconds_per_patient": seconds[(n, dt)],
                         "max_relative_change": change, "largest": max(change.values()),
                         "global_peak_time_relative_change": global_peak,
                         "category_flips": sum(f["best_recist"][0] != f["best_recist"][1]
                                               or f["crs_grade"][0] != f["crs_grade"][1] for f in flips),
                         "t_max_day_shifts": sum(f["t_max"][0] != f["t_max"][1] for f in flips),
                         "window_end_flips": sum((a["model_window_end_margin"] > 0) != (b["model_window_end_margin"] > 0)
                                                 for a, b in pairs), "flips": flips,
                         "converged": max(change.values()) < 0.05})
    ok = [s for s in settings if s["converged"]]
    cheapest = min(ok, key=lambda s: s["seconds_per_patient"]) if ok else None
    default = (base.n_grid, base.dt)
    return {"n_patients": n_patients, "dim": base.dim, "reference": {"n_grid": reference[0], "dt": reference[1],
                                                                     "seconds_per_patient": seconds[reference]},
            "settings": settings, "default": {"n_grid": default[0], "dt": default[1]},
            "cheapest_converged": None if cheapest is None else {"n_grid": cheapest["n_grid"], "dt": cheapest["dt"]},
            "default_converged": any(s["converged"] and (s["n_grid"], s["dt"]) == default for s in settings)}


def resolution_panel(ax, res: dict) -> None:
    """Largest relative change vs the reference against seconds per patient, one point per setting of a
    :func:`resolution_ladder` result (green: converged)."""
    power = "²" if res.get("dim", 2) == 2 else "³"
    for s in res["settings"]:
        ax.scatter(s["seconds_per_patient"], s["largest"], color="C2" if s["converged"] else "C3")
        ax.annotate(f"{s['n_grid']}{power}, Δt {s['dt']:g}", (s["seconds_per_patient"], s["largest"]), fontsize=7)
    ax.axhline(0.05, color="k", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds per patient")
    ax.set_ylabel(f"largest relative change vs {res['reference']['n_grid']}{power} Δt {res['reference']['dt']:g}")


def information(df) -> dict:
    """Per observable: its spread over the cohort and its Spearman ρ with each true latent (module docstring, 3)."""
    from scipy.stats import spearmanr

    from immunocal.priors.latents import LATENTS

    out = {}
    for k in OBSERVABLES:
        x = df[k].to_numpy(float)
        constant = bool(np.ptp(x) == 0)
        rho = {lat: (0.0 if constant else float(spearmanr(x, df[f"true_{lat}"]).statistic)) for lat in LATENTS}
        out[k] = {"min": float(x.min()), "max": float(x.max()), "distinct_values": int(np.unique(x).size),
                  "spearman": rho, "max_abs_spearman": max(abs(v) for v in rho.values()),
                  "uninformative": constant or max(abs(v) for v in rho.values()) < 0.1}
    return out


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.cohort import CohortConfig, config_dict, generate_cohort, save_cohort, summary

    use_agg()
    out = Path(out)
    res = resolution_ladder(3 if quick else 24, QUICK_LADDER if quick else LADDER,
                            QUICK_REFERENCE if quick else REFERENCE)
    n = 40 if quick else 1000
    cfg = CohortConfig.spatial()
    t0, c0 = time.perf_counter(), time.process_time()
    spatial = generate_cohort(n, np.random.default_rng(COHORT_SEED), cfg=cfg, processes=2, progress=True)
    wall = time.perf_counter() - t0
    homogeneous = generate_cohort(n, np.random.default_rng(COHORT_SEED), cfg=replace(cfg, model="homogeneous"),
                                  processes=2)
    save_cohort(spatial, out / f"ct041_spatial_n{n}.csv", seed=COHORT_SEED, cfg=cfg)
    cohorts = {"spatial": spatial, "homogeneous": homogeneous}
    info = {m: information(d) for m, d in cohorts.items()}
    result = {
        "virtual": True, "quick": quick, "cohort_seed": COHORT_SEED, "n": n,
        "cohort_config": config_dict(cfg), "resolution": res,
        "seconds": {"wall_2_processes": wall, "wall_per_patient_2_processes": wall / n,
                    "cpu_per_patient_parent": (time.process_time() - c0) / n},
        "summary": {m: summary(d) for m, d in cohorts.items()},
        "targets": {"orr": 0.49, "dcr": 0.73},
        "information": info,
        "uninformative": {m: [k for k, v in i.items() if v["uninformative"]] for m, i in info.items()},
    }
    _figure(out, result, cohorts)
    write_json(out, NAME, result)
    s = result["summary"]["spatial"]
    print(f"[{NAME}] spatial N = {n}: ORR {s['orr']:.3f}, DCR {s['dcr']:.3f}, RECIST {s['recist']}; "
          f"uninformative: {result['uninformative']['spatial']}")
    return result


def _figure(out: Path, result: dict, cohorts: dict) -> None:
    import matplotlib.pyplot as plt

    from immunocal.priors.latents import LATENTS

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    resolution_panel(axes[0], result["resolution"])
    axes[0].set_title("(a) resolution (green: every continuous change < 5 %)", fontsize=9)
    ax = axes[1]
    width = 0.4
    cats = ("PD", "SD", "PR", "CR")
    for j, (m, d) in enumerate(cohorts.items()):
        ax.bar(np.arange(4) + (j - 0.5) * width, [(d["best_recist"] == c).mean() for c in cats], width, label=m)
    ax.set_xticks(np.arange(4), cats)
    ax.set_ylabel("fraction of patients")
    ax.set_title("(b) best RECIST (VIRTUAL cohorts)", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[2]
    info = result["information"]["spatial"]
    obs = list(info)
    mat = np.array([[info[o]["spearman"][lat] for lat in LATENTS] for o in obs])
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(LATENTS)), [lat.replace("theta_", "θ_") for lat in LATENTS], fontsize=7)
    ax.set_yticks(range(len(obs)), obs, fontsize=7)
    ax.set_title("(c) spatial cohort: Spearman ρ(observable, true latent)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    save_figure(fig, out, f"{NAME}.png")
