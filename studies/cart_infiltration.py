"""Seed 001 Fig 4: CAR-T infiltration without antigen escape (μ0 = ν = μ1 = 0, T_B ≡ 0), normalised preset."""

from pathlib import Path

from immunocal.studies._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.cart import experiments as X

    use_agg()
    import matplotlib.pyplot as plt

    ps, grid, dt, o = X.study_setup(quick)
    r = X.infiltration(ps, grid, t_end=float(o["t_end_spatial"]), dt=dt)
    checks = X.infiltration_checks(r)
    result = {"grid": {"dim": grid.dim, "n": grid.shape[0]}, "dt": dt, "checks": checks,
              "all_hold": all(v for v in checks.values() if isinstance(v, bool)),
              "tumour_density": r["tumour_density"], "times": r["times"], "TA": r["TA"], "C": r["C"], "E": r["E"],
              "front_depth": r["front_depth"], "diagnostics": r["diagnostics"]}
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    x, line = r["kymo_x"], r["final_line"]
    for f, lab in ((2, "T_A"), (0, "C"), (1, "E")):
        ax[0, 0].plot(x, line[f], label=lab)
    ax[0, 0].set_title("(a) final profiles through the centre", fontsize=9)
    ax[0, 0].legend(fontsize=8)
    for key, lab in (("TA", "∫T_A"), ("C", "∫C"), ("E", "∫E")):
        ax[0, 1].plot(r["times"], r[key], label=lab)
    ax[0, 1].set_title("(b) integrals", fontsize=9)
    ax[0, 1].legend(fontsize=8)
    ext = [x[0], x[-1], r["kymo_times"][0], r["kymo_times"][-1]]
    ax[1, 0].imshow(r["kymo_C"], aspect="auto", origin="lower", extent=ext)
    ax[1, 0].set_title("(c) C(x, t) on the centre line", fontsize=9)
    ax[1, 1].imshow(r["kymo_TA"], aspect="auto", origin="lower", extent=ext)
    ax[1, 1].set_title("(d) T_A(x, t) on the centre line", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, "cart_infiltration.png")
    write_json(out, "cart_infiltration", result)
    return result
