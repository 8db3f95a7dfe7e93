"""Identifiability: what the data can and cannot determine — local (sensitivities, Fisher information and its poorly
determined directions named in words), global (Sobol indices with bootstrap intervals, by ``scipy.stats``; Morris screening of every registry parameter for
models with many) and
profiles (:func:`immunocal.calib.diagnostics.profile_likelihood`, classified here).

Known answers (tests): Sobol indices of the Ishigami function; a linear-Gaussian profile equal to its analytic
interval; a model in which only the product of two parameters is identifiable is reported as such — a flat profile,
a zero Fisher eigenvalue along the named direction ``log a − log b``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np


def fisher_information(jacobian: np.ndarray, sd) -> np.ndarray:
    """Fisher information ``Jᵀ diag(1/sd²) J`` of independent Gaussian observations with sensitivities ``jacobian``
    ``(n_obs, n_par)`` and noise sd ``sd`` (scalar or per observation)."""
    J = np.asarray(jacobian, float)
    w = np.broadcast_to(1.0 / np.square(np.asarray(sd, float)), (J.shape[0],))
    return J.T @ (w[:, None] * J)


def describe_direction(names: Sequence[str], vector: np.ndarray, tol: float = 0.1) -> str:
    """A parameter combination in words, e.g. ``"0.71·log a − 0.71·log b"`` (components below ``tol`` of the
    largest are left out; the sign is fixed so the largest component is positive)."""
    v = np.asarray(vector, float)
    v = v * np.sign(v[np.argmax(np.abs(v))])
    terms = []
    for n, c in zip(names, v):
        if abs(c) >= tol * np.abs(v).max():
            sign = "−" if c < 0 else "+"
            terms.append(f"{sign} {abs(c):.2f}·{n}")
    text = " ".join(terms)
    return text[2:] if text.startswith("+ ") else "−" + text[2:]


def local_identifiability(jacobian: np.ndarray, sd, names: Sequence[str], rel_tol: float = 1e-6) -> dict:
    """Fisher information of the sensitivities ``jacobian`` (columns: ``names``, in the parameters' scale — e.g.
    log for rates), its eigen-spectrum (largest first), each eigenvalue relative to the largest, and the poorly
    determined directions (relative eigenvalue below ``rel_tol``) named in words. Standard errors from the inverse
    where the information is not singular."""
    F = fisher_information(jacobian, sd)
    vals, vecs = np.linalg.eigh(F)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    top = vals[0] if vals[0] > 0 else 1.0
    rel = vals / top
    weak = [{"eigenvalue": float(vals[k]), "relative": float(rel[k]),
             "direction": describe_direction(names, vecs[:, k]),
             "vector": dict(zip(names, map(float, vecs[:, k])))}
            for k in range(len(vals)) if rel[k] < rel_tol]
    out = {"names": list(names), "fisher": F.tolist(), "eigenvalues": vals.tolist(), "relative": rel.tolist(),
           "condition_number": float(vals[0] / vals[-1]) if vals[-1] > 0 else float("inf"),
           "poorly_determined": weak, "identifiable_locally": not weak}
    if not weak:
        out["standard_errors"] = dict(zip(names, np.sqrt(np.diag(np.linalg.inv(F))).tolist()))
    return out


def finite_difference_jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rel_step: float = 1e-5,
                               abs_step: float = 1e-7, lower=None, upper=None) -> np.ndarray:
    """Central differences of a vector function ``f`` (``(p,) -> (m,)``) at ``x``: ``(m, p)``. For models without
    exact sensitivities (the exact ones come from a simulator's ``simulate_jacobian``). Where a step would leave
    ``[lower, upper]`` (a parameter on its admissible bound: the model refuses the value), the second-order
    one-sided three-point formula inward."""
    x = np.asarray(x, float)
    lo = np.full(len(x), -np.inf) if lower is None else np.asarray(lower, float)
    hi = np.full(len(x), np.inf) if upper is None else np.asarray(upper, float)
    cols = []
    for j in range(len(x)):
        h = max(abs(x[j]) * rel_step, abs_step)
        if x[j] - h >= lo[j] and x[j] + h <= hi[j]:
            up, down = x.copy(), x.copy()
            up[j] += h
            down[j] -= h
            cols.append((np.asarray(f(up), float) - np.asarray(f(down), float)) / (2 * h))
            continue
        sign = 1.0 if x[j] - h < lo[j] else -1.0  # step away from the bound it sits on
        one, two = x.copy(), x.copy()
        one[j] += sign * h
        two[j] += sign * 2 * h
        cols.append(sign * (-3 * np.asarray(f(x), float) + 4 * np.asarray(f(one), float)
                            - np.asarray(f(two), float)) / (2 * h))
    return np.column_stack(cols)


def sobol(f: Callable[[np.ndarray], np.ndarray], space, n: int = 4096, seed: int = 0, confidence: float = 0.95,
          n_resamples: int = 200) -> dict:
    """First-order and total Sobol indices of ``f`` over ``space`` (a :class:`immunocal.calib.design.ParameterSpace`, sampled
    uniformly in its own scales) by ``scipy.stats.sobol_indices`` (Saltelli 2010 estimators), with bootstrap
    confidence intervals (BCa; NaN where an index has no spread over the resamples, e.g. a parameter without any
    effect on an output). ``f`` maps ``(k, d)`` parameter rows to ``(k,)`` or ``(k, s)`` outputs (each output — an
    observable at a time — gets its own indices). ``n``: a power of two; cost ``n·(d + 2)`` evaluations."""
    from scipy import stats

    if n & (n - 1):
        raise ValueError(f"n must be a power of two for Sobol' sampling, got {n}")
    d = space.dim

    def unit_func(u: np.ndarray) -> np.ndarray:  # scipy's layout: (d, k) in, (s, k) out
        y = np.asarray(f(space.from_unit(u.T)), float)
        return y[None, :] if y.ndim == 1 else y.T

    res = stats.sobol_indices(func=unit_func, n=n, dists=[stats.uniform(0, 1)] * d,
                              rng=np.random.default_rng(seed))
    with warnings.catch_warnings():  # an index with no spread over the resamples (a parameter without any effect
        # on an output: all zero) has no BCa interval; scipy warns and returns NaN, which is what the report shows
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        boot = res.bootstrap(confidence_level=confidence, n_resamples=n_resamples)
    s1, st = np.atleast_2d(res.first_order), np.atleast_2d(res.total_order)
    return {"names": list(space.names), "S1": s1.tolist(), "ST": st.tolist(),
            "S1_ci": [np.atleast_2d(boot.first_order.confidence_interval.low).tolist(),
                      np.atleast_2d(boot.first_order.confidence_interval.high).tolist()],
            "ST_ci": [np.atleast_2d(boot.total_order.confidence_interval.low).tolist(),
                      np.atleast_2d(boot.total_order.confidence_interval.high).tolist()],
            "confidence": confidence, "n_evaluations": int(n * (d + 2))}


def morris(f: Callable[[np.ndarray], np.ndarray], space, r: int = 20, levels: int = 4, seed: int = 0) -> dict:
    """Morris elementary-effects screening of ``f`` over ``space`` (sampled in its own scales, like :func:`sobol`) —
    for models with too many parameters for Sobol indices (the DLN model: 76). ``r`` one-at-a-time trajectories on
    a ``levels``-level grid of the unit cube (Morris 1991): each starts at a random grid point and moves every
    parameter once, in random order, by Δ = levels / (2 (levels − 1)) (down where up would leave the cube). Per
    parameter and output: μ (mean elementary effect, in output units per full box width), μ* (mean |effect|:
    the importance ranking, Campolongo et al. 2007) and σ (sd: interaction or non-linearity). ``f`` maps ``(k, d)``
    rows to ``(k,)`` or ``(k, s)``; all ``r (d + 1)`` rows are evaluated in one call."""
    if levels < 2 or r < 2:
        raise ValueError(f"Morris screening needs levels >= 2 and r >= 2, got levels={levels}, r={r}")
    d = space.dim
    rng = np.random.default_rng(seed)
    delta = levels / (2.0 * (levels - 1))
    grid = np.arange(levels) / (levels - 1)
    U = np.empty((r, d + 1, d))
    order = np.argsort(rng.random((r, d)), axis=1)  # the order in which each trajectory moves the parameters
    U[:, 0] = rng.choice(grid, size=(r, d))
    step = np.where(U[:, 0] + delta <= 1.0 + 1e-12, delta, -delta)  # (r, d): up unless that leaves the cube
    for k in range(d):
        U[:, k + 1] = U[:, k]
        j = order[:, k]
        U[np.arange(r), k + 1, j] += step[np.arange(r), j]
    Y = np.asarray(f(space.from_unit(U.reshape(-1, d))), float)
    Y = Y.reshape(r, d + 1, -1)
    effects = np.empty((r, d, Y.shape[2]))
    for k in range(d):
        j = order[:, k]
        effects[np.arange(r), j] = (Y[:, k + 1] - Y[:, k]) / step[np.arange(r), j][:, None]
    # an effect whose ends did not both simulate (non-finite output) is left out of that output's statistics, counted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN statistics, reported as such
        stats = {"mu": np.nanmean(effects, axis=0).T.tolist(), "mu_star": np.nanmean(np.abs(effects), axis=0).T.tolist(),
                 "sigma": np.nanstd(effects, axis=0, ddof=1).T.tolist()}
    return {"names": list(space.names), **stats, "non_finite_effects": int((~np.isfinite(effects)).sum()),
            "r": r, "levels": levels, "delta": delta, "n_evaluations": int(r * (d + 1))}


def screening(cal, r: int = 20, factor: float = 2.0, levels: int = 4, seed: int = 0) -> dict:
    """Morris screening (:func:`morris`) of EVERY free parameter of the config's registry model — not only the
    calibrated ones — on the fitted conditions' data rows: which parameters matter for these data at all (the DLN
    model has 76). Each parameter varies over its preset value × [1/``factor``, ``factor``] (log scale) within its
    admissible range; one with preset value 0 has no such box and is listed as not screened. The forward model is
    the config's own with every screened parameter as an input. Per fitted condition μ* is averaged over its data
    rows (output units per box width, on a log scale: per factor ``factor**2``); the ranking averages the
    conditions, and ``negligible`` lists parameters whose μ* is below 1 % of the largest."""
    from immunocal.priors import registry

    from .design import ParameterSpace
    from .forward_api import load_forward_model

    model = cal.cfg["model"]
    reg_model, preset = model.get("registry_model"), model.get("preset") or "default"
    if not reg_model:
        raise ValueError(f"{cal.cfg['_path']}: screening needs [model] registry_model (the parameters and their "
                         "values come from the registry)")
    reg = registry()
    values = reg.parameter_set(reg_model, preset)
    names, lo, hi, not_screened = [], [], [], {}
    for n in reg.free_parameters(reg_model, preset):
        v = float(values[n])
        a, b = reg.record(reg_model, n).bounds_for(preset)
        low, high = max(min(v / factor, v * factor), a), min(max(v / factor, v * factor), b)
        if v <= 0 or not low < high:
            not_screened[n] = "preset value 0: no box around it" if v == 0 else "no room inside the admissible range"
            continue
        names.append(n)
        lo.append(low)
        hi.append(high)
    space = ParameterSpace(tuple(names), tuple(lo), tuple(hi), ("log",) * len(names))
    fm = load_forward_model(model["forward"], **{**model.get("options", {}), "parameter_names": names})
    fit, _ = cal.conditions
    per_condition = {}
    for cond in fit:
        rows = _condition_rows(cal, cond)
        if not rows:
            continue
        schedule = cal.schedule(cond)

        def outputs(X, schedule=schedule, rows=rows):
            Y = np.asarray(fm.simulate(X, schedule), float)
            return np.column_stack([Y[:, o, t] for o, t in rows])

        res = morris(outputs, space, r=r, levels=levels, seed=seed)
        per_condition[cond] = {"mu_star_mean_over_rows": dict(zip(names, np.nanmean(res["mu_star"], axis=0).tolist())),
                               "sigma_mean_over_rows": dict(zip(names, np.nanmean(res["sigma"], axis=0).tolist())),
                               "non_finite_effects": res["non_finite_effects"], "n_evaluations": res["n_evaluations"]}
    overall = {n: float(np.mean([pc["mu_star_mean_over_rows"][n] for pc in per_condition.values()])) for n in names}
    ranking = sorted(overall, key=lambda n: -overall[n])
    top = overall[ranking[0]] if ranking else 0.0
    return {"parameters": len(names), "factor": factor, "r": r, "levels": levels, "per_condition": per_condition,
            "mu_star": overall, "ranking": ranking, "negligible": [n for n in ranking if overall[n] < 0.01 * top],
            "calibrated": list(cal.problem.free), "not_screened": not_screened,
            "n_evaluations": int(sum(pc["n_evaluations"] for pc in per_condition.values()))}


def classify_profile(profile: dict, optimum: float | None = None, threshold: float | None = None,
                     smooth_tol: float = 0.5, tol: float = 1e-3) -> dict:
    """What a profile (:func:`immunocal.calib.diagnostics.profile_likelihood`) says: ``"identifiable"`` (the likelihood-ratio
    interval closes inside the scanned range on both sides), ``"one-sided"`` (closes on one side only) or ``"flat"``
    (drops less than the threshold everywhere in the range: the data do not determine it there); and its quality —
    ``"non-monotone"`` (moving away from the maximum the profile rises again by more than ``smooth_tol`` log-units:
    an inner optimisation lost the optimum, or a second mode), and against ``optimum`` (the log-likelihood of the
    global fit), ``"above-optimum"`` (the profile exceeds it: the global fit was not the optimum) or
    ``"below-optimum"`` (the profile never reaches it: the profile's own optimisations did not converge)."""
    from scipy import stats

    thr = stats.chi2.ppf(0.95, 1) / 2 if threshold is None else threshold
    prof = np.asarray(profile["profile"], float)
    top = int(np.argmax(prof))
    drop = prof.max() - prof
    left_closed, right_closed = bool(np.any(drop[:top] > thr)), bool(np.any(drop[top:] > thr))
    kind = ("identifiable" if left_closed and right_closed else
            "one-sided" if left_closed or right_closed else "flat")
    quality = []
    rises = np.concatenate([np.diff(prof[: top + 1])[::-1] * -1, np.diff(prof[top:])])  # steps moving outward
    if len(rises) and rises.max() > smooth_tol:
        quality.append("non-monotone")
    if optimum is not None and prof.max() > optimum + tol:
        quality.append("above-optimum")
    if optimum is not None and prof.max() < optimum - tol:
        quality.append("below-optimum")
    return {"kind": kind, "drop_max": float(drop.max()), "threshold": float(thr), "quality": quality or ["ok"]}


# ---------------------------------------------------------------------------------------------------- a config's report
def _box_in_scale(space) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is-log mask, lower, upper) of a design box in each parameter's own scale (log bounds for log scales)."""
    log = np.array([sc == "log" for sc in space.scales])
    lower, upper = np.asarray(space.lower, float), np.asarray(space.upper, float)
    return log, np.where(log, np.log(np.where(log, lower, 1.0)), lower), \
        np.where(log, np.log(np.where(log, upper, 1.0)), upper)


def nominal_point(cal) -> np.ndarray:
    """The calibrated parameters' nominal values: the registry preset's where the config has one (and the value
    lies in the design box), else the box centre in each parameter's scale (geometric for log scales)."""
    prob = cal.problem
    space = prob.space
    reg_model, preset = cal.cfg["model"].get("registry_model"), cal.cfg["model"].get("preset")
    values = {}
    if reg_model:
        from immunocal.priors import registry

        ps = registry().parameter_set(reg_model, preset or "default")
        values = {n: ps[n] for n in prob.free if n in ps}
    out = []
    for j, n in enumerate(prob.free):
        lo, hi = space.lower[j], space.upper[j]
        v = values.get(n)
        if v is None or not lo <= v <= hi:
            v = float(np.sqrt(lo * hi)) if space.scales[j] == "log" else 0.5 * (lo + hi)
        out.append(v)
    return np.array(out)


def _condition_rows(cal, condition: str) -> list[tuple[int, int]]:
    """(observable index, output-time index) of the fitted data rows of ``condition`` on the forward model's grid."""
    data, fm = cal.data, cal.forward
    pairs = set()
    for obs, t in zip(data.observable[data.condition == condition], data.time[data.condition == condition]):
        if obs in fm.observables:
            pairs.add((list(fm.observables).index(obs), int(np.argmin(np.abs(np.asarray(fm.times) - t)))))
    return sorted(pairs)


JACOBIANS = ("exact", "central")


def _jacobian(cal, theta: np.ndarray, condition: str, method: str = "exact") -> np.ndarray:
    """d outputs / d (parameters in their scale) at ``theta`` (free parameters), ``(n_obs, n_times, n_free)``: exact
    when the simulator has ``simulate_jacobian`` and ``method`` is "exact", else central differences of
    ``simulate``."""
    if method not in JACOBIANS:
        raise ValueError(f"jacobian must be one of {JACOBIANS}, got {method!r}")
    prob, fm = cal.problem, cal.forward
    cond = cal.schedule(condition)
    idx = [list(prob.model_names).index(n) for n in prob.free]
    x = prob.full_vector(theta[None, :])
    if method == "exact" and hasattr(fm, "simulate_jacobian"):
        _, jac = fm.simulate_jacobian(x, cond)
        J = np.asarray(jac, float)[0][..., idx]
    else:
        shape = np.asarray(fm.simulate(x, cond)).shape[1:]
        J = finite_difference_jacobian(lambda z: np.asarray(fm.simulate(prob.full_vector(z[None, :]), cond),
                                                              float).ravel(), theta, lower=prob.space.lower,
                                       upper=prob.space.upper).reshape(*shape, len(theta))
    log = np.array([s == "log" for s in prob.space.scales])
    return np.where(log, J * theta, J)  # d y / d log θ for log-scaled parameters


def fitted_arms_sensitivity(cal, name: str, n_draws: int = 20) -> dict:
    """What the **true** model says the fitted arms can know about parameter ``name`` after a run: per fitted arm, the
    largest change of a subject's simulated outputs on its data days when ``name`` goes from one end of its design
    box to the other, at ``n_draws`` posterior draws of that subject's other parameters. 0 exactly: the likelihood
    does not depend on ``name``, its posterior is its prior — whatever contraction an emulator's posterior shows."""
    post = cal.idata.posterior.stack(s=("chain", "draw"))
    pick = np.linspace(0, post.sizes["s"] - 1, n_draws).astype(int)
    free, data, space = list(cal.problem.free), cal.data, cal.problem.space
    j = free.index(name)
    ends = (space.lower[j], space.upper[j])
    grid = np.asarray(cal.forward.times, float)
    out = {}
    for cond in cal.conditions[0]:
        sel = data.condition == cond
        idx = np.searchsorted(grid, np.unique(data.time[sel]))
        X = np.array([[float(post[n].sel(subject=subj).values[k]) if "subject" in post[n].dims
                       else float(post[n].values[k]) for n in free]
                      for subj in np.unique(data.subject[sel]) for k in pick])
        y = []
        for v in ends:
            X[:, j] = v
            y.append(np.asarray(cal.forward.simulate(cal.problem.full_vector(X), cal.schedule(cond)), float))
        out[cond] = float(np.max(np.abs(y[1] - y[0])[..., idx]))
    return out


def posterior_point(cal, idata) -> np.ndarray:
    """The calibrated parameters' posterior medians (a per-subject parameter: pooled over its subjects)."""
    post = idata.posterior
    missing = [n for n in cal.problem.free if n not in post]
    if missing:
        raise ValueError(f"the run's posterior has no {missing}: is it a run of this config?")
    return np.array([float(np.median(post[n].values)) for n in cal.problem.free])


def bayesian_section(cal, idata, strong: float = 0.8) -> dict:
    """From a calibration run: prior→posterior contraction of each population parameter and latent location
    (:func:`immunocal.calib.diagnostics.posterior_contraction`), and the posterior correlations among them (pairs with
    ``|r| ≥ strong`` listed: combinations the data determine while the parts stay uncertain)."""
    from .diagnostics import posterior_contraction

    priors = cal.priors()
    post = idata.posterior
    scalars = [n for n in priors if n in post and post[n].ndim == 2]
    draws = np.column_stack([post[n].values.ravel() for n in scalars]) if scalars else np.zeros((0, 0))
    corr = np.corrcoef(draws, rowvar=False) if len(scalars) > 1 else np.ones((len(scalars), len(scalars)))
    pairs = [{"a": scalars[i], "b": scalars[j], "r": float(corr[i, j])} for i in range(len(scalars))
             for j in range(i + 1, len(scalars)) if abs(corr[i, j]) >= strong]
    return {"contraction": posterior_contraction(idata, priors), "parameters": scalars,
            "correlation": np.atleast_2d(corr).tolist(), "strongly_correlated": pairs}


def pooled_likelihood(cal):
    """The pooled model's log-likelihood of the fitted rows on the true forward model as a function of the calibrated
    parameters in their scales (log for log-scaled ones): every fitted subject shares them, Gaussian noise of unknown
    sd concentrated out, log L = −n/2 · log(RSS/n), censored rows left out; rows at the nearest output time. Returns
    ``(loglik, gradient, n_rows, (log mask, lower, upper))`` — ``gradient`` exact (the simulator's
    ``simulate_jacobian``: d log L / du = (n / RSS) Σ r · d sim / du) or None."""
    prob, fm, data = cal.problem, cal.forward, cal.data
    log, lo, hi = _box_in_scale(prob.space)
    fit, _ = cal.conditions
    exact = data.censoring == "none"
    per_cond = []
    for cond in fit:
        m = (data.condition == cond) & exact & np.isin(data.observable, list(fm.observables))
        if m.any():
            o_idx = np.array([list(fm.observables).index(o) for o in data.observable[m]])
            t_idx = np.array([int(np.argmin(np.abs(np.asarray(fm.times) - t))) for t in data.time[m]])
            per_cond.append((cal.schedule(cond), o_idx, t_idx, data.value[m]))
    n = sum(len(v) for *_, v in per_cond)

    def loglik(u):
        x = prob.full_vector(np.where(log, np.exp(u), u)[None, :])
        rss = 0.0
        for sched, o_idx, t_idx, y in per_cond:
            sim = np.asarray(fm.simulate(x, sched), float)[0]
            r = y - sim[o_idx, t_idx]
            if not np.all(np.isfinite(r)):
                return -1e12
            rss += float(r @ r)
        return -0.5 * n * np.log(max(rss, 1e-300) / n)

    gradient = None
    if hasattr(fm, "simulate_jacobian"):  # exact: d loglik / du = (n / RSS) Σ r · d sim / du
        free_cols = [list(prob.model_names).index(f) for f in prob.free]

        def gradient(u):
            theta = np.where(log, np.exp(u), u)
            x = prob.full_vector(theta[None, :])
            rss, g = 0.0, np.zeros(len(u))
            for sched, o_idx, t_idx, y in per_cond:
                sim, jac = fm.simulate_jacobian(x, sched)
                r = y - np.asarray(sim, float)[0][o_idx, t_idx]
                J = np.asarray(jac, float)[0][o_idx, t_idx][:, free_cols] * np.where(log, theta, 1.0)
                if not (np.all(np.isfinite(r)) and np.all(np.isfinite(J))):
                    return np.zeros(len(u))
                rss += float(r @ r)
                g += r @ J
            return n / max(rss, 1e-300) * g

    return loglik, gradient, n, (log, lo, hi)


def profiles(cal, n_grid: int = 21, restarts: int = 2, seed: int = 0) -> dict:
    """Profile likelihoods of the calibrated parameters on the true forward model, every fitted subject sharing them
    (the pooled model — what the data determine before any hierarchy), Gaussian noise of unknown sd concentrated out
    (log L = −n/2 · log(RSS/n)); censored rows are left out (counted). Each parameter is scanned over its design box
    in its own scale, the others re-optimised (L-BFGS-B with the exact gradient when the simulator has
    ``simulate_jacobian``, else finite differences; ``restarts`` random starts, :func:`immunocal.calib.diagnostics.
    profile_likelihood`) and the profile classified against the global fit (:func:`classify_profile`)."""
    from scipy import optimize

    from .diagnostics import profile_likelihood

    prob, data = cal.problem, cal.data
    space = prob.space
    fit, _ = cal.conditions
    exact = data.censoring == "none"
    loglik, gradient, n, (log, lo, hi) = pooled_likelihood(cal)
    rng = np.random.default_rng(seed)
    bounds = list(zip(lo, hi))
    best = None
    for u0 in [0.5 * (lo + hi), *rng.uniform(lo, hi, size=(max(restarts, 1) * 2, len(lo)))]:
        res = optimize.minimize(lambda u: -loglik(u), u0, method="L-BFGS-B", bounds=bounds,
                                jac=(lambda u: -gradient(u)) if gradient is not None else None)
        if best is None or res.fun < best.fun:
            best = res
    out = {"n_rows": int(n), "censored_rows_left_out": int((~exact & np.isin(data.condition, fit)).sum()),
           "optimum": dict(zip(prob.free, np.where(log, np.exp(best.x), best.x).tolist())),
           "max_log_likelihood": float(-best.fun), "parameters": {}}
    points = [(best.x, float(-best.fun))]  # (parameters in scale, profile log-likelihood): the prediction profiles'
    for j, name in enumerate(prob.free):
        # the box, the optimum itself and a finer band around it (a sharp profile is resolved, and reaches the
        # optimum's value, which the quality check compares against)
        near = best.x[j] + np.linspace(-0.5, 0.5, 11) * (hi[j] - lo[j]) / 10
        grid = np.unique(np.clip(np.concatenate([np.linspace(lo[j], hi[j], n_grid), near, [best.x[j]]]),
                                 lo[j], hi[j]))
        prof = profile_likelihood(loglik, best.x, j, grid, bounds=bounds, restarts=restarts, seed=seed + j,
                                  gradient=gradient)
        cls = classify_profile(prof, optimum=float(-best.fun))
        ci = likelihood_interval(grid, np.asarray(prof["profile"]), cls["threshold"])
        out["parameters"][name] = {
            "scale": space.scales[j], "grid": prof["grid"], "profile": prof["profile"], **cls,
            "ci95": None if ci is None else (np.exp(ci).tolist() if log[j] else list(ci)),
            "ci95_open": None if ci is None else [bool(ci[0] <= grid[0]), bool(ci[1] >= grid[-1])]}
        points.extend(zip(prof["path"], prof["profile"]))
    out["predictions"] = prediction_profiles(cal, points, float(-best.fun), lo, hi, log,
                                             {n: v["kind"] for n, v in out["parameters"].items()})
    return out


def prediction_profiles(cal, points, optimum: float, lo, hi, log, kinds: dict[str, str]) -> dict:
    """Prediction profiles of the held-out conditions from the parameter profiles: every profile point (the other
    parameters re-optimised) is a parameter set with its profile log-likelihood; the held-out arm's output at each
    of its data days is evaluated there, and its 95 % interval is the range over the points within χ²₁(0.95)/2 of
    the optimum — an inner bound of the exact prediction profile (which maximises the likelihood at each fixed
    prediction; the parameter profiles' paths are where the likelihood ridges run, so the two agree when one
    parameter drives the prediction). ``box_driven`` names the parameters that sit on an edge of the design box at
    an end of the interval while their own profile is not identifiable: that end is set by the prior box, not by
    the data. ``observed_median``: the held-out rows' median (exact rows), and whether the interval holds it. A
    held-out arm without rows has no days to report and is left out."""
    from scipy import stats

    prob, fm = cal.problem, cal.forward
    data, _ = cal.tables  # every row (the held-out arms' included), observables transformed as fitted
    _, held = cal.conditions
    thr = stats.chi2.ppf(0.95, 1) / 2
    U = np.array([u for u, _ in points])
    ll = np.array([v for _, v in points])
    keep = ll >= optimum - thr
    if not held or not keep.any():
        return {}
    U, ll = U[keep], ll[keep]
    X = prob.full_vector(np.where(log, np.exp(U), U))
    edge = (np.isclose(U, lo, rtol=0, atol=1e-9 * (hi - lo)) | np.isclose(U, hi, rtol=0, atol=1e-9 * (hi - lo)))
    out = {}
    for cond in held:
        rows = (data.condition == cond) & np.isin(data.observable, list(fm.observables))
        if not rows.any():
            continue
        Y = np.asarray(fm.simulate(X, cal.schedule(cond)), float)  # (points, observables, times)
        out[cond] = {}
        for obs in dict.fromkeys(data.observable[rows]):
            o = list(fm.observables).index(obs)
            entries = []
            for day in sorted(set(data.time[rows & (data.observable == obs)].tolist())):
                t = int(np.argmin(np.abs(np.asarray(fm.times) - day)))
                q = Y[:, o, t]
                ok = np.isfinite(q)
                if not ok.any():
                    continue
                i_lo, i_hi = np.flatnonzero(ok)[np.argmin(q[ok])], np.flatnonzero(ok)[np.argmax(q[ok])]
                driven = sorted({prob.free[j] for i in (i_lo, i_hi) for j in np.flatnonzero(edge[i])
                                 if kinds.get(prob.free[j]) != "identifiable"})
                exact = rows & (data.observable == obs) & (data.time == day) & (data.censoring == "none")
                med = float(np.median(data.value[exact])) if exact.any() else None
                entries.append({"day": float(day), "interval": [float(q[i_lo]), float(q[i_hi])],
                                "at_optimum": float(q[int(np.argmax(ll))]), "box_driven": driven,
                                "observed_median": med,
                                "observed_inside": None if med is None else bool(q[i_lo] <= med <= q[i_hi])})
            out[cond][obs] = entries
    return out


def likelihood_interval(grid: np.ndarray, profile: np.ndarray, threshold: float) -> tuple[float, float] | None:
    """The likelihood-ratio interval of a profile: where it lies within ``threshold`` of its maximum, the ends
    found by linear interpolation between grid points (an end that does not close inside the grid is the grid's
    edge)."""
    drop = profile.max() - profile
    inside = np.flatnonzero(drop <= threshold)
    if not len(inside):
        return None
    a, b = inside.min(), inside.max()

    def cross(i_in, i_out):
        d0, d1 = drop[i_in], drop[i_out]
        return float(grid[i_in] + (threshold - d0) / (d1 - d0) * (grid[i_out] - grid[i_in]))

    left = cross(a, a - 1) if a > 0 else float(grid[0])
    right = cross(b, b + 1) if b < len(grid) - 1 else float(grid[-1])
    return left, right


def measure_next(cal, noise_sd: float, n_draws: int = 8, top: int = 5, seed: int = 0,
                 jacobian: str = "exact") -> dict:
    """What to measure next: for each calibrated parameter, the single additional observation — an observable at a
    day of the model's grid, in any condition of the conditions table (fitted, held out or not yet used) — that most
    increases its expected contraction, ranked. Linearised expected information gain averaged over ``n_draws``
    parameter sets drawn uniformly from the design box (in each parameter's scale): with F the Fisher information of
    the fitted data rows and P a prior precision (box width / 4 as sd), adding an observation with sensitivities j
    shrinks the variance of parameter i by ``1 − [(F + P + j jᵀ/σ²)⁻¹]_ii / [(F + P)⁻¹]_ii``."""
    prob, fm = cal.problem, cal.forward
    log, lo, hi = _box_in_scale(prob.space)
    P = np.diag(1.0 / ((hi - lo) / 4.0) ** 2)
    fit, held = cal.conditions
    meas, conds = cal.tables
    # candidates: the config's arms, then any other arm of the conditions table with a schedule of its own (an arm of
    # another cell line with the same schedule is the same experiment for this model: not listed twice)
    candidates = list(dict.fromkeys([*fit, *held]))

    def key(c):
        return tuple(sorted((k, str(v)) for k, v in (cal.schedule(c) or {}).items() if k != "description"))

    seen = {key(c) for c in candidates}
    for c in sorted(conds.schedules if conds else ()):
        if key(c) not in seen:
            candidates.append(c)
            seen.add(key(c))
    grid = np.asarray(fm.times, float)
    overall = (float(cal.data.time.min()), float(cal.data.time.max()))

    def days_of(c):  # the days an arm was (or, without data, the fitted arms were) measured on: no day after its end
        t = meas.time[meas.condition == c]
        lo_d, hi_d = (float(t.min()), float(t.max())) if len(t) else overall
        return np.flatnonzero((grid >= lo_d) & (grid <= hi_d))
    rng = np.random.default_rng(seed)
    d = len(prob.free)
    gains = {}  # (condition, observable index, time index) -> (d,) summed over draws
    fit_rows = {c: _condition_rows(cal, c) for c in fit}  # the data do not change between draws
    for u in rng.uniform(lo, hi, size=(n_draws, d)):
        theta = np.where(log, np.exp(u), u)
        F = np.zeros((d, d))
        jac = {c: _jacobian(cal, theta, c, jacobian) for c in candidates}
        for c in fit:
            rows = fit_rows[c]
            J = np.array([jac[c][o, t] for o, t in rows]) if rows else np.zeros((0, d))
            F += np.nan_to_num(J).T @ np.nan_to_num(J) / noise_sd**2
        base = np.diag(np.linalg.inv(F + P))
        for c in candidates:
            J = np.nan_to_num(jac[c])
            for o in range(J.shape[0]):
                for t in days_of(c):
                    j = J[o, t]
                    A = F + P + np.outer(j, j) / noise_sd**2
                    key = (c, o, int(t))
                    gains[key] = gains.get(key, 0.0) + (1.0 - np.diag(np.linalg.inv(A)) / base)
    out = {"noise_sd": noise_sd, "n_draws": n_draws, "candidate_conditions": candidates, "per_parameter": {},
           "days": "each arm's own measured days (an arm without data: the fitted data's range)"}
    for i, name in enumerate(prob.free):
        ranked = sorted(gains.items(), key=lambda kv: -kv[1][i])[:top]
        out["per_parameter"][name] = [{"condition": c, "observable": fm.observables[o], "day": float(grid[t]),
                                       "fitted_condition": c in fit, "heldout_condition": c in held,
                                       "expected_contraction_gain": float(g[i] / n_draws)}
                                      for (c, o, t), g in ranked]
    return out


def identify(cal, theta: np.ndarray | None = None, n_sobol: int = 512, seed: int = 0,
             rel_tol: float = 1e-6, idata=None, with_profiles: bool = True, screen_r: int = 0,
             sbc_replicates: int = 0, jacobian: str = "exact") -> dict:
    """The identifiability report of a calibration config, one subject per fitted condition: at ``theta`` (default
    :func:`nominal_point`), each condition's sensitivities of its data rows to the calibrated parameters, the Fisher
    information of each condition and of all together (unit noise: directions and relative sizes; scale by the
    noise variance for standard errors) with the poorly determined directions named, and per condition and
    observable the Sobol indices over the design box, averaged over the data times (the forward model itself).
    ``jacobian``: "exact" (the simulator's ``simulate_jacobian`` when it has one) or "central" (central differences of
    ``simulate`` — e.g. where the tangent kernel's first compile would cost more than the report)."""
    prob, fm = cal.problem, cal.forward
    if theta is None:
        theta = posterior_point(cal, idata) if idata is not None else nominal_point(cal)
    theta = np.asarray(theta, float)
    labels = [f"log {n}" if s == "log" else n for n, s in zip(prob.free, prob.space.scales)]
    fit, _ = cal.conditions
    blocks, per_condition = [], {}
    fit_rows = {c: _condition_rows(cal, c) for c in fit}
    for cond in fit:
        rows = fit_rows[cond]
        if not rows:
            continue
        J = _jacobian(cal, theta, cond, jacobian)
        Jc = np.array([J[o, t] for o, t in rows])
        blocks.append(Jc)
        per_condition[cond] = {"rows": len(rows), **{k: v for k, v in local_identifiability(
            Jc, 1.0, labels, rel_tol).items() if k != "fisher"},
            "sensitivity_rms": dict(zip(labels, np.sqrt(np.mean(Jc**2, axis=0)).tolist()))}
    pooled = local_identifiability(np.vstack(blocks), 1.0, labels, rel_tol) if blocks else None
    prof = profiles(cal, seed=seed) if with_profiles else None
    # the noise of "what to measure next": the pooled fit's residual sd where profiles ran, else the config's scale
    noise_sd = float(np.sqrt(np.exp(-2 * prof["max_log_likelihood"] / prof["n_rows"]))) if prof else 0.3
    global_ = {}
    for cond in fit:
        rows = fit_rows[cond]
        if not rows:
            continue
        schedule = cal.schedule(cond)

        def outputs(X, schedule=schedule, rows=rows):
            Y = np.asarray(fm.simulate(prob.full_vector(X), schedule), float)
            return np.column_stack([Y[:, o, t] for o, t in rows])

        res = sobol(outputs, prob.space, n=n_sobol, seed=seed, n_resamples=100)
        s1, st = np.asarray(res["S1"]), np.asarray(res["ST"])  # (outputs, d)
        obs_of_row = np.array([o for o, _ in rows])
        global_[cond] = {"S1_mean_over_rows": dict(zip(labels, np.nanmean(s1, axis=0).tolist())),
                         "ST_mean_over_rows": dict(zip(labels, np.nanmean(st, axis=0).tolist())),
                         "ST_by_observable": {fm.observables[o]: dict(zip(labels, np.nanmean(st[obs_of_row == o],
                                                                                              axis=0).tolist()))
                                              for o in sorted(set(obs_of_row.tolist()))},
                         "n_evaluations": res["n_evaluations"]}
    return {"nominal": dict(zip(prob.free, theta.tolist())),
            "nominal_is": "posterior median of the run" if idata is not None else "registry preset / box centre",
            "parameters_in_scale": labels,
            "local": {"per_condition": per_condition, "all_conditions": pooled}, "global": global_,
            "bayesian": bayesian_section(cal, idata) if idata is not None else None,
            "profiles": prof,
            "measure_next": measure_next(cal, noise_sd=noise_sd, seed=seed, jacobian=jacobian),
            "screening": screening(cal, r=screen_r, seed=seed) if screen_r else None,
            "sbc": _sbc(cal, sbc_replicates, seed) if sbc_replicates else None,
            "method": {"jacobian": "exact (simulate_jacobian)" if jacobian == "exact" and hasattr(
                           fm, "simulate_jacobian") else "central differences",
                       "sobol": f"scipy.stats.sobol_indices, n = {n_sobol}",
                       "unit": "one subject per fitted condition; unit noise"}}


def _sbc(cal, replicates: int, seed: int) -> dict:
    """SBC of the config (ranks written beside the report by the caller's ``out``): per variable the uniformity
    test's p-value and whether it passes at the 1 % level."""
    from .pipeline import sbc_from_config

    res = sbc_from_config(cal.cfg["_path"], n_replicates=replicates, seed=seed, out_dir=cal.out)
    return {"replicates": replicates, "censored_rows": int((cal.data.censoring != "none").sum()),
            "variables": {n: {"p_value": r["p_value"], "uniform_at_1pct": bool(r["p_value"] >= 0.01),
                              "zscore_mean_abs": r["zscore_mean_abs"], "zscore_max_abs": r["zscore_max_abs"],
                              "contraction": r["contraction"]}
                          for n, r in res.items()}}


def write_report(report: dict, out) -> dict:
    """``identify.json``, a short ``identify.md`` and ``identify_sensitivity.png`` in the folder ``out``."""
    from pathlib import Path

    from .outputs import save_figure, use_agg, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "identify.json", report)
    pooled = report["local"]["all_conditions"] or {}
    lines = ["# Identifiability report", "", f"Nominal point ({report.get('nominal_is', '')}): {report['nominal']}", "",
             "## Local (Fisher information, all fitted conditions)", ""]
    lines += [f"- eigenvalues (largest first): {', '.join(f'{v:.3g}' for v in pooled.get('eigenvalues', []))}",
              f"- condition number: {pooled.get('condition_number', float('nan')):.3g}"]
    for w in pooled.get("poorly_determined", []):
        lines.append(f"- poorly determined: {w['direction']} (relative eigenvalue {w['relative']:.2g})")
    lines += ["", "## Per condition", ""]
    for c, r in report["local"]["per_condition"].items():
        weak = "; ".join(w["direction"] for w in r["poorly_determined"]) or "none"
        lines.append(f"- {c} ({r['rows']} rows): condition number {r['condition_number']:.3g}; poorly determined: "
                     f"{weak}")
    lines += ["", "## Global (Sobol total indices, mean over the data rows)", ""]
    for c, g in report["global"].items():
        lines.append(f"- {c}: " + ", ".join(f"{k} {v:.2f}" for k, v in g["ST_mean_over_rows"].items()))
    prof = report.get("profiles")
    if prof:
        lines += ["", (f"## Profiles (pooled model, true forward model, {prof['n_rows']} rows; "
                      f"{prof['censored_rows_left_out']} censored rows left out)"), ""]
        for k, v in prof["parameters"].items():
            ci = "none inside the box" if v["ci95"] is None else (
                f"[{v['ci95'][0]:.4g}{' (box edge)' if v['ci95_open'][0] else ''}, "
                f"{v['ci95'][1]:.4g}{' (box edge)' if v['ci95_open'][1] else ''}]")
            lines.append(f"- {k}: {v['kind']} (95 % interval {ci}; quality {', '.join(v['quality'])})")
    preds = (prof or {}).get("predictions") or {}
    if preds:
        lines += ["", "## Prediction profiles (held-out arms; 95 % intervals from the parameter profiles' paths)", ""]
        for cond, per_obs in preds.items():
            for obs, entries in per_obs.items():
                if not entries:
                    continue
                last = entries[-1]
                driven = (f"; an end is set by the box edge of {', '.join(last['box_driven'])} (prior-driven)"
                          if last["box_driven"] else "")
                seen = ("" if last["observed_median"] is None else
                        f"; observed median {last['observed_median']:.3g} "
                        f"{'inside' if last['observed_inside'] else 'OUTSIDE'}")
                lines.append(f"- {cond}, {obs} on day {last['day']:g}: [{last['interval'][0]:.3g}, "
                             f"{last['interval'][1]:.3g}] (at the optimum {last['at_optimum']:.3g}){seen}{driven}")
    nxt = report.get("measure_next")
    if nxt:
        lines += ["", (f"## What to measure next (expected contraction gain of one more observation, noise sd "
                      f"{nxt['noise_sd']:.3g}, {nxt['n_draws']} draws over the box)"), ""]
        for k, cands in nxt["per_parameter"].items():
            best = cands[0] if cands else None
            if best:
                where = ("" if best["fitted_condition"] else " (held out: fitting it would add it)"
                         if best["heldout_condition"] else " (a condition not used yet)")
                lines.append(f"- {k}: {best['observable']} on day {best['day']:g} in {best['condition']}{where} "
                             f"(+{best['expected_contraction_gain']:.3f})")
    scr = report.get("screening")
    if scr:
        lines += ["", (f"## Screening (Morris, every registry parameter: {scr['parameters']} over preset × "
                      f"[1/{scr['factor']:g}, {scr['factor']:g}], r = {scr['r']})"), "",
                  "- most influential (μ*): " + ", ".join(f"{n} {scr['mu_star'][n]:.3g}" for n in scr["ranking"][:10]),
                  f"- negligible (μ* < 1 % of the largest): {len(scr['negligible'])} parameters"]
        weak = [n for n in scr["calibrated"] if n in scr["negligible"]]
        if weak:
            lines.append(f"- calibrated but negligible for these data: {', '.join(weak)}")
        if scr["not_screened"]:
            lines.append("- not screened: " + ", ".join(f"{n} ({why})" for n, why in scr["not_screened"].items()))
    sbc = report.get("sbc")
    if sbc:
        lines += ["", (f"## Simulation-based calibration ({sbc['replicates']} replicates of the config's model, "
                      f"{sbc['censored_rows']} censored rows drawn censored)"), ""]
        lines += [f"- {n}: uniformity p = {v['p_value']:.3g}{'' if v['uniform_at_1pct'] else ' (REJECTED)'}; "
                  f"z-score mean |z| {v['zscore_mean_abs']:.2f} (max {v['zscore_max_abs']:.2f}); contraction "
                  f"{v['contraction']:.2f}" for n, v in sbc["variables"].items()]
    bayes = report.get("bayesian")
    if bayes:
        lines += ["", "## Bayesian (the run's posterior)", "",
                  "- contraction: " + ", ".join(f"{k} {v:.2f}" for k, v in bayes["contraction"].items())]
        for pr in bayes["strongly_correlated"]:
            lines.append(f"- strongly correlated: {pr['a']} and {pr['b']} (r = {pr['r']:.2f})")
    (out / "identify.md").write_text("\n".join(lines) + "\n")
    use_agg()
    import matplotlib.pyplot as plt

    conds = list(report["local"]["per_condition"])
    labels = report["parameters_in_scale"]
    if conds:
        M = np.array([[report["local"]["per_condition"][c]["sensitivity_rms"][k] for k in labels] for c in conds])
        fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(labels), 1.2 + 0.45 * len(conds)))
        im = ax.imshow(M, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(conds)), conds)
        fig.colorbar(im, ax=ax, label="RMS sensitivity of the data rows")
        ax.set_title("local sensitivities at the nominal point")
        save_figure(fig, out, "identify_sensitivity.png")
    return {"json": str(out / "identify.json"), "markdown": str(out / "identify.md")}
