"""Space-filling designs (Sobol, Latin hypercube) over a parameter subset with ranges and scales from the registry.

A :class:`ParameterSpace` maps the unit cube to parameter values: ``linear`` parameters uniformly on ``[a, b]``,
``log`` parameters uniformly on ``[log a, log b]``. Surrogates use the same map to normalise their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import qmc


@dataclass(frozen=True)
class ParameterSpace:
    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    scales: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.names)
        if not (len(self.lower) == len(self.upper) == len(self.scales) == n):
            raise ValueError("ParameterSpace: names, lower, upper and scales must have the same length")
        for name, lo, hi, sc in zip(self.names, self.lower, self.upper, self.scales):
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"parameter '{name}': a design needs a finite range lower < upper, got [{lo}, {hi}]")
            if sc not in ("linear", "log"):
                raise ValueError(f"parameter '{name}': scale must be 'linear' or 'log', got {sc!r}")
            if sc == "log" and lo <= 0:
                raise ValueError(f"parameter '{name}': log scale needs lower > 0, got {lo}")

    @classmethod
    def from_registry(cls, model: str, names: Sequence[str], preset: str | None = None,
                      bounds: dict[str, tuple[float, float]] | None = None) -> ParameterSpace:
        """Ranges and scales from ``registry().record(model, name)``; ``bounds`` narrows ranges (must lie inside)."""
        from immunocal.priors import registry

        reg = registry()
        lo, hi, sc = [], [], []
        for n in names:
            rec = reg.record(model, n)
            if bounds and n in bounds:
                a, b = (float(v) for v in bounds[n])
                rec.check(a, preset, where="design lower bound")
                rec.check(b, preset, where="design upper bound")
            else:  # a log scale whose admissible range starts at 0 starts at log_lower (never silently linear)
                a, b = rec.scale_bounds_for(preset)
            lo.append(float(a))
            hi.append(float(b))
            if rec.scale == "log" and a <= 0:
                raise ValueError(f"design bounds of {n!r}: a log-scale parameter needs a positive lower bound, got "
                                 f"[{a:g}, {b:g}]")
            sc.append(rec.scale)
        return cls(tuple(names), tuple(lo), tuple(hi), tuple(sc))

    @property
    def dim(self) -> int:
        return len(self.names)

    def subset(self, names: Sequence[str]) -> ParameterSpace:
        """The space of ``names`` (a subset, in that order); an unknown name is an error listing the space's."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"parameter space has no {missing}; it has {list(self.names)}")
        j = [self.names.index(n) for n in names]
        return ParameterSpace(tuple(names), tuple(self.lower[i] for i in j), tuple(self.upper[i] for i in j),
                              tuple(self.scales[i] for i in j))

    @property
    def intervals(self) -> tuple:
        """One :class:`immunocal.priors.transforms.Interval` per parameter: the one implementation of the unit-cube map."""
        from immunocal.priors.transforms import Interval

        return tuple(Interval(a, b, s) for a, b, s in zip(self.lower, self.upper, self.scales))

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        return np.stack([iv.from_unit(u[..., j]) for j, iv in enumerate(self.intervals)], axis=-1)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([iv.to_unit(x[..., j]) for j, iv in enumerate(self.intervals)], axis=-1)

    def to_unit_pt(self, x):
        """:meth:`to_unit` as a PyTensor expression (``x`` has the parameters on its last axis)."""
        import pytensor.tensor as pt

        return pt.stack([iv.to_unit(x[..., j]) for j, iv in enumerate(self.intervals)], axis=-1)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "lower": list(self.lower), "upper": list(self.upper),
                "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, d: dict) -> ParameterSpace:
        return cls(tuple(d["names"]), tuple(map(float, d["lower"])), tuple(map(float, d["upper"])),
                   tuple(d["scales"]))


def unit_design(n: int, dim: int, method: str = "sobol", seed: int | None = 0) -> np.ndarray:
    """``n`` points in ``[0, 1]^dim``: scrambled Sobol (``sobol``), Latin hypercube (``lhs``) or ``random``."""
    if n < 1:
        raise ValueError(f"design size must be >= 1, got {n}")
    if method == "sobol":
        sampler = qmc.Sobol(d=dim, scramble=True, seed=seed)
        m = int(np.ceil(np.log2(n)))
        return sampler.random_base2(m)[:n]  # balanced 2^m block, truncated
    if method == "lhs":
        return qmc.LatinHypercube(d=dim, seed=seed).random(n)
    if method == "random":
        return np.random.default_rng(seed).random((n, dim))
    raise ValueError(f"unknown design method {method!r}; choose 'sobol', 'lhs' or 'random'")


def design(space: ParameterSpace, n: int, method: str = "sobol", seed: int | None = 0) -> np.ndarray:
    """A ``(n, space.dim)`` design in parameter units."""
    return space.from_unit(unit_design(n, space.dim, method, seed))
