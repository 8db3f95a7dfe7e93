"""Observed convergence orders of the CAR-T solver in time (Strang; backward-Euler vs Crank–Nicolson diffusion)
and in space (forward/cart/verification.py)."""

from pathlib import Path

from immunocal.studies._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.cart import verification as V
    from immunocal.priors import registry

    use_agg()
    import matplotlib.pyplot as plt

    ps = registry().parameter_set("cart", "normalised")
    dts = (1 / 10, 1 / 20, 1 / 40) if quick else (1 / 10, 1 / 20, 1 / 40, 1 / 80)
    result = {
        "time_backward_euler": V.time_order(ps, dts),
        "time_crank_nicolson": V.time_order(ps, dts, diffusion_scheme="crank_nicolson"),
        "space": V.space_order(ps, (21, 41, 81) if quick else (21, 41, 81, 161)),
    }
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, lab in (("time_backward_euler", "Strang + backward Euler (seed)"),
                     ("time_crank_nicolson", "Strang + Crank–Nicolson")):
        r = result[key]
        ax[0].loglog(r["dt"], r["max_error"], "o-", label=f"{lab}: order {r['order']:.2f}")
    ax[0].set_xlabel("Δt")
    ax[0].set_ylabel("max error at t = 1")
    ax[0].legend(fontsize=8)
    r = result["space"]
    ax[1].loglog(r["dx"], r["max_error"], "s-", label=f"space: order {r['order']:.2f}")
    ax[1].set_xlabel("Δx")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, "cart_convergence.png")
    write_json(out, "cart_convergence", result)
    return result
