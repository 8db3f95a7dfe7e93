"""Can the RIT model represent what anti-PD-1 does without radiation? (issue 14, deliverable 6)

**Data** (Morisada 2018, per mouse, read through the MOC1 and MC38 configs): each mouse's log-linear growth rate over
its uncensored volumes (at least 3), control vs anti-PD-1 arm — medians and the Mann–Whitney U test; and the
anti-PD-1 effect on a measurement day, Δ_obs = median log V (anti-PD-1) − median log V (control), with a 90 %
bootstrap interval over mice (days where both arms have ≥ 5 uncensored mice).

**Model** (seed 002 with the configs' preset, schedules, pre-treatment volume and output grid): the same Δ on the
data days over a grid of the natural antigen production rate ρ (log scale in the registry since this issue: 0 = off
stays admissible, designs and priors start at 1e-32), the T-cell activation rate a and the anti-PD-1 dose per
injection (``pdl1_dose``), at three kill rates p; the growth rate at the median control mouse's. Anti-PD-1 acts in
the model only through activated T cells (p → p(1 + p1)), and without radiation T cells are activated only by
antigen from viable cells (ρ). Reported per ρ: the largest |Δ| on the grid; the grid points whose Δ lies inside the
data's interval on every compared day; the step converged at the grid point nearest the data (substeps 4 vs 16).
``--quick``: a coarser grid.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "rit_treatment_free_immunity"
CONFIGS = {"MOC1": "moc1.toml", "MC38": "mc38.toml"}
PARAMS = ("tumour_proliferation_rate", "immune_kill_rate", "tumour_alpha", "antigen_production_rate",
          "t_cell_activation_rate", "pdl1_dose")
RHO = (None, 1e-15, 1e-12, 1e-9, 1e-7, 1e-6)  # None: the preset's value
ACTIVATION = (None, 1e-9, 1e-8, 1e-7, 3e-7)
DOSE = (None, 100.0, 1000.0, 1e4)
KILL = (2.0, 20.0, 200.0)
MIN_MICE = 5
BOOTSTRAP = 2000


def _per_mouse(meas, cond: str) -> dict:
    """Uncensored rows of an arm: {subject: (days, log volumes)}."""
    sel = (meas.condition == cond) & (meas.censoring == "none")
    out = {}
    for s in np.unique(meas.subject[sel]):
        k = sel & (meas.subject == s)
        out[str(s)] = (meas.time[k].astype(float), np.asarray(meas.value[k], float))
    return out


def data_effect(cal, control: str, treated: str, rng) -> dict:
    """Growth rates per mouse and Δ_obs per day with its bootstrap interval (values are log volumes)."""
    from scipy.stats import mannwhitneyu

    meas, _ = cal.tables
    arms = {c: _per_mouse(meas, c) for c in (control, treated)}
    rates = {c: [float(np.polyfit(t, y, 1)[0]) for t, y in m.values() if len(t) >= 3] for c, m in arms.items()}
    u = mannwhitneyu(rates[control], rates[treated], alternative="two-sided")
    days = sorted(set.intersection(*[set(np.concatenate([t for t, _ in m.values()]).tolist()) for m in arms.values()]))
    per_day = {}
    for d in days:
        vals = {c: np.array([y[t == d][0] for t, y in m.values() if np.any(t == d)]) for c, m in arms.items()}
        if min(len(v) for v in vals.values()) < MIN_MICE:
            continue
        boot = (np.median(rng.choice(vals[treated], (BOOTSTRAP, len(vals[treated]))), axis=1)
                - np.median(rng.choice(vals[control], (BOOTSTRAP, len(vals[control]))), axis=1))
        per_day[float(d)] = {"delta": float(np.median(vals[treated]) - np.median(vals[control])),
                             "q05_q95": np.quantile(boot, [0.05, 0.95]).tolist(),
                             "mice": [len(vals[control]), len(vals[treated])]}
    return {"growth_rate_per_day_median": {c: float(np.median(r)) for c, r in rates.items()},
            "mice_with_rates": {c: len(r) for c, r in rates.items()},
            "mann_whitney_p": float(u.pvalue), "delta_by_day": per_day}


def model_effect(cal, control: str, treated: str, days: np.ndarray, growth: float, quick: bool) -> dict:
    """Δ on ``days`` over the grid; rows: (ρ, a, dose, p) with None = the preset's value."""
    from immunocal.priors import registry

    ps = registry().parameter_set("rit", cal.forward.preset)
    fm = replace(cal.forward, parameter_names=PARAMS)
    grid = [(r, a, d, p) for r in RHO for a in (ACTIVATION[::2] if quick else ACTIVATION)
            for d in (DOSE[::2] if quick else DOSE) for p in (KILL[1:2] if quick else KILL)]
    X = np.array([[growth, p, 0.05, ps["antigen_production_rate"] if r is None else r,
                   ps["t_cell_activation_rate"] if a is None else a, ps["pdl1_dose"] if d is None else d]
                  for r, a, d, p in grid])
    idx = np.searchsorted(fm.times, days)
    delta = (np.asarray(fm.simulate(X, cal.schedule(treated)), float)[:, 0, idx]
             - np.asarray(fm.simulate(X, cal.schedule(control)), float)[:, 0, idx])
    return {"grid": grid, "X": X, "delta": delta, "simulator": fm,
            "presets": {n: float(ps[n]) for n in ("antigen_production_rate", "t_cell_activation_rate", "pdl1_dose")}}


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration

    use_agg()
    out = Path(out)
    rng = np.random.default_rng(20181)
    result = {"quick": quick, "lines": {}}
    curves = {}
    for line, config in CONFIGS.items():
        cal = Calibration(dataset_dir("morisada2018") / config, out / NAME / line, progress=False)
        control, treated = f"{line}_Control", f"{line}_antiPD1"
        data = data_effect(cal, control, treated, rng)
        days = np.array(sorted(data["delta_by_day"]))
        obs = np.array([data["delta_by_day"][d]["delta"] for d in days])
        lo, hi = np.array([data["delta_by_day"][d]["q05_q95"] for d in days]).T
        mod = model_effect(cal, control, treated, days, data["growth_rate_per_day_median"][control], quick)
        delta = mod["delta"]
        by_rho = {}
        for r in RHO:
            rows = [i for i, g in enumerate(mod["grid"]) if g[0] == r]
            key = "preset" if r is None else f"{r:g}"
            by_rho[key] = float(np.max(np.abs(delta[rows])))
        inside = np.all((delta >= lo) & (delta <= hi), axis=1)
        best = int(np.argmin(np.sum((delta - obs) ** 2, axis=1)))
        fine = replace(mod["simulator"], substeps=16)
        fine_delta = (np.asarray(fine.simulate(mod["X"][best:best + 1], cal.schedule(treated)), float)[0, 0]
                      - np.asarray(fine.simulate(mod["X"][best:best + 1], cal.schedule(control)), float)[0, 0])
        step_err = float(np.max(np.abs(fine_delta[np.searchsorted(fine.times, days)] - delta[best])))

        def label(g):
            return {"rho": mod["presets"]["antigen_production_rate"] if g[0] is None else g[0],
                    "a": mod["presets"]["t_cell_activation_rate"] if g[1] is None else g[1],
                    "pdl1_dose": mod["presets"]["pdl1_dose"] if g[2] is None else g[2], "p": g[3]}
        result["lines"][line] = {
            "data": data, "presets": mod["presets"], "grid_points": len(mod["grid"]),
            "max_abs_model_effect_by_rho": by_rho,
            "grid_points_inside_data_interval_every_day": [label(mod["grid"][i]) for i in np.flatnonzero(inside)],
            "nearest_grid_point": {**label(mod["grid"][best]), "delta": delta[best].tolist(), "days": days.tolist(),
                                   "step_error_substeps_4_vs_16": step_err},
            "representable_at_preset_rho": bool(inside[[g[0] is None for g in mod["grid"]]].any()),
            "representable_on_grid": bool(inside.any())}
        curves[line] = (days, obs, lo, hi, delta[best], label(mod["grid"][best]))
    _figure(out, curves)
    write_json(out, NAME, result)
    return result


def _figure(out: Path, curves: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (line, (days, obs, lo, hi, best, lab)) in zip(axes[0], curves.items()):
        ax.fill_between(days, lo, hi, color="0.85", label="data: 90 % bootstrap interval")
        ax.plot(days, obs, "ko-", ms=3, label="data: median log V difference")
        ax.plot(days, best, "C3s--", ms=3, label=f"model, nearest grid point (ρ {lab['rho']:.0e}, a {lab['a']:.0e}, "
                                                f"dose {lab['pdl1_dose']:g})")
        ax.axhline(0.0, color="C0", lw=1, label="model at the presets' ρ (any a, dose, p)")
        ax.set_title(f"{line}: anti-PD-1 alone vs control")
        ax.set_xlabel("day")
        ax.set_ylabel("Δ log volume")
        ax.legend(fontsize=7)
    save_figure(fig, out, f"{NAME}.png")
