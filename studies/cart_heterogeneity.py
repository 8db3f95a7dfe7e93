"""Seed 001 Figs 5–7: initial T_B fraction 0/0.2/0.5 × switching baseline/fast-loss/fast-recovery."""

from pathlib import Path

from immunocal.studies._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.cart import experiments as X

    use_agg()
    import matplotlib.pyplot as plt

    ps, grid, dt, _ = X.study_setup(quick)
    t_end = 30.0
    r = X.heterogeneity(ps, grid, t_end=t_end, dt=dt)
    checks = X.heterogeneity_checks(r)
    ok = all(checks["burden_increases_with_tb0"].values()) and all(checks["order_burden"]) \
        and all(checks["order_tb_fraction"])
    result = {"grid": {"dim": grid.dim, "n": grid.shape[0]}, "dt": dt, "t_end": t_end,
              "variant_factors": X.SWITCHING_VARIANTS, "checks": checks, "all_hold": ok,
              "nadir_rel": {k: [row["nadir_rel"] for row in rows] for k, rows in r["variants"].items()}}
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    for row in r["variants"]["baseline"]:
        ax[0, 0].plot(row["times"], row["burden"], label=f"T_B(0) fraction {row['tb_fraction0']}")
    ax[0, 0].set_title("Fig 5: ∫(T_A+T_B), baseline switching", fontsize=9)
    ax[0, 0].legend(fontsize=8)
    for name, rows in r["variants"].items():
        ax[0, 1].plot(r["fractions"], [x["final_burden"] for x in rows], "o-", label=name)
        ax[1, 0].plot(r["fractions"], [x["final_tb_fraction"] for x in rows], "o-", label=name)
    ax[0, 1].set_title("Fig 6a: final burden", fontsize=9)
    ax[1, 0].set_title("Fig 6b: final T_B fraction", fontsize=9)
    ax[0, 1].legend(fontsize=8)
    k = next(x for x in r["variants"]["baseline"] if "kymo_frac" in x)
    ax[1, 1].imshow(k["kymo_frac"], aspect="auto", origin="lower",
                    extent=[k["kymo_x"][0], k["kymo_x"][-1], k["kymo_times"][0], k["kymo_times"][-1]])
    ax[1, 1].set_title("Fig 7c: T_B/(T_A+T_B) on the centre line (baseline, 0.2)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, "cart_heterogeneity.png")
    write_json(out, "cart_heterogeneity", result)
    return result
