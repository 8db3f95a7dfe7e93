"""Seed 001 Figs 8–10: baseline / enhanced immunosuppressive–hypoxic / combination therapy (+ repeat infusion)."""

from pathlib import Path

from immunocal.studies._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.cart import experiments as X

    use_agg()
    import matplotlib.pyplot as plt

    ps, grid, dt, _ = X.study_setup(quick)
    r = X.microenvironment(ps, grid, t_end=30.0, dt=dt, reinfusion_time=10.0)
    checks = X.microenvironment_checks(r)
    ok = checks["order_final_burden"] and checks["A_H_highest_in_enhanced"] and checks["C_step_visible"]
    result = {"grid": {"dim": grid.dim, "n": grid.shape[0]}, "dt": dt, "variant_factors": X.MICRO_VARIANTS,
              "reinfusion_time": r["reinfusion_time"], "checks": checks, "all_hold": ok}
    fig, ax = plt.subplots(2, 3, figsize=(13, 7))
    for name, v in r["variants"].items():
        ax[0, 0].plot(v["times"], v["burden"], label=name)
        ax[0, 1].plot(v["times"], v["C"], label=name)
        ax[0, 2].plot(v["times"], v["mean_A"], label=name)
        ax[1, 0].plot(v["times"], v["mean_H"], label=name)
    for a, title in zip(ax.flat, ["(8a) ∫(T_A+T_B)", "(8b) ∫C", "(8c) mean A", "(8d) mean H"]):
        a.set_title(title, fontsize=9)
        a.legend(fontsize=8)
    for a, name in ((ax[1, 1], "baseline"), (ax[1, 2], "combination")):
        v = r["variants"][name]
        a.imshow(v["kymo_A"], aspect="auto", origin="lower",
                 extent=[v["kymo_x"][0], v["kymo_x"][-1], v["kymo_times"][0], v["kymo_times"][-1]])
        a.set_title(f"A(x, t) on the centre line, {name}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, "cart_microenvironment.png")
    write_json(out, "cart_microenvironment", result)
    return result
