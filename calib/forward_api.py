"""The interface through which forward models plug into the calibration layer.

A forward model is any object with

* ``name``: str — short identifier stored in campaign/surrogate metadata;
* ``parameter_names``: tuple of str — the order of the columns of ``theta``;
* ``observables``: tuple of str — e.g. ``("log_volume",)``;
* ``times``: 1-D float array — the output time grid shared by all observables;
* optional ``space(preset=None) -> ParameterSpace`` — default ranges and log/linear scales of the parameters (models
  in the registry need none: the workflow takes ranges and scales from the registry and ``[design.bounds]``);
* ``simulate(theta, condition=None) -> ndarray`` of shape ``(n, len(observables), len(times))`` for a
  ``(n, len(parameter_names))`` batch ``theta`` and one condition (a mapping: schedule, covariates, options).

Optional: ``simulate_pt(theta, condition)`` — the same map as a PyTensor expression (closed-form toy models), used as
the "exact" emulator so the surrogate route can be validated against the exact likelihood; or
``simulate_jacobian(theta, condition) -> (outputs, jacobian)`` with ``jacobian`` of shape ``(n, len(observables),
len(times), len(parameter_names))`` — the exact derivative of what ``simulate`` computes (forward-mode sensitivities
through the model's own time stepping) — which makes the "exact" emulator a PyTensor Op with a gradient
(:func:`immunocal.calib.surrogate.ForwardGradOp`), so NUTS runs on the true model. A simulator whose cost grows with the
horizon may set ``supports_until = True`` and accept ``until`` (one last needed time per row) in ``simulate`` and
``simulate_jacobian``: each row is then computed only up to its own last data day (outputs after it are finite but
not the model's; the likelihood reads none of them). ``refined()`` returns the same simulator at a finer numerical
resolution (the workflow's resolution check at posterior draws); ``numerics_tag`` names the resolution (part of
every campaign key).

Models are found by spec string with :func:`load_forward_model`: ``"toy.logistic"``, ``"toy.linear"`` (shipped in
:mod:`immunocal.calib.toy`) or ``"package.module:attribute"`` where the attribute is a forward-model instance, class or
factory. A model with settings travels as a **descriptor** (:func:`forward_descriptor`): the spec plus the keyword
arguments of the class, JSON-serialisable — campaigns store it, workers rebuild the model from it (never re-reading
data files), and surrogates record it so a surrogate trained for another model or other settings is refused.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ForwardModel(Protocol):
    name: str
    parameter_names: tuple[str, ...]
    observables: tuple[str, ...]
    times: np.ndarray

    def simulate(self, theta: np.ndarray, condition: Mapping[str, Any] | None = None) -> np.ndarray: ...


def forward_descriptor(spec: str, options: Mapping[str, Any] | None = None) -> str | dict:
    """The serialisable identity of a forward model: the spec string alone, or ``{"spec", "options"}`` when the
    class takes keyword arguments (sorted, JSON values only)."""
    if not options:
        return spec
    opts = json.loads(json.dumps(dict(options), sort_keys=True))  # JSON values only (raises on others)
    return {"spec": spec, "options": opts}


def descriptor_key(descriptor: str | Mapping) -> str:
    """A canonical string of a descriptor (equal iff the descriptors are equal), for caches and comparisons."""
    return descriptor if isinstance(descriptor, str) else json.dumps(descriptor, sort_keys=True)


#: the package whose forward models a config may name without saying so (the toolkit's own)
TOOLKIT_PACKAGES = ("immunocal",)
#: the toolkit's folders, installed as ``immunocal.<folder>``; a spec naming one of them bare is refused (PyPI has
#: unrelated packages of these names)
TOOLKIT_FOLDERS = ("calib", "forward", "priors", "studies")


def check_trusted(spec: str | Mapping, trusted: Sequence[str] = (), where: str = "config") -> None:
    """A config can import and run code: the module of its forward model must be the toolkit's
    (:data:`TOOLKIT_PACKAGES`, ``toy.*``) or a package the config names in ``[model] trusted_modules`` — never
    whatever happens to be importable."""
    if isinstance(spec, Mapping):
        spec = spec.get("spec", "")
    if not isinstance(spec, str) or spec.startswith("toy.") or ":" not in spec:
        return
    top = spec.split(":", 1)[0].split(".", 1)[0]
    if top in TOOLKIT_FOLDERS and top not in set(trusted):
        raise ValueError(f"{where}: forward model {spec!r}: the toolkit's modules are installed under the immunocal "
                         f"namespace — write 'immunocal.{spec}'")
    if top not in TOOLKIT_PACKAGES and top not in set(trusted):
        raise ValueError(f"{where}: forward model {spec!r} is outside the toolkit ({', '.join(TOOLKIT_PACKAGES)}); a "
                         f"config imports and runs that code — treat it like code, and allow it explicitly with "
                         f"[model] trusted_modules = [\"{top}\"]")


def load_forward_model(spec: str | Mapping, **kwargs) -> ForwardModel:
    """Resolve a forward-model spec string (``"toy.logistic"`` or ``"pkg.module:attr"``) or a descriptor
    (:func:`forward_descriptor`) to an instance; ``kwargs`` (and a descriptor's options) go to the class/factory."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"spec", "options"})
        if unknown or "spec" not in spec:
            raise ValueError(f"forward descriptor {dict(spec)} must have 'spec' and optionally 'options'")
        kwargs = {**dict(spec.get("options") or {}), **kwargs}
        spec = spec["spec"]
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
        if mod_name.split(".", 1)[0] in TOOLKIT_FOLDERS:
            raise ValueError(f"forward model {spec!r}: the toolkit's modules are installed under the immunocal "
                             f"namespace — write 'immunocal.{spec}'")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"forward model {spec!r}: cannot import module {mod_name!r} ({exc})") from None
        if not hasattr(mod, attr):
            raise ValueError(f"forward model {spec!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(mod, attr)
    else:
        raise ValueError(f"forward model spec {spec!r} must be 'toy.<name>' or 'package.module:attribute'")
    if kwargs and not (isinstance(obj, type) or callable(obj) and not hasattr(obj, "simulate")):
        raise ValueError(f"forward model {spec!r} is an instance; it takes no options (got {sorted(kwargs)})")
    try:
        model = obj(**kwargs) if callable(obj) and not hasattr(obj, "simulate") or isinstance(obj, type) else obj
    except TypeError as exc:
        raise ValueError(f"forward model {spec!r}: bad options {sorted(kwargs)}: {exc}") from None
    missing = [a for a in ("name", "parameter_names", "observables", "times", "simulate") if not hasattr(model, a)]
    if missing:
        raise ValueError(f"forward model {spec!r} lacks {missing} (see immunocal.calib.forward_api.ForwardModel)")
    model.spec = spec
    model.descriptor = forward_descriptor(spec, kwargs)
    return model


def full_vectors(theta: np.ndarray, names, model_names, fixed: Mapping[str, float] | None = None) -> np.ndarray:
    """The forward model's full input rows from values of the free parameters ``names`` (columns of ``theta``) and
    ``fixed`` values of the others — the one "free parameters + base set → full vector" step."""
    theta = np.atleast_2d(np.asarray(theta, float))
    names, fixed = list(names), dict(fixed or {})
    if theta.shape[1] != len(names):
        raise ValueError(f"theta has {theta.shape[1]} columns for {len(names)} parameters {names}")
    missing = [n for n in model_names if n not in names and n not in fixed]
    if missing:
        raise ValueError(f"parameter(s) {missing} are neither free nor fixed")
    out = np.empty((len(theta), len(model_names)))
    for j, n in enumerate(model_names):
        out[:, j] = theta[:, names.index(n)] if n in names else float(fixed[n])
    return out


def check_output(model: ForwardModel, out: np.ndarray, n: int) -> np.ndarray:
    """Check the shape of a ``simulate`` result; raise ValueError naming the model and the expected shape."""
    out = np.asarray(out, dtype=float)
    expected = (n, len(model.observables), len(model.times))
    if out.shape != expected:
        raise ValueError(f"forward model {model.name!r} returned shape {out.shape}, expected {expected}")
    return out
