"""Regenerate the README's results section from study outputs (never typed in by hand).

``immunocal report --results DIR`` reads ``DIR/<study>.json`` of every study that has been run (and every
``DIR/bench_*.json``: a benchmark's printed JSON plus a ``_command`` key naming the command), writes the key
numbers between the ``<!-- results:start -->`` and ``<!-- results:end -->`` markers of README.md, and copies the
key figures to ``docs/figures/``, and archives each study's JSON in ``results/`` beside the README (committed, so
that a later report on a new machine still has it). A study whose JSON is in neither folder keeps the section the
README already has, marked as carried over from an earlier report (never retyped); one that was never run is listed
as not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _get(d, path, default=None):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _f(x, nd=3):
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:.{nd}g}"
    return str(x)


def _dict_line(d: dict | None, nd=3) -> str:
    if not isinstance(d, dict):
        return "n/a"
    return ", ".join(f"{k}: {_f(v, nd)}" for k, v in d.items() if not isinstance(v, (dict, list)))


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def _bayes_vs_lgbm(j: dict) -> list[tuple[str | None, str]]:
    """The headline: per latent, seed 000's Table 2 R², LightGBM and the Bayesian posterior mean out-of-fold (mean
    over repeats), interval coverage and CRPS of both, and what the observables identify."""
    rows = []
    for lat, v in (_get(j, "table") or {}).items():
        b, g, idf = v["bayes"], v["lightgbm"], _get(j, f"identifiability.{lat}") or {}
        seed_r2 = _get(j, f"seed_protocol.{lat}.seed000_table2.r2")
        rows.append([lat.removeprefix("theta_"), _f(seed_r2, 2), f"{_f(g['r2'], 2)} / {_f(b['r2'], 2)}",
                     f"{_f(g['mae'], 2)} / {_f(b['mae'], 2)}", f"{_f(g['coverage_90'], 2)} / {_f(b['coverage_90'], 2)}",
                     f"{_f(g['crps'], 2)} / {_f(b['crps'], 2)}", _f(idf.get("contraction"), 2),
                     _f(idf.get("identified")), _f(_get(j, f"sbc.{lat}.p_value"), 2)])
    table = _md_table(["latent", "seed 000 R²", "R² LightGBM / Bayes", "MAE LightGBM / Bayes",
                       "90 % coverage LightGBM / Bayes", "CRPS LightGBM / Bayes", "posterior contraction",
                       "identified (≥ 0.5)", "SBC p"], rows)
    folds = _get(j, "folds") or []
    pop = [f.get("population", {}) for f in folds]
    out: list[tuple[str | None, str]] = [
        (None, f"Out-of-fold on the VIRTUAL cohort (N = {_get(j, 'n')}, {_get(j, 'repeats')} repeats × "
               f"{_get(j, 'outer_folds')} outer folds, the same folds and features for both; mean over repeats):"),
        (None, table),
        (None, ("_posterior contraction_ = 1 − mean posterior variance / the cohort's variance of the true latent "
                "(negative: the posteriors are wider than the truth's spread across patients — the data do not inform "
                "that latent); _SBC p_ = χ² test that the truth's ranks among each patient's posterior draws are "
                "uniform across the cohort; 90 % coverage of LightGBM from split-conformal intervals on the same "
                "folds."))]
    if pop:
        out += _population_fit_lines(folds)
        khat = [f.get("personalised_pareto_k_max") for f in folds if f.get("personalised_pareto_k_max") is not None]
        fails = sum(len(f.get("personalised_failures") or []) for f in folds)
        out.append(("per-patient posteriors (importance sampling): max Pareto k̂ / subjects above 0.7",
                    f"{_f(max(khat) if khat else None, 2)} / {fails}"))
        routes = [f["route"] for f in folds if f.get("route")]
        if routes:  # the workflow's route check of the shared emulators at each fold's posterior
            from .diagnostics import LEAVE_SURROGATE, PARETO_K_MAX

            ratios: dict[str, float] = {}
            for rt in routes:
                for o, v in rt["surrogate_rmse_over_noise"].items():
                    ratios[o] = max(ratios.get(o, 0.0), v)
            ks = [rt["pareto_k"] for rt in routes if rt.get("pareto_k") is not None]
            advised = sum(1 for rt in routes if rt.get("advice") in LEAVE_SURROGATE)
            out.append(("emulators at the population posteriors (route check): folds advised to refine or go "
                        "black-box / max Pareto k̂ true model vs surrogate / max surrogate RMSE over the fitted noise sd",
                        f"{advised} of {len(routes)} / {_f(max(ks) if ks else None, 3)} / "
                        + (", ".join(f"{o} {_f(v, 3)}" for o, v in sorted(ratios.items())) or "none checked")))
            breaking: dict[str, int] = {}  # observables whose log weights alone exceed the limit, fold counts
            for rt in routes:
                for o, k in (rt.get("pareto_k_by_observable") or {}).items():
                    if not k <= PARETO_K_MAX:
                        breaking[o] = breaking.get(o, 0) + 1
            if any(rt.get("pareto_k_by_observable") for rt in routes):
                out.append((f"observables whose importance weights alone have Pareto k̂ above {PARETO_K_MAX} (folds)",
                            ", ".join(f"{o} {n}" for o, n in sorted(
                                breaking.items(), key=lambda on: (-on[1], on[0]))) or "none"))
    moved = _get(j, "true_model_reweighting") or {}
    if moved.get("patients"):  # the test patients' posteriors reweighted from the emulators to the true model
        # scored against the emulators' posteriors of the same repeats when only some were reweighted
        per = [(lat, v.get("bayes_same_repeats", v["bayes"]), v["bayes_true_model"])
               for lat, v in (_get(j, "table") or {}).items() if "bayes_true_model" in v]
        repeats, draws = moved.get("repeats"), moved.get("draws_per_patient")
        scope = ("" if repeats is None or len(repeats) == j.get("repeats") else
                 f"repeat{'s' if len(repeats) > 1 else ''} {', '.join(map(str, repeats))} only, ")
        scope += f"{draws} draws a patient; " if draws else ""
        out.append((("Bayes reweighted to the true model (" + scope + "patient-repeats with Pareto k̂ ≤ 0.7 / max "
                     "k̂); per latent R², 90 % coverage, CRPS: emulators → true model"),
                    f"{_f(moved.get('share_reliable'), 2)} of {moved['patients']} / {_f(moved.get('pareto_k_max'), 2)}; "
                    + "; ".join(f"{lat.removeprefix('theta_')}: {_f(b['r2'], 2)} → {_f(t['r2'], 2)}, "
                                f"{_f(b['coverage_90'], 2)} → {_f(t['coverage_90'], 2)}, "
                                f"{_f(b['crps'], 3)} → {_f(t['crps'], 3)}" for lat, b, t in per)))
    for outcome in ("orr", "dcr"):
        b, g = _get(j, f"response.{outcome}.bayes") or {}, _get(j, f"response.{outcome}.lightgbm") or {}
        out.append((f"{outcome.upper()} from early observations: AUROC / Brier, LightGBM vs Bayes",
                    f"{_f(g.get('auroc'), 3)} / {_f(g.get('brier'), 3)} vs {_f(b.get('auroc'), 3)} / "
                    f"{_f(b.get('brier'), 3)}"))
    proto = _get(j, "seed_protocol") or {}
    if proto:
        out.append(("seed 000's protocol, R² of LightGBM trained on θ_ref: vs θ_ref / vs truth (θ_ref vs truth)",
                    "; ".join(f"{k.removeprefix('theta_')}: {_f(v['lightgbm_on_ref_vs_ref']['r2'], 2)} / "
                              f"{_f(v['lightgbm_on_ref_vs_truth']['r2'], 2)} ({_f(v['ref_vs_truth']['r2'], 2)})"
                              for k, v in proto.items())))
    out.append((("wall seconds of this run (a resumed run reads its finished folds back): emulators / Bayes folds / "
                 "LightGBM"), _dict_line(_get(j, "seconds"), 4)))
    out += _fold_seconds_lines(j.get("folds") or [])
    return out


def _population_fit_lines(folds: list[dict], what: str = "") -> list[tuple[str, str]]:
    """The folds' population fits (a head-to-head's fold records): worst R-hat, ESS and divergences; folds topped
    up with chains; folds refitted (:func:`immunocal.calib.workflow.run_converged`) and those still missing."""
    pop = [f.get("population") or {} for f in folds]
    out = [(f"{what}population fits over all folds: max R-hat / min bulk ESS / min tail ESS / divergences",
            (f"{_f(max(p.get('rhat_max', float('nan')) for p in pop))} / "
             f"{_f(min(p.get('ess_bulk_min', float('nan')) for p in pop))} / "
             f"{_f(min(p.get('ess_tail_min', float('nan')) for p in pop))} / "
             f"{sum(p.get('divergences', 0) for p in pop)}"))]
    topped = [f for f in folds if f.get("population_top_up")]
    if topped:  # [sampler] top_up: narrow ESS misses answered with more chains
        out.append((f"{what}folds given more chains after missing the ESS threshold alone (chains added)",
                    f"{len(topped)} ({sum(b['chains_added'] for f in topped for b in f['population_top_up'])})"))
    retried = [f for f in folds if f.get("population_first_attempt")]
    if retried:
        out.append((f"{what}folds refitted with 2× draws after missing the thresholds / still missing them",
                    f"{len(retried)} / {sum(1 for f in retried if f['population'].get('ok') is False)}"))
    located = [f for f in folds if (f.get("population") or {}).get("divergence_locations")]
    if located:  # check_diagnostics: per divergent draw, the quantity deepest in its own marginal's tail
        out.append(((f"{what}where the divergences of the fits reported sat (per fold: the variables deepest in "
                     "their tails at the divergent draws, draws)"),
                    "; ".join(f"repeat {f.get('repeat', '?')} fold {f.get('fold', '?')}: " + ", ".join(
                        f"{name} {e['draws']} (e.g. {e['examples'][0]['variable']} {e['examples'][0]['side']})"
                        for name, e in f["population"]["divergence_locations"]["deepest"].items())
                              for f in located)))
    return out


def _fold_seconds_lines(folds: list[dict], what: str = "") -> list[tuple[str, str]]:
    """Each fold's own fit and personalisation seconds from its record (a resumed run's wall time says little)."""
    fits = [f["seconds"]["total"] for f in folds if (f.get("seconds") or {}).get("total") is not None]
    if not fits:
        return []
    return [((f"{what}each fold's population fit and personalisation, from its record: folds / summed seconds / "
              "median / max"), f"{len(fits)} / {sum(fits):.0f} / {statistics.median(fits):.0f} / {max(fits):.0f}")]


def _scaling(j: dict) -> list[tuple[str | None, str]]:
    """The scaling and misspecification study: per run (cohort size, Bayesian model) and latent, R², 90 %
    coverage and CRPS of the Bayesian posterior and of LightGBM on the same folds, the posterior contraction, and
    each run's population fits."""
    runs = _get(j, "runs") or {}
    if not runs:
        return []
    lats = list(next(iter(runs.values()))["latents"])
    rows = []
    for name, r in runs.items():
        cells = []
        for lat in lats:
            v = r["latents"][lat]
            b, g = v["bayes"], v["lightgbm"]
            cells.append(f"{_f(g['r2'], 2)} / {_f(b['r2'], 2)}; {_f(g['coverage_90'], 2)} / "
                         f"{_f(b['coverage_90'], 2)}; {_f(g['crps'], 3)} / {_f(b['crps'], 3)}; "
                         f"{_f(v['contraction'], 2)}")
        rows.append([f"{name} (N = {r['n']}, {r.get('variant') or 'well specified'}, {r['repeats']} × 5 folds)",
                     *cells])
    out: list[tuple[str | None, str]] = []
    if j.get("quick"):
        out.append(("a --quick smoke run (one repeat, short chains): not a result", "true"))
    if j.get("pending"):
        out.append(("Runs not finished yet (the study resumes them from their folds' records)",
                    ", ".join(j["pending"])))
    out += [(None, ("Out-of-fold on VIRTUAL cohorts, per latent: R² LightGBM / Bayes; 90 % coverage LightGBM / "
                    "Bayes; CRPS LightGBM / Bayes; posterior contraction (the N = 37 runs share their folds):")),
            (None, _md_table(["run", *(lat.removeprefix("theta_") for lat in lats)], rows))]
    for name, r in runs.items():
        if r.get("folds"):
            out += _population_fit_lines(r["folds"], f"{name}: ") + _fold_seconds_lines(r["folds"], f"{name}: ")
    return out


def _prediction_profile(cond: str, obs: str, e: dict) -> str:
    seen = {True: " observed inside", False: " observed OUTSIDE", None: ""}[e["observed_inside"]]
    box = f" (box-driven: {', '.join(e['box_driven'])})" if e["box_driven"] else ""
    return f"{cond} {obs}: [{_f(e['interval'][0], 3)}, {_f(e['interval'][1], 3)}]{seen}{box}"


def _identifiability(j: dict) -> list[tuple[str | None, str]]:
    """The CAR-T latents x the cohort's observables (Sobol), beside what the headline study learned and seed 000
    reported; then per real-data / DLN case the parameters' profile kinds and the held-out prediction profiles."""
    cart = _get(j, "cases.cart_ct041_latents.cart_table.rows") or {}
    obs = list(next(iter(cart.values()))["sobol_total"]) if cart else []
    rows = [[lat.removeprefix("theta_"), *(_f(r["sobol_total"][o], 2) for o in obs), _f(r["contraction"], 2),
             f"{_f(r['r2_lightgbm'], 2)} / {_f(r['r2_bayes'], 2)}", _f(r["r2_seed000"], 2)]
            for lat, r in cart.items()]
    out: list[tuple[str | None, str]] = []
    if rows:
        intro = ("CAR-T latents (VIRTUAL CT041 cohort, homogeneous ODE): Sobol total index of each observable over "
                 "the latent cube (mean over dose levels and the observable's rows), and what each method recovered "
                 "out of fold (headline study):")
        out += [(None, intro), (None, _md_table(["latent", *obs, "posterior contraction", "R² LightGBM / Bayes",
                                                 "seed 000 R²"], rows))]
    cases = (("rit_morisada_moc1", "RIT Morisada MOC1"), ("rit_dewan_lq_vascular", "RIT Dewan (LQ + vascular)"),
             ("dln_generalisation", "DLN, seed 003 generalisation protocol"))
    for case, label in cases:
        c = _get(j, f"cases.{case}") or {}
        if not c:
            continue
        out.append((f"{label} — profile (pooled, true model)",
                    "; ".join(f"{k}: {v['profile'] or 'n/a'} (Sobol total ≤ "
                              f"{_f(v['sobol_total_max_over_conditions'], 2)})" for k, v in c["parameters"].items())))
        preds = c.get("heldout_prediction_profiles") or {}
        if preds:
            out.append((f"{label} — held-out prediction profiles, last data day",
                        "; ".join(_prediction_profile(cond, o, e) for cond, per in preds.items()
                                  for o, e in per.items())))
        scr = c.get("screening")
        if scr:
            weak = [n for n in scr["calibrated"] if n in scr["negligible"]]
            out.append(((f"{label} — Morris screening of {scr['parameters']} parameters: top 5 / negligible / "
                         "calibrated but negligible"),
                        f"{', '.join(scr['ranking'][:5])} / {len(scr['negligible'])} / {', '.join(weak) or 'none'}"))
    return out


def _dewan_checks(j: dict) -> list[tuple[str, str]]:
    """Per Dewan variant: the integration step checked at posterior draws, and the exact-route NUTS posterior against
    SMC on the true model (when the study ran it)."""
    variants = (("lq_vascular", "LQ + vascular"), ("modified_lq", "modified LQ"))
    steps = " / ".join(f"{_get(j, f'variants.{v}.numerics_at_posterior.resolution')}: "
                       f"{_f(_get(j, f'variants.{v}.numerics_at_posterior.max_diff_over_noise.log_volume'))}"
                       for v, _ in variants)
    out = [("integration step at posterior draws (resolution: run vs finest rung, noise sd), LQ + vascular / "
            "modified LQ", steps)]
    for v, label in variants:
        if smc := _get(j, f"variants.{v}.smc_true"):
            out.append(_smc_line(f"full fit, {label}", smc))
    return out


def _smc_line(label: str, smc: dict) -> tuple[str, str]:
    """One fit's exact-route NUTS posterior against SMC on the true model (``studies._common.smc_check``): per
    parameter the largest |Δmean| / sd_SMC and the median sd ratio, whether all pass, SMC's wall clock; or why the
    SMC run failed."""
    if "failed" in smc:
        return f"exact NUTS vs SMC on the true model, {label}", f"SMC failed: {smc['failed']}"
    agreement = smc["nuts_vs_smc"]
    rows = "; ".join(f"{k}: {_f(r['mean_diff_in_sd'])}, {_f(r['sd_ratio'])}" for k, r in agreement["parameters"].items())
    shift = smc.get("log_likelihood_smc_vs_nuts")
    accept = smc.get("smc_accept_rate") or []
    extra = ("" if shift is None else
             f"; SMC particles' log-likelihood {_f(shift['mean'], 4)} vs NUTS draws' {_f(shift['reference_mean'], 4)} "
             f"({_f(shift['shift_in_reference_sd'], 2)} sd); {smc.get('smc_stages')} stages, Metropolis acceptance "
             f"{_f(min(accept), 2)}–{_f(max(accept), 2)}")
    return (f"exact NUTS vs SMC on the true model ({smc['particles']} particles), {label}: per parameter max "
            "|Δmean|/sd_SMC, median sd ratio; all within |Δmean| ≤ 0.2 sd, sd ±20 %; SMC wall s",
            f"{rows}; {_f(agreement['all_pass'])}; {_f(_get(smc, 'wall_clock_s.total'), 4)}{extra}")


def _dewan_routes(j: dict) -> list[tuple[str, str]]:
    """The Dewan study's route comparison: exact NUTS and surrogate NUTS against SMC on the true model; an output
    written before the exact route existed carries the surrogate-vs-SMC validation alone, rendered as such."""
    def pairs(d):
        return "; ".join(f"{k}: {_f(v['mean_diff_in_sd'], 2)}, {_f(v['sd_ratio'], 3)}" for k, v in (d or {}).items())

    if "routes" not in j and "surrogate_route_validation" in j:
        v = j["surrogate_route_validation"]
        return [("routes compared", "surrogate NUTS vs SMC only (this output predates the exact route)"),
                ("surrogate vs SMC on the true model, all within criteria", _f(v.get("all_pass"))),
                ("per parameter |Δmean|/sd_true, sd ratio (NUTS on surrogate / SMC on true model)",
                 pairs(v.get("parameters"))),
                ("wall clock (s): NUTS on surrogate / SMC on true model",
                 f"{_dict_line(_get(j, 'surrogate_route_validation.wall_clock_s.nuts_surrogate'))} / "
                 f"{_dict_line(_get(j, 'surrogate_route_validation.wall_clock_s.smc_true_model'))}"),
                ("surrogate vs true model at 40 posterior draws (LQ + vascular): max RMSE / max |error|",
                 f"{_f(_get(j, 'variants.lq_vascular.surrogate_at_posterior.max_rmse'))} / "
                 f"{_f(_get(j, 'variants.lq_vascular.surrogate_at_posterior.max_abs_error'))}")]
    return [("routes vs SMC on the true model, all within criteria: exact NUTS / surrogate NUTS",
             f"{_f(_get(j, 'routes.exact_nuts.all_pass'))} / {_f(_get(j, 'routes.surrogate_nuts.all_pass'))}"),
            ("per parameter |Δmean|/sd_SMC, sd ratio: exact NUTS", pairs(_get(j, "routes.exact_nuts.parameters"))),
            ("per parameter |Δmean|/sd_SMC, sd ratio: surrogate NUTS",
             pairs(_get(j, "routes.surrogate_nuts.parameters"))),
            ("wall clock (s): exact NUTS / surrogate NUTS / SMC on the true model",
             " / ".join(_f(_get(j, f"routes.wall_clock_s.{k}.total")) for k in ("exact_nuts", "surrogate_nuts",
                                                                                  "smc_true"))),
            ("surrogate vs true model at posterior draws (restricted fit): max RMSE / max |error|",
             f"{_f(_get(j, 'routes.surrogate_at_posterior.max_rmse'))} / "
             f"{_f(_get(j, 'routes.surrogate_at_posterior.max_abs_error'))}"),
            ("surrogate route: importance weights true model / surrogate at posterior draws: Pareto k, sd of the log "
             "weights; triage advice",
             f"{_f(_get(j, 'routes.surrogate_importance.pareto_k'), 3)}, "
             f"{_f(_get(j, 'routes.surrogate_importance.log_weight_sd'), 3)}; "
             f"{_get(j, 'routes.route_advice.surrogate_nuts.advice')}")]


def _conte(j: dict) -> list[tuple[str | None, str]]:
    out = []
    for split, r in (_get(j, "splits") or {}).items():
        kill = r.get("kill_rate") or {}
        killing = "; ".join(f"{c}: peak day observed {_f(_get(k, 'observed.peak_day'), 2)}, predicted "
                            f"{_f((k.get('predicted_peak_day') or [None] * 3)[1], 2)} "
                            f"[{_f((k.get('predicted_peak_day') or [None] * 3)[0], 2)}, "
                            f"{_f((k.get('predicted_peak_day') or [None] * 3)[2], 2)}]"
                            for c, k in (r.get("killing") or {}).items())
        contr = _get(r, "contraction") or {}
        out += [(f"{split}: fitted {', '.join(r.get('fit') or [])}; held out {', '.join(r.get('heldout') or [])}",
                 f"held-out coverage 50 % / 90 %: {_f(r.get('heldout_coverage_50'))} / "
                 f"{_f(r.get('heldout_coverage_90'))}; diagnostics {_dict_line(r.get('diagnostics'))}"),
                (f"{split}: killing time (day of the Cell Index peak)", killing or "n/a"),
                (f"{split}: residuals (Ornstein–Uhlenbeck) σ (Cell Index) / correlation time τ (days), posterior "
                 "mean", f"{_f(_get(r, 'posterior.sigma_cell_index.mean'))} / "
                         f"{_f(_get(r, 'posterior.tau_cell_index.mean'))}"),
                *([(f"{split}: Cell Index offset (the reading that is not cell number), posterior mean ± sd",
                     f"{_f(_get(r, 'posterior.cell_index_offset.mean'))} ± "
                     f"{_f(_get(r, 'posterior.cell_index_offset.sd'))}")]
                  if _get(r, "posterior.cell_index_offset.mean") is not None else []),
                (f"{split}: contraction", _dict_line({k: v for k, v in contr.items()
                                                      if isinstance(v, (int, float))}, 2)),
                (f"{split}: kill rate γ (per CAR-T cell per day) → γ·K (per K_T per day; registry normalised "
                 f"{_f(kill.get('registry_normalised'))}) → γ·V (cm³ per cell per day, V = "
                 f"{_f(j.get('well_volume_cm3_assumed'))} cm³ assumed; registry paper {_f(kill.get('registry_paper'))})",
                 f"{_f(kill.get('per_cell_day'))} → {_f(kill.get('normalised_per_KT_day'))} → "
                 f"{_f(kill.get('cm3_per_cell_day'))}")]
    return out


def _dln_dewan(j: dict) -> list[tuple[str | None, str]]:
    finding = _get(j, "finding") or {}
    lines = [("fitted / held out", f"{len(j.get('fit') or [])} folder-2 arms / {len(j.get('heldout') or [])} "
                                   "arms of folders 3A, 3B, 4"),
             ("diagnostics", _dict_line(_get(j, "diagnostics"))),
             ("coverage 90 %: fitted arms / held-out arms; held-out 50 %",
              f"{_f(_get(j, 'fit_coverage_90'))} / {_f(_get(j, 'heldout_coverage_90'))}; "
              f"{_f(_get(j, 'heldout_coverage_50'))}"),
             ("screening: rank (of " + _f(_get(j, "screening.parameters_screened")) + ") of each calibrated parameter",
              _dict_line(_get(j, "screening.rank_of_calibrated"))),
             ("screening: top-12 parameters not calibrated", _f(", ".join(_get(j, "screening.top12_not_calibrated")
                                                                          or []) or "none")),
             ("contraction", _dict_line({k: v for k, v in (_get(j, "contraction") or {}).items()
                                         if isinstance(v, (int, float))}, 2))]
    for label, rec in finding.items():
        probs = {k: v for k, v in rec.items() if k.startswith("P(")}
        obs = {k.removeprefix("observed "): v for k, v in rec.items() if k.startswith("observed ") and
               isinstance(v, bool)}
        lines.append((f"Dewan's finding, {label}: posterior probability (observed)",
                      "; ".join(f"{k[2:-1]}: {_f(v, 2)} ({'yes' if obs.get(k[2:-1]) else 'no'})"
                                for k, v in probs.items())))
    return lines


def _treatment_free(j: dict) -> list[tuple[str | None, str]]:
    out = []
    for line, r in (_get(j, "lines") or {}).items():
        data, near = r.get("data") or {}, r.get("nearest_grid_point") or {}
        rates = data.get("growth_rate_per_day_median") or {}
        days = data.get("delta_by_day") or {}
        obs = "; ".join(f"day {float(d):g}: {_f(v['delta'], 2)} [{_f(v['q05_q95'][0], 2)}, {_f(v['q05_q95'][1], 2)}]"
                        for d, v in days.items())
        out += [(f"{line} data: median growth rate per day, control / anti-PD-1 alone (Mann–Whitney p)",
                 f"{' / '.join(_f(v, 4) for v in rates.values())} ({_f(data.get('mann_whitney_p'), 3)})"),
                (f"{line} data: anti-PD-1 alone − control, median log volume [90 % bootstrap]", obs),
                (f"{line} model: largest |anti-PD-1 alone − control| in log volume over the grid, by ρ",
                 _dict_line(r.get("max_abs_model_effect_by_rho"), 3)),
                (f"{line} model: grid points inside the data's interval on every day (of {r.get('grid_points')})",
                 f"{len(r.get('grid_points_inside_data_interval_every_day') or [])}; nearest: ρ {_f(near.get('rho'))}, "
                 f"a {_f(near.get('a'))}, dose {_f(near.get('pdl1_dose'))}, p {_f(near.get('p'))} → "
                 f"{', '.join(_f(v, 2) for v in near.get('delta') or [])} (step error {_f(near.get('step_error_substeps_4_vs_16'))})")]
    return out


def _spatial_cohort(j: dict) -> list[tuple[str | None, str]]:
    res, sp, ode = j["resolution"], j["summary"]["spatial"], j["summary"]["homogeneous"]
    ladder = "; ".join(f"{s['n_grid']}² Δt {s['dt']:g}: {_f(s['largest'], 2)} ({s['category_flips']} RECIST/CRS "
                       f"flip(s), {s.get('t_max_day_shifts', 0)} daily-T_max shift(s), "
                       f"{_f(s['seconds_per_patient'], 2)} s)" for s in res["settings"])
    flips = [f for s in res["settings"] for f in s.get("flips", []) if (s["n_grid"], s["dt"]) == (
        res["default"]["n_grid"], res["default"]["dt"])]
    flip_text = "; ".join(
        f"patient {f['patient']}: RECIST {'→'.join(f['best_recist'])} (scan nadir ratio "
        f"{_f(f['scan_nadir_ratio'][0], 4)}→{_f(f['scan_nadir_ratio'][1], 4)}, PR ≤ 0.7), CRS "
        f"{f['crs_grade'][0]}→{f['crs_grade'][1]} (score {_f(f['crs_score'][0], 4)}→{_f(f['crs_score'][1], 4)}), "
        f"T_max {f['t_max'][0]:g}→{f['t_max'][1]:g} d (global peak {_f(f['model_t_peak'][0], 3)}→"
        f"{_f(f['model_t_peak'][1], 3)} d"
        + (f"; early peak {_f(f['model_first_peak_time'][0], 3)}→{_f(f['model_first_peak_time'][1], 3)} d, "
           f"window-end margin {_f(f['model_window_end_margin'][0], 3)}→{_f(f['model_window_end_margin'][1], 3)}"
           if "model_first_peak_time" in f else "") + ")" for f in flips) or "none"
    info = j["information"]["spatial"]
    top = "; ".join(f"{k}: {max(v['spearman'], key=lambda lat: abs(v['spearman'][lat])).removeprefix('theta_')} "
                    f"{_f(v['max_abs_spearman'], 2)}" for k, v in info.items())
    return [
        ("Resolution (2-D, largest relative change vs "
         f"{res['reference']['n_grid']}² Δt {res['reference']['dt']:g} over {res['n_patients']} patients)",
         f"{ladder}; default {res['default']['n_grid']}² Δt {res['default']['dt']:g} converged: "
         f"{_f(res['default_converged'])}, cheapest converged {res['cheapest_converged']}"),
        ("What changes at the default resolution (coarse→reference; the score behind it)", flip_text),
        (f"ORR / DCR over {j['n']} VIRTUAL patients (target 0.49 / 0.73)",
         f"spatial {_f(sp['orr'])} / {_f(sp['dcr'])} (RECIST {sp['recist']}); homogeneous ODE, same latents "
         f"{_f(ode['orr'])} / {_f(ode['dcr'])}"),
        ("Seconds per spatial patient (2 processes, wall)", _f(j["seconds"]["wall_per_patient_2_processes"], 2)),
        ("Uninformative observables (constant, or |ρ| < 0.1 with every latent)",
         f"spatial {j['uninformative']['spatial']}; homogeneous {j['uninformative']['homogeneous']}"),
        ("Most correlated latent per observable, spatial (|Spearman ρ|)", top),
    ]


def _spatial_resolution_3d(j: dict) -> list[tuple[str | None, str]]:
    res = j["resolution"]

    def others(s):  # every continuous observable but the largest
        ch = s["max_relative_change"]
        return max((v for k, v in ch.items() if k != max(ch, key=ch.get)), default=0.0)

    ladder = "; ".join(f"{s['n_grid']}³ Δt {s['dt']:g}: {_f(s['largest'], 3)} (largest: "
                       f"{max(s['max_relative_change'], key=s['max_relative_change'].get)}; every other observable "
                       f"≤ {_f(others(s), 3)}; global peak time {_f(s.get('global_peak_time_relative_change'), 3)}; "
                       f"{s['category_flips']} RECIST/CRS flip(s), {s.get('t_max_day_shifts', 0)} daily-T_max "
                       f"shift(s), {s.get('window_end_flips', '—')} window-end flip(s), "
                       f"{s['seconds_per_patient']:.1f} s per patient)" for s in res["settings"])
    flips = "; ".join(
        f"{s['n_grid']}³ Δt {s['dt']:g}: patient {f['patient']} daily T_max {f['t_max'][0]:g}→{f['t_max'][1]:g} d "
        f"(global peak {_f(f['model_t_peak'][0], 3)}→{_f(f['model_t_peak'][1], 3)} d"
        + (f"; early peak {_f(f['model_first_peak_time'][0], 3)}→{_f(f['model_first_peak_time'][1], 3)} d, "
           f"window-end margin {_f(f['model_window_end_margin'][0], 3)}→{_f(f['model_window_end_margin'][1], 3)}"
           if "model_first_peak_time" in f else "") + ")"
        for s in res["settings"] for f in s.get("flips", [])) or "none"
    two_part = "model_window_end_margin" in next(iter(res["settings"]))["max_relative_change"]
    return [(f"Largest change vs {res['reference']['n_grid']}³ Δt {res['reference']['dt']:g} over "
             f"{res['n_patients']} patients ({res['reference']['seconds_per_patient']:.0f} s per patient; relative, "
             "the window-end margin absolute in log units)", ladder),
            ("What flips (coarse→reference)", flips),
            ("Default 3-D grid", f"{res['default']['n_grid']}³ Δt {res['default']['dt']:g}: every continuous "
                                 f"observable < 5 % {_f(res['default_converged'])} "
                                 + ("(T_max as its two continuous parts)" if two_part else "(global peak time included)")
                                 + f"; cheapest such setting {res['cheapest_converged']}")]


def _spatial_emulator(j: dict) -> list[tuple[str | None, str]]:
    val = j.get("emulator_validation") or {}
    per_dose = []
    for cond, r in val.items():
        obs = {k: v for k, v in r.items() if isinstance(v, dict) and v.get("r2") is not None}  # constant: no R²
        worst = min(obs, key=lambda o: obs[o]["r2"]) if obs else None
        per_dose.append(f"{cond}: {r['n_train']}/{r['n_test']} runs, R² {_f(min(v['r2'] for v in obs.values()), 2)}–"
                        f"{_f(max(v['r2'] for v in obs.values()), 2)} (lowest {worst}), 90 % coverage "
                        f"{_f(min(v['coverage_90'] for v in obs.values()), 2)}–"
                        f"{_f(max(v['coverage_90'] for v in obs.values()), 2)}")
    at = j.get("emulator_at_posterior") or {}
    d = j["diagnostics"]
    rec = j["recovery"]
    return [
        ("Emulator on held-out PDE runs (per dose; the lowest-R² observable named)", "; ".join(per_dose) or "n/a"),
        ("Emulator error at posterior draws vs the true PDE (max |error| per observable over the doses, "
         f"{at.get('n_draws', 'n/a')} draws)",
         "; ".join(f"{o}: {_f(max(pc[o]['max_abs_error'] for pc in at['per_condition'].values()), 2)}"
                   for o in next(iter(at["per_condition"].values()))) if at.get("per_condition") else "n/a"),
        ("Event outputs: fraction of held-out runs / posterior draws on the true PDE's side (per dose)",
         "; ".join(f"{o}: held-out " + ", ".join(_f(r[o]["sign_agreement"], 2) for r in val.values() if o in r)
                   + "; at posterior " + ", ".join(_f(pc[o]["sign_agreement"], 2)
                                                   for pc in (at.get("per_condition") or {}).values() if o in pc)
                   for o in sorted({o for r in val.values() for o, v in r.items()
                                    if isinstance(v, dict) and "sign_agreement" in v})) or "none"),
        ("Population fit", f"R-hat {_f(d.get('rhat_max'))}, bulk ESS {_f(d.get('ess_bulk_min'))}, tail ESS "
                           f"{_f(d.get('ess_tail_min'))}, divergences {_f(d.get('divergences'))}"
                           + _first_attempt(j.get("diagnostics_first_attempt"), j.get("sampler"))),
        ("Latents recovered by the fitted patients' posteriors (R² / Spearman / 90 % coverage / contraction)",
         "; ".join(f"{k.removeprefix('theta_')}: {_f(v['r2'], 2)}/{_f(v['spearman'], 2)}/{_f(v['coverage_90'], 2)}/"
                   f"{_f(v['contraction'], 2)}" for k, v in rec.items())),
        ("Triage rule at posterior draws (emulator RMSE / fitted noise sd)",
         f"{_get(j, 'route.advice')}: " + "; ".join(f"{k} {_f(v, 2)}" for k, v in
                                                    (_get(j, 'route.surrogate_rmse_over_noise') or {}).items())),
        ("Emulator value + gradient, 37 patients (target ≤ 5 ms)",
         f"{_f(_get(j, 'emulator_value_grad.seconds'), 2)} s" if _get(j, "emulator_value_grad.seconds") is not None
         else _f(_get(j, "emulator_value_grad.error"))),
        ("Seconds (emulators, refinement, sampling, total; a refitted run's first attempt named)",
         ", ".join(f"{k.replace('_', ' ')} {_f(j['seconds'].get(k))}" for k in
                   [*(f"first_attempt_{k}" for k in ("emulators", "refinement", "sampling", "total")),
                    "emulators", "refinement", "sampling", "total"] if k in j["seconds"])),
    ]


def _first_attempt(first: dict | None, sampler: dict | None) -> str:
    """``; refitted: ...`` when the fit reported is a refit (:func:`immunocal.calib.workflow.run_converged`)."""
    if not first:
        return ""
    s = sampler or {}
    return (f"; refitted with {s.get('draws', 'n/a')} draws, {s.get('tune', 'n/a')} tuning steps, target_accept "
            f"{s.get('target_accept', 'n/a')} after a first attempt that missed the thresholds ("
            + "; ".join(first.get("violations") or ["n/a"]) + ")")


def _potency(j: dict) -> list[tuple[str | None, str]]:
    out = []
    for variant, v in (_get(j, "variants") or {}).items():
        t, tp = v.get("target") or {}, v.get("target_with_prior_dose") or {}
        ident = next(iter((v.get("target_identifiability") or {}).values()), {})
        dose = v.get("pdl1_dose") or {}
        out += [(f"{variant}: fitted {', '.join(a.removeprefix('MOC1_') for a in v.get('fit') or [])}",
                 f"diagnostics {_dict_line(v.get('diagnostics'))}"),
                (f"{variant}: anti-PD-1 dose per injection, posterior mean [5 %, 95 %]; contraction "
                 f"({v.get('route') or 'surrogate'} route); true-model change of the fitted arms' log volumes across "
                 "the dose box",
                 f"{_f(dose.get('mean'))} [{_f(dose.get('q05'))}, {_f(dose.get('q95'))}]; "
                 f"{_f(_get(v, 'contraction.pdl1_dose'), 2)}; "
                 f"{_dict_line(v.get('true_model_dose_sensitivity_of_fitted_arms'), 3)}"),
                (f"{variant}: {j.get('target')} tumour control observed / predicted (prediction prior-driven by); "
                 "predicted mice's resolution ladder, difference to the finest in noise sd",
                 f"{_f(t.get('observed_control_fraction'), 2)} / {_f(t.get('predicted_control_fraction'), 3)} "
                 f"({', '.join(ident.get('prior_driven_by') or []) or 'none flagged'}); "
                 f"{' → '.join(v.get('prediction_resolution') or []) or 'n/a'}: "
                 f"{_f(_get(v, 'prediction_numerics_over_noise.log_volume'), 3)}")]
        if tp:
            out.append((f"{variant}: the same with the dose from its prior (the true model's posterior of it)",
                        f"{_f(tp.get('predicted_control_fraction'), 3)}; coverage 50 % / 90 % "
                        f"{_f(tp.get('coverage_50'), 2)} / {_f(tp.get('coverage_90'), 2)}"))
    return out


# study -> (title, formatter(json) -> [(label, text)]; label None: a block as is, figures to show)
def _morisada_route_lines(j: dict) -> list[tuple[str, str]]:
    """The route of each Morisada fit (results of before the route entry carry the surrogate error alone)."""
    if _get(j, "route") is None:
        return [("surrogate vs true model at 40 posterior draws: max |error| (log)",
                 _dict_line(_get(j, "surrogate_at_posterior_max_abs_error")))]
    out = []
    for line, r in _get(j, "route").items():
        if r.get("route") == "exact":
            what = f"exact (true model, kernel tangents; {_f(r.get('gradient_seconds'), 3)} s per gradient)"
        else:
            what = f"surrogate (max |error| at posterior draws {_f(r.get('surrogate_max_abs_error'), 3)} log)"
        num = r.get("numerics_at_posterior_over_noise") or {}
        pred = r.get("prediction_numerics_over_noise") or {}
        out.append((f"{line}: route; resolution ladder (fit at posterior draws / predicted mice, noise sd); wall s",
                    f"{what}; {' → '.join(r.get('ladder') or [])}: {_f(num.get('log_volume'), 3)} / "
                    f"{_f(pred.get('log_volume'), 3)} (predictions at {r.get('prediction_resolution')}); "
                    f"{_f(r.get('seconds'), 4)}"))
    for line, c in (_get(j, "routes_compared") or {}).items():
        sur = c.get("surrogate_nuts") or {}
        if "failed" in sur:
            out.append((f"{line}: surrogate route (same model and sampler)", f"failed: {sur['failed']}"))
            continue
        pairs = "; ".join(f"{k}: {_f(v['mean_diff_in_sd'], 2)}, {_f(v['sd_ratio'], 3)}"
                          for k, v in (sur.get("parameters") or {}).items())
        out += [(f"{line}: surrogate NUTS vs exact NUTS (same model, priors, sampler), per parameter max |Δmean|/sd_exact, "
                 "median sd ratio; all within |Δmean| ≤ 0.2 sd, sd ±20 %", f"{pairs}; {_f(sur.get('all_pass'))}"),
                (f"{line}: surrogate route: diagnostics; max |error| at posterior draws (log); triage advice; wall s "
                 "exact / surrogate",
                 f"{_dict_line(_get(c, 'diagnostics.surrogate_nuts'))}; "
                 f"{_f(_get(c, 'surrogate_at_posterior.max_abs_error'), 3)}; "
                 f"{_get(c, 'route_advice.surrogate_nuts.advice')}; "
                 f"{_f(_get(c, 'wall_clock_s.exact_nuts.total'), 4)} / "
                 f"{_f(_get(c, 'wall_clock_s.surrogate_nuts.total'), 4)}"),
                (f"{line}: surrogate route: importance weights true model / surrogate at posterior draws: Pareto k, "
                 "sd of the log weights, relative ESS",
                 f"{_f(_get(c, 'surrogate_importance.pareto_k'), 3)}, "
                 f"{_f(_get(c, 'surrogate_importance.log_weight_sd'), 3)}, "
                 f"{_f(_get(c, 'surrogate_importance.relative_ess'), 2)}")]
    for line, c in (_get(j, "routes_compared") or {}).items():
        if isinstance(c.get("smc_true"), dict):  # an output written before the study ran SMC carries a sentence
            out.append(_smc_line(line, c["smc_true"]))
        elif c.get("smc_true"):
            out.append((f"{line}: SMC on the true model", c["smc_true"]))
    return out


SECTIONS = {
    "ct041_bayes_vs_lgbm": ("Headline — Bayesian personalisation vs seed 000's LightGBM mapping (virtual CT041 cohort)",
                            _bayes_vs_lgbm, ["ct041_bayes_vs_lgbm_scores.png", "ct041_bayes_vs_lgbm_sbc.png",
                                             "ct041_bayes_vs_lgbm_response.png"]),
    "ct041_bayes_vs_lgbm_spatial": (("The same head-to-head on the spatial virtual cohort (the PDE behind its "
                                     "emulator)"), _bayes_vs_lgbm,
                                    ["ct041_bayes_vs_lgbm_spatial_scores.png", "ct041_bayes_vs_lgbm_spatial_sbc.png",
                                     "ct041_bayes_vs_lgbm_spatial_response.png"]),
    "ct041_scaling": ("Scaling and robustness of the head-to-head: cohort size N = 37 / 200 / 1,000 and misspecified "
                      "Bayesian models (virtual CT041 cohorts)", _scaling, ["ct041_scaling.png"]),
    "identifiability": ("Identifiability — what the data of each shipped calibration can determine",
                        _identifiability, ["identifiability_cart.png"]),
    "cart_homogeneous": ("CAR-T homogeneous ODE (seed 001 Fig 3, normalised preset)",
                         lambda j: [("qualitative checks", _dict_line(_get(j, "checks")))],
                         ["cart_homogeneous.png"]),
    "cart_infiltration": ("CAR-T infiltration, no antigen escape (seed Fig 4)",
                          lambda j: [("qualitative checks", _dict_line(_get(j, "checks") or _get(j, "claims")))],
                          []),
    "cart_heterogeneity": ("CAR-T antigen heterogeneity (seed Figs 5–7; initial T_B fraction 0 / 0.2 / 0.5)",
                           lambda j: [("all SPEC §3.2 orderings hold", _f(_get(j, "all_hold"))),
                                      ("final burden", json.dumps(_get(j, "checks.final_burden"), default=str)),
                                      ("final T_B fraction",
                                       json.dumps(_get(j, "checks.final_tb_fraction"), default=str))],
                           ["cart_heterogeneity.png"]),
    "cart_microenvironment": ("CAR-T microenvironment (seed Figs 8–10)",
                              lambda j: [("qualitative checks", _dict_line(_get(j, "checks") or _get(j, "claims")))],
                              []),
    "cart_convergence": ("CAR-T observed convergence orders",
                         lambda j: [("time, seed scheme (backward-Euler diffusion)",
                                     _f(_get(j, "time_backward_euler.order"))),
                                    ("time, Crank–Nicolson diffusion", _f(_get(j, "time_crank_nicolson.order"))),
                                    ("space", _f(_get(j, "space.order")))], []),
    "rit_it_timing": ("RIT: anti-CTLA-4 timing with 8 Gy × 3 (seed Fig 6), population TCP",
                      lambda j: [("TCP", _dict_line(_get(j, "tcp"))), ("claims", _dict_line(_get(j, "claims")))],
                      ["rit_it_timing.png"]),
    "rit_fractionation": ("RIT: iso-BED fractionation ± anti-CTLA-4 (seed Fig 7)",
                          lambda j: [("doses (Gy)", _dict_line(_get(j, "doses_gy"), 4)),
                                     ("TCP with anti-CTLA-4", _dict_line(_get(j, "tcp_with_ctla4"))),
                                     ("TCP RT only", _dict_line(_get(j, "tcp_rt_only"))),
                                     ("claims", _dict_line(_get(j, "claims")))], ["rit_fractionation.png"]),
    "rit_dt_convergence": ("RIT: time-step convergence (seed Supp. Figs 4–5; default dt 0.05 d × 4 substeps)",
                           lambda j: [("max |V/V_ref − 1| at the default, every schedule / delay scan",
                                       f"{_f(_get(j, 'max_error_default'))} / "
                                       f"{_f(_get(j, 'delay_scan.max_error_default'))}"),
                                      ("same with one step of 0.05 d", f"{_f(_get(j, 'max_error_single_step_005'))}"
                                       f" / {_f(_get(j, 'delay_scan.max_error_single_step_005'))}"),
                                      ("observed order", _dict_line({k: v.get("order") for k, v in
                                                                     (_get(j, "cases") or {}).items()
                                                                     if v.get("order") is not None})),
                                      ("population TCP (2,5,8) by step h",
                                       _dict_line({k: v["tcp"] for k, v in
                                                   (_get(j, "tcp.by_step_2,5,8") or {}).items()})),
                                      ("claims", _dict_line(_get(j, "claims")))], ["rit_dt_convergence.png"]),
    "rit_dewan_fit": ("RIT: Bayesian fit to Dewan 2009 TSA (8 arms) and prediction of the IT-timing arms",
                      lambda j: [("configs", _f(", ".join(_get(j, "settings.configs") or []))),
                                 ("coverage of fitted arms by 90 % predictive", _f(_get(j, "fit_arms_coverage_90"))),
                                 ("coverage of held-out arms by 90 % predictive",
                                  _f(_get(j, "heldout_arms_coverage_90"))),
                                 ("identified (contraction ≥ 0.5)", _f(_get(j, "identified"))),
                                 ("LOO elpd / AICc, LQ + vascular damage",
                                  f"{_f(_get(j, 'variants.lq_vascular.information_criteria.loo_elpd'))} / "
                                  f"{_f(_get(j, 'variants.lq_vascular.information_criteria.aicc'))}"),
                                 ("LOO elpd / AICc, modified LQ",
                                  f"{_f(_get(j, 'variants.modified_lq.information_criteria.loo_elpd'))} / "
                                  f"{_f(_get(j, 'variants.modified_lq.information_criteria.aicc'))}"),
                                 ("diagnostics", _dict_line(_get(j, "diagnostics"))),
                                 ("diagnostics, modified LQ", _dict_line(_get(j, "variants.modified_lq.diagnostics"))),
                                 *_dewan_checks(j),
                                 ("below the ESS threshold (bulk ESS, contraction), LQ + vascular",
                                  "; ".join(f"{k}: {_f(v['ess_bulk'])}, {_f(v['contraction'], 2)}" for k, v in
                                            (_get(j, "variants.lq_vascular.slow_mixing.parameters") or {}).items())
                                  or "none"),
                                 *_dewan_routes(j)],
                      ["dewan_fit_lq_vascular.png", "dewan_heldout_lq_vascular.png"]),
    "rit_morisada_hierarchical": ("RIT: per-mouse hierarchical fit to Morisada 2018, held-out combination arms",
                                  lambda j: [("configs", _dict_line(_get(j, "settings.configs"))),
                                             ("held-out coverage 50 % / 90 %",
                                              f"{_f(_get(j, 'heldout_coverage_50'))} / "
                                              f"{_f(_get(j, 'heldout_coverage_90'))}"),
                                             ("diagnostics", _dict_line(_get(j, "diagnostics"))),
                                             ("tumour control (observed vs predicted)",
                                              json.dumps(_get(j, "tumour_control"))),
                                             *_morisada_route_lines(j),
                                             ("paper finding reproduced",
                                              _f(_get(j, "paper_finding.reproduced")))],
                                  ["morisada_MOC1_heldout.png"]),
    "dln_trex1": ("DLN: 8 Gy × 3 vs 20 Gy × 1 with anti-CTLA-4 (seed Fig 4)",
                  lambda j: [("primary day 30 (mm³)", _dict_line(_get(j, "primary_day30"))),
                             ("distant day 30 (mm³)", _dict_line(_get(j, "distant_day30")))], ["dln_trex1.png"]),
    "dln_irradiation": ("DLN: tumour vs tumour + DLN irradiation (seed Figs 5–6)",
                        lambda j: [("distant day 30 (mm³)", _dict_line(_get(j, "distant_day30")))], []),
    "dln_exhaustion": ("DLN: exhaustion arms (seed Fig 3)",
                       lambda j: [("volume day 30 (mm³)", _dict_line(_get(j, "volume_day30")))], []),
    "dln_abscopal_pd1": ("DLN: RT ± anti-PD-1, abscopal (seed Fig 2)",
                         lambda j: [("distant day 30 (mm³)", _dict_line(_get(j, "distant_day30")))], []),
    "dln_generalisation": ("DLN: calibrate on control + monotherapy, predict combinations",
                           lambda j: [("least squares over replicates (seed protocol)", _dict_line(_get(j, "summary"))),
                                      ("Bayesian, config route (true model, exact gradients, NUTS): held-out "
                                       "coverage 50 % / 90 %",
                                       f"{_f(_get(j, 'bayesian.prediction.heldout.coverage_50'))} / "
                                       f"{_f(_get(j, 'bayesian.prediction.heldout.coverage_90'))}"),
                                      ("Bayesian: truth inside the 90 % interval (fraction of parameters)",
                                       _f(_get(j, "bayesian.truth_inside_90_fraction"))),
                                      ("Bayesian: test RMSE (log) of the posterior-median prediction vs truth",
                                       _f(_get(j, "bayesian.test_rmse_log_posterior_median"))),
                                      ("Bayesian: diagnostics", _dict_line(_get(j, "bayesian.diagnostics"))),
                                      ("Same posterior by black-box SMC: max |Δ mean| / sd; sd ratio NUTS/SMC",
                                       f"{_f(_get(j, 'bayesian.smc_blackbox.max_abs_mean_difference_over_sd'))}; "
                                       + "–".join(_f(v) for v in _get(j, "bayesian.smc_blackbox.sd_ratio_range") or [])),
                                      ("Seconds: NUTS (exact gradients) / SMC (black box)",
                                       f"{_get(j, 'bayesian.seconds.total')} / "
                                       f"{_get(j, 'bayesian.smc_blackbox.seconds.total')}")],
                           ["dln_generalisation.png"]),
    "cart_conte_invitro": ("CAR-T model on real killing kinetics (Conte 2025, PBT030 + IL13Rα2 CAR-T, held-out E:T "
                           "ratios)", _conte, ["cart_conte_invitro_fit_1to10_1to50_heldout.png",
                                               "cart_conte_invitro.png"]),
    "rit_morisada_potency": ("RIT: MOC1 anti-PD-1 + 8 Gy × 2 from the monotherapy arms vs leave-one-combination-out "
                             "(anti-PD-1 dose calibrated)", _potency, []),
    "rit_treatment_free_immunity": ("RIT: can the model represent anti-PD-1 alone? (Morisada MOC1 / MC38; ρ on a log "
                                    "scale)", _treatment_free, ["rit_treatment_free_immunity.png"]),
    "dln_dewan_abscopal": ("DLN model on real primary + abscopal tumours (Dewan 2009 TSA, held-out folders 3–4)",
                           _dln_dewan, ["dln_dewan_abscopal.png"]),
    "ct041_spatial_cohort": ("Virtual CT041-like cohort simulated by the spatial PDE (boundary-layer infusion; "
                             "θ_inf → D_C, χ0)", _spatial_cohort, ["ct041_spatial_cohort.png"]),
    "ct041_spatial_resolution_3d": ("Spatial cohort in 3-D: is the default 24³ grid converged?", _spatial_resolution_3d,
                                    ["ct041_spatial_resolution_3d.png"]),
    "ct041_spatial_emulator": ("Spatial CAR-T model in a calibration: PDE emulator of the VIRTUAL spatial cohort "
                               "(N = 37) and the latents it recovers", _spatial_emulator,
                               ["ct041_spatial_emulator.png"]),
    "ct041_lgbm": ("Virtual CT041-like cohort: LightGBM nested-CV baseline (seed 000 Table 2)",
                   lambda j: [("per latent ρ/MAE/RMSE/R², virtual N = 37 (seed 000 Table 2 in brackets)",
                               "; ".join(f"{k}: {_f(v['virtual']['spearman'], 2)}/{_f(v['virtual']['mae'], 2)}/"
                                         f"{_f(v['virtual']['rmse'], 2)}/{_f(v['virtual']['r2'], 2)} "
                                         f"({v['seed000']['spearman']}/{v['seed000']['mae']}/{v['seed000']['rmse']}/"
                                         f"{v['seed000']['r2']})" for k, v in (_get(j, "table2") or {}).items())),
                              ("per latent ρ/MAE/RMSE/R², SPATIAL cohort N = 37 (PDE forward model, same latents)",
                               "; ".join(f"{k}: {_f(v['spatial']['spearman'], 2)}/{_f(v['spatial']['mae'], 2)}/"
                                         f"{_f(v['spatial']['rmse'], 2)}/{_f(v['spatial']['r2'], 2)}"
                                         for k, v in (_get(j, "table2") or {}).items() if "spatial" in v)
                               or "not run"),
                              ("R² rank best→worst (virtual)",
                               _f(_get(j, "pattern_virtual.r2_rank_best_to_worst"))),
                              ("R² rank best→worst (spatial)", _f(_get(j, "spatial.pattern.r2_rank_best_to_worst"))),
                              ("R² rank best→worst (seed 000)",
                               _f(_get(j, "pattern_seed000.r2_rank_best_to_worst"))),
                              ("ORR / DCR AUROC", f"{_f(_get(j, 'binary.orr.auroc'))} / "
                                                  f"{_f(_get(j, 'binary.dcr.auroc'))}")],
                   ["table2_comparison.png"]),
}


def _previous_sections(block: str) -> tuple[dict[str, str], dict[str, str]]:
    """The study sections (by study name) and benchmark lines (by command) of an earlier generated block."""
    sections: dict[str, str] = {}
    benches: dict[str, str] = {}
    name, buf = None, []
    for line in block.splitlines():
        m = _SECTION.match(line)
        if m or line.startswith("**Benchmarks**") or line.startswith("Not run for this report") \
                or line.startswith("Carried over from an earlier report"):
            if name is not None:
                sections[name] = "\n".join(buf).strip("\n")
            name, buf = (m.group(1), [line]) if m else (None, [])
            continue
        if name is not None:
            buf.append(line)
        b = _BENCH.match(line)
        if b:
            benches[b.group(1)] = line
    if name is not None:
        sections[name] = "\n".join(buf).strip("\n")
    return sections, benches


_SECTION = re.compile(r"^\*\*.*\*\* \(`immunocal study ([A-Za-z0-9_]+)`\)$")
_BENCH = re.compile(r"^- `(immunocal bench[^`]*)`: ")


def render(results: Path, figures_dir: Path, readme_dir: Path, previous: str = "",
           archive: Path | None = None) -> str:
    lines = [START, "", f"_Generated by `immunocal report --results {results}` from the studies' JSON; "
             "do not edit by hand._", ""]
    missing, carried = [], []
    old_sections, old_benches = _previous_sections(previous)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name, (title, fmt, figs) in SECTIONS.items():
        path = results / f"{name}.json"
        if not path.exists() and archive is not None and (archive / f"{name}.json").exists():
            path = archive / f"{name}.json"
        if not path.exists():
            if name in old_sections:
                carried.append(name)
                lines.extend([old_sections[name], ""])
            else:
                missing.append(name)
            continue
        j = json.loads(path.read_text())
        lines.append(f"**{title}** (`immunocal study {name}`)")
        lines.append("")
        for label, text in fmt(j):
            if label is None:  # a paragraph or table of its own
                lines.extend([text, ""] if lines[-1] == "" else ["", text, ""])
            else:
                lines.append(f"- {label}: {text}")
        for fig in figs:
            src = path.parent / fig
            if src.exists():
                shutil.copyfile(src, figures_dir / fig)
            if (figures_dir / fig).exists():
                rel = os.path.relpath(figures_dir / fig, readme_dir)
                lines.append("")
                lines.append(f"![{name}]({Path(rel).as_posix()})")
        lines.append("")
    bench_lines = dict(old_benches)
    for b in sorted({p.name: p for d in (archive, results) if d is not None for p in d.glob("bench_*.json")}.values(),
                    key=lambda p: p.name):
        rec = json.loads(b.read_text())
        cmd = rec.pop("_command", b.stem)
        bench_lines[cmd] = f"- `{cmd}`: `{json.dumps(rec)}`"
    if bench_lines:
        lines.append("**Benchmarks** (each line: the command, then the JSON it printed on this 2-core machine class)")
        lines.append("")
        lines.extend(bench_lines[c] for c in sorted(bench_lines))
        lines.append("")
    if carried:
        lines.append("Carried over from an earlier report (their JSON was not kept; rerun to refresh): "
                     + ", ".join(f"`{m}`" for m in carried) + ".")
        lines.append("")
    if missing:
        lines.append("Not run for this report: " + ", ".join(f"`{m}`" for m in missing) + ".")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def archive_results(results: Path, archive: Path, max_bytes: int = 2_000_000) -> list[str]:
    """Copy each known study's JSON and each benchmark JSON from ``results`` into ``archive`` (atomically); a JSON
    over ``max_bytes`` is an error (the repository keeps no large artefacts)."""
    archive.mkdir(parents=True, exist_ok=True)
    done = []
    if results.resolve() == archive.resolve():
        return done
    for src in [results / f"{n}.json" for n in SECTIONS] + sorted(results.glob("bench_*.json")):
        if not src.exists():
            continue
        if src.stat().st_size > max_bytes:
            raise ValueError(f"{src}: {src.stat().st_size} bytes, over the {max_bytes}-byte limit for an archived "
                             "study result; make the study write its bulk data to a separate file")
        tmp = archive / (src.name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(archive / src.name)
        done.append(src.name)
    return done


def update_readme(results: str | Path, readme: str | Path = "README.md", figures: str | Path = "docs/figures",
                  archive: str | Path | None = None) -> Path:
    results, readme = Path(results), Path(readme)
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: missing the markers {START} … {END}")
    head, rest = text.split(START, 1)
    previous, tail = rest.split(END, 1)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder {results} does not exist")
    archive = readme.resolve().parent / "results" if archive is None else Path(archive)
    archive_results(results, archive)
    block = render(results, Path(figures).resolve(), readme.resolve().parent, previous, archive)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(head + block + tail)
    tmp.replace(readme)
    return readme
