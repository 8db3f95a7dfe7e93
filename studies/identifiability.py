"""Identifiability of the shipped calibrations (`immunocal identify` applied, issue "One identifiability report"):
RIT Morisada MOC1 and RIT Dewan (real data), the DLN model on seed 003's generalisation protocol (control +
monotherapy arms fitted, combinations predicted; Morris screening of all its registry parameters), and the six
CAR-T latents of the virtual CT041 cohort with the cohort's observables — the table that explains seed 000's Table 2
pattern: a latent that no observable is sensitive to cannot be learned by LightGBM or by Bayes.

Each case is :func:`immunocal.calib.identify.identify` on the config as shipped (one subject per fitted condition at
the registry preset / box centre, Sobol over the design box, pooled profiles on the true model with prediction
profiles of the held-out arms, what to measure next); its full report is ``OUT/identifiability/<case>/``
(``identify.json``, ``identify.md``, PNG). The CAR-T case has no profiles: one latent vector shared by 37 patients is
not a question anyone asks of a cohort (the per-patient posteriors and their contraction are the headline study's).
Writes ``OUT/identifiability.json`` (per case and parameter: profile kind and interval, largest Sobol total index,
Fisher eigenvalues, held-out prediction profiles; the CAR-T table) and ``identifiability_cart.png``. ``--quick``:
small Sobol samples, no profiles, central-difference sensitivities (a smoke test; the exact ones are the full run's
— the RIT tangent kernel's first compile alone takes ≈ 80 s).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from immunocal.studies._common import save_figure, use_agg, write_json

NAME = "identifiability"
#: case -> (config relative to the package, identify() options)
CASES = {
    "rit_morisada_moc1": ("calib/datasets/morisada2018/moc1.toml", {}),
    "rit_dewan_lq_vascular": ("calib/datasets/dewan2009/lq_vascular.toml", {}),
    "dln_generalisation": ("calib/data/dln_generalisation/calibrate.toml", {"screen_r": 20}),
    "cart_ct041_latents": ("calib/datasets/ct041_virtual/personalise.toml", {"with_profiles": False}),
}


def _summary(rep: dict) -> dict:
    """Per parameter what the report says, in one row."""
    prof = rep.get("profiles") or {}
    labels = rep["parameters_in_scale"]
    out = {}
    for name, label in zip(rep["nominal"], labels):
        st = [g["ST_mean_over_rows"][label] for g in rep["global"].values()]
        p = (prof.get("parameters") or {}).get(name, {})
        out[name] = {"profile": p.get("kind"), "ci95": p.get("ci95"), "profile_quality": p.get("quality"),
                     "sobol_total_max_over_conditions": float(np.nanmax(st)) if st else None}
    pooled = rep["local"]["all_conditions"] or {}
    return {"parameters": out, "fisher_eigenvalues": pooled.get("eigenvalues"),
            "poorly_determined": [w["direction"] for w in pooled.get("poorly_determined", [])],
            "heldout_prediction_profiles": {c: {o: e[-1] for o, e in per.items() if e}
                                            for c, per in (prof.get("predictions") or {}).items()},
            "screening": None if not rep.get("screening") else {
                k: rep["screening"][k] for k in ("parameters", "ranking", "negligible", "not_screened", "calibrated")}}


def _cart_table(rep: dict, out: Path) -> dict:
    """Latent x observable Sobol total indices (mean over dose levels and each observable's rows), beside the
    headline study's contraction and R² of both methods and seed 000's R², when those results are in ``out``."""
    from immunocal.studies.ct041_lgbm import SEED_TABLE2  # (Spearman, MAE, RMSE, R²) per latent

    by_obs: dict[str, dict[str, list]] = {}
    for g in rep["global"].values():
        for obs, row in g["ST_by_observable"].items():
            for lat, v in row.items():
                by_obs.setdefault(lat, {}).setdefault(obs, []).append(v)
    head = out / "ct041_bayes_vs_lgbm.json"
    headline = json.loads(head.read_text()) if head.exists() else {}
    table = {}
    for lat, per in by_obs.items():
        st = {o: float(np.nanmean(v)) for o, v in per.items()}
        h = (headline.get("table") or {}).get(lat, {})
        table[lat] = {"sobol_total": st, "most_informative": max(st, key=st.get), "sobol_total_max": max(st.values()),
                      "contraction": (headline.get("identifiability") or {}).get(lat, {}).get("contraction"),
                      "r2_bayes": (h.get("bayes") or {}).get("r2"), "r2_lightgbm": (h.get("lightgbm") or {}).get("r2"),
                      "r2_seed000": SEED_TABLE2[lat][3] if lat in SEED_TABLE2 else None}
    return {"rows": table, "headline_source": str(head) if headline else None}


def run(out: Path, quick: bool = False) -> dict:
    from immunocal.calib.identify import identify, write_report
    from immunocal.calib.workflow import Calibration

    use_agg()
    out = Path(out)
    root = Path(__file__).resolve().parents[1]
    cases = {}
    for case, (config, options) in CASES.items():
        print(f"[{NAME}] {case}: {config}", flush=True)
        folder = out / NAME / case
        start = time.perf_counter()
        cal = Calibration(root / config, folder, force=True, progress=False)
        opts = {"n_sobol": 64 if quick else 512, **options}
        if quick:  # central-difference sensitivities: the RIT tangent kernel's first compile alone takes ≈ 80 s
            opts.update(with_profiles=False, screen_r=min(opts.get("screen_r", 0), 4), jacobian="central")
        rep = identify(cal, **opts)
        write_report(rep, folder)
        cases[case] = {"config": config, "options": opts, "seconds": round(time.perf_counter() - start, 1),
                       "report": str(folder / "identify.md"), **_summary(rep)}
        if case == "cart_ct041_latents":
            cases[case]["cart_table"] = _cart_table(rep, out)
    _figure(out, cases["cart_ct041_latents"]["cart_table"])
    result = {"quick": quick, "cases": cases}
    write_json(out, NAME, result)
    return result


def _figure(out: Path, table: dict) -> None:
    import matplotlib.pyplot as plt

    lats = list(table["rows"])
    obs = list(next(iter(table["rows"].values()))["sobol_total"])
    M = np.array([[table["rows"][lat]["sobol_total"][o] for o in obs] for lat in lats])
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(obs), 1.0 + 0.5 * len(lats)))
    im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(obs)), obs, rotation=35, ha="right")
    ax.set_yticks(range(len(lats)), lats)
    for i in range(len(lats)):
        for j in range(len(obs)):
            ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if M[i, j] < 0.5 else "k")
    fig.colorbar(im, ax=ax, label="Sobol total index (mean over dose levels, rows)")
    ax.set_title("VIRTUAL CT041: which observable informs which latent (homogeneous CAR-T ODE)")
    save_figure(fig, out, "identifiability_cart.png")
