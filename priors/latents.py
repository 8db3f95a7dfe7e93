"""Seed 000's six normalised patient latents and their mapping onto mechanistic quantities (SPEC §8).

θ̃_pat = (θ_inf, θ_exh, θ_cyt, θ_esc, θ_env, θ_init) ∈ [0, 1]^6 (seed 000 §2.3). Each latent scales one or more
*targets* on a documented admissible range [lower, upper] (``priors/data/latents.toml``):

* log scale:    q(θ) = lower · (upper/lower)^θ
* linear scale: q(θ) = lower + (upper − lower)·θ

Targets are either registry parameters of the CAR-T model (checked against the registry's admissible bounds of the
``normalised`` preset on load) or per-patient inputs of :func:`immunocal.forward.cart.patient.simulate_patient` that are not
parameters (``tumour0``, ``tb_fraction``, ``infiltration_fraction``). The map is monotone per target, so the inverse
exists from any single target; :meth:`LatentMap.from_values` recovers θ from a full set and checks that tied targets
agree.

Seed 000's regression targets are the *bounded logits* of these latents on [0, 1] (``immunocal.priors.bounded_logit``); that
belongs to the baseline (calib/baseline.py), not to this map.

Example::

    from immunocal.priors.latents import latent_map
    lm = latent_map()
    params, inputs = lm.to_model({"theta_inf": 0.7, "theta_exh": 0.5, ...})
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from .errors import ParameterError, ParameterRangeError, UnknownParameterError

LATENTS = ("theta_inf", "theta_exh", "theta_cyt", "theta_esc", "theta_env", "theta_init")
#: per-patient inputs (not registry parameters) a latent may set
QUANTITIES = ("tumour0", "tb_fraction", "infiltration_fraction")


@dataclass(frozen=True)
class Target:
    """One mechanistic quantity scaled by a latent."""

    name: str
    lower: float
    upper: float
    scale: str          # "log" | "linear"
    is_parameter: bool  # registry parameter (True) or simulate_patient input (False)

    def value(self, theta):
        t = np.asarray(theta, dtype=float)
        if self.scale == "log":
            return self.lower * (self.upper / self.lower) ** t
        return self.lower + (self.upper - self.lower) * t

    def theta(self, value):
        v = np.asarray(value, dtype=float)
        if self.scale == "log":
            return np.log(v / self.lower) / math.log(self.upper / self.lower)
        return (v - self.lower) / (self.upper - self.lower)


@dataclass(frozen=True)
class Latent:
    name: str
    description: str
    targets: tuple[Target, ...]
    note: str = ""


def _check_theta(name: str, theta: Any) -> float:
    try:
        t = float(theta)
    except (TypeError, ValueError):
        raise ParameterError(f"latent {name} = {theta!r} is not a number") from None
    if not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise ParameterRangeError(f"latent {name} = {theta} is outside its admissible range [0, 1]")
    return t


class LatentMap:
    """The six latents, their targets and the forward/inverse maps. Build with :func:`latent_map`."""

    def __init__(self, latents: Mapping[str, Latent], model: str = "cart", preset: str = "normalised"):
        self.latents = dict(latents)
        self.model = model
        self.preset = preset

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.latents)

    def target(self, latent: str, name: str) -> Target:
        for t in self.latents[latent].targets:
            if t.name == name:
                return t
        raise UnknownParameterError(f"latent {latent} has no target '{name}'")

    def values(self, thetas: Mapping[str, float]) -> dict[str, float]:
        """All target values (parameters and inputs) for one patient; every latent must be given."""
        missing = [n for n in self.names if n not in thetas]
        if missing:
            raise ParameterError(f"missing latent(s) {missing}; need all of {list(self.names)}")
        unknown = [n for n in thetas if n not in self.latents]
        if unknown:
            raise UnknownParameterError(f"unknown latent(s) {unknown}; known: {list(self.names)}")
        out: dict[str, float] = {}
        for name, lat in self.latents.items():
            t = _check_theta(name, thetas[name])
            for tg in lat.targets:
                out[tg.name] = float(tg.value(t))
        return out

    def to_model(self, thetas: Mapping[str, float], base=None):
        """``(ParameterSet, inputs)``: the preset (or ``base``) with the latent-scaled parameters replaced, and the
        dict of non-parameter inputs (``tumour0``, ``tb_fraction``, ``infiltration_fraction``)."""
        from .registry import registry

        vals = self.values(thetas)
        params = {k: v for k, v in vals.items() if k not in QUANTITIES}
        inputs = {k: v for k, v in vals.items() if k in QUANTITIES}
        ps = base if base is not None else registry().parameter_set(self.model, self.preset)
        return ps.replace(**params), inputs

    def from_values(self, values: Mapping[str, float], rtol: float = 1e-6) -> dict[str, float]:
        """Inverse map: θ for every latent from target values (a ParameterSet plus inputs, or one dict). Each latent
        needs at least one of its targets; tied targets that are present must agree within ``rtol`` (else the
        point is not on the latent manifold and ParameterError names the latent)."""
        out = {}
        for name, lat in self.latents.items():
            ts = [float(tg.theta(values[tg.name])) for tg in lat.targets if tg.name in values]
            if not ts:
                raise ParameterError(f"cannot invert {name}: none of {[t.name for t in lat.targets]} given")
            if max(ts) - min(ts) > rtol:
                raise ParameterError(f"cannot invert {name}: its targets imply different latents {ts} "
                                     "(values not on the latent map)")
            out[name] = _check_theta(name, ts[0])
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per (latent, target) for docs and JSON."""
        rows = []
        for name, lat in self.latents.items():
            for tg in lat.targets:
                rows.append({"latent": name, "target": tg.name, "lower": tg.lower, "upper": tg.upper,
                             "scale": tg.scale, "registry_parameter": tg.is_parameter})
        return rows


def _build(data: Mapping[str, Any]) -> LatentMap:
    from .registry import registry

    model, preset = data.get("model", "cart"), data.get("preset", "normalised")
    reg = registry()
    order = list(data.get("order", LATENTS))
    if tuple(order) != LATENTS:
        raise ParameterError(f"latents.toml: order must be {list(LATENTS)}, got {order}")
    lats = {}
    for name in order:
        raw = data["latent"][name]
        targets = []
        for i, t in enumerate(raw["targets"]):
            where = f"latents.toml [latent.{name}] target {i + 1}"
            lo, hi, scale = float(t["lower"]), float(t["upper"]), t.get("scale", "linear")
            if scale not in ("log", "linear"):
                raise ParameterError(f"{where}: scale must be 'log' or 'linear', got {scale!r}")
            if not lo < hi or (scale == "log" and lo <= 0):
                raise ParameterError(f"{where}: need lower < upper (and lower > 0 on a log scale), got [{lo}, {hi}]")
            if "parameter" in t:
                rec = reg.record(model, t["parameter"], where=where)
                a, b = rec.bounds_for(preset)
                if lo < a or hi > b:
                    raise ParameterRangeError(f"{where}: range [{lo}, {hi}] of {t['parameter']} leaves the "
                                              f"registry's admissible range [{a}, {b}]")
                targets.append(Target(t["parameter"], lo, hi, scale, True))
            elif t.get("quantity") in QUANTITIES:
                targets.append(Target(t["quantity"], lo, hi, scale, False))
            else:
                raise ParameterError(f"{where}: needs `parameter` (registry name) or `quantity` in {QUANTITIES}")
        lats[name] = Latent(name, raw.get("description", ""), tuple(targets), raw.get("note", ""))
    return LatentMap(lats, model, preset)


@functools.lru_cache(maxsize=1)
def latent_map() -> LatentMap:
    """The latent map of ``priors/data/latents.toml`` (cached)."""
    text = resources.files("immunocal.priors").joinpath("data/latents.toml").read_text(encoding="utf-8")
    return _build(tomllib.loads(text))
