"""The DLN model (seed 003) on real abscopal data: Dewan et al. 2009, TSA tumours in both flanks, the primary
irradiated, the secondary never — through the calibration workflow with ``calib/datasets/dewan2009/dln_abscopal.toml``
as shipped (the eight folder-2 arms fitted, primary and secondary jointly; folders 3A/3B — timing of anti-CTLA-4 —
and the folder-4 repeat predicted, held out).

1. **Which parameters** (the model has 76): Morris screening of every registry parameter on the fitted arms' data
   rows (:func:`immunocal.calib.identify.screening`), then the identifiability report of the config's seven at the
   posterior median (Sobol totals over the design box, contraction) — the chosen seven should rank high, and any
   top-ranked parameter left out is named with the reason: how much of its sensitivity on these data rows the
   calibrated seven already explain (R² of its exact-Jacobian column on theirs; near 1: confounded with them).
2. **Fit and held-out prediction**: diagnostics, posterior, contraction, 50 % / 90 % coverage of the held-out arms'
   means (``[predict] subjects_per_draw = 1``: a new group mean per posterior draw with the fitted noise).
3. **Dewan's finding on the posterior**, as probabilities over posterior draws (noise-free model curves, day 32):
   the secondary tumour under fractionated RT + anti-CTLA-4 (8 Gy × 3, 6 Gy × 5) is smaller than under 20 Gy × 1 +
   anti-CTLA-4, and smaller than half the untreated secondary tumour; the observed values beside them (folder 2,
   fitted, and folder 4, a repeat the fit did not see).

Writes ``OUT/dln_dewan_abscopal.json`` and ``dln_dewan_abscopal.png``; ``--quick``: short chains and a small
screening (a smoke test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "dln_dewan_abscopal"
CONFIG = "dln_abscopal.toml"
QUICK = {"draws": 150, "tune": 200}
DAY = 32
#: (label, fractionated arm, single-dose arm, untreated arm) of each experiment with all three
CONTRASTS = {
    "folder 2 (fitted)": ("tsa_fig2_8Gyx3+9H10", "tsa_fig2_6Gyx5+9H10", "tsa_fig2_20Gyx1+9H10", "tsa_fig2_0Gy+PBS"),
    "folder 4 (repeat, held out)": ("tsa_fig4_8Gyx3+9H10", "tsa_fig4_6Gyx5+9H10", None, "tsa_fig4_0Gy+PBS"),
}


def _secondary_at(cal, draws: np.ndarray, condition: str, day: int = DAY) -> np.ndarray:
    """Noise-free secondary-tumour volume (mm³) on ``day`` at each posterior draw (rows of ``draws``)."""
    fm = cal.forward
    y = fm.simulate(draws, cal.schedule(condition))
    return np.exp(y[:, fm.observables.index("log_volume_distant"), int(np.flatnonzero(fm.times == day)[0])])


def _observed(cal, condition: str, observable: str = "log_volume_distant", day: int = DAY):
    """The group mean (mm³) on ``day`` (the workflow's tables hold log volumes)."""
    meas, _ = cal.tables
    sel = (meas.condition == condition) & (meas.observable == observable) & (meas.time == day)
    if not sel.any():
        raise ValueError(f"{condition}: no {observable} row on day {day}")
    return float(np.exp(meas.value[sel][0]))


def finding(cal, draws: np.ndarray) -> dict:
    """Dewan's claim per experiment: P(fractionated + 9H10 < single 20 Gy + 9H10) and P(< half the untreated
    secondary tumour), over posterior draws, with the observed group means."""
    out = {}
    for label, (f8, f6, single, ctrl) in CONTRASTS.items():
        v = {c: _secondary_at(cal, draws, c) for c in (f8, f6, single, ctrl) if c}
        obs = {c: _observed(cal, c) for c in v}
        rec = {"day": DAY, "posterior_median_mm3": {c: float(np.median(x)) for c, x in v.items()},
               "observed_mm3": obs}
        for frac in (f8, f6):
            rec[f"P({frac} < half of {ctrl})"] = float(np.mean(v[frac] < 0.5 * v[ctrl]))
            rec[f"observed {frac} < half of {ctrl}"] = bool(obs[frac] < 0.5 * obs[ctrl])
            if single:
                rec[f"P({frac} < {single})"] = float(np.mean(v[frac] < v[single]))
                rec[f"observed {frac} < {single}"] = bool(obs[frac] < obs[single])
        if single:
            rec[f"P({single} < half of {ctrl})"] = float(np.mean(v[single] < 0.5 * v[ctrl]))
            rec[f"observed {single} < half of {ctrl}"] = bool(obs[single] < 0.5 * obs[ctrl])
        out[label] = rec
    return out


def redundancy(cal, theta: np.ndarray, extra: list[str]) -> dict:
    """For each parameter in ``extra`` (not calibrated): R² of its sensitivity column (d log volume / d log θ on the
    fitted data rows, exact Jacobian at ``theta`` = the calibrated parameters' posterior medians, the rest at the
    preset) regressed on the calibrated parameters' columns — 1: the data see it only through what is calibrated
    (confounded); well below 1: it would add a direction of its own. Switch parameters (no gradient) are skipped."""
    from dataclasses import replace

    from immunocal.calib.identify import _condition_rows
    from immunocal.forward.dln.api import default_parameters
    from immunocal.forward.dln.model import PARAM_NAMES, SWITCH_PARAMS

    fm = cal.forward
    chosen = list(fm.parameter_names)
    extra = [n for n in extra if PARAM_NAMES.index(n) not in SWITCH_PARAMS]
    names = chosen + extra
    ps = default_parameters(fm.preset)
    sim = replace(fm, parameter_names=tuple(names))  # the fit's simulator with the extra parameters as inputs
    x = np.concatenate([theta, [ps[n] for n in extra]])[None, :]
    blocks = []
    for cond in cal.conditions[0]:
        _, jac = sim.simulate_jacobian(x, cal.schedule(cond))
        blocks.append(np.array([jac[0, o, t] * x[0] for o, t in _condition_rows(cal, cond)]))
    J = np.vstack(blocks)
    A = J[:, :len(chosen)]
    out = {}
    for k, n in enumerate(extra):
        col = J[:, len(chosen) + k]
        coef, *_ = np.linalg.lstsq(A, col, rcond=None)
        ss = float(col @ col)
        out[n] = None if ss == 0 else float(1.0 - np.sum((col - A @ coef) ** 2) / ss)
    return out


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.identify import identify, screening
    from immunocal.calib.workflow import Calibration

    use_agg()
    out = Path(out)
    cal = Calibration(dataset_dir("dewan2009") / CONFIG, out / "dln_dewan", force=True,
                      sampler=QUICK if quick else None)
    if quick:
        cal.cfg["predict"]["draws"] = 100
    print(f"[{NAME}] screening all DLN parameters on the fitted arms", flush=True)
    screen = screening(cal, r=4 if quick else 20)
    res = cal.load_finished() or cal.run()  # a rerun after a kill reuses a finished fit
    print(f"[{NAME}] identifiability at the posterior median", flush=True)
    ident = identify(cal, idata=cal.idata, n_sobol=64 if quick else 512, with_profiles=False)
    post = cal.idata.posterior.stack(s=("chain", "draw"))
    names = list(cal.forward.parameter_names)
    draws = np.column_stack([post[n].values for n in names])
    sel = np.random.default_rng(0).choice(len(draws), size=min(len(draws), 100 if quick else 800), replace=False)
    held = res["prediction"]["heldout"]
    chosen = list(cal.problem.free)
    top = screen["ranking"][:12]
    result = {
        "quick": quick, "config": f"calib/datasets/dewan2009/{CONFIG}",
        "fit": cal.conditions[0], "heldout": cal.conditions[1],
        "data_assumptions": {
            "data": "group means digitised from Dewan 2009 (no error bars or group sizes; ~5-6 mice per group)",
            "days": "digitised days rounded to 12, 17, 22, 27, 32 (from primary inoculation)",
            "secondary_inoculation": "2 days after the primary: Network.inoculation_delay_days = {distant: 2}",
            "schedules": "folder 2: RT from day 12 (20 Gy x 1; 8 Gy x 3 days 12-14; 6 Gy x 5 days 12-16), 9H10 on "
                         "days 14, 17, 20; folder 3 as its labels; folder 4 ASSUMED as folder 2",
            "detection_limit_mm3": 5.0, "anti_ctla4_dose": "1 standard dose per injection"},
        "screening": {"parameters_screened": screen["parameters"], "r": screen["r"], "factor": screen["factor"],
                      "top12": {n: screen["mu_star"][n] for n in top},
                      "rank_of_calibrated": {n: screen["ranking"].index(n) + 1 for n in chosen
                                             if n in screen["ranking"]},
                      "top12_not_calibrated": [n for n in top if n not in chosen],
                      "negligible": len(screen["negligible"]), "n_evaluations": screen["n_evaluations"]},
        "redundancy_r2_of_top12_not_calibrated": redundancy(
            cal, np.array([float(np.median(post[n].values)) for n in names]), [n for n in top if n not in chosen]),
        "identifiability": {c: g["ST_by_observable"] for c, g in ident["global"].items()},
        "poorly_determined": [w["direction"] for w in
                              (ident["local"]["all_conditions"] or {}).get("poorly_determined", [])],
        "diagnostics": res["diagnostics"], "posterior": res["posterior"], "contraction": res.get("contraction"),
        "heldout_coverage_50": held["coverage_50"], "heldout_coverage_90": held["coverage_90"],
        "heldout_per_condition": {c: {k: v[k] for k in ("coverage_50", "coverage_90", "n_obs") if k in v}
                                  for c, v in held.get("per_condition", {}).items()},
        "fit_coverage_90": res["prediction"]["fit"]["coverage_90"],
        "finding": finding(cal, draws[sel]), "finding_draws": int(len(sel)),
        "seconds": res.get("seconds")}
    shutil.copyfile(cal.out / "predictions_heldout.png", out / f"{NAME}_heldout.png")
    _figure(out, cal, draws[sel], result)
    write_json(out, NAME, result)
    return result


def _figure(out: Path, cal, draws: np.ndarray, result: dict) -> None:
    import matplotlib.pyplot as plt

    fm = cal.forward
    arms = [a for a in CONTRASTS["folder 2 (fitted)"] if a] + ["tsa_fig4_8Gyx3+9H10", "tsa_fig4_0Gy+PBS"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    meas, _ = cal.tables
    for ax, obs in zip(axes, ("log_volume_primary", "log_volume_distant")):
        o = fm.observables.index(obs)
        for k, arm in enumerate(arms):
            y = np.exp(fm.simulate(draws, cal.schedule(arm))[:, o, :])
            lo, mid, hi = np.quantile(y, [0.05, 0.5, 0.95], axis=0)
            ls = "--" if arm.startswith("tsa_fig4") else "-"
            ax.fill_between(fm.times, lo, hi, color=f"C{k}", alpha=0.15)
            ax.plot(fm.times, mid, ls, color=f"C{k}", label=arm.replace("tsa_", ""))
            sel = (meas.condition == arm) & (meas.observable == obs)
            ax.plot(meas.time[sel], np.exp(meas.value[sel]), "o" if ls == "-" else "s", color=f"C{k}", ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("day after primary inoculation")
        ax.set_title("primary (irradiated)" if o == 0 else "secondary (abscopal, not irradiated)")
    axes[0].set_ylabel("tumour volume (mm³): posterior 90 % of the mean curve, data")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"DLN model on Dewan 2009 (TSA): fitted folder 2 (circles), held-out folder 4 (squares); "
                 f"held-out coverage 90 % = {result['heldout_coverage_90']:.2f}", fontsize=9)
    save_figure(fig, out, f"{NAME}.png")
