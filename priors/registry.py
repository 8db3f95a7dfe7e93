"""The parameter registry: the single source of truth for every parameter value of every forward model.

Each model has one data file ``priors/data/<model>.toml`` with a header (model, title, seed, presets) and one
``[[parameter]]`` table per parameter:

=================  ==========================================================================================
key                meaning
=================  ==========================================================================================
name               python identifier that says what the parameter is (``exhaustion_rate``, not ``ke0``)
symbol             the seed's symbol (``k_e^0``)
unit               unit in the dimensional presets (``unit_by_preset`` overrides per preset)
description        one line
default            value used by every preset that does not override it (absent while ``status = "pending"``)
preset_default     per-preset overrides ``{preset = value}``
bounds             admissible range ``[a, b]`` (``inf`` allowed) — values outside are rejected, never clipped
bounds_by_preset   per-preset admissible ranges (e.g. a non-dimensional preset)
scale              ``linear`` or ``log`` (designs and default priors)
log_lower          with ``scale = "log"`` and an admissible lower bound 0 (the process switched off): the positive
                   value where log-scale designs and the default prior start (0 itself stays admissible)
source             seed file + table/equation the value comes from
seed_range         the range quoted by the seed, verbatim, when it differs from ``bounds``
fixed_in           presets in which the seed kept the parameter fixed (the ``*`` of seed 002's tables)
status             ``ok`` (default) or ``pending`` (meaning known, value not yet derived)
note               why a value or range departs from the seed, or anything a user must know
prior              optional prior override ``{distribution = ..., ...}`` (see :mod:`immunocal.priors.prior`)
=================  ==========================================================================================

Typical use::

    from immunocal.priors import registry
    ps = registry().parameter_set("cart", "paper")              # validated, immutable
    ps["chemokine_decay_rate"]                                   # 0.56
    ps2 = ps.replace(exhaustion_rate=0.06)                       # validated again
    arr = ps.as_array(["tumour_growth_rate", "exhaustion_rate"])  # for Numba kernels
"""

from __future__ import annotations

import functools
import json
import math
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError, ParameterFileError, ParameterRangeError, UnknownParameterError
from .prior import Prior, default_prior
from .textio import read_input_text

_RECORD_KEYS = {
    "name", "symbol", "unit", "unit_by_preset", "description", "default", "preset_default", "bounds",
    "bounds_by_preset", "scale", "source", "seed_range", "fixed_in", "status", "note", "prior", "log_lower",
}


def _fmt(value: float) -> str:
    return f"{value:.6g}"


@dataclass(frozen=True)
class ParameterRecord:
    """One registry row. Use :meth:`default_for` / :meth:`bounds_for` rather than the raw fields."""

    model: str
    name: str
    symbol: str
    unit: str
    description: str
    bounds: tuple[float, float]
    scale: str
    source: str
    default: float | None = None
    preset_default: Mapping[str, float] = field(default_factory=dict)
    bounds_by_preset: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    unit_by_preset: Mapping[str, str] = field(default_factory=dict)
    seed_range: str = ""
    fixed_in: tuple[str, ...] = ()
    status: str = "ok"
    note: str = ""
    prior_override: Prior | None = None
    log_lower: float | None = None

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    def default_for(self, preset: str) -> float:
        if self.pending:
            raise ParameterError(
                f"{self.model} parameter '{self.name}' ({self.symbol}) has no value yet (status: pending)"
            )
        if preset in self.preset_default:
            return float(self.preset_default[preset])
        if self.default is None:
            raise ParameterError(f"{self.model} parameter '{self.name}' has no default for preset '{preset}'")
        return float(self.default)

    def bounds_for(self, preset: str | None = None) -> tuple[float, float]:
        if preset is not None and preset in self.bounds_by_preset:
            return self.bounds_by_preset[preset]
        return self.bounds

    def scale_bounds_for(self, preset: str | None = None) -> tuple[float, float]:
        """The range a design or the default prior covers in the parameter's scale: the admissible range, with a
        log scale's lower bound 0 (switched off) replaced by ``log_lower``."""
        lo, hi = self.bounds_for(preset)
        if self.scale == "log" and lo <= 0:
            if self.log_lower is None:
                raise ParameterError(f"{self.model} parameter '{self.name}' ({self.symbol}) has a log scale and "
                                     f"admissible lower bound {lo:g}: its record needs a positive log_lower")
            return (max(lo, self.log_lower), hi)
        return (lo, hi)

    def unit_for(self, preset: str | None = None) -> str:
        if preset is not None and preset in self.unit_by_preset:
            return self.unit_by_preset[preset]
        return self.unit

    def is_fixed(self, preset: str) -> bool:
        return preset in self.fixed_in

    def check(self, value: Any, preset: str | None = None, where: str = "") -> float:
        """Return ``value`` as float if it is finite and admissible, else raise naming the parameter and range."""
        lo, hi = self.bounds_for(preset)
        loc = f" ({where})" if where else ""
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ParameterRangeError(
                f"{self.model} parameter '{self.name}' ({self.symbol}){loc}: value {value!r} is not a number; "
                f"allowed range [{_fmt(lo)}, {_fmt(hi)}] {self.unit_for(preset)}"
            ) from None
        if not math.isfinite(x):
            raise ParameterRangeError(
                f"{self.model} parameter '{self.name}' ({self.symbol}){loc}: value {x} is not finite; "
                f"allowed range [{_fmt(lo)}, {_fmt(hi)}] {self.unit_for(preset)}"
            )
        if x < lo or x > hi:
            raise ParameterRangeError(
                f"{self.model} parameter '{self.name}' ({self.symbol}){loc}: value {_fmt(x)} is outside the "
                f"admissible range [{_fmt(lo)}, {_fmt(hi)}] {self.unit_for(preset)}"
            )
        return x

    def prior(self, preset: str) -> Prior:
        """The prior for this parameter in ``preset`` (override from the data file, else the default prior)."""
        if self.prior_override is not None:
            return self.prior_override
        lo, hi = self.scale_bounds_for(preset)
        return default_prior(self.default_for(preset), lo, hi, self.scale)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "name": self.name, "symbol": self.symbol, "unit": self.unit,
            "description": self.description, "bounds": list(self.bounds), "scale": self.scale,
            "source": self.source, "status": self.status,
        }
        if self.default is not None:
            d["default"] = self.default
        if self.log_lower is not None:
            d["log_lower"] = self.log_lower
        for key in ("preset_default", "unit_by_preset"):
            if getattr(self, key):
                d[key] = dict(getattr(self, key))
        if self.bounds_by_preset:
            d["bounds_by_preset"] = {k: list(v) for k, v in self.bounds_by_preset.items()}
        if self.seed_range:
            d["seed_range"] = self.seed_range
        if self.fixed_in:
            d["fixed_in"] = list(self.fixed_in)
        if self.note:
            d["note"] = self.note
        if self.prior_override is not None:
            d["prior"] = self.prior_override.to_dict()
        return d


def _as_bounds(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise ParameterFileError(f"{where}: bounds must be a pair [lower, upper], got {raw!r}")
    lo, hi = (float(v) for v in raw)
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ParameterFileError(f"{where}: bounds must satisfy lower < upper, got {raw!r}")
    return lo, hi


def _record_from_table(model: str, table: Mapping[str, Any], where: str, presets: Iterable[str]) -> ParameterRecord:
    unknown = set(table) - _RECORD_KEYS
    if unknown:
        raise ParameterFileError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_RECORD_KEYS)})")
    for key in ("name", "symbol", "unit", "description", "bounds", "scale", "source"):
        if key not in table:
            raise ParameterFileError(f"{where}: parameter record is missing '{key}'")
    name = table["name"]
    where = f"{where} ('{name}')"
    if table["scale"] not in ("linear", "log"):
        raise ParameterFileError(f"{where}: scale must be 'linear' or 'log', got {table['scale']!r}")
    status = table.get("status", "ok")
    if status not in ("ok", "pending"):
        raise ParameterFileError(f"{where}: status must be 'ok' or 'pending', got {status!r}")
    if status == "ok" and "default" not in table and not table.get("preset_default"):
        raise ParameterFileError(f"{where}: needs a default (or status = 'pending')")
    presets = set(presets)
    for key in ("preset_default", "bounds_by_preset", "unit_by_preset"):
        bad = set(table.get(key, {})) - presets
        if bad:
            raise ParameterFileError(f"{where}: {key} names unknown presets {sorted(bad)}")
    bad = set(table.get("fixed_in", [])) - presets
    if bad:
        raise ParameterFileError(f"{where}: fixed_in names unknown presets {sorted(bad)}")
    log_lower = table.get("log_lower")
    if log_lower is not None:
        lo = _as_bounds(table["bounds"], where)[0]
        if table["scale"] != "log" or lo > 0:
            raise ParameterFileError(f"{where}: log_lower applies to a log-scale parameter whose lower bound is 0, "
                                     f"got scale {table['scale']!r} and bounds {list(table['bounds'])}")
        if not (isinstance(log_lower, (int, float)) and 0 < log_lower < _as_bounds(table["bounds"], where)[1]):
            raise ParameterFileError(f"{where}: log_lower must be a number in (0, upper bound), got {log_lower!r}")
    prior = None
    if "prior" in table:
        try:
            prior = Prior.from_dict(dict(table["prior"]))
        except ValueError as exc:
            raise ParameterFileError(f"{where}: bad prior: {exc}") from None
    return ParameterRecord(
        model=model,
        name=name,
        symbol=table["symbol"],
        unit=table["unit"],
        description=table["description"],
        bounds=_as_bounds(table["bounds"], where),
        scale=table["scale"],
        source=table["source"],
        default=float(table["default"]) if "default" in table else None,
        preset_default={k: float(v) for k, v in table.get("preset_default", {}).items()},
        bounds_by_preset={k: _as_bounds(v, where) for k, v in table.get("bounds_by_preset", {}).items()},
        unit_by_preset=dict(table.get("unit_by_preset", {})),
        seed_range=table.get("seed_range", ""),
        fixed_in=tuple(table.get("fixed_in", ())),
        status=status,
        note=table.get("note", ""),
        prior_override=prior,
        log_lower=None if log_lower is None else float(log_lower),
    )


@dataclass(frozen=True)
class ModelEntry:
    model: str
    title: str
    seed: str
    presets: Mapping[str, str]
    records: Mapping[str, ParameterRecord]
    preset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class ParameterSet(Mapping[str, float]):
    """An immutable, validated assignment of values to every (non-pending) parameter of one model.

    Construct through :meth:`Registry.parameter_set` or :meth:`ParameterSet.from_file`.
    """

    def __init__(self, registry: Registry, model: str, preset: str, values: Mapping[str, float]):
        self._registry = registry
        self.model = model
        self.preset = preset
        checked = registry.validate(model, values, preset=preset)
        self._values = dict(checked)

    def __getitem__(self, name: str) -> float:
        try:
            return self._values[name]
        except KeyError:
            self._registry.record(self.model, name)  # raises UnknownParameterError with suggestions
            raise ParameterError(f"{self.model} parameter '{name}' is pending and has no value") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ParameterSet(model={self.model!r}, preset={self.preset!r}, {len(self)} values)"

    def replace(self, **changes: float) -> ParameterSet:
        """A new set with some values changed (validated; unknown names rejected)."""
        new = dict(self._values)
        for name, value in changes.items():
            self._registry.record(self.model, name)
            new[name] = value
        return ParameterSet(self._registry, self.model, self.preset, new)

    def as_array(self, names: Iterable[str]) -> np.ndarray:
        """Values in the given order as a contiguous float64 array (the form Numba kernels take)."""
        return np.ascontiguousarray([self[n] for n in names], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "preset": self.preset, "parameters": dict(self._values)}

    def to_file(self, path: str | Path) -> Path:
        """Write as TOML (``.toml``) or JSON (``.json``); :meth:`from_file` reads it back exactly."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix == ".toml":
            import tomli_w

            text = tomli_w.dumps(data)
        elif path.suffix == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            raise ParameterFileError(f"{path}: parameter files must end in .toml or .json")
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # atomic: a crash never leaves half a file
        return path

    @classmethod
    def from_file(cls, path: str | Path, registry: Registry | None = None) -> ParameterSet:
        """Read a parameter file. Values not given fall back to the file's preset defaults.

        The file is ``{model = ..., preset = ..., parameters = {name = value, ...}}`` in TOML or JSON.
        """
        reg = registry or globals()["registry"]()
        data = read_parameter_file(path)
        model, preset = data["model"], data["preset"]
        base = reg.parameter_set(model, preset)
        values = dict(base)
        for name, value in data["parameters"].items():
            rec = reg.record(model, name, where=str(path))
            values[name] = rec.check(value, preset, where=str(path))
        return cls(reg, model, preset, values)


def read_structured_file(path: str | Path, error: type[Exception] = ParameterFileError,
                         what: str = "parameter file") -> tuple[dict[str, Any], str]:
    """Parse a TOML (``.toml``) or JSON (``.json``) file whose top level is a table; return ``(data, text)``.

    Every failure raises ``error`` naming the file (and, for malformed content, the line and column). Shared by
    parameter files and by the forward models' own input files (e.g. DLN treatment plans).
    """
    path = Path(path)
    try:
        text = read_input_text(path, what, error)
    except FileNotFoundError as exc:
        raise error(str(exc)) from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise error(f"{path}: malformed TOML: {exc}") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        raise error(f"{path}: {what}s must end in .toml or .json")
    if not isinstance(data, dict):
        raise error(f"{path}: top level must be a table/object")
    return data, text


def read_parameter_file(path: str | Path) -> dict[str, Any]:
    """Parse and structurally check a parameter file; errors name the file and line."""
    path = Path(path)
    data, text = read_structured_file(path)
    for key in ("model", "preset", "parameters"):
        if key not in data:
            raise ParameterFileError(f"{path}: missing top-level key '{key}'")
    if not isinstance(data["parameters"], dict):
        raise ParameterFileError(f"{path}: 'parameters' must be a table/object of name = value")
    lines = text.splitlines()
    for name, value in data["parameters"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            line = next((i + 1 for i, ln in enumerate(lines) if name in ln), None)
            at = f" (line {line})" if line else ""
            raise ParameterFileError(f"{path}{at}: parameter '{name}' has non-numeric value {value!r}")
    return data


class Registry:
    """All parameter records of all models, loaded from ``priors/data/*.toml``."""

    def __init__(self, entries: Mapping[str, ModelEntry]):
        self._entries = dict(entries)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> Registry:
        entries = {}
        for path in paths:
            entry = load_model_file(path)
            entries[entry.model] = entry
        return cls(entries)

    # ------------------------------------------------------------------ look-up
    @property
    def models(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, model: str) -> ModelEntry:
        try:
            return self._entries[model]
        except KeyError:
            raise UnknownParameterError(f"unknown model '{model}'; known models: {self.models}") from None

    def presets(self, model: str) -> dict[str, str]:
        return dict(self.entry(model).presets)

    def preset_options(self, model: str, preset: str) -> dict[str, Any]:
        """Non-parameter settings a preset fixes (e.g. ``survival = "lq"``, ``vascular_damage = true``)."""
        self.check_preset(model, preset)
        return dict(self.entry(model).preset_options.get(preset, {}))

    def records(self, model: str) -> list[ParameterRecord]:
        return list(self.entry(model).records.values())

    def names(self, model: str) -> list[str]:
        return list(self.entry(model).records)

    def record(self, model: str, name: str, where: str = "") -> ParameterRecord:
        recs = self.entry(model).records
        if name in recs:
            return recs[name]
        import difflib

        close = difflib.get_close_matches(name, list(recs), n=3)
        hint = f"; did you mean {close}?" if close else ""
        loc = f" ({where})" if where else ""
        raise UnknownParameterError(f"unknown {model} parameter '{name}'{loc}{hint}")

    def find(self, name: str) -> list[ParameterRecord]:
        """Records named ``name`` (or with that symbol) in any model."""
        return [r for m in self.models for r in self.records(m) if name in (r.name, r.symbol)]

    def check_preset(self, model: str, preset: str) -> None:
        if preset not in self.entry(model).presets:
            raise ParameterError(
                f"unknown preset '{preset}' for model '{model}'; presets: {sorted(self.entry(model).presets)}"
            )

    # ------------------------------------------------------------------ values
    def validate(self, model: str, values: Mapping[str, Any], preset: str | None = None) -> dict[str, float]:
        """Check names, finiteness and admissible ranges; return the values as floats. Never clips."""
        if preset is not None:
            self.check_preset(model, preset)
        return {name: self.record(model, name).check(v, preset) for name, v in values.items()}

    def parameter_set(self, model: str, preset: str, overrides: Mapping[str, Any] | None = None) -> ParameterSet:
        """The defaults of ``preset`` (pending parameters omitted), with optional validated overrides."""
        self.check_preset(model, preset)
        values = {r.name: r.default_for(preset) for r in self.records(model) if not r.pending}
        for name, value in (overrides or {}).items():
            self.record(model, name)
            values[name] = value
        return ParameterSet(self, model, preset, values)

    def free_parameters(self, model: str, preset: str) -> list[str]:
        """Parameters the seed fitted (not fixed, not pending) for ``preset``."""
        return [r.name for r in self.records(model) if not r.pending and not r.is_fixed(preset)]


def load_model_file(path: str | Path) -> ModelEntry:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ParameterFileError(f"{path}: malformed TOML: {exc}") from None
    for key in ("model", "title", "seed", "presets", "parameter"):
        if key not in data:
            raise ParameterFileError(f"{path}: missing top-level key '{key}'")
    model = data["model"]
    presets = {k: (v.get("description", "") if isinstance(v, dict) else str(v)) for k, v in data["presets"].items()}
    # model options that a preset fixes besides parameter values (e.g. rit: survival model, vascular damage)
    options = {
        k: {o: val for o, val in v.items() if o != "description"} if isinstance(v, dict) else {}
        for k, v in data["presets"].items()
    }
    records: dict[str, ParameterRecord] = {}
    for i, table in enumerate(data["parameter"]):
        rec = _record_from_table(model, table, f"{path}: parameter #{i + 1}", presets)
        if rec.name in records:
            raise ParameterFileError(f"{path}: parameter '{rec.name}' defined twice")
        records[rec.name] = rec
    return ModelEntry(
        model=model, title=data["title"], seed=data["seed"], presets=presets, records=records, preset_options=options
    )


def data_files() -> list[Path]:
    """The registry's model files: every ``priors/data/*.toml`` holding ``[[parameter]]`` records (other TOML files
    there, such as the seed-000 latent mapping, are data of other modules)."""
    folder = resources.files("immunocal.priors") / "data"
    paths = sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml"))
    return [p for p in paths if any(ln.strip() == "[[parameter]]" for ln in p.read_text().splitlines())]


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The package registry (loaded once per process)."""
    return Registry.from_files(data_files())
