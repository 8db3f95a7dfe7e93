"""Seed 001 Fig 3: homogeneous ODE (eqs 9–15), normalised preset, T_B(0) = 0, with the SPEC §3.2 checks."""

from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.cart import homogeneous as H
    from immunocal.forward.cart.observables import summarise
    from immunocal.priors import registry

    use_agg()
    import matplotlib.pyplot as plt

    reg = registry()
    ps = reg.parameter_set("cart", "normalised")
    o = reg.preset_options("cart", "normalised")
    t_end = float(o["ode_t_end"])
    t = np.linspace(0, t_end, 1001 if quick else 4001)
    sol = H.solve(ps, [o["ode_car_t0"], 0, o["ode_tumour0"], 0, 0, 0, 0], t_end, t_eval=t)
    C, E, TA, TB, S, A, Hh = sol.y
    N = TA + TB
    frac = TB / N
    i = int(np.argmax(C))
    last = t >= 0.9 * t_end
    checks = {
        "C_peak": float(C[i]), "C_peak_time": float(t[i]), "C_final": float(C[-1]),
        "C_peak_then_positive_plateau": bool(C[-1] > 0 and C[-1] < 0.8 * C[i] and t[i] < 0.1 * t_end
                                             and np.ptp(C[last]) < 0.02 * C[i]),
        "E_final": float(E[-1]), "E_settles_positive": bool(E[-1] > 0 and np.ptp(E[last]) < 0.02 * E.max()),
        "TA_min_rel": float(TA.min() / TA[0]), "TA_final": float(TA[-1]),
        "TA_falls_90pc_stays_positive": bool(TA.min() <= 0.1 * TA[0] and TA[-1] > 0),
        "TB_fraction_final": float(frac[-1]), "TB_dominates": bool(frac[-1] >= 0.9),
        "burden_nadir_rel": float(N.min() / N[0]), "burden_nadir_time": float(t[np.argmin(N)]),
        "burden_final_rel_KT": float(N[-1] / ps["tumour_carrying_capacity"]),
        "burden_nadir_below_half_then_regrows": bool(N.min() < 0.5 * N[0] and N[-1] > 3 * N.min()),
    }
    ect = H.coexistence_states(ps)
    result = {"preset": "normalised", "initial": {"C": o["ode_car_t0"], "TA": o["ode_tumour0"]}, "t_end": t_end,
              "checks": checks, "all_hold": all(v for k, v in checks.items() if isinstance(v, bool)),
              "coexistence_state_E_CT": ect, "end_state": sol.y[:, -1],
              "observables": summarise(t, C, E, TA, TB, A, Hh).as_dict(),
              "series_every_10": {"t": t[::10], "C": C[::10], "E": E[::10], "TA": TA[::10], "TB": TB[::10]}}
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ax[0, 0].plot(t, C, label="C")
    ax[0, 0].plot(t, E, label="E")
    ax[0, 1].plot(t, TA, label="T_A")
    ax[0, 1].plot(t, TB, label="T_B")
    ax[1, 0].plot(t, N, label="T_A + T_B")
    ax[1, 0].plot(t, C + E, label="C + E")
    ax[1, 1].plot(t, frac, label="T_B/(T_A+T_B)")
    for a, title in zip(ax.flat, ["(a) CAR-T", "(b) tumour", "(c) totals", "(d) antigen-negative fraction"]):
        a.set_title(title, fontsize=9)
        a.set_xlabel("t (days)")
        a.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, "cart_homogeneous.png")
    write_json(out, "cart_homogeneous", result)
    return result
