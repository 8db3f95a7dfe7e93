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
every campaign key). ``warm_up(jacobian=False)`` compiles (or loads from the JIT's on-disk cache) what ``simulate``
(``simulate_jacobian`` when ``jacobian``) runs, by one tiny run: :func:`compile_in_background` calls it in separate
processes while the workflow compiles the likelihood graph (:func:`await_compiled` waits before the first simulation).

Models are found by spec string with :func:`load_forward_model`: ``"toy.logistic"``, ``"toy.linear"`` (shipped in
:mod:`immunocal.calib.toy`) or ``"package.module:attribute"`` where the attribute is a forward-model instance, class or
factory. A model with settings travels as a **descriptor** (:func:`forward_descriptor`): the spec plus the keyword
arguments of the class, JSON-serialisable — campaigns store it, workers rebuild the model from it (never re-reading
data files), and surrogates record it so a surrogate trained for another model or other settings is refused.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
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


#: background compilations in flight: (descriptor key, jacobian) -> process (:func:`compile_in_background`)
_COMPILING: dict[tuple[str, bool], subprocess.Popen] = {}
_WARM_UP = ("import json, os, sys; int(sys.argv[3]) and hasattr(os, 'nice') and os.nice(int(sys.argv[3])); "
            "from immunocal.calib.forward_api import load_forward_model; "
            "load_forward_model(json.loads(sys.argv[1])).warm_up(jacobian=sys.argv[2] == '1')")


def compile_in_background(model, jacobian: bool = True) -> bool:
    """Start compiling ``model``'s kernels in separate processes — its ``warm_up()`` for the values and, with
    ``jacobian``, for the exact sensitivities, each rebuilt from the model's descriptor — which write them to the
    JIT's on-disk cache while this process builds and compiles the likelihood graph; :func:`await_compiled` waits for
    them before the first simulation here, which then loads the kernels from the cache. A model without ``warm_up``
    or a descriptor compiles in this process at its first call, as always. Returns whether anything was started.

    Why: on a cold cache the RIT kernel's tangent specialisation compiles in ≈ 100 s and its value one in ≈ 20 s
    more, one core each, while PyTensor compiles the likelihood graph (≈ 30 s) on the other — in sequence, the
    quickstart's first 2.5 minutes (docs/calib.md, "Compiling in the background")."""
    if not hasattr(model, "warm_up") or not hasattr(model, "descriptor"):
        return False
    key = descriptor_key(model.descriptor)
    for jac in ((True, False) if jacobian else (False,)):
        # the values are needed later (after sampling): beside the sensitivities they compile at a lower priority,
        # so the first gradient is not delayed (cold quickstart, fresh caches: at one priority the Laplace start
        # waited 128 s for its first gradient, at nice 10 102 s; docs/calib.md "Compiling in the background")
        nice = 10 if jacobian and not jac else 0
        if (key, jac) not in _COMPILING:
            _COMPILING[(key, jac)] = subprocess.Popen(
                [sys.executable, "-c", _WARM_UP, json.dumps(model.descriptor), "1" if jac else "0", str(nice)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return True


def await_compiled(model, jacobian: bool | None = None) -> None:
    """Wait for ``model``'s background compilations (:func:`compile_in_background`) — the sensitivities' (``jacobian
    = True``), the values' (``False``) or both (``None``); nothing to wait for returns at once. One that failed is
    announced (``RuntimeWarning`` with its exit code and the end of its error output): the kernel then compiles in
    this process, as without the background start."""
    if not _COMPILING:  # the common case, at every likelihood evaluation: nothing in flight
        return
    key = descriptor_key(getattr(model, "descriptor", "")) if hasattr(model, "descriptor") else None
    for jac in ((True, False) if jacobian is None else (bool(jacobian),)):
        proc = _COMPILING.pop((key, jac), None)
        if proc is None:
            continue
        _, err = proc.communicate()
        if proc.returncode != 0:
            warnings.warn(f"forward model {model.name!r}: the background compilation of its "
                          f"{'sensitivities' if jac else 'values'} failed (exit {proc.returncode}): "
                          f"{(err or '').strip()[-600:]} — compiling in this process instead", RuntimeWarning,
                          stacklevel=2)
