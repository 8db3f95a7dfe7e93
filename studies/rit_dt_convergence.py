"""RIT time-step convergence (seed Supp. Figs 4-5, issue: converged at the default step).

For every schedule family of the RIT studies, V(t) over days 0-60 at integration steps h = 0.1 ... 0.001 d (one
substep per grid step) and at the default setting (grid 0.05 d, 4 substeps), against a reference with h = 1e-4 d;
the error is max |V/V_ref - 1| over the days where V_ref > 1 mm^3. Also: the observed order, the seed's explicit
Euler for the record, a scan over the delays tau_1, tau_2 (calibrated parameters), and the population TCP of the
IT-timing schedules at the default setting vs the reference step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

STEPS = (0.1, 0.05, 0.02, 0.01, 0.005, 0.001)
REFERENCE_STEP = 1e-4
TOLERANCE = 0.01


def _cases():
    from immunocal.forward.rit import Schedule
    from immunocal.forward.rit.scenarios import fractionation_schedules

    t = 60.0
    cases = {
        "no_treatment": ("dewan_table3", Schedule(t_end=t)),
        "8Gyx3": ("dewan_table3", Schedule.from_strings(rt="8x3@0,1,2", t_end=t)),
        "8Gyx3+ctla4(0,3,6)": ("dewan_table3", Schedule.from_strings(rt="8x3@0,1,2", ctla4="0,3,6", t_end=t)),
        "8Gyx3+ctla4(2,5,8)": ("dewan_table3", Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=t)),
        "8Gyx3+ctla4(4,6,9)": ("dewan_table3", Schedule.from_strings(rt="8x3@0,1,2", ctla4="4,6,9", t_end=t)),
        "8Gyx3+ctla4(2)": ("dewan_table3", Schedule.from_strings(rt="8x3@0,1,2", ctla4="2", t_end=t)),
        "ctla4(2,5,8)": ("dewan_table3", Schedule.from_strings(ctla4="2,5,8", t_end=t)),
        "20Gy+ctla4": ("dewan_table3", Schedule.from_strings(rt="20@0", ctla4="2,5,8", t_end=t)),
        "modified_lq:20Gy+ctla4": ("dewan_table1", Schedule.from_strings(rt="20@0", ctla4="2,5,8", t_end=t)),
        "lql:6Gyx5+ctla4": ("dewan_table2", Schedule.from_strings(rt="6x5@0,1,2,3,4", ctla4="2,5,8", t_end=t)),
        "deng:12Gy+pdl1": ("deng_table1", Schedule.from_strings(rt="12@0", pdl1="0,3,6,9", t_end=t)),
    }
    _, iso = fractionation_schedules(t_end=t)
    for n, s in iso.items():
        cases[f"iso-BED {n} fx+ctla4"] = ("dewan_table3", s)
    return cases


def _volumes(ps, sched, days, dt, substeps, scheme="exponential"):
    from immunocal.forward.rit import RitConfig, simulate_volumes

    cfg = RitConfig.from_preset(ps.preset, dt=dt, substeps=substeps, scheme=scheme, on_negative="clip")
    return simulate_volumes(ps, sched, days, cfg)


def _rel_error(v, ref):
    sel = ref > 1.0
    return float(np.max(np.abs(v[sel] / ref[sel] - 1.0))) if sel.any() else 0.0


def _order(steps, errors, lo=0.001, hi=0.02):
    """Least-squares slope of log error vs log h over [lo, hi]; None where the error is at round-off (< 1e-9:
    e.g. no treatment, which the scheme integrates exactly)."""
    h, e = np.asarray(steps), np.asarray(errors)
    if e.max() < 1e-9:
        return None
    sel = (h >= lo) & (h <= hi) & (e > 0)
    return float(np.polyfit(np.log(h[sel]), np.log(e[sel]), 1)[0]) if sel.sum() >= 2 else None


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.forward.rit.scenarios import it_timing_schedules
    from immunocal.priors import registry

    Path(out).mkdir(parents=True, exist_ok=True)
    reg = registry()
    steps = (0.1, 0.05, 0.01) if quick else STEPS
    ref_sub = 50 if quick else int(round(0.05 / REFERENCE_STEP))
    days = np.round(np.arange(0.0, 60.0 + 1e-9, 0.1), 10)
    cases = _cases()
    if quick:
        cases = {k: cases[k] for k in ("no_treatment", "8Gyx3", "8Gyx3+ctla4(2,5,8)", "8Gyx3+ctla4(2)")}
    result = {
        "reference_step": 0.05 / ref_sub,
        "steps": list(steps),
        "default": {"dt": 0.05, "substeps": 4, "integration_step": 0.0125},
        "tolerance": TOLERANCE,
        "error_measure": "max |V/V_ref - 1| over days 0-60 (0.1-d grid) where V_ref > 1 mm^3",
        "cases": {},
    }
    curves = {}
    for name, (preset, sched) in cases.items():
        ps = reg.parameter_set("rit", preset)
        ref = _volumes(ps, sched, days, 0.05, ref_sub)
        errs = [_rel_error(_volumes(ps, sched, days, h, 1), ref) for h in steps]
        default = _rel_error(_volumes(ps, sched, days, 0.05, 4), ref)
        explicit = [_rel_error(_volumes(ps, sched, days, h, 1, "explicit"), ref) for h in steps if h <= 0.01]
        result["cases"][name] = {
            "preset": preset,
            "error_by_step": dict(zip(map(str, steps), errs)),
            "order": _order(steps, errs),
            "error_default": default,
            "explicit_error_by_step": dict(zip([str(h) for h in steps if h <= 0.01], explicit)),
            "v_ref_day60": float(ref[-1]),
        }
        curves[name] = (steps, errs)
    result["max_error_default"] = max(c["error_default"] for c in result["cases"].values())
    result["max_error_single_step_005"] = max(c["error_by_step"].get("0.05", 0.0) for c in result["cases"].values())
    result["delay_scan"] = _delay_scan(reg, 4 if quick else 20, ref_sub)
    result["tcp"] = _tcp(reg, it_timing_schedules(), quick)
    result["claims"] = {
        "default_within_1pc_every_schedule": bool(result["max_error_default"] <= TOLERANCE),
        "default_within_1pc_delay_scan": bool(result["delay_scan"]["max_error_default"] <= TOLERANCE),
        "tcp_default_within_reference_ci": bool(all(v["within_reference_ci"] for k, v in result["tcp"].items()
                                                    if not k.startswith("by_step"))),
    }
    _figure(out, curves)
    write_json(out, "rit_dt_convergence", result)
    return result


def _delay_scan(reg, n, ref_sub):
    """8 Gy x 3 + anti-CTLA-4 (0,3,6) — the most sensitive case — over random delays in the calibration range."""
    from immunocal.forward.rit import Schedule

    rng = np.random.default_rng(0)
    sched = Schedule.from_strings(rt="8x3@0,1,2", ctla4="0,3,6", t_end=40.0)
    days = np.round(np.arange(0.0, 40.0 + 1e-9, 0.1), 10)
    base = reg.parameter_set("rit", "dewan_table3")
    rows = []
    for _ in range(n):
        t1, t2 = float(rng.uniform(0.8, 1.4)), float(rng.uniform(0.4, 0.9))
        ps = base.replace(antigen_activation_delay=t1, infiltration_delay=t2)
        ref = _volumes(ps, sched, days, 0.05, ref_sub)
        rows.append({
            "tau_1": t1,
            "tau_2": t2,
            "error_default": _rel_error(_volumes(ps, sched, days, 0.05, 4), ref),
            "error_single_step_005": _rel_error(_volumes(ps, sched, days, 0.05, 1), ref),
        })
    return {
        "schedule": "8Gyx3+ctla4(0,3,6), 40 days",
        "rows": rows,
        "max_error_default": max(r["error_default"] for r in rows),
        "max_error_single_step_005": max(r["error_single_step_005"] for r in rows),
    }


def _tcp(reg, scheds, quick):
    """Population TCP (N runs, seed 1) at the default setting vs the reference step (the Markov mode uses the
    same step); 'within' = the default's TCP lies inside the reference's 95 % Clopper-Pearson interval."""
    from immunocal.forward.rit import RitConfig
    from immunocal.forward.rit.tcp import population_tcp

    ps = reg.parameter_set("rit", "dewan_table3")
    n = 50 if quick else 200
    ref_sub = 10 if quick else 100
    out = {}
    # TCP over the integration step (one substep per step), schedule (2,5,8): the seed's Fig 6 headline
    s = scheds["2,5,8"]
    by_step = {}
    for h in ((0.1, 0.05, 0.01) if quick else STEPS):
        r = population_tcp(ps, s, np.random.default_rng(1), n_sims=n,
                           config=RitConfig.from_preset("dewan_table3", dt=h, substeps=1))
        by_step[str(h)] = {"tcp": r.tcp, "ci": list(r.ci)}
    out["by_step_2,5,8"] = by_step
    for key in (("2,5,8",) if quick else ("0,3,6", "2,5,8", "4,6,9")):
        s = scheds[key]
        d = population_tcp(ps, s, np.random.default_rng(1), n_sims=n)
        r = population_tcp(ps, s, np.random.default_rng(1), n_sims=n,
                           config=RitConfig.from_preset("dewan_table3", substeps=ref_sub))
        out[key] = {
            "tcp_default": d.tcp,
            "tcp_reference": r.tcp,
            "reference_ci": list(r.ci),
            "reference_step": 0.05 / ref_sub,
            "within_reference_ci": bool(r.ci[0] <= d.tcp <= r.ci[1]),
        }
    return out


def _figure(out, curves):
    use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (steps, errs) in curves.items():
        ax.loglog(steps, np.maximum(errs, 1e-12), "o-", ms=3, lw=1, label=name)
    ax.axhline(TOLERANCE, color="k", ls=":", lw=1)
    ax.axvline(0.0125, color="grey", ls="--", lw=1)
    ax.set_xlabel("integration step h [day]")
    ax.set_ylabel("max |V/V_ref - 1| (V_ref > 1 mm$^3$)")
    ax.set_title("RIT exponential midpoint rule (default: h = 0.05/4)")
    ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    save_figure(fig, out, "rit_dt_convergence.png")
