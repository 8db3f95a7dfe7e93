"""Goodness of fit and local sensitivity (seed 002 §2.8-2.11): weighted cost (eq 26), AICc (eq 27), S_i (eq 29)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["aicc", "aicc_from_cost", "gaussian_log_likelihood", "sensitivity_indices", "weighted_cost"]


def weighted_cost(model, observed, sigma) -> float:
    """F = sum (V_model - V_exp)^2 / u^2 (eq 26)."""
    m, o, u = (np.asarray(x, dtype=float) for x in (model, observed, sigma))
    if m.shape != o.shape or np.broadcast(o, u).shape != o.shape:
        raise ValueError(f"shape mismatch: model {m.shape}, observed {o.shape}, sigma {u.shape}")
    if np.any(~np.isfinite(u)) or np.any(u <= 0):
        raise ValueError("uncertainties u must be positive and finite")
    if np.any(~np.isfinite(m)) or np.any(~np.isfinite(o)):
        raise ValueError("model and observed values must be finite")
    return float(np.sum((m - o) ** 2 / u**2))


def gaussian_log_likelihood(model, observed, sigma) -> float:
    """log L of independent Gaussian errors with known standard deviations u: -F/2 - sum log(u sqrt(2 pi))."""
    u = np.broadcast_to(np.asarray(sigma, dtype=float), np.shape(observed))
    return -0.5 * weighted_cost(model, observed, sigma) - float(np.sum(np.log(u * math.sqrt(2 * math.pi))))


def aicc(log_likelihood: float, k: int, n: int) -> float:
    """AIC with small-sample correction, eq (27): ``-2 log L + 2k + 2k(k+1)/(N-k-1)``; needs N > k + 1."""
    if k < 0 or int(k) != k:
        raise ValueError(f"number of free parameters k must be a non-negative integer, got {k}")
    if n - k - 1 <= 0:
        raise ValueError(f"AICc needs more data points than parameters + 1 (N = {n}, k = {k})")
    if not math.isfinite(log_likelihood):
        raise ValueError(f"log-likelihood must be finite, got {log_likelihood}")
    return -2.0 * log_likelihood + 2 * k + 2.0 * k * (k + 1) / (n - k - 1)


def aicc_from_cost(model, observed, sigma, k: int) -> float:
    """AICc of a fit with Gaussian errors of known u: log L from :func:`gaussian_log_likelihood`."""
    n = int(np.size(observed))
    return aicc(gaussian_log_likelihood(model, observed, sigma), k, n)


def sensitivity_indices(
    cost: Callable[[Mapping[str, float]], float],
    x: Mapping[str, float],
    rel_step: float = 0.1,
    names: list[str] | None = None,
) -> dict[str, float]:
    """Local sensitivity index S_i = |F(x + Delta x_i) - F(x)| with Delta x_i = 0.1 x_i (eq 29), for any scalar cost.

    ``cost`` takes a mapping name -> value (e.g. builds a ParameterSet with ``ps.replace(**values)``).
    Returns the indices sorted in decreasing order.
    """
    base = dict(x)
    names = list(names) if names is not None else list(base)
    f0 = float(cost(base))
    if not math.isfinite(f0):
        raise ValueError(f"cost at the reference point is not finite: {f0}")
    out = {}
    for name in names:
        if name not in base:
            raise KeyError(f"unknown parameter '{name}' for the sensitivity analysis")
        moved = dict(base)
        moved[name] = base[name] * (1.0 + rel_step)
        out[name] = abs(float(cost(moved)) - f0)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def euler_convergence(
    params,
    schedule,
    dts,
    t_obs: float = 15.0,
    reference_dt: float = 0.001,
    scheme: str = "exponential",
    fit_range: tuple[float, float] | None = None,
) -> dict:
    """Volume at ``t_obs`` for each integration step ``dt`` (one substep per step), absolute error against
    ``reference_dt`` and the fitted order (least-squares slope of log error against log dt over ``fit_range``,
    default all dts) — Supp. Figs 4-5."""
    from .model import EulerInstabilityError, RitConfig, simulate_volumes

    ps = params
    cfg = RitConfig.from_preset(ps.preset, scheme=scheme, on_negative="clip", substeps=1)
    v_ref = float(simulate_volumes(ps, schedule, [t_obs], cfg, dt=reference_dt)[0])
    vols, errs = [], []
    for dt in dts:
        try:
            v = float(simulate_volumes(ps, schedule, [t_obs], cfg, dt=dt)[0])
        except EulerInstabilityError:
            v = math.nan
        vols.append(v)
        errs.append(abs(v - v_ref))
    dts_a, errs_a = np.asarray(dts, float), np.asarray(errs, float)
    lo, hi = fit_range if fit_range is not None else (dts_a.min(), dts_a.max())
    sel = (dts_a >= lo) & (dts_a <= hi) & np.isfinite(errs_a) & (errs_a > 0)
    order = float(np.polyfit(np.log(dts_a[sel]), np.log(errs_a[sel]), 1)[0]) if sel.sum() >= 2 else math.nan
    return {
        "dt": list(map(float, dts)),
        "volume": vols,
        "abs_error": errs,
        "reference_dt": reference_dt,
        "reference_volume": v_ref,
        "t_obs": t_obs,
        "order": order,
        "fit_range": [float(lo), float(hi)],
        "scheme": scheme,
    }
