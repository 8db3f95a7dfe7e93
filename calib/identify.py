"""Identifiability: what the data can and cannot determine — local (sensitivities, Fisher information and its poorly
determined directions named in words), global (Sobol indices with bootstrap intervals, by ``scipy.stats``) and
profiles (:func:`calib.diagnostics.profile_likelihood`, classified here).

Known answers (tests): Sobol indices of the Ishigami function; a linear-Gaussian profile equal to its analytic
interval; a model in which only the product of two parameters is identifiable is reported as such — a flat profile,
a zero Fisher eigenvalue along the named direction ``log a − log b``.
"""

from __future__ import annotations

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
                               abs_step: float = 1e-7) -> np.ndarray:
    """Central differences of a vector function ``f`` (``(p,) -> (m,)``) at ``x``: ``(m, p)``. For models without
    exact sensitivities (the exact ones come from a simulator's ``simulate_jacobian``)."""
    x = np.asarray(x, float)
    cols = []
    for j in range(len(x)):
        h = max(abs(x[j]) * rel_step, abs_step)
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        cols.append((np.asarray(f(up), float) - np.asarray(f(down), float)) / (2 * h))
    return np.column_stack(cols)


def sobol(f: Callable[[np.ndarray], np.ndarray], space, n: int = 4096, seed: int = 0, confidence: float = 0.95,
          n_resamples: int = 200) -> dict:
    """First-order and total Sobol indices of ``f`` over ``space`` (a :class:`calib.design.ParameterSpace`, sampled
    uniformly in its own scales) by ``scipy.stats.sobol_indices`` (Saltelli 2010 estimators), with bootstrap
    confidence intervals. ``f`` maps ``(k, d)`` parameter rows to ``(k,)`` or ``(k, s)`` outputs (each output — an
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
    boot = res.bootstrap(confidence_level=confidence, n_resamples=n_resamples)
    s1, st = np.atleast_2d(res.first_order), np.atleast_2d(res.total_order)
    return {"names": list(space.names), "S1": s1.tolist(), "ST": st.tolist(),
            "S1_ci": [np.atleast_2d(boot.first_order.confidence_interval.low).tolist(),
                      np.atleast_2d(boot.first_order.confidence_interval.high).tolist()],
            "ST_ci": [np.atleast_2d(boot.total_order.confidence_interval.low).tolist(),
                      np.atleast_2d(boot.total_order.confidence_interval.high).tolist()],
            "confidence": confidence, "n_evaluations": int(n * (d + 2))}


def classify_profile(profile: dict, optimum: float | None = None, threshold: float | None = None,
                     smooth_tol: float = 0.5, tol: float = 1e-3) -> dict:
    """What a profile (:func:`calib.diagnostics.profile_likelihood`) says: ``"identifiable"`` (the likelihood-ratio
    interval closes inside the scanned range on both sides), ``"one-sided"`` (closes on one side only) or ``"flat"``
    (drops less than the threshold everywhere in the range: the data do not determine it there); and its quality —
    ``"non-smooth"`` (a jump between neighbours larger than ``smooth_tol`` log-units beyond the local trend: an inner
    optimisation lost the optimum), and against ``optimum`` (the log-likelihood of the global fit), ``"above-optimum"``
    (the profile exceeds it: the global fit was not the optimum) or ``"below-optimum"`` (the profile never reaches it:
    the profile's own optimisations did not converge)."""
    from scipy import stats

    thr = stats.chi2.ppf(0.95, 1) / 2 if threshold is None else threshold
    prof = np.asarray(profile["profile"], float)
    top = int(np.argmax(prof))
    drop = prof.max() - prof
    left_closed, right_closed = bool(np.any(drop[:top] > thr)), bool(np.any(drop[top:] > thr))
    kind = ("identifiable" if left_closed and right_closed else
            "one-sided" if left_closed or right_closed else "flat")
    quality = []
    second = np.abs(np.diff(prof, 2)) if len(prof) > 2 else np.zeros(0)
    if len(second) and second.max() > smooth_tol + 10 * np.median(second):
        quality.append("non-smooth")
    if optimum is not None and prof.max() > optimum + tol:
        quality.append("above-optimum")
    if optimum is not None and prof.max() < optimum - tol:
        quality.append("below-optimum")
    return {"kind": kind, "drop_max": float(drop.max()), "threshold": float(thr), "quality": quality or ["ok"]}
