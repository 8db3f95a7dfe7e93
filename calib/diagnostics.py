"""Posterior diagnostics with known reference behaviour.

* :func:`sbc_ranks` / :func:`uniformity_test` — simulation-based calibration (Talts et al. 2018): rank of the true
  value among L thinned posterior draws, uniform on {0..L} when the inference is calibrated; chi-square test on
  binned ranks.
* :func:`interval_coverage` — fraction of truths inside central 50 %/90 % posterior intervals.
* :func:`crps_ensemble` — continuous ranked probability score of a sample (Gneiting & Raftery 2007, eq. 21):
  ``E|X − y| − ½ E|X − X'|``.
* :func:`contraction_zscores` — posterior contraction ``1 − var_post/var_prior`` and z-score
  ``(mean_post − truth)/sd_post`` (Schad et al. 2021).
* :func:`ppc_bands` — posterior predictive quantile bands over data rows and the fraction of data inside them.
* :func:`profile_likelihood` — profile of a log-likelihood over one parameter, maximising over the others (with
  random restarts); :func:`immunocal.calib.identify.classify_profile` classifies it and checks its quality.
* Sobol indices: :func:`immunocal.calib.identify.sobol` (``scipy.stats.sobol_indices``, bootstrap intervals).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize, stats


def sbc_rank(truth: float, draws: np.ndarray) -> int:
    """Number of posterior draws strictly below the true value (ties broken at random would not matter for
    continuous posteriors)."""
    return int(np.sum(np.asarray(draws) < truth))


def uniformity_test(ranks: np.ndarray, n_draws: int, n_bins: int = 10) -> dict:
    """Chi-square test that ranks in ``{0..n_draws}`` are uniform; returns statistic, p-value and the histogram."""
    ranks = np.asarray(ranks)
    edges = np.linspace(0, n_draws + 1, n_bins + 1)
    hist, _ = np.histogram(ranks, bins=edges)
    expected = len(ranks) * np.diff(edges) / (n_draws + 1)
    chi2 = float(((hist - expected) ** 2 / expected).sum())
    return {"chi2": chi2, "dof": n_bins - 1, "p_value": float(stats.chi2.sf(chi2, n_bins - 1)),
            "histogram": hist.tolist(), "n": len(ranks)}


def sbc(simulate_prior: Callable[[np.random.Generator], tuple[dict, object]],
        fit: Callable[[object, int], dict], n_replicates: int, n_draws: int, rng: np.random.Generator,
        n_bins: int = 10) -> dict:
    """Run SBC: ``simulate_prior(rng) -> (truth{name: value}, data)``; ``fit(data, seed) -> {name: draws}``.
    Draws are thinned to ``n_draws`` (equally spaced). Returns ranks and a uniformity test per parameter."""
    ranks: dict[str, list[int]] = {}
    for i in range(n_replicates):
        truth, data = simulate_prior(rng)
        post = fit(data, int(rng.integers(2**31)))
        for name, value in truth.items():
            d = np.asarray(post[name]).ravel()
            d = d[np.linspace(0, len(d) - 1, n_draws).astype(int)]
            ranks.setdefault(name, []).append(sbc_rank(value, d))
    return {name: {"ranks": r, **uniformity_test(np.array(r), n_draws, n_bins)} for name, r in ranks.items()}


def interval_coverage(truth: np.ndarray, draws: np.ndarray, levels=(0.5, 0.9)) -> dict:
    """``draws`` has shape ``(n_samples, n_items)``; returns coverage of central intervals per level."""
    truth = np.asarray(truth, float)
    draws = np.asarray(draws, float)
    out = {}
    for lev in levels:
        lo, hi = np.quantile(draws, [0.5 - lev / 2, 0.5 + lev / 2], axis=0)
        out[f"coverage_{int(round(lev * 100))}"] = float(np.mean((truth >= lo) & (truth <= hi)))
    return out


def crps_ensemble(y: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """CRPS of each item: ``draws`` shape ``(n_samples, n_items)``, ``y`` shape ``(n_items,)``. Uses the sorted-sample
    identity ``E|X − X'| = 2/m² Σ_i (2i − m − 1) x_(i)`` (O(m log m))."""
    x = np.sort(np.asarray(draws, float), axis=0)
    m = x.shape[0]
    y = np.asarray(y, float)
    term1 = np.mean(np.abs(x - y[None, ...]), axis=0)
    i = np.arange(1, m + 1).reshape((-1,) + (1,) * (x.ndim - 1))
    term2 = (2.0 / m**2) * np.sum((2 * i - m - 1) * x, axis=0)
    return term1 - 0.5 * term2


def contraction_zscores(truth, post_draws, prior_sd) -> dict:
    post_draws = np.asarray(post_draws, float)
    mean, sd = post_draws.mean(0), post_draws.std(0, ddof=1)
    return {"contraction": (1 - sd**2 / np.asarray(prior_sd, float) ** 2).tolist(),
            "zscore": ((mean - np.asarray(truth, float)) / sd).tolist()}


def ppc_bands(y_obs: np.ndarray, y_pred: np.ndarray, levels=(0.5, 0.9)) -> dict:
    """Quantile bands of posterior predictive draws ``(n_samples, n_rows)`` and fraction of data inside."""
    out = {"median": np.median(y_pred, 0).tolist()}
    for lev in levels:
        lo, hi = np.quantile(y_pred, [0.5 - lev / 2, 0.5 + lev / 2], axis=0)
        k = int(round(lev * 100))
        out[f"lower_{k}"], out[f"upper_{k}"] = lo.tolist(), hi.tolist()
        out[f"fraction_inside_{k}"] = float(np.mean((y_obs >= lo) & (y_obs <= hi)))
    return out


def profile_likelihood(loglik: Callable[[np.ndarray], float], x0: np.ndarray, index: int, grid: np.ndarray,
                       bounds=None, restarts: int = 0, seed: int = 0,
                       gradient: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Profile ``loglik`` over parameter ``index`` on ``grid``, maximising over the other parameters (L-BFGS-B from
    the previous optimum, plus ``restarts`` random starts per point — uniform in ``bounds``, or around the previous
    optimum without bounds — keeping the best). Returns the profile and the 95 % likelihood-ratio interval
    (Δ = χ²₁(0.95)/2); :func:`immunocal.calib.identify.classify_profile` says what it shows and whether it is trustworthy."""
    x0 = np.asarray(x0, float)
    others = [j for j in range(len(x0)) if j != index]
    b_others = None if bounds is None else [bounds[j] for j in others]
    rng = np.random.default_rng(seed)
    prof, path = [], []
    start = x0[others]
    for g in grid:
        def nll(z, g=g):
            x = x0.copy()
            x[index] = g
            x[others] = z
            return -loglik(x)

        def nll_grad(z, g=g):
            x = x0.copy()
            x[index] = g
            x[others] = z
            return -np.asarray(gradient(x), float)[others]
        if others:
            starts = [start]
            for _ in range(restarts):
                if b_others is not None:
                    lo, hi = np.array(b_others, float).T
                    starts.append(rng.uniform(lo, hi))
                else:
                    starts.append(start + rng.normal(size=len(start)) * np.maximum(1.0, np.abs(start)))
            best = min((optimize.minimize(nll, s0, method="L-BFGS-B", bounds=b_others,
                                          jac=nll_grad if gradient is not None else None) for s0 in starts),
                       key=lambda r: r.fun)
            start, val = best.x, -best.fun
        else:
            val = -nll(np.zeros(0))
        prof.append(val)
        x = x0.copy()
        x[index] = g
        x[others] = start
        path.append(x)
    prof = np.asarray(prof)
    thr = prof.max() - stats.chi2.ppf(0.95, 1) / 2
    inside = np.asarray(grid)[prof >= thr]
    return {"grid": np.asarray(grid).tolist(), "profile": prof.tolist(), "path": np.asarray(path).tolist(),
            "max": float(prof.max()),
            "argmax": float(np.asarray(grid)[int(np.argmax(prof))]),
            "ci95": [float(inside.min()), float(inside.max())] if len(inside) else None,
            "ci_touches_grid_edge": bool(len(inside) and (inside.min() == grid[0] or inside.max() == grid[-1]))}


def profile_likelihood_emulator(emulator, y: np.ndarray, sigma: float, index: int, grid: np.ndarray,
                                x0: np.ndarray, bounds=None) -> dict:
    """Profile likelihood through an emulator (``predict(theta) -> (mean, var)``) for one subject whose data ``y``
    (shape ``(n_obs, n_times)``, NaN = missing) sit on the emulator grid, with Gaussian noise ``sigma`` plus the
    emulator variance. Cheap enough to scan identifiability of every parameter of a surrogate."""
    y = np.asarray(y, float)
    ok = np.isfinite(y)

    def loglik(x):
        mean, var = emulator.predict(np.asarray(x, float)[None, :])
        sd = np.sqrt(sigma**2 + var[0])
        return float(stats.norm.logpdf(y[ok], mean[0][ok], sd[ok]).sum())

    return profile_likelihood(loglik, x0, index, grid, bounds)


def posterior_contraction(idata, priors: dict, n_prior: int = 20000, seed: int = 0) -> dict:
    """Contraction ``1 − var_post / var_prior`` per scalar parameter, in the prior's link space where it has one
    (bounded logit-normal: the scale's ``g``), from prior draws of each :class:`priors.Prior` — near 1: the data
    identify it; near 0: the posterior is the prior."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, prior in priors.items():
        if n not in idata.posterior:
            continue
        g = getattr(prior, "_g", lambda x: np.asarray(x, float))
        prior_draws = g(prior.sample(rng, n_prior))
        post_draws = g(idata.posterior[n].values.ravel())
        out[n] = float(1.0 - post_draws.var() / prior_draws.var())
    return out


def total_log_likelihood(idata):
    """Each draw's log-likelihood summed over every observed row of every observable (the ``log_likelihood``
    group), as a (chain, draw) DataArray."""
    ll = idata.log_likelihood
    return sum(ll[v].sum(dim=[d for d in ll[v].dims if d not in ("chain", "draw")]) for v in ll.data_vars)


def log_likelihood_shift(idata, reference) -> dict:
    """Where two samples of the same posterior sit: the mean and sd of each one's total log-likelihood per draw
    (:func:`total_log_likelihood`) and the difference of the means in units of the reference's sd. Two correct
    samplers draw the same distribution of log-likelihoods; a shift of several sds says one of them has not reached
    the posterior's typical set (e.g. a particle sampler whose moves did not mix)."""
    a, b = np.ravel(total_log_likelihood(idata).values), np.ravel(total_log_likelihood(reference).values)
    return {"mean": float(a.mean()), "sd": float(a.std()), "reference_mean": float(b.mean()),
            "reference_sd": float(b.std()), "shift_in_reference_sd": float((a.mean() - b.mean()) / b.std())}


def information_criteria(idata, n_parameters: int | None = None) -> dict:
    """PSIS-LOO (ArviZ; every observed row, censored ones included) and the AICc at the best draw's log-likelihood
    (seed 002 eq 27; ``n_parameters`` counts the noise scale too; ``None`` — a hierarchical model, whose parameter
    count is not defined — gives no AICc). Needs a ``log_likelihood`` group."""
    import arviz as az

    from immunocal.forward.rit.analysis import aicc

    ll = idata.log_likelihood
    var = list(ll.data_vars)
    total = total_log_likelihood(idata)
    n_data = int(sum(np.prod([ll[v].sizes[d] for d in ll[v].dims if d not in ("chain", "draw")]) for v in var))
    best = float(total.max())
    import warnings

    with warnings.catch_warnings():  # ArviZ's k̂ > 0.7 warning: reported in the result (pareto_k_above_0_7), not printed
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto distribution")
        loo = az.loo(idata, var_name=var[0]) if len(var) == 1 else None
    return {"loo_elpd": float(loo.elpd_loo) if loo is not None else None,
            "loo_se": float(loo.se) if loo is not None else None,
            "p_loo": float(loo.p_loo) if loo is not None else None,
            "pareto_k_max": float(np.max(loo.pareto_k.values)) if loo is not None else None,
            "pareto_k_above_0_7": int(np.sum(loo.pareto_k.values > 0.7)) if loo is not None else None,
            "aicc": aicc(best, n_parameters, n_data) if n_parameters is not None else None, "k": n_parameters, "n_data": n_data,
            "max_log_likelihood": best}


def posterior_agreement(posterior, reference, names, mean_tol: float = 0.2, sd_tol: float = 0.2) -> dict:
    """Two posteriors of the same model side by side (e.g. NUTS on a surrogate vs on the true model, or NUTS vs SMC):
    per parameter the largest ``|Δ mean| / sd_reference`` and the range of ``sd / sd_reference`` over its elements
    (a per-subject parameter has one per subject), and whether both are within tolerance (``|Δ mean| <= mean_tol
    sd``, ``|sd ratio - 1| <= sd_tol``). ``posterior`` / ``reference``: InferenceData posterior groups (draws over
    ``chain`` and ``draw``)."""
    rows, ok = {}, True
    for n in names:
        a, b = posterior[n], reference[n]
        dims = ("chain", "draw")
        sd_ref = np.asarray(b.std(dims).values, float)
        dz = np.abs(np.asarray(a.mean(dims).values, float) - np.asarray(b.mean(dims).values, float)) / sd_ref
        ratio = np.asarray(a.std(dims).values, float) / sd_ref
        row = {"mean": float(np.mean(a.values)), "reference_mean": float(np.mean(b.values)),
               "sd": float(np.mean(a.std(dims).values)), "reference_sd": float(np.mean(sd_ref)),
               "mean_diff_in_sd": float(np.max(dz)), "sd_ratio": float(np.median(ratio)),
               "sd_ratio_range": [float(np.min(ratio)), float(np.max(ratio))], "elements": int(dz.size)}
        row["pass"] = bool(row["mean_diff_in_sd"] <= mean_tol and np.all(np.abs(ratio - 1.0) <= sd_tol))
        rows[n] = row
        ok = ok and row["pass"]
    return {"criteria": f"|mean diff| <= {mean_tol:g} sd_reference, |sd ratio - 1| <= {sd_tol:g}",
            "parameters": rows, "all_pass": ok}


#: the exact route's cost budget: one value + gradient of every fitted unit in at most this many seconds keeps a NUTS
#: fit (2 chains x 2000 iterations at ~30 leapfrog steps) within ~2 hours on one core per chain
EXACT_GRADIENT_BUDGET_S = 0.1


#: PSIS reliability threshold of the importance weights true model / surrogate (Vehtari et al. 2024, k̂ <= 0.7)
PARETO_K_MAX = 0.7
#: the route advice that moves a fit off its surrogate (:func:`route_advice`): the workflow warns, the reports count
LEAVE_SURROGATE = ("escalate_to_exact", "refine_or_blackbox")


def importance_by_observable(log_weights: dict) -> dict:
    """Which observables break an importance check: ``log_weights`` ``{observable: (draws,)}`` the per-draw log
    weights each observable's rows contribute (log-likelihood under the target minus under the proposal); for each,
    the Pareto k̂ its weights would have on their own (PSIS, ArviZ ``psislw``) and their sd. Weights equal over the
    draws (the two likelihoods agree up to a constant) are k̂ 0 — PSIS returns inf for a constant."""
    import arviz as az

    out = {}
    for o, v in log_weights.items():
        v = np.asarray(v, float)
        flat = bool(np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())))
        out[o] = {"pareto_k": 0.0 if flat else float(az.psislw(v - v.max())[1]), "log_weight_sd": float(v.std())}
    return out


def route_advice(route: str, exact_available: bool, surrogate_rmse: dict | None = None,
                 noise_sd: dict | None = None, gradient_seconds: float | None = None,
                 budget_s: float = EXACT_GRADIENT_BUDGET_S, pareto_k: float | None = None,
                 pareto_k_by_observable: dict | None = None) -> dict:
    """The workflow's triage rule between likelihood routes (docs/calib.md "Which route").

    - ``exact`` (the true model with exact gradients) whenever the forward model has them and one value + gradient
      of all fitted units costs at most ``budget_s``: no emulator error at all;
    - ``surrogate`` for expensive models; after the fit, **escalate** when the surrogate's RMSE at posterior draws
      exceeds the fitted observation noise sd of any observable (the emulator's error then dominates the likelihood),
      or when the importance weights true model / surrogate at posterior draws have Pareto k̂ above
      :data:`PARETO_K_MAX` (``pareto_k``: the surrogate posterior does not represent the true one — an error inside
      the noise, systematic over hundreds of rows, moves a posterior by many sds) — to ``exact`` when available,
      else to more refinement rounds or the black-box model with SMC;
    - ``blackbox`` (SMC on the true model): nothing to check.

    ``surrogate_rmse`` / ``noise_sd``: per observable; ``pareto_k_by_observable``: each observable's log weights
    alone (:meth:`immunocal.calib.workflow.Calibration.surrogate_importance`), the ones above :data:`PARETO_K_MAX`
    named in the reason. Returns ``{"route", "advice", "reason", ...}`` with advice
    ``keep``, ``escalate_to_exact``, ``refine_or_blackbox`` or ``surrogate_cheaper``."""
    out: dict = {"route": route, "exact_available": bool(exact_available)}
    escalate = "escalate_to_exact" if exact_available else "refine_or_blackbox"
    fix = "set [emulator] kind = \"exact\"" if exact_available else \
        "add [refinement] rounds or use kind = \"blackbox\" with SMC"
    ratio = {}
    if route == "surrogate" and surrogate_rmse and noise_sd:  # recorded even when the weights already escalate
        ratio = {o: float(surrogate_rmse[o] / noise_sd[o]) for o in surrogate_rmse if o in noise_sd and noise_sd[o] > 0}
        out["surrogate_rmse_over_noise"] = ratio
    if route == "surrogate" and pareto_k is not None:
        out["pareto_k"] = float(pareto_k)
        if pareto_k_by_observable:
            out["pareto_k_by_observable"] = {o: float(k) for o, k in pareto_k_by_observable.items()}
        if not pareto_k <= PARETO_K_MAX:  # nan (weights not computable) escalates too
            culprits = sorted(((o, k) for o, k in (pareto_k_by_observable or {}).items() if not k <= PARETO_K_MAX),
                              key=lambda ok: -ok[1] if np.isfinite(ok[1]) else -np.inf)
            out["advice"] = escalate
            out["reason"] = (f"the importance weights true model / surrogate at posterior draws have Pareto k "
                             f"{pareto_k:.2f} > {PARETO_K_MAX}: the surrogate posterior does not represent the true "
                             f"model's" + (" (on their own above the limit: " + ", ".join(
                                 f"{o} {k:.2f}" for o, k in culprits) + ")" if culprits else "") + f"; {fix}")
            return out
    if route == "surrogate" and surrogate_rmse and noise_sd:
        bad = sorted(o for o, r in ratio.items() if r > 1.0)
        if bad:
            out["advice"] = escalate
            out["reason"] = (f"the surrogate's RMSE at posterior draws exceeds the fitted noise sd for {bad} "
                             f"(ratio {max(ratio[o] for o in bad):.2f}): its error dominates the likelihood; {fix}")
            return out
        out["advice"] = "keep"
        out["reason"] = "surrogate RMSE at posterior draws below the noise sd of every observable" + (
            f" and importance weights true model / surrogate reliable (Pareto k {pareto_k:.2f})"
            if pareto_k is not None else "")
        return out
    if route == "exact" and gradient_seconds is not None:
        out["gradient_seconds"] = float(gradient_seconds)
        if gradient_seconds > budget_s:
            out["advice"] = "surrogate_cheaper"
            out["reason"] = (f"one value + gradient of all fitted units costs {gradient_seconds:.3g} s > "
                             f"{budget_s:g} s: NUTS on the true model is slow; a surrogate (validated at posterior "
                             "draws) may be cheaper")
            return out
    out["advice"] = "keep"
    out["reason"] = "no rule applies" if route not in ("exact", "surrogate") else "within the route's rule"
    return out


def subject_posteriors(idata, latent, levels=(0.05, 0.25, 0.5, 0.75, 0.95)) -> dict:
    """Per subject and latent parameter: posterior mean, sd and quantiles (``{"subjects": {s: {name: {...}}}}``),
    and R-hat / bulk ESS over the latents when several NUTS chains were run."""
    import arviz as az

    post = idata.posterior
    out: dict = {"subjects": {}}
    flat = {n: post[n].stack(k=("chain", "draw")).values for n in latent}  # (subjects, samples)
    for i, s in enumerate(post.coords["subject"].values.tolist()):
        out["subjects"][s] = {n: {"mean": float(flat[n][i].mean()), "sd": float(flat[n][i].std()),
                                  **{f"q{int(q * 100):02d}": float(np.quantile(flat[n][i], q)) for q in levels}}
                              for n in latent}
    if post.sizes["chain"] > 1 and post.attrs.get("inference_method") in ("nuts", None):
        out["rhat_max"] = float(max(az.rhat(post[latent]).max().to_array()))
        out["ess_bulk_min"] = float(min(az.ess(post[latent]).min().to_array()))
    if "importance" in idata.groups():  # immunocal.calib.personalise.importance_posterior: Pareto k̂ and ESS per subject
        imp = idata.importance
        k, ess = imp["pareto_k"].values, imp["ess_importance"].values
        subjects = imp.coords["subject"].values.tolist()
        out["pareto_k_max"], out["ess_importance_min"] = float(k.max()), float(ess.min())
        for s, ks, es in zip(subjects, k, ess):
            out["subjects"][s]["importance"] = {"pareto_k": float(ks), "ess": float(es)}
        out["failures"] = [f"{s}: Pareto k̂ {ks:.2f} > {imp.attrs['khat_max']} (importance weights unreliable)"
                           for s, ks in zip(subjects, k) if ks > imp.attrs["khat_max"]]
    return out
