"""Bounded transforms between an admissible interval [a, b] and the real line.

Seed 000 §2.5 trains its regressors on

    z = log((θ − a + ε) / (b − θ + ε))                                   (seed 000, forward transform)

and maps predictions back with θ = a + (b − a)·σ(z). With ε > 0 these two are *not* exact inverses (the seed's
back-transform is off by O(ε) and never reaches a or b). We provide

* :func:`bounded_logit` — the seed's forward transform, exactly;
* :func:`bounded_expit` — its exact inverse, θ = (a − ε) + (b − a + 2ε)·σ(z), so round trips are exact to
  round-off; with ``seed_form=True`` the seed's own back-transform a + (b − a)·σ(z) instead;
* :func:`project` — the projection Π_A onto [a, b] that seed 000 applies to predictions.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

DEFAULT_EPS = 1e-6


def _check_interval(lower, upper) -> None:
    if not np.all(np.isfinite(lower)) or not np.all(np.isfinite(upper)):
        raise ValueError(f"bounded transform needs finite bounds, got [{lower}, {upper}]")
    if np.any(np.asarray(upper) <= np.asarray(lower)):
        raise ValueError(f"bounded transform needs lower < upper, got [{lower}, {upper}]")


def bounded_logit(theta, lower, upper, eps: float = DEFAULT_EPS):
    """Seed 000 forward transform z = log((θ − a + ε)/(b − θ + ε)) for θ in [a, b]."""
    _check_interval(lower, upper)
    theta = np.asarray(theta, dtype=float)
    if np.any(~np.isfinite(theta)):
        raise ValueError("bounded_logit got a non-finite value")
    if np.any(theta < lower) or np.any(theta > upper):
        bad = theta[(theta < lower) | (theta > upper)] if theta.ndim else theta
        raise ValueError(f"bounded_logit: value(s) {bad} outside the admissible range [{lower}, {upper}]")
    return np.log(theta - lower + eps) - np.log(upper - theta + eps)


def bounded_expit(z, lower, upper, eps: float = DEFAULT_EPS, seed_form: bool = False):
    """Inverse of :func:`bounded_logit`.

    The exact inverse is θ = (a − ε) + (b − a + 2ε)·σ(z) (solve the forward transform for θ). ``seed_form=True``
    returns seed 000's θ = a + (b − a)·σ(z), which always lies strictly inside (a, b).
    """
    _check_interval(lower, upper)
    s = expit(np.asarray(z, dtype=float))
    if seed_form:
        return lower + (upper - lower) * s
    return (lower - eps) + (upper - lower + 2.0 * eps) * s


def project(theta, lower, upper):
    """Seed 000's projection Π_A onto the admissible box [a, b] (used on predictions only, never on inputs)."""
    return np.clip(np.asarray(theta, dtype=float), lower, upper)
