"""The seed-001 computational experiments (§3.2–3.4) as library functions; the study scripts only plot and save.

Scenario definitions (normalised preset; geometry in :mod:`immunocal.forward.cart.scenarios`):

* infiltration (Fig 4): no antigen escape (μ_0 = ν = μ_1 = 0, T_B ≡ 0); tumour plateau at its CAR-T-free steady
  state K_T(1 − d_TA/r_T) (the seed assumes the untreated tumour sits in E_T), CAR-T next to the focus, t ≤ 12.
* heterogeneity (Figs 5–7): initial T_B fraction 0 / 0.2 / 0.5 × switching variants ``baseline``,
  ``fast_loss`` (μ_0 and ν × 3), ``fast_recovery`` (μ_1 × 3); tumour at 0.9 K_T.
* microenvironment (Figs 8–10): T_B(0) = 0; ``baseline``; ``enhanced`` (σ_A, σ_M, η × 2 and λ_A, λ_H ÷ 2);
  ``combination`` (σ_A, σ_M, η ÷ 2, λ_A, λ_H × 2, plus a repeat infusion of the initial CAR-T profile).
"""

from __future__ import annotations

import numpy as np

from .grid import Grid
from .model import Infusion, simulate
from .observables import antigen_negative_fraction, infiltration_depth
from .scenarios import FocusGeometry, car_t_profile, focus_state

SWITCHING_VARIANTS = {
    "baseline": {},
    "fast_loss": {"antigen_loss_rate": 3.0, "car_t_antigen_loss_effect": 3.0},
    "fast_recovery": {"antigen_recovery_rate": 3.0},
}
MICRO_FACTOR = 2.0
MICRO_VARIANTS = {
    "baseline": {},
    "enhanced": {"suppressor_production_rate": MICRO_FACTOR, "suppressor_hypoxia_production_rate": MICRO_FACTOR,
                 "hypoxia_accumulation_rate": MICRO_FACTOR, "suppressor_decay_rate": 1 / MICRO_FACTOR,
                 "hypoxia_decay_rate": 1 / MICRO_FACTOR},
    "combination": {"suppressor_production_rate": 1 / MICRO_FACTOR,
                    "suppressor_hypoxia_production_rate": 1 / MICRO_FACTOR,
                    "hypoxia_accumulation_rate": 1 / MICRO_FACTOR, "suppressor_decay_rate": MICRO_FACTOR,
                    "hypoxia_decay_rate": MICRO_FACTOR},
}


def scaled(ps, factors: dict):
    """``ps`` with each named parameter multiplied by its factor (validated by the registry)."""
    return ps.replace(**{k: ps[k] * f for k, f in factors.items()}) if factors else ps


def _line(grid: Grid, U: np.ndarray) -> np.ndarray:
    """Fields along the x-axis through the domain centre: (7, nx)."""
    nz, ny, nx = grid.array_shape
    return U[:, nz // 2, ny // 2, :].copy()


def _run(grid, ps, U0, t_end, dt, infusions=(), kymo_every=None, snapshot_times=()):
    kymo_t, kymo = [], []
    every = kymo_every or max(int(round(0.25 / dt)), 1)

    def cb(n, t, U):
        if n % every == 0:
            kymo_t.append(t)
            kymo.append(_line(grid, U))

    res = simulate(grid, ps, U0, t_end, dt, infusions=infusions, record_every=max(int(round(0.1 / dt)), 1),
                   callback=cb, snapshot_times=snapshot_times)
    return res, np.array([0.0] + kymo_t), np.array([_line(grid, U0)] + kymo)


def infiltration(ps, grid: Grid, t_end: float = 12.0, dt: float = 0.02, geom: FocusGeometry | None = None) -> dict:
    """Seed Fig 4 (T_B ≡ 0, no antigen escape)."""
    ps = ps.replace(antigen_loss_rate=0.0, car_t_antigen_loss_effect=0.0, antigen_recovery_rate=0.0)
    density = ps["tumour_carrying_capacity"] * (1.0 - ps["antigen_positive_death_rate"] / ps["tumour_growth_rate"])
    geom = (geom or FocusGeometry.from_preset()).with_(tumour_density=density, tb_fraction=0.0)
    U0 = focus_state(grid, geom)
    depths_t = np.linspace(0, t_end, 7)
    depths = []

    res, kt, ky = _run(grid, ps, U0, t_end, dt, snapshot_times=depths_t)
    res2 = res
    tumour0 = U0[2]
    inside = tumour0 >= 0.5 * tumour0.max()
    covered = []
    c_thr = 0.05 * geom.cart_density
    for t in depths_t:
        snap = res2.snapshots[min(res2.snapshots, key=lambda s: abs(s - t))]
        depths.append(infiltration_depth(grid, snap[0], tumour0))
        covered.append(float((snap[0][inside] >= c_thr).mean()))
    # front on the centre line: deepest x inside the initial tumour reached by C ≥ c_thr
    x = grid.coords()[0]
    x_in = x >= grid.centre()[0] - geom.tumour_radius
    front = np.array([float(x[x_in & (row >= c_thr)].max() - x[x_in].min()) if np.any(x_in & (row >= c_thr))
                      else 0.0 for row in ky[:, 0]])
    ta, c, e = res.integral("TA"), res.integral("C"), res.integral("E")
    return {"covered_times": depths_t, "tumour_fraction_reached": np.array(covered), "front_depth": front,
            "front_threshold": c_thr,"times": res.times, "TA": ta, "TB": res.integral("TB"), "C": c, "E": e, "kymo_times": kt,
            "kymo_x": grid.coords()[0], "kymo_C": ky[:, 0], "kymo_TA": ky[:, 2], "final_line": _line(grid, res.final),
            "depth_times": depths_t, "infiltration_depth": np.array(depths), "tumour_density": density,
            "diagnostics": res.diagnostics}


def infiltration_checks(r: dict) -> dict:
    """SPEC §3.2 criteria for Fig 4, as numbers and booleans."""
    ta, c, e, t = r["TA"], r["C"], r["E"], r["times"]
    i = int(np.argmax(c))
    last_quarter = t >= 0.75 * t[-1]
    plateau_change = float(abs(c[-1] - c[last_quarter][0]) / c.max())
    de = np.diff(e) / np.diff(t)
    dc = np.diff(c) / np.diff(t)
    return {
        "tumour_monotone_decrease": bool(np.all(np.diff(ta) < 0)),
        "tumour_reduction": float(1 - ta[-1] / ta[0]),
        "C_rise_factor": float(c.max() / c[0]),
        "C_peak_time": float(t[i]),
        "C_change_last_quarter_rel_to_max": plateau_change,
        "C_rises_then_plateaus": bool(c.max() > 2 * c[0] and plateau_change < 0.15),
        "E_max_rate": float(de.max()), "C_max_rate": float(dc.max()),
        "E_slower_than_C": bool(de.max() < dc.max() and np.all(e[1:] < c[1:])),
        "infiltration_depth": r["infiltration_depth"],
        "tumour_fraction_reached": r["tumour_fraction_reached"],
        "front_depth_first_last": [float(r["front_depth"][0]), float(r["front_depth"][-1])],
        "front_advances": bool(np.all(np.diff(r["front_depth"]) >= 0) and r["front_depth"][-1] > r["front_depth"][0]
                               and np.all(np.diff(r["tumour_fraction_reached"]) >= 0)),
    }


def heterogeneity(ps, grid: Grid, fractions=(0.0, 0.2, 0.5), variants=None, t_end: float = 30.0,
                  dt: float = 0.02, geom: FocusGeometry | None = None, kymo_case=("baseline", 0.2)) -> dict:
    """Seed Figs 5–7: final burden and T_B fraction per (variant, initial T_B fraction)."""
    variants = SWITCHING_VARIANTS if variants is None else variants
    geom = (geom or FocusGeometry.from_preset()).with_(tumour_density=0.9)
    out = {"fractions": list(fractions), "variants": {}}
    for name, fac in variants.items():
        pv = scaled(ps, fac)
        rows = []
        for fb in fractions:
            U0 = focus_state(grid, geom.with_(tb_fraction=fb))
            res, kt, ky = _run(grid, pv, U0, t_end, dt)
            ta, tb = res.integral("TA"), res.integral("TB")
            row = {"tb_fraction0": fb, "times": res.times, "burden": ta + tb, "TA": ta, "TB": tb,
                   "C": res.integral("C"), "E": res.integral("E"),
                   "final_burden": float(ta[-1] + tb[-1]), "final_tb_fraction": float(tb[-1] / (ta[-1] + tb[-1])),
                   "nadir_rel": float((ta + tb).min() / (ta[0] + tb[0]))}
            if (name, fb) == tuple(kymo_case):
                row["kymo_times"], row["kymo_x"] = kt, grid.coords()[0]
                row["kymo_frac"] = antigen_negative_fraction(ky[:, 2], ky[:, 3])
                row["kymo_C"] = ky[:, 0]
                row["final_line"] = _line(grid, res.final)
            rows.append(row)
        out["variants"][name] = rows
    return out


def heterogeneity_checks(r: dict) -> dict:
    v = r["variants"]
    fb = {k: [row["final_burden"] for row in rows] for k, rows in v.items()}
    ff = {k: [row["final_tb_fraction"] for row in rows] for k, rows in v.items()}
    checks = {"final_burden": fb, "final_tb_fraction": ff,
              "burden_increases_with_tb0": {k: bool(np.all(np.diff(x) > 0)) for k, x in fb.items()}}
    if {"baseline", "fast_loss", "fast_recovery"} <= set(v):
        n = len(r["fractions"])
        checks["order_burden"] = [bool(fb["fast_loss"][i] >= fb["baseline"][i] >= fb["fast_recovery"][i])
                                  for i in range(n)]
        checks["order_tb_fraction"] = [bool(ff["fast_loss"][i] >= ff["baseline"][i] >= ff["fast_recovery"][i])
                                       for i in range(n)]
    return checks


def microenvironment(ps, grid: Grid, t_end: float = 30.0, dt: float = 0.02, reinfusion_time: float = 10.0,
                     geom: FocusGeometry | None = None) -> dict:
    """Seed Figs 8–10: baseline / enhanced / combination (with one repeat infusion)."""
    geom = (geom or FocusGeometry.from_preset()).with_(tumour_density=0.9, tb_fraction=0.0)
    U0 = focus_state(grid, geom)
    out = {"reinfusion_time": reinfusion_time, "variants": {}}
    for name, fac in MICRO_VARIANTS.items():
        infs = [Infusion(reinfusion_time, car_t_profile(grid, geom))] if name == "combination" else []
        res, kt, ky = _run(grid, scaled(ps, fac), U0, t_end, dt, infusions=infs)
        ta, tb = res.integral("TA"), res.integral("TB")
        out["variants"][name] = {
            "times": res.times, "burden": ta + tb, "TA": ta, "C": res.integral("C"), "E": res.integral("E"),
            "mean_A": res.mean("A"), "mean_H": res.mean("H"), "final_burden": float(ta[-1] + tb[-1]),
            "kymo_times": kt, "kymo_x": grid.coords()[0], "kymo_A": ky[:, 5], "kymo_H": ky[:, 6],
            "final_line": _line(grid, res.final)}
    return out


def microenvironment_checks(r: dict) -> dict:
    v = r["variants"]
    fb = {k: x["final_burden"] for k, x in v.items()}
    comb = v["combination"]
    t = comb["times"]
    i = int(np.searchsorted(t, r["reinfusion_time"] - 1e-9))
    step = float(comb["C"][i] - comb["C"][i - 1])
    window = t[:i] >= r["reinfusion_time"] - 1.0
    prev = float(np.max(np.abs(np.diff(comb["C"][:i][window]))))
    return {
        "final_burden": fb,
        "order_final_burden": bool(fb["enhanced"] > fb["baseline"] > fb["combination"]),
        "max_mean_A": {k: float(x["mean_A"].max()) for k, x in v.items()},
        "max_mean_H": {k: float(x["mean_H"].max()) for k, x in v.items()},
        "A_H_highest_in_enhanced": bool(all(v["enhanced"]["mean_A"].max() > x["mean_A"].max() and
                                            v["enhanced"]["mean_H"].max() > x["mean_H"].max()
                                            for k, x in v.items() if k != "enhanced")),
        "C_step_at_reinfusion": step, "largest_C_change_between_records_in_day_before": prev,
        "C_step_visible": bool(step > 3 * prev),
    }


def study_setup(quick: bool = False):
    """The spatial studies' common set-up: ``(parameter set, grid, dt, preset options)`` of the ``normalised``
    preset (its ``dim``/``n``/``dt`` options), or a 2-D 24² grid with dt 0.05 for ``quick`` runs."""
    from immunocal.priors import registry

    reg = registry()
    ps = reg.parameter_set("cart", "normalised")
    o = reg.preset_options("cart", "normalised")
    grid = Grid.cube(2, 24) if quick else Grid.cube(int(o["dim"]), int(o["n"]))
    dt = 0.05 if quick else float(o["dt"])
    return ps, grid, dt, o
