"""Radiobiology of seed 002: LQ (eq 1), modified LQ (eq 2), LQL (eq 3) survival, BED (eq 28), iso-BED design.

All functions take doses in Gy and LQ parameters in Gy^-1 / Gy^-2, accept scalars or arrays, and raise
``ValueError`` for negative or non-finite doses and parameters.

.. math::

    \\log SF_{LQ}(d) = -\\alpha d - \\beta d^2, \\qquad
    \\log SF_{mLQ}(d) = -\\alpha d - \\beta_0 (1 + c\\sqrt d) d^2, \\qquad
    \\log SF_{LQL}(d) = -\\alpha d - 2\\beta\\,\\frac{x d - 1 + e^{-x d}}{x^2}

    BED = n d \\left(1 + \\frac{d}{\\alpha/\\beta}\\right)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "SURVIVAL_MODELS",
    "bed",
    "iso_bed_dose",
    "iso_bed_schedule",
    "log_survival",
    "survival_lq",
    "survival_lql",
    "survival_modified_lq",
]

#: survival model names accepted by :func:`log_survival` and the presets' ``survival`` option
SURVIVAL_MODELS = ("lq", "modified_lq", "lql")


def _dose(d) -> np.ndarray:
    arr = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"dose must be finite, got {d!r}")
    if np.any(arr < 0):
        raise ValueError(f"dose must be >= 0 Gy, got {d!r}")
    return arr


def _param(name: str, value: float, allow_negative: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or (v < 0 and not allow_negative):
        raise ValueError(
            f"{name} must be a finite{'' if allow_negative else ' non-negative'} number, got {value!r}"
        )
    return v


def _out(x: np.ndarray, like):
    return float(x) if np.ndim(like) == 0 else x


def survival_lq(d, alpha: float, beta: float):
    """Surviving fraction of the LQ model, eq (1): ``exp(-alpha d - beta d^2)``."""
    dd = _dose(d)
    a, b = _param("alpha", alpha), _param("beta", beta)
    return _out(np.exp(-a * dd - b * dd * dd), d)


def survival_modified_lq(d, alpha: float, beta0: float, c: float):
    """Modified LQ, eq (2): beta -> beta0 (1 + c sqrt(d)). ``c < 0`` lowers the relative effect of large doses."""
    dd = _dose(d)
    a, b0 = _param("alpha", alpha), _param("beta0", beta0)
    cc = _param("c", c, allow_negative=True)
    beta = b0 * (1.0 + cc * np.sqrt(dd))
    if np.any(beta < 0):
        raise ValueError(
            f"modified LQ: beta0 (1 + c sqrt(d)) < 0 for c = {cc} at d = {float(np.max(dd))} Gy; "
            "c must be >= -1/sqrt(d_max) (Supp. Table 4: c >= -0.2236 for doses up to 20 Gy)"
        )
    return _out(np.exp(-a * dd - beta * dd * dd), d)


def _lql_g(dd: np.ndarray, x: float) -> np.ndarray:
    """2 (x d - 1 + e^{-x d}) / x^2, with its Taylor series d^2 (1 - xd/3 + (xd)^2/12) for small x d."""
    y = x * dd
    small = y < 1e-4
    exact = np.where(small, 0.0, 2.0 * (y + np.expm1(-y)) / np.where(x > 0, x * x, 1.0))
    series = dd * dd * (1.0 - y / 3.0 + y * y / 12.0)
    return np.where(small, series, exact)


def survival_lql(d, alpha: float, beta: float, x: float):
    """Linear-quadratic-linear survival, eq (3); ``x -> 0`` recovers the LQ model."""
    dd = _dose(d)
    a, b, xx = _param("alpha", alpha), _param("beta", beta), _param("x", x)
    return _out(np.exp(-a * dd - b * _lql_g(dd, xx)), d)


def log_survival(d, model: str, alpha: float, beta: float, c: float = 0.0, x: float = 0.0):
    """Natural log of the surviving fraction for a named model (``lq``, ``modified_lq``, ``lql``)."""
    if model == "lq":
        return np.log(survival_lq(d, alpha, beta))
    if model == "modified_lq":
        return np.log(survival_modified_lq(d, alpha, beta, c))
    if model == "lql":
        return np.log(survival_lql(d, alpha, beta, x))
    raise ValueError(f"unknown survival model '{model}'; choose one of {SURVIVAL_MODELS}")


def _alpha_beta(ab: float) -> float:
    v = float(ab)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"alpha/beta must be a positive finite number of Gy, got {ab!r}")
    return v


def bed(n_fractions: int, dose_per_fraction, alpha_beta: float):
    """Biologically effective dose, eq (28): ``BED = D (1 + d / (alpha/beta))`` with ``D = n d``."""
    n = int(n_fractions)
    if n < 1 or n != n_fractions:
        raise ValueError(f"number of fractions must be a positive integer, got {n_fractions!r}")
    dd = _dose(dose_per_fraction)
    ab = _alpha_beta(alpha_beta)
    return _out(n * dd * (1.0 + dd / ab), dose_per_fraction)


def iso_bed_dose(n_fractions: int, target_bed: float, alpha_beta: float) -> float:
    """Dose per fraction giving ``target_bed`` in ``n_fractions`` equal fractions (positive root of the quadratic).

    ``n d (1 + d/ab) = BED``  =>  ``d = ab/2 (sqrt(1 + 4 BED / (n ab)) - 1)``.
    """
    n = int(n_fractions)
    if n < 1 or n != n_fractions:
        raise ValueError(f"number of fractions must be a positive integer, got {n_fractions!r}")
    ab = _alpha_beta(alpha_beta)
    b = float(target_bed)
    if not math.isfinite(b) or b < 0:
        raise ValueError(f"target BED must be a finite non-negative number of Gy, got {target_bed!r}")
    return 0.5 * ab * (math.sqrt(1.0 + 4.0 * b / (n * ab)) - 1.0)


def iso_bed_schedule(
    n_fractions, alpha_beta: float, reference_fractions: int = 3, reference_dose: float = 8.0
):
    """Doses per fraction iso-effective (same BED) to a reference schedule, for each entry of ``n_fractions``.

    The seed's Fig 7 uses the reference 8 Gy x 3 and alpha/beta = 9.29 Gy:
    ``iso_bed_schedule([1, 2, 3, 5, 10], 9.29)`` -> 16.25, 10.49, 8, 5.58, 3.30 Gy.
    """
    target = bed(reference_fractions, reference_dose, alpha_beta)
    return {int(n): iso_bed_dose(n, target, alpha_beta) for n in n_fractions}
