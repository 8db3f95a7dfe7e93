"""Steady states of the homogeneous CAR-T model (seed 001 eqs 18–48): analytic E_0/E_T vs long-time ODE, E_CT by
root finding, eigenvalues and Propositions 1–2 on both sides of each condition."""

from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json


def _real(obj):
    """Complex eigenvalue arrays → {"real": [...], "imag": [...]} for JSON."""
    if isinstance(obj, dict):
        return {k: _real(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_real(v) for v in obj]
    if isinstance(obj, np.ndarray) and np.iscomplexobj(obj):
        return {"real": obj.real.tolist(), "imag": obj.imag.tolist()}
    return obj


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.cart import homogeneous as H
    from immunocal.priors import registry

    use_agg()
    import matplotlib.pyplot as plt

    ps = registry().parameter_set("cart", "normalised")
    t_long = 800.0 if quick else 3000.0
    result = {"preset": "normalised", "cases": {}}
    cases = {
        "normalised": ps,
        "no_car_t_invasion (rho_C=0.01)": ps.replace(car_t_proliferation_rate=0.01),
        "tumour_free_stable (r_T=0.005)": ps.replace(tumour_growth_rate=0.005),
        "no_escape (mu_0=0)": ps.replace(antigen_loss_rate=0.0),
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, p) in enumerate(cases.items()):
        row = {"E0": H.proposition1(p)}
        ets = H.tumour_states(p)
        row["E_T"] = []
        for et in ets:
            rel = None
            p2 = H.proposition2(p, et)
            if p2["conditions_hold"]:  # E_T attracts in every direction: the long-time ODE must reach it
                u0 = et.copy()
                u0[2:4] = [0.3, 0.0]
                u0[0] = 1e-3
                sol = H.solve(p, u0, t_long, t_eval=[t_long], method="Radau", rtol=1e-10, atol=1e-14)
                nz = et != 0
                rel = float(np.max(np.abs(sol.y[nz, -1] - et[nz]) / np.abs(et[nz])))
                absz = float(np.max(np.abs(sol.y[~nz, -1]))) if np.any(~nz) else 0.0
            else:
                absz = None
            row["E_T"].append({"state": et, "prop2": p2, "ode_max_rel_diff_nonzero": rel,
                               "ode_max_abs_zero_components": absz})
        row["E_CT"] = [{"state": s, "eig": np.linalg.eigvals(H.jacobian(s, p))} for s in H.coexistence_states(p)]
        result["cases"][name] = row
        for et in row["E_T"]:
            ev = et["prop2"]["eig_full"]
            ax.scatter(ev.real, np.full(ev.size, k), marker="o", label="E_T" if k == 0 else None, color="C0")
        for ct in row["E_CT"]:
            ax.scatter(ct["eig"].real, np.full(7, k + 0.2), marker="x", color="C3", label="E_CT" if k == 0 else None)
        ev0 = row["E0"]["eig_full"]
        ax.scatter(ev0.real, np.full(7, k - 0.2), marker="s", color="C2", label="E_0" if k == 0 else None)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.05)
    ax.set_yticks(range(len(cases)), list(cases), fontsize=7)
    ax.set_xlabel("Re λ of the Jacobian")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, "cart_steady_states.png")
    write_json(out, "cart_steady_states", _real(result))
    return result
