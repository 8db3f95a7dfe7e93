"""Seed 000 §3 (Table 2, Figs 5–9) on VIRTUAL CT041-like cohorts: LightGBM nested-CV latent recovery, ORR/DCR
baseline, Cliff's δ and the (θ_inf, θ_env) landscape; N = 37 with 10 repeated outer splits, plus N = 200 and 1,000
(one split each) for the scaling view; the same N = 37 protocol on the SPATIAL cohort (the PDE forward model,
:meth:`CohortConfig.spatial`; same seed, covariates and latents) beside it. ``--quick``: N = 37, one repeat, one-point
grid (smoke test only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

#: seed 000 Table 2 (ρ, MAE, RMSE, R²) and §3.2 (balanced accuracy, F1, AUROC, AUPRC; observed/predicted frequency)
SEED_TABLE2 = {"theta_inf": (0.569, 0.100, 0.130, 0.182), "theta_exh": (0.585, 0.062, 0.076, 0.388),
               "theta_cyt": (0.563, 0.095, 0.126, 0.230), "theta_esc": (0.300, 0.154, 0.192, -0.027),
               "theta_env": (0.858, 0.021, 0.031, 0.831), "theta_init": (-0.023, 0.068, 0.100, -0.357)}
SEED_BINARY = {"orr": {"balanced_accuracy": 0.62, "f1": 0.63, "auroc": 0.57, "auprc": 0.60,
                       "observed_frequency": 0.49, "predicted_frequency": 0.51},
               "dcr": {"balanced_accuracy": 0.64, "f1": 0.74, "auroc": 0.66, "auprc": 0.87,
                       "observed_frequency": 0.73, "predicted_frequency": 0.76}}
METRICS = ("spearman", "mae", "rmse", "r2")
COHORT_SEED = 1


def _pattern(lat: dict) -> dict:
    """Seed 000's qualitative pattern: θ_env and θ_exh recovered best, θ_esc and θ_init worst (by R²)."""
    order = sorted(lat, key=lambda k: -lat[k]["r2"])
    return {"r2_rank_best_to_worst": order, "env_exh_top2": set(order[:2]) == {"theta_env", "theta_exh"},
            "esc_init_bottom2": set(order[-2:]) == {"theta_esc", "theta_init"}}


def _figures(out: Path, res: dict, df, scaling: dict) -> None:
    import matplotlib.pyplot as plt

    from immunocal.calib.baseline import response_landscape

    lats = list(res["latents"])
    short = [k.removeprefix("theta_") for k in lats]
    # Table 2 next to the seed
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, (i, m) in zip(axes, enumerate(METRICS)):
        x = np.arange(len(lats))
        ax.bar(x - 0.2, [res["latents"][k][m] for k in lats], 0.4, yerr=[res["latents"][k]["sd_over_repeats"][m]
                                                                          for k in lats], label="virtual cohort")
        ax.bar(x + 0.2, [SEED_TABLE2[k][i] for k in lats], 0.4, label="seed 000 Table 2")
        ax.set_xticks(x, short, rotation=45)
        ax.set_title(m)
    axes[0].legend(fontsize=7)
    fig.suptitle("Out-of-fold latent recovery (VIRTUAL cohort, N = 37, 10 × 5-fold) vs seed 000 Table 2")
    save_figure(fig, out, "table2_comparison.png")
    # Fig 5: per-fold error distributions
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, m in zip(axes, ("mae", "rmse")):
        ax.boxplot([res["latents"][k]["per_fold"][m] for k in lats], tick_labels=short)
        ax.set_title(f"per-fold {m.upper()}")
    save_figure(fig, out, "fig5_per_fold_errors.png")
    # Fig 6/7: binary metrics with CIs, observed vs predicted frequency
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    names = ("balanced_accuracy", "f1", "auroc", "auprc")
    for j, o in enumerate(("orr", "dcr")):
        b = res["binary"][o]
        x = np.arange(4) + 0.35 * j
        val = [b[n] for n in names]
        err = np.abs(np.array([b["ci95"][n] for n in names]).T - val)
        axes[0].bar(x, val, 0.35, yerr=err, label=o.upper())
        axes[1].bar(np.array([0, 1]) + 0.35 * j, [b["observed_frequency"], b["predicted_frequency"]], 0.35,
                    label=o.upper())
    axes[0].set_xticks(np.arange(4) + 0.17, names)
    axes[0].set_ylim(0, 1)
    axes[0].legend()
    axes[0].set_title("binary baseline (out-of-fold, bootstrap 95 % CI)")
    axes[1].set_xticks([0.17, 1.17], ["observed", "predicted"])
    axes[1].set_title("cohort frequency")
    axes[1].legend()
    save_figure(fig, out, "fig6_7_binary.png")
    # Fig 8: Cliff's delta
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for j, o in enumerate(("orr", "dcr")):
        cd = res["cliffs_delta"][o]
        d = np.array([cd[k]["delta"] for k in lats])
        ci = np.array([cd[k]["ci95"] for k in lats]).T
        ax.errorbar(np.arange(6) + 0.15 * j, d, yerr=np.abs(ci - d), fmt="o", label=o.upper(), capsize=3)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(range(6), short)
    ax.set_ylabel("Cliff's δ (responders vs not)")
    ax.legend()
    save_figure(fig, out, "fig8_cliffs_delta.png")
    # Fig 9: landscape
    land = response_landscape(df, "orr")
    fig, ax = plt.subplots(figsize=(5, 4))
    g = np.array(land["grid"])
    cs = ax.contourf(g, g, np.array(land["probability"]), levels=11, cmap="RdYlGn")
    fig.colorbar(cs, label="P(objective response)")
    r = df["orr"].to_numpy() == 1
    ax.scatter(df["true_theta_inf"][r], df["true_theta_env"][r], c="k", marker="o", s=14, label="responder")
    ax.scatter(df["true_theta_inf"][~r], df["true_theta_env"][~r], c="w", edgecolors="k", s=14, label="non-resp.")
    ax.set_xlabel("θ_inf")
    ax.set_ylabel("θ_env")
    ax.legend(fontsize=7)
    save_figure(fig, out, "fig9_landscape.png")
    if len(scaling) > 1:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ns = sorted(int(n) for n in scaling)
        for k in lats:
            ax.plot(ns, [scaling[str(n)]["latents"][k]["r2"] for n in ns], "o-", label=k)
        ax.set_xscale("log")
        ax.set_xlabel("virtual cohort size N")
        ax.set_ylabel("out-of-fold R²")
        ax.legend(fontsize=7)
        save_figure(fig, out, "scaling_r2.png")


def run(out: Path, quick: bool = False) -> dict:
    import time

    from immunocal.calib.baseline import SMALL_GRID, run_baseline
    from immunocal.calib.cohort import (
        CohortConfig,
        config_dict,
        generate_cohort,
        resolution_check,
        save_cohort,
        summary,
    )

    use_agg()
    out = Path(out)
    grid = SMALL_GRID if quick else None
    repeats = 1 if quick else 10
    res_check = resolution_check(4 if quick else 20, np.random.default_rng(5))
    df = generate_cohort(37, np.random.default_rng(COHORT_SEED))
    save_cohort(df, out / "ct041_virtual_n37.csv", seed=COHORT_SEED)
    t0 = time.perf_counter()
    res = run_baseline(df, n_splits=5, repeats=repeats, seed=0, n_boot=1000, n_jobs=2, param_grid=grid)
    seconds = time.perf_counter() - t0
    oof = res.pop("_oof")
    scaling = {"37": {"latents": res["latents"], "orr": summary(df)["orr"], "dcr": summary(df)["dcr"]}}
    for n in (() if quick else (200, 1000)):
        d = generate_cohort(n, np.random.default_rng(COHORT_SEED + n), processes=2)
        r = run_baseline(d, n_splits=5, repeats=1, seed=0, n_boot=200, n_jobs=2)
        r.pop("_oof")
        s = summary(d)
        scaling[str(n)] = {"latents": {k: {m: v[m] for m in METRICS} for k, v in r["latents"].items()},
                           "binary": {o: {m: r["binary"][o][m] for m in ("balanced_accuracy", "f1", "auroc", "auprc")}
                                      for o in r["binary"]}, "orr": s["orr"], "dcr": s["dcr"]}
    spatial_cfg = CohortConfig.spatial()
    df_sp = generate_cohort(37, np.random.default_rng(COHORT_SEED), cfg=spatial_cfg, processes=2)
    save_cohort(df_sp, out / "ct041_spatial_n37.csv", seed=COHORT_SEED, cfg=spatial_cfg)
    res_sp = run_baseline(df_sp, n_splits=5, repeats=repeats, seed=0, n_boot=1000, n_jobs=2, param_grid=grid)
    res_sp.pop("_oof")
    table = {k: {"virtual": {m: res["latents"][k][m] for m in METRICS},
                 "spatial": {m: res_sp["latents"][k][m] for m in METRICS},
                 "seed000": dict(zip(METRICS, SEED_TABLE2[k]))} for k in res["latents"]}
    print("latent      ρ (ODE/PDE/seed)       MAE                    RMSE                   R²      "
          "[VIRTUAL cohorts, N = 37]")
    for k, v in table.items():
        print(f"{k:11s} " + "  ".join(f"{v['virtual'][m]:6.3f}/{v['spatial'][m]:6.3f}/{v['seed000'][m]:6.3f}"
                                      for m in METRICS))
    _figures(out, res, df, scaling)
    result = {"virtual": True, "quick": quick, "cohort_seed": COHORT_SEED, "cohort_summary": summary(df),
              "cohort_config": config_dict(CohortConfig()), "baseline_seconds_n37": seconds,
              "resolution_check": res_check, "table2": table, "pattern_virtual": _pattern(res["latents"]),
              "spatial": {"cohort_summary": summary(df_sp), "cohort_config": config_dict(spatial_cfg),
                          "pattern": _pattern(res_sp["latents"]), "latents_full": res_sp["latents"],
                          "binary": {o: {m: res_sp["binary"][o][m] for m in ("balanced_accuracy", "f1", "auroc",
                                                                              "auprc")} for o in res_sp["binary"]}},
              "pattern_seed000": _pattern({k: {"r2": v[3]} for k, v in SEED_TABLE2.items()}),
              "binary": {o: {**{m: res["binary"][o][m] for m in ("balanced_accuracy", "f1", "auroc", "auprc",
                                                                  "observed_frequency", "predicted_frequency",
                                                                  "mean_predicted_probability")},
                             "ci95": res["binary"][o]["ci95"], "seed000": SEED_BINARY[o]} for o in res["binary"]},
              "cliffs_delta": res["cliffs_delta"], "latents_full": res["latents"], "scaling": scaling,
              "oof_repeat0": oof[0], "param_grid": res["param_grid"], "repeats": repeats}
    write_json(out, "ct041_lgbm", result)
    return result
