"""Analytic toy forward models with exact answers — the test bed of the calibration layer (like sbi's toy tasks).

* :class:`LinearModel` — ``y(t) = level + slope·t`` (observable ``y``); with Gaussian noise and Gaussian priors every
  posterior is Gaussian and exact (:func:`linear_gaussian_posterior`, :func:`hierarchical_level_posterior`).
* :class:`LogisticModel` — closed-form logistic growth ``V(t) = K / (1 + (K/V0 − 1)·exp(−r t))``, observable
  ``log_volume``; also offered as a PyTensor expression (``simulate_pt``) for the exact-likelihood reference.
* :func:`ishigami` — the Ishigami function with its known Sobol indices (:data:`ISHIGAMI_INDICES`).

Both models accept test-only condition keys: ``sleep`` (seconds per batch, to make campaigns killable) and
``fail_above`` (``{parameter: threshold}`` — a run whose parameter exceeds the threshold raises, to test failure
records). The logistic model's treatment: ``growth_factor`` (the growth rate is multiplied by it; default 1), so a
held-out arm can be predicted. Other condition keys are refused.
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .design import ParameterSpace

_CONDITION_KEYS = {"sleep", "fail_above", "growth_factor", "description"}


def _test_hooks(model, theta: np.ndarray, condition: Mapping[str, Any] | None) -> None:
    if not condition:
        return
    unknown = sorted(set(condition) - _CONDITION_KEYS)
    if unknown:
        raise ValueError(f"{model.name}: unknown condition key(s) {unknown}; allowed: {sorted(_CONDITION_KEYS)}")
    if condition.get("sleep"):
        _time.sleep(float(condition["sleep"]))
    for name, thr in dict(condition.get("fail_above", {})).items():
        j = model.parameter_names.index(name)
        bad = theta[:, j] > float(thr)
        if np.any(bad):
            raise RuntimeError(f"toy failure: {name}={theta[bad, j][0]:.6g} > {thr}")


class LinearModel:
    """``y(t) = level + slope·t``; ``observables`` names copies of the same output (to exercise several
    observation families on one linear predictor)."""

    name = "toy.linear"
    parameter_names = ("level", "slope")

    def __init__(self, times=(0.0, 1.0, 2.0, 3.0, 4.0), observables=("y",)):
        self.times = np.asarray(times, dtype=float)
        self.observables = tuple(observables)

    def space(self, preset=None) -> ParameterSpace:
        return ParameterSpace(self.parameter_names, (-5.0, -2.0), (5.0, 2.0), ("linear", "linear"))

    def simulate(self, theta, condition=None):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        _test_hooks(self, theta, condition)
        y = (theta[:, 0:1] + theta[:, 1:2] * self.times[None, :])[:, None, :]
        return np.repeat(y, len(self.observables), axis=1)

    def simulate_pt(self, theta, condition=None):
        import pytensor.tensor as pt

        # [:, j][:, None] (not [:, j:j+1]) keeps the broadcastable flag, so vectorised graphs (Pathfinder) work
        y = (theta[:, 0][:, None] + theta[:, 1][:, None] * self.times[None, :])[:, None, :]
        return pt.concatenate([y] * len(self.observables), axis=1) if len(self.observables) > 1 else y


def _growth_factor(condition) -> float:
    f = float((condition or {}).get("growth_factor", 1.0))
    if not f >= 0:
        raise ValueError(f"toy.logistic: growth_factor must be >= 0, got {f}")
    return f


class LogisticModel:
    name = "toy.logistic"
    parameter_names = ("growth_rate", "carrying_capacity", "initial_volume")
    observables = ("log_volume",)
    bounds = {"growth_rate": (0.05, 1.0), "carrying_capacity": (200.0, 5000.0), "initial_volume": (10.0, 100.0)}

    def __init__(self, times=(0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)):
        self.times = np.asarray(times, dtype=float)

    def space(self, preset=None) -> ParameterSpace:
        n = self.parameter_names
        return ParameterSpace(n, tuple(self.bounds[k][0] for k in n), tuple(self.bounds[k][1] for k in n),
                              ("log",) * 3)

    def simulate(self, theta, condition=None):
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        _test_hooks(self, theta, condition)
        r, k, v0 = theta[:, 0:1] * _growth_factor(condition), theta[:, 1:2], theta[:, 2:3]
        v = k / (1.0 + (k / v0 - 1.0) * np.exp(-r * self.times[None, :]))
        return np.log(v)[:, None, :]

    def simulate_pt(self, theta, condition=None):
        import pytensor.tensor as pt

        _test_hooks(self, np.zeros((0, 3)), condition)
        r, k, v0 = theta[:, 0][:, None] * _growth_factor(condition), theta[:, 1][:, None], theta[:, 2][:, None]
        v = k / (1.0 + (k / v0 - 1.0) * pt.exp(-r * self.times[None, :]))
        return pt.log(v)[:, None, :]


TOY_MODELS = {"linear": LinearModel, "logistic": LogisticModel}


def linear_gaussian_posterior(prior_mean, prior_cov, H, y, noise_cov):
    """Exact posterior of ``x ~ N(m0, P0)``, ``y = H x + e``, ``e ~ N(0, R)``: returns ``(mean, cov)``."""
    P0i = np.linalg.inv(prior_cov)
    Ri = np.linalg.inv(noise_cov)
    cov = np.linalg.inv(P0i + H.T @ Ri @ H)
    mean = cov @ (P0i @ prior_mean + H.T @ Ri @ y)
    return mean, cov


def hierarchical_level_posterior(y, subject, mu0, s0, tau, sigma):
    """Exact posterior of ``mu ~ N(mu0, s0)``, ``theta_s ~ N(mu, tau)``, ``y_i ~ N(theta_{subject_i}, sigma)``.

    Returns ``(mean, sd)`` of the vector ``(mu, theta_1, …, theta_S)`` (subjects numbered ``0..S-1``).
    """
    y = np.asarray(y, float)
    subject = np.asarray(subject, int)
    S = subject.max() + 1
    # x = (mu, eta_1..S) with theta = mu + tau*eta -> jointly Gaussian; work with (mu, theta) directly
    P0 = np.zeros((S + 1, S + 1))
    P0[0, 0] = s0**2
    P0[0, 1:] = P0[1:, 0] = s0**2
    P0[1:, 1:] = s0**2 + np.eye(S) * tau**2
    m0 = np.full(S + 1, mu0)
    H = np.zeros((y.size, S + 1))
    H[np.arange(y.size), subject + 1] = 1.0
    mean, cov = linear_gaussian_posterior(m0, P0, H, y, np.eye(y.size) * sigma**2)
    return mean, np.sqrt(np.diag(cov))


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """Ishigami function on ``[-π, π]^3``."""
    x = np.atleast_2d(x)
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> dict[str, np.ndarray]:
    """Analytic first-order and total Sobol indices of the Ishigami function."""
    v1 = 0.5 * (1 + b * np.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * np.pi**8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    return {"S1": np.array([v1, v2, 0.0]) / v, "ST": np.array([v1 + v13, v2, v13]) / v}


ISHIGAMI_SPACE = ParameterSpace(("x1", "x2", "x3"), (-np.pi,) * 3, (np.pi,) * 3, ("linear",) * 3)
