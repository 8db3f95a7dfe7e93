"""Bounded transforms between an admissible interval [a, b] and the real line.

Seed 000 §2.5 trains its regressors on

    z = log((θ − a + ε) / (b − θ + ε))                                   (seed 000, forward transform)

and maps predictions back with θ = a + (b − a)·σ(z). With ε > 0 these two are *not* exact inverses (the seed's
back-transform is off by O(ε) and never reaches a or b). We provide

* :func:`bounded_logit` — the seed's forward transform, exactly;
* :func:`bounded_expit` — its exact inverse, θ = (a − ε) + (b − a + 2ε)·σ(z), so round trips are exact to
  round-off; with ``seed_form=True`` the seed's own back-transform a + (b − a)·σ(z) instead;
* :func:`project` — the projection Π_A onto [a, b] that seed 000 applies to predictions;
* :class:`Interval` — an admissible interval [a, b] on a ``linear`` or ``log`` scale g: the unit-cube map
  u = (g(θ) − g(a)) / (g(b) − g(a)) (designs, surrogate inputs) and the bounded logit z = log(u / (1 − u)) with its
  inverse (the link space of ``BoundedLogitNormal`` priors) — on numpy values and PyTensor variables alike: the one
  implementation of both maps (``immunocal.calib.design.ParameterSpace`` and ``priors.Prior`` use it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

SCALES = ("linear", "log")

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


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("pytensor")


@dataclass(frozen=True)
class Interval:
    """An interval ``[lower, upper]`` on a ``linear`` or ``log`` scale (module docstring)."""

    lower: float
    upper: float
    scale: str = "linear"

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {self.scale!r}")
        _check_interval(self.lower, self.upper)
        if self.scale == "log" and self.lower <= 0:
            raise ValueError(f"a log-scale interval needs lower > 0, got {self.lower}")

    @property
    def log(self) -> bool:
        return self.scale == "log"

    def g(self, x):
        """The scale: log θ or θ (numpy or PyTensor)."""
        if _is_tensor(x):
            import pytensor.tensor as pt

            return pt.log(x) if self.log else x
        x = np.asarray(x, dtype=float)
        return np.log(x) if self.log else x

    def g_inv(self, y):
        if _is_tensor(y):
            import pytensor.tensor as pt

            return pt.exp(y) if self.log else y
        y = np.asarray(y, dtype=float)
        return np.exp(y) if self.log else y

    @property
    def g_bounds(self) -> tuple[float, float]:
        return (float(np.log(self.lower)), float(np.log(self.upper))) if self.log else (float(self.lower),
                                                                                          float(self.upper))

    def to_unit(self, x):
        """u = (g(θ) − g(a)) / (g(b) − g(a))."""
        lo, hi = self.g_bounds
        return (self.g(x) - lo) / (hi - lo)

    def from_unit(self, u):
        lo, hi = self.g_bounds
        if not _is_tensor(u):
            u = np.asarray(u, dtype=float)
        return self.g_inv(lo + (hi - lo) * u)

    def logit(self, x):
        """z = log(u / (1 − u)) with u = :meth:`to_unit` (θ strictly inside the interval)."""
        u = self.to_unit(x)
        if _is_tensor(u):
            import pytensor.tensor as pt

            return pt.log(u) - pt.log1p(-u)
        return np.log(u) - np.log1p(-u)

    def expit(self, z):
        """θ = g⁻¹(g(a) + (g(b) − g(a))·σ(z)), the inverse of :meth:`logit`."""
        if _is_tensor(z):
            import pytensor.tensor as pt

            return self.from_unit(pt.sigmoid(z))
        return self.from_unit(expit(np.asarray(z, dtype=float)))

    def log_abs_dlogit(self, x):
        """log |dz/dθ| of :meth:`logit` (numpy): −log(g(b) − g(a)) − log u − log(1 − u) (− log θ on a log scale)."""
        lo, hi = self.g_bounds
        x = np.asarray(x, dtype=float)
        u = self.to_unit(x)
        out = -np.log(hi - lo) - np.log(u) - np.log1p(-u)
        return out - np.log(x) if self.log else out
