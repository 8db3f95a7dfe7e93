"""The interface through which forward models plug into the calibration layer.

A forward model is any object with

* ``name``: str — short identifier stored in campaign/surrogate metadata;
* ``parameter_names``: tuple of str — the order of the columns of ``theta``;
* ``observables``: tuple of str — e.g. ``("log_volume",)``;
* ``times``: 1-D float array — the output time grid shared by all observables;
* ``space(preset=None) -> ParameterSpace`` — admissible ranges and log/linear scale of the parameters (registry
  models build it with :meth:`calib.design.ParameterSpace.from_registry`);
* ``simulate(theta, condition=None) -> ndarray`` of shape ``(n, len(observables), len(times))`` for a
  ``(n, len(parameter_names))`` batch ``theta`` and one condition (a mapping: schedule, covariates, options).

Optional: ``simulate_pt(theta, condition)`` — the same map as a PyTensor expression (closed-form toy models), used as
the "exact" emulator so the surrogate route can be validated against the exact likelihood.

Models are found by spec string with :func:`load_forward_model`: ``"toy.logistic"``, ``"toy.linear"`` (shipped in
:mod:`calib.toy`) or ``"package.module:attribute"`` where the attribute is a forward-model instance, class or
zero-argument factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ForwardModel(Protocol):
    name: str
    parameter_names: tuple[str, ...]
    observables: tuple[str, ...]
    times: np.ndarray

    def space(self, preset: str | None = None): ...

    def simulate(self, theta: np.ndarray, condition: Mapping[str, Any] | None = None) -> np.ndarray: ...


def load_forward_model(spec: str, **kwargs) -> ForwardModel:
    """Resolve a forward-model spec string (``"toy.logistic"`` or ``"pkg.module:attr"``) to an instance."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"forward model spec must be a non-empty string, got {spec!r}")
    if spec.startswith("toy."):
        from . import toy

        key = spec.split(".", 1)[1]
        if key not in toy.TOY_MODELS:
            raise ValueError(f"unknown toy forward model {spec!r}; choose one of "
                             f"{sorted('toy.' + k for k in toy.TOY_MODELS)}")
        obj: Any = toy.TOY_MODELS[key]
    elif ":" in spec:
        mod_name, attr = spec.split(":", 1)
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"forward model {spec!r}: cannot import module {mod_name!r} ({exc})") from None
        if not hasattr(mod, attr):
            raise ValueError(f"forward model {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(mod, attr)
    else:
        raise ValueError(f"forward model spec {spec!r} must be 'toy.<name>' or 'package.module:attribute'")
    model = obj(**kwargs) if callable(obj) and not hasattr(obj, "simulate") or isinstance(obj, type) else obj
    missing = [a for a in ("name", "parameter_names", "observables", "times", "simulate", "space")
               if not hasattr(model, a)]
    if missing:
        raise ValueError(f"forward model {spec!r} lacks {missing} (see calib.forward_api.ForwardModel)")
    model.spec = spec
    return model


def check_output(model: ForwardModel, out: np.ndarray, n: int) -> np.ndarray:
    """Check the shape of a ``simulate`` result; raise ValueError naming the model and the expected shape."""
    out = np.asarray(out, dtype=float)
    expected = (n, len(model.observables), len(model.times))
    if out.shape != expected:
        raise ValueError(f"forward model {model.name!r} returned shape {out.shape}, expected {expected}")
    return out
