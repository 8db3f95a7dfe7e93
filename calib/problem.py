"""The calibration problem (cf. pyPESTO's ``Problem``): what is calibrated, where, under which priors, and the rest.

Built once from the registry plus the config (:attr:`immunocal.calib.workflow.Calibration.problem`) and handed down: the
forward model's input vector (``model_names``), the calibrated parameters (``free``, in input order: the emulator
inputs), their box and scales (``space``: the unit-cube map of designs and surrogates), their priors (population
parameters; latent parameters' locations in link space), the values of every other input (``fixed``) and
:meth:`full_vector`, the one "free values + fixed values → forward input rows" step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .design import ParameterSpace
from .forward_api import full_vectors


@dataclass(frozen=True)
class Problem:
    model_names: tuple[str, ...]
    free: tuple[str, ...]
    space: ParameterSpace
    fixed: Mapping[str, float]
    latent: tuple[str, ...] = ()
    priors: Mapping = field(default_factory=dict)
    observed: tuple[str, ...] = ()  # per-subject inputs known from the data (role "observed"): inputs, not sampled

    def __post_init__(self):
        if tuple(self.space.names) != tuple(self.free):
            raise ValueError(f"problem: space {list(self.space.names)} is not over the free parameters {self.free}")
        missing = [n for n in self.model_names if n not in self.free and n not in self.fixed]
        if missing:
            raise ValueError(f"problem: parameter(s) {missing} are neither calibrated nor fixed")
        stray = [n for n in (*self.latent, *self.observed) if n not in self.free]
        if stray:
            raise ValueError(f"problem: per-subject parameter(s) {stray} are not emulator inputs")

    @property
    def population(self) -> tuple[str, ...]:
        return tuple(n for n in self.free if n not in self.latent and n not in self.observed)

    @property
    def per_subject(self) -> tuple[str, ...]:
        """Inputs with one value per subject: latent (sampled) and observed (from the data)."""
        return tuple(n for n in self.free if n in self.latent or n in self.observed)

    def full_vector(self, theta: np.ndarray) -> np.ndarray:
        """Forward-model input rows from rows of free-parameter values (``(n, len(free))``)."""
        return full_vectors(theta, self.free, self.model_names, self.fixed)

    def to_dict(self) -> dict:
        return {"model_names": list(self.model_names), "free": list(self.free), "latent": list(self.latent),
                "observed": list(self.observed),
                "space": self.space.to_dict(), "fixed": dict(self.fixed),
                "priors": {k: v.to_dict() for k, v in self.priors.items()}}
