"""Priors as serialisable data.

A :class:`Prior` is a distribution name plus keyword parameters — nothing else — so it round-trips through a dict,
TOML or JSON unchanged (``Prior.from_dict(p.to_dict()) == p``). It can

* evaluate its log-density and draw samples with scipy/numpy (no PyMC import: ``forward`` and the campaign runner
  use this), and
* create the matching PyMC variable inside a model context (:meth:`Prior.create_variable`).

Supported distributions (parameters in brackets):

``Normal`` (mu, sigma) · ``LogNormal`` (mu, sigma) · ``Uniform`` (lower, upper) · ``HalfNormal`` (sigma) ·
``TruncatedNormal`` (mu, sigma, lower, upper) · ``TruncatedLogNormal`` (mu, sigma, lower, upper) ·
``BoundedLogitNormal`` (mu, sigma, lower, upper, scale) — θ = g⁻¹(g(a) + (g(b) − g(a))·σ(z)) with z ~ N(mu, sigma)
and g the identity (``scale="linear"``) or log (``scale="log"``): the seed-000 bounded-logit transform used as a
prior, which keeps θ strictly inside its admissible range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import logit

from .transforms import Interval

_REQUIRED = {
    "Normal": ("mu", "sigma"),
    "LogNormal": ("mu", "sigma"),
    "Uniform": ("lower", "upper"),
    "HalfNormal": ("sigma",),
    "TruncatedNormal": ("mu", "sigma", "lower", "upper"),
    "TruncatedLogNormal": ("mu", "sigma", "lower", "upper"),
    "BoundedLogitNormal": ("mu", "sigma", "lower", "upper"),
}
_OPTIONAL = {"BoundedLogitNormal": ("scale",)}


@dataclass(frozen=True)
class Prior:
    """A prior distribution stored as data: ``Prior("LogNormal", {"mu": 0.0, "sigma": 1.0})``."""

    distribution: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.distribution not in _REQUIRED:
            raise ValueError(
                f"unknown prior distribution {self.distribution!r}; choose one of {sorted(_REQUIRED)}"
            )
        need = _REQUIRED[self.distribution]
        allowed = set(need) | set(_OPTIONAL.get(self.distribution, ()))
        missing = [k for k in need if k not in self.parameters]
        extra = [k for k in self.parameters if k not in allowed]
        if missing or extra:
            raise ValueError(
                f"prior {self.distribution}: missing parameters {missing}, unexpected {extra}; "
                f"it takes {sorted(allowed)}"
            )
        for key, value in self.parameters.items():
            if key == "scale":
                if value not in ("linear", "log"):
                    raise ValueError(f"prior {self.distribution}: scale must be 'linear' or 'log', got {value!r}")
                continue
            if not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"prior {self.distribution}: parameter {key}={value!r} is not a number")
        p = self.parameters
        if "sigma" in p and not p["sigma"] > 0:
            raise ValueError(f"prior {self.distribution}: sigma must be > 0, got {p['sigma']}")
        if "lower" in p and not p["lower"] < p["upper"]:
            raise ValueError(f"prior {self.distribution}: needs lower < upper, got [{p['lower']}, {p['upper']}]")
        if self.distribution in ("TruncatedLogNormal",) and p["lower"] < 0:
            raise ValueError(f"prior {self.distribution}: lower must be >= 0, got {p['lower']}")
        if self.distribution == "BoundedLogitNormal":
            if not (math.isfinite(p["lower"]) and math.isfinite(p["upper"])):
                raise ValueError("prior BoundedLogitNormal needs finite lower and upper bounds")
            if p.get("scale", "linear") == "log" and p["lower"] <= 0:
                raise ValueError(f"prior BoundedLogitNormal with scale='log' needs lower > 0, got {p['lower']}")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.distribution, **{k: self.parameters[k] for k in sorted(self.parameters)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prior:
        if "distribution" not in data:
            raise ValueError(f"prior dict needs a 'distribution' key, got keys {sorted(data)}")
        rest = {k: v for k, v in data.items() if k != "distribution"}
        return cls(str(data["distribution"]), rest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prior) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    # ------------------------------------------------------------------ link space (hierarchies, predictions)
    def link_inverse(self, z):
        """θ = link⁻¹(z) from the prior's link space: identity (``Normal``), exp (``LogNormal``), the bounded
        logistic ``g⁻¹(g(a) + (g(b) − g(a))·σ(z))`` (``BoundedLogitNormal``: :meth:`Interval.expit`). Takes numpy
        values or PyTensor variables (the one implementation used by the PyMC builders and by numpy predictives)."""
        d = self.distribution
        if d == "Normal":
            return z if type(z).__module__.startswith("pytensor") else np.asarray(z, dtype=float)
        if d == "LogNormal":
            if type(z).__module__.startswith("pytensor"):
                import pytensor.tensor as pt

                return pt.exp(z)
            return np.exp(np.asarray(z, dtype=float))
        if d == "BoundedLogitNormal":
            return self.interval.expit(z)
        raise ValueError(f"a {d} prior has no link space (Normal, LogNormal or BoundedLogitNormal have one)")

    def link(self, theta):
        """z = link(θ), the inverse of :meth:`link_inverse` (numpy)."""
        d = self.distribution
        theta = np.asarray(theta, dtype=float)
        if d == "Normal":
            return theta
        if d == "LogNormal":
            return np.log(theta)
        if d == "BoundedLogitNormal":
            return self.interval.logit(theta)
        raise ValueError(f"a {d} prior has no link space (Normal, LogNormal or BoundedLogitNormal have one)")

    # ------------------------------------------------------------------ helpers for bounded-logit priors
    @property
    def interval(self) -> Interval:
        """The admissible interval of a bounded prior with its scale (``immunocal.priors.transforms.Interval``)."""
        p = self.parameters
        return Interval(float(p["lower"]), float(p["upper"]), p.get("scale", "linear"))

    def _g(self, x):
        """The prior's scale g (log or identity) — its link-space contraction metric."""
        return Interval(1.0, 2.0, self.parameters.get("scale", "linear")).g(x)

    @property
    def support(self) -> tuple[float, float]:
        p = self.parameters
        if self.distribution in ("Normal",):
            return (-math.inf, math.inf)
        if self.distribution in ("LogNormal", "HalfNormal"):
            return (0.0, math.inf)
        return (float(p["lower"]), float(p["upper"]))

    # ------------------------------------------------------------------ scipy/numpy side
    def _scipy(self):
        p = self.parameters
        d = self.distribution
        if d == "Normal":
            return stats.norm(p["mu"], p["sigma"])
        if d == "LogNormal":
            return stats.lognorm(s=p["sigma"], scale=math.exp(p["mu"]))
        if d == "Uniform":
            return stats.uniform(p["lower"], p["upper"] - p["lower"])
        if d == "HalfNormal":
            return stats.halfnorm(scale=p["sigma"])
        if d == "TruncatedNormal":
            a = (p["lower"] - p["mu"]) / p["sigma"]
            b = (p["upper"] - p["mu"]) / p["sigma"]
            return stats.truncnorm(a, b, loc=p["mu"], scale=p["sigma"])
        raise NotImplementedError(d)

    def logpdf(self, x) -> np.ndarray:
        """Log-density of the prior at ``x`` (−inf outside the support)."""
        x = np.asarray(x, dtype=float)
        p = self.parameters
        d = self.distribution
        if d == "TruncatedLogNormal":
            base = stats.lognorm(s=p["sigma"], scale=math.exp(p["mu"]))
            mass = base.cdf(p["upper"]) - base.cdf(p["lower"])
            inside = (x >= p["lower"]) & (x <= p["upper"])
            with np.errstate(divide="ignore"):
                return np.where(inside, base.logpdf(x) - math.log(mass), -np.inf)
        if d == "BoundedLogitNormal":
            iv = self.interval
            inside = (x > p["lower"]) & (x < p["upper"])
            xs = np.where(inside, x, 0.5 * (p["lower"] + p["upper"]))
            # change of variables θ -> z = logit(θ): density N(z; mu, sigma)·|dz/dθ|
            out = stats.norm(p["mu"], p["sigma"]).logpdf(iv.logit(xs)) + iv.log_abs_dlogit(xs)
            return np.where(inside, out, -np.inf)
        return self._scipy().logpdf(x)

    def sample(self, rng: np.random.Generator, size=None) -> np.ndarray:
        """Draw from the prior with an explicitly passed generator."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("Prior.sample needs a numpy.random.Generator (pass one explicitly)")
        p = self.parameters
        d = self.distribution
        if d == "TruncatedLogNormal":
            base = stats.lognorm(s=p["sigma"], scale=math.exp(p["mu"]))
            lo, hi = base.cdf(p["lower"]), base.cdf(p["upper"])
            return base.ppf(rng.uniform(lo, hi, size=size))
        if d == "BoundedLogitNormal":
            return self.interval.expit(rng.normal(p["mu"], p["sigma"], size=size))
        return self._scipy().rvs(size=size, random_state=rng)

    # ------------------------------------------------------------------ PyMC side
    def create_variable(self, name: str, dims=None, shape=None):
        """Create this prior as a PyMC variable called ``name`` in the current ``pm.Model`` context.

        ``BoundedLogitNormal`` creates the unconstrained ``{name}_z ~ Normal(mu, sigma)`` and a
        ``pm.Deterministic(name)`` for θ, so NUTS samples on the real line.
        """
        import pymc as pm  # imported lazily: priors must stay importable without PyMC's start-up cost

        p = self.parameters
        d = self.distribution
        kw: dict[str, Any] = {}
        if dims is not None:
            kw["dims"] = dims
        if shape is not None:
            kw["shape"] = shape
        if d == "Normal":
            return pm.Normal(name, mu=p["mu"], sigma=p["sigma"], **kw)
        if d == "LogNormal":
            return pm.LogNormal(name, mu=p["mu"], sigma=p["sigma"], **kw)
        if d == "Uniform":
            return pm.Uniform(name, lower=p["lower"], upper=p["upper"], **kw)
        if d == "HalfNormal":
            return pm.HalfNormal(name, sigma=p["sigma"], **kw)
        if d == "TruncatedNormal":
            return pm.TruncatedNormal(name, mu=p["mu"], sigma=p["sigma"], lower=p["lower"], upper=p["upper"], **kw)
        if d == "TruncatedLogNormal":
            return pm.Truncated(
                name, pm.LogNormal.dist(mu=p["mu"], sigma=p["sigma"]), lower=p["lower"], upper=p["upper"], **kw
            )
        if d == "BoundedLogitNormal":
            z = pm.Normal(f"{name}_z", mu=p["mu"], sigma=p["sigma"], **kw)
            return pm.Deterministic(name, self.link_inverse(z), dims=dims)
        raise NotImplementedError(d)


def default_prior(default: float, lower: float, upper: float, scale: str, sigma: float = 1.5) -> Prior:
    """The registry's default prior for a parameter: bounded logit-normal centred on the default.

    Centre: the default mapped through the bounded transform (nudged 0.1 % of the range inside the interval when
    the default sits on a bound). Parameters with an infinite bound get a normal truncated to the range, centred on
    the default, with sd ``max(|default|, 1)``.
    """
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return Prior("TruncatedNormal", {"mu": float(default), "sigma": float(max(abs(default), 1.0)),
                                         "lower": float(lower), "upper": float(upper)})
    if scale == "log" and lower <= 0:  # was a silent switch to a linear prior
        raise ValueError(f"a log-scale prior needs a positive lower bound, got [{lower:g}, {upper:g}]")
    g = (lambda v: math.log(v)) if scale == "log" else (lambda v: float(v))
    lo, hi = g(lower), g(upper)
    centre = (g(default) - lo) / (hi - lo) if (scale != "log" or default > 0) else 0.0
    centre = min(max(centre, 1e-3), 1 - 1e-3)
    return Prior(
        "BoundedLogitNormal",
        {"mu": float(logit(centre)), "sigma": float(sigma), "lower": float(lower), "upper": float(upper),
         "scale": scale},
    )
