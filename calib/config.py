"""The calibration config: one TOML file, one validating loader (:func:`load_config`).

Every section and key is declared in :data:`SCHEMA` with its type; an unknown key, a wrong type or a missing
required entry is an error naming the key path and its line in the file (a typo never silently changes a run).
Relative paths are relative to the config file. The full reference with an example is in docs/calib.md.

    [model]        forward = "toy.logistic" | "package.module:Class";  registry_model; preset;
                   trusted_modules = ["mypkg"] (a forward model outside the toolkit: a config runs code)
                   [model.options]  keyword arguments of the forward class (its serialisable descriptor)
    [data]         measurements; conditions; shared_subjects; observables = [...] (keep only these);
                   [data.log_transform] obs = "log_obs"
    [conditions]   fit = [...]; heldout = [...]   (default: every condition of the data is fitted)
    [design]       n; method; seed; chunk_size; workers; [design.bounds] name = [lo, hi];
                   [design.scales] name = "log" | "linear" (parameters outside the registry)
    [emulator]     kind = "surrogate" | "exact" | "blackbox"; path | [emulator.paths]; test_fraction
    [refinement]   rounds; points; draws
    [parameters.NAME]  role; prior; value; sd; covariates; coef_sd;
                       observable; time  (role = "observed": each subject's measurement of ``observable`` — a raw
                       data-table name — at data day ``time`` is its value of NAME)
    [observables.NAME] family; sigma; nu; link; cutpoints; n_trials; correlation_time
    [sampler]      method; draws; tune; chains; cores; seed; target_accept; advi_iterations; compile_mode; init;
                   top_up (NUTS: batches of ``chains`` more chains when only the ESS misses)
    [diagnostics]  rhat_max; ess_min; strict; surrogate_check_draws; importance_draws
    [predict]      draws (0: no prediction); subjects_per_draw; seed; detection_limit; endpoint
    [output]       dir
    [sbc]          [sbc.sampler] ...
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from immunocal.priors.textio import read_input_text

NUMBER = (int, float)
_SAMPLER = {"method": str, "draws": int, "tune": int, "chains": int, "cores": int, "seed": int,
            "target_accept": NUMBER, "advi_iterations": int, "compile_mode": str, "init": str, "top_up": int}
#: section -> {key: type}; ``"*"`` = a table of named entries, each with the keys given; a type ``dict`` marks a
#: free-form sub-table (checked by its consumer, e.g. the forward class's constructor)
SCHEMA: dict[str, dict] = {
    "model": {"forward": str, "registry_model": str, "preset": str, "options": dict, "trusted_modules": list},
    "data": {"measurements": str, "conditions": str, "shared_subjects": bool, "observables": list,
             "log_transform": dict, "heldout_subjects": list, "time_window": list},
    "conditions": {"fit": list, "heldout": list},
    "design": {"n": int, "method": str, "seed": int, "chunk_size": int, "workers": int, "bounds": dict,
               "scales": dict},
    "emulator": {"kind": str, "path": str, "paths": dict, "test_fraction": NUMBER, "variance": str},
    "refinement": {"rounds": int, "points": int, "draws": int, "variance_draws": int},
    "parameters": {"*": {"role": str, "prior": dict, "value": NUMBER, "sd": (int, float, dict),
                         "covariates": list, "coef_sd": NUMBER, "observable": str, "time": NUMBER,
                         "parametrization": str}},
    "observables": {"*": {"family": str, "sigma": (int, float, dict), "nu": NUMBER, "link": str,
                          "cutpoints": list, "n_trials": int, "correlation_time": (int, float, dict)}},
    "sampler": _SAMPLER,
    "diagnostics": {"rhat_max": NUMBER, "ess_min": NUMBER, "strict": bool, "surrogate_check_draws": int,
                    "importance_draws": int},
    "predict": {"draws": int, "subjects_per_draw": int, "seed": int, "detection_limit": NUMBER,
                "endpoint": NUMBER, "refinements": int},
    "personalise": {"method": str, "draws": int, "tune": int, "chains": int, "seed": int, "target_accept": NUMBER,
                    "population_draws": int, "particles": int, "stages": int, "max_stages": int, "components": int,
                    "defensive": NUMBER, "block": int, "khat_max": NUMBER},
    "output": {"dir": str},
    "sbc": {"sampler": dict},
}
REQUIRED = ("model", "data", "parameters")


def _choice(*options):
    return (lambda v: v in options), f"one of {list(options)}"


_AT_LEAST_1 = (lambda v: v >= 1), "an integer >= 1"
_AT_LEAST_0 = (lambda v: v >= 0), "an integer >= 0"
_POSITIVE = (lambda v: v > 0), "a number > 0"
_OPEN_UNIT = (lambda v: 0 < v < 1), "a number in (0, 1)"
_HALF_OPEN_UNIT = (lambda v: 0 <= v < 1), "a number in [0, 1)"


def _sampler_domains(methods) -> dict:
    from .inference import NUTS_INITS

    return {"method": _choice(*methods), "draws": _AT_LEAST_1, "tune": _AT_LEAST_0, "chains": _AT_LEAST_1,
            "cores": _AT_LEAST_1, "seed": _AT_LEAST_0, "target_accept": _OPEN_UNIT, "advi_iterations": _AT_LEAST_1,
            "compile_mode": _choice("NUMBA", "C", "c", "default"), "init": _choice(*NUTS_INITS),
            "top_up": _AT_LEAST_0}


def _domains() -> dict:
    """section -> {key: (predicate, what it must be)}: values a run cannot use are refused at load time, naming
    the key and line (``chains = 0`` or ``target_accept = 1.5`` once reached PyMC; ``n = -5`` the design)."""
    from .inference import METHODS
    from .likelihoods import FAMILIES
    from .model import ROLES

    return {
        "design": {"n": _AT_LEAST_1, "seed": _AT_LEAST_0, "chunk_size": _AT_LEAST_1, "workers": _AT_LEAST_0,
                   "method": _choice("sobol", "lhs", "random")},
        "emulator": {"kind": _choice("surrogate", "exact", "blackbox"), "test_fraction": _HALF_OPEN_UNIT,
                     "variance": _choice("gp", "held_out", "posterior")},
        "refinement": {"rounds": _AT_LEAST_0, "points": _AT_LEAST_1, "draws": _AT_LEAST_1,
                       "variance_draws": _AT_LEAST_1},
        "parameters.*": {"role": _choice(*ROLES), "coef_sd": _POSITIVE,
                         "parametrization": _choice("non_centred", "centred")},
        "observables.*": {"family": _choice(*FAMILIES), "nu": _POSITIVE, "link": _choice("logistic", "probit"),
                          "n_trials": _AT_LEAST_1},
        "sampler": _sampler_domains(METHODS),
        "sbc.sampler": _sampler_domains(METHODS),
        "diagnostics": {"rhat_max": ((lambda v: v > 1), "a number > 1"), "ess_min": _POSITIVE,
                        "surrogate_check_draws": _AT_LEAST_1, "importance_draws": _AT_LEAST_1},
        "predict": {"draws": _AT_LEAST_0, "subjects_per_draw": _AT_LEAST_1, "seed": _AT_LEAST_0,
                    "refinements": _AT_LEAST_0},
        "personalise": {**{k: v for k, v in _sampler_domains((*METHODS, "importance")).items()
                           if k in SCHEMA["personalise"]},
                        "population_draws": _AT_LEAST_1, "particles": _AT_LEAST_1, "stages": _AT_LEAST_1,
                        "max_stages": _AT_LEAST_1, "components": _AT_LEAST_1, "defensive": _HALF_OPEN_UNIT,
                        "block": _AT_LEAST_1, "khat_max": _POSITIVE},
    }


class ConfigError(ValueError):
    """A config file that cannot be run as written (the message names the file, key path and line)."""


def line_of(text: str, section: str, key: str) -> int | None:
    """Line number of ``key`` inside ``[section]`` (or of the header ``[section.key]``) in the TOML text."""
    header = None
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            name = stripped.lstrip("[").split("]")[0].strip()
            if name == f"{section}.{key}":
                return i
            header = name
        elif header == section and stripped.split("=")[0].strip() == key:
            return i
    return None


def _where(path: Path, text: str, section: str, key: str) -> str:
    line = line_of(text, section, key)
    return f"{path}{f', line {line}' if line else ''}"


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "an array",
                        dict: "a table"}[x] for x in ts)


def _check_entry(body: dict, allowed: dict, section: str, path: Path, text: str, domains: dict | None = None) -> None:
    for key, value in body.items():
        if key not in allowed:
            raise ConfigError(f"{_where(path, text, section, key)}: unknown key {section}.{key}; allowed: "
                              f"{sorted(allowed)}")
        want = allowed[key]
        ok = isinstance(value, want) and not (isinstance(value, bool) and bool not in
                                               (want if isinstance(want, tuple) else (want,)))
        if not ok:
            raise ConfigError(f"{_where(path, text, section, key)}: {section}.{key} must be {_type_name(want)}, "
                              f"got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{_where(path, text, section, key)}: {section}.{key} must be finite, got {value!r}")
        rule = (domains or {}).get(key)
        if rule is not None and not rule[0](value):
            raise ConfigError(f"{_where(path, text, section, key)}: {section}.{key} must be {rule[1]}, got {value!r}")


def check_keys(cfg: dict, text: str, path: Path) -> None:
    """Reject unknown sections and keys and values of the wrong type, naming the key path and the line."""
    unknown = sorted(set(cfg) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; allowed: {sorted(SCHEMA)}")
    domains = _domains()
    for sec, allowed in SCHEMA.items():
        body = cfg.get(sec)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{sec}] must be a table, got {type(body).__name__}")
        if "*" in allowed:
            for name, entry in body.items():
                if not isinstance(entry, dict):
                    raise ConfigError(f"{_where(path, text, sec, name)}: {sec}.{name} must be a table")
                _check_entry(entry, allowed["*"], f"{sec}.{name}", path, text, domains.get(f"{sec}.*"))
        else:
            _check_entry(body, allowed, sec, path, text, domains.get(sec))
    if "sampler" in cfg.get("sbc", {}):
        _check_entry(cfg["sbc"]["sampler"], _SAMPLER, "sbc.sampler", path, text, domains["sbc.sampler"])
    for sec in REQUIRED:
        if sec not in cfg:
            raise ConfigError(f"{path}: missing section [{sec}]")
    if "forward" not in cfg["model"]:
        raise ConfigError(f"{path}: [model] needs 'forward' (e.g. \"toy.logistic\")")
    if "measurements" not in cfg["data"]:
        raise ConfigError(f"{path}: [data] needs 'measurements' (a CSV table)")
    for key in ("fit", "heldout"):
        vals = cfg.get("conditions", {}).get(key, [])
        if not all(isinstance(v, str) for v in vals):
            raise ConfigError(f"{_where(path, text, 'conditions', key)}: conditions.{key} must list condition names")
    held_subjects = cfg.get("data", {}).get("heldout_subjects", [])
    if not all(isinstance(v, str) and v for v in held_subjects) or len(set(held_subjects)) != len(held_subjects):
        raise ConfigError(f"{_where(path, text, 'data', 'heldout_subjects')}: data.heldout_subjects must list "
                          f"distinct subject ids, got {held_subjects!r}")
    both = sorted(set(cfg.get("conditions", {}).get("fit", [])) & set(cfg.get("conditions", {}).get("heldout", [])))
    if both:
        raise ConfigError(f"{_where(path, text, 'conditions', 'heldout')}: condition(s) {both} are both fitted and "
                          "held out")
    for name, b in cfg.get("design", {}).get("bounds", {}).items():
        if not (isinstance(b, list) and len(b) == 2 and all(isinstance(v, NUMBER) for v in b) and b[0] < b[1]):
            raise ConfigError(f"{_where(path, text, 'design.bounds', name)}: design.bounds.{name} must be "
                              f"[lower, upper] with lower < upper, got {b!r}")
    for name, spec in cfg.get("parameters", {}).items():
        observed = spec.get("role") == "observed"
        for key in ("observable", "time"):
            if observed and key not in spec:
                raise ConfigError(f"{_where(path, text, 'parameters', name)}: parameters.{name} has role "
                                  f"'observed' and needs '{key}' (the data observable and day that give each "
                                  "subject's value)")
            if not observed and key in spec:
                raise ConfigError(f"{_where(path, text, f'parameters.{name}', key)}: parameters.{name}.{key} "
                                  "belongs to role = \"observed\"")
    window = cfg.get("data", {}).get("time_window")
    if window is not None and not (len(window) == 2 and all(isinstance(v, NUMBER) for v in window)
                                   and window[0] < window[1]):
        raise ConfigError(f"{_where(path, text, 'data', 'time_window')}: data.time_window must be [first, last] "
                          f"with first < last (the rows' time range kept), got {window!r}")
    for name, new in cfg.get("data", {}).get("log_transform", {}).items():
        if not isinstance(new, str) or not new:
            raise ConfigError(f"{_where(path, text, 'data.log_transform', name)}: data.log_transform.{name} must "
                              f"name the new observable (e.g. \"log_{name}\"), got {new!r}")


def load_config(path: str | Path) -> dict:
    """Read and validate a calibration config; adds ``_base`` (its folder) and ``_path``."""
    path = Path(path)
    text = read_input_text(path, "config file", ConfigError)
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    check_keys(cfg, text, path)
    cfg["_base"] = str(path.resolve().parent)
    cfg["_path"] = str(path)
    return cfg


def resolve(cfg: dict, rel: str | Path) -> Path:
    """A path from the config, relative to the config file's folder."""
    p = Path(rel)
    return p if p.is_absolute() else Path(cfg["_base"]) / p


def public(cfg: dict) -> dict:
    """The config without the loader's private entries (``_base``, ``_path``, …)."""
    return {k: v for k, v in cfg.items() if not k.startswith("_")}
