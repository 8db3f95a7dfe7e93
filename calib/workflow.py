"""One calibration workflow for every forward model and data set, driven by one config (:mod:`immunocal.calib.config`).

    data (+ log transform, fit / held-out conditions)
      → design over the free parameters → one campaign per fitted condition (resumable, cached in the run folder)
      → one emulator per condition (PCA-GP surrogate; or the exact / black-box forward model)
      → refinement rounds (pilot posterior → new runs where it puts mass → refit)
      → PyMC hierarchical model (:func:`immunocal.calib.model.build_model`) → sampling → MCMC diagnostics
      → the surrogates against the true forward model at posterior draws
      → posterior predictive of *new* subjects of every condition (fitted and held out), by the **true forward model**
        at posterior draws inside ``pm.sample_posterior_predictive(predictions=True)`` — never an emulator trained
        for other conditions — with coverage of the data and tumour-control fractions
      → run folder: ``idata.nc``, ``predictions.nc``, ``summary.json``, ``diagnostics.json``, ``config.toml``,
        figures; campaigns under ``campaigns/`` (kept across reruns: keyed by forward descriptor, numerics and design).

A model plugs in through its simulator (``[model] forward`` + ``[model.options]``), a data set through a config and
its tables; nothing here knows a model or a data set by name.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import time
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np

from .config import load_config, public, resolve
from .data import Conditions, Measurements, read_conditions, read_measurements
from .diagnostics import posterior_contraction
from .likelihoods import CONTINUOUS, ObservableSpec
from .model import ParameterSpec, build_model, subject_variable
from .outputs import write_json
from .predict import plot_predictions, prediction_identifiability, predictive_summary, restrict
from .predict import thin as thin_posterior

#: what a workflow run writes into its folder (``--force`` replaces exactly these; ``campaigns`` is kept)
RUN_FILES = ("idata.nc", "predictions.nc", "personalised.nc", "diagnostics.json", "summary.json", "config.toml",
             "config_effective.json", "ppc.json", "ppc.png", "predictions_fit.png", "predictions_heldout.png",
             "predictions.json")
KEEP = ("campaigns", ".lock")
#: the emulators a run's fit used when it trained them (from its design, refined), one file per fitted condition:
#: a resumed run loads these — retraining would not repeat the refinement's pilot posterior
EMULATOR_FILE = "emulator_{}.npz"


def _is_emulator_file(name: str) -> bool:
    return name.startswith("emulator_") and name.endswith(".npz")


def prepare_output_dir(out: Path, produced: tuple[str, ...] = RUN_FILES, force: bool = False,
                       keep: tuple[str, ...] = KEEP) -> None:
    """Check an output folder before any computation: creatable and writable; empty (apart from ``keep``), or —
    with ``force`` — holding only files of a previous run (``produced``), which are then removed so no stale file
    stays beside new ones. Anything else in it is never deleted: the run is refused with the files named."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if out.is_dir():
        present = sorted(p.name for p in out.iterdir() if p.name not in keep)
        if present:
            foreign = [n for n in present if n not in produced and not _is_emulator_file(n)
                       and ".tmp" not in n]  # + half-written files
            if not force:
                raise ValueError(f"output folder {out} is not empty ({', '.join(present[:5])}"
                                 f"{', …' if len(present) > 5 else ''}); pass --force to replace a previous run, "
                                 "or choose another --out")
            if foreign:
                raise ValueError(f"output folder {out} holds files that are not from a calibration run "
                                 f"({', '.join(foreign[:5])}); refusing to replace it even with --force")
            for n in present:
                (out / n).unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_probe.tmp"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"output folder {out} is not writable: {exc.strerror or exc}") from None


def subset(meas: Measurements, mask: np.ndarray) -> Measurements:
    return Measurements.from_arrays(meas.subject[mask], meas.condition[mask], meas.observable[mask],
                                    meas.time[mask], meas.value[mask], meas.sigma[mask], meas.censoring[mask],
                                    source=meas.source)


def log_transform(meas: Measurements, mapping: dict[str, str]) -> Measurements:
    """Rows of observable ``old`` become ``mapping[old]`` with the log of their values (censoring limits too)."""
    obs = meas.observable.copy()
    val = meas.value.copy()
    sig = meas.sigma.copy()
    missing = sorted(set(mapping) - set(meas.observables))
    if missing:
        raise ValueError(f"[data.log_transform]: observable(s) {missing} are not in {meas.source} "
                         f"(it has {meas.observables})")
    for old, new in mapping.items():
        rows = meas.observable == old
        if np.any(val[rows] <= 0):
            r = int(np.flatnonzero(rows & (val <= 0))[0])
            raise ValueError(f"{meas.source}, data row {r + 1}: {old} = {val[r]} cannot be log-transformed (> 0 "
                             "needed; a complete regression is a left-censored row at the detection limit)")
        val[rows] = np.log(val[rows])
        sig[rows] = sig[rows] / np.exp(val[rows])  # delta method: sd(log y) = sd(y) / y (NaN stays NaN)
        obs[rows] = new
    return Measurements.from_arrays(meas.subject, meas.condition, obs, meas.time, val, sig, meas.censoring,
                                    source=meas.source)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RouteWarning(UserWarning):
    """The likelihood route's triage rule says the fit should move to another route (immunocal.calib.diagnostics.route_advice)."""


#: the surrogate route's importance check (:meth:`Calibration.surrogate_importance`): default posterior draws, the
#: wall-clock budget of its true-model simulations (when the config does not set ``importance_draws``) and the fewest
#: draws worth a Pareto k estimate
IMPORTANCE_DRAWS = 200
IMPORTANCE_BUDGET_S = 120.0
IMPORTANCE_MIN_DRAWS = 50


def _noise_sd(idata, observables) -> dict:
    """Posterior median of each observable's noise sd (observables whose noise is fitted)."""
    return {o: float(idata.posterior[f"sigma_{o}"].median()) for o in observables if f"sigma_{o}" in idata.posterior}


def _accumulate_ladder(diffs: list[dict], observable: str, rungs: list) -> None:
    """Into ``diffs[k][observable]`` the largest |difference| between consecutive rungs (k = 0 .. len-2) and between
    the first and the last (k = len-1), kept as a running maximum over calls (NaN entries ignored)."""
    pairs = [(i, i + 1) for i in range(len(rungs) - 1)] + [(0, len(rungs) - 1)]
    for k, (a, b) in enumerate(pairs):
        diff = np.abs(rungs[a] - rungs[b])
        d = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
        diffs[k][observable] = max(diffs[k].get(observable, 0.0), d)


def _announce(msg: str) -> None:
    """A route or resolution problem, loudly: a banner on stderr and a ``RouteWarning``."""
    print("\n" + "!" * 78 + f"\n!! {msg}\n" + "!" * 78, file=sys.stderr)
    warnings.warn(msg, RouteWarning, stacklevel=3)


class Calibration:
    """The workflow of one config (module docstring). Steps can be run one by one (``train``, ``fit``, ``predict``)
    or all at once with :meth:`run`."""

    def __init__(self, config: str | Path | dict, out: str | Path | None = None, *, force: bool = False,
                 progress: bool = True, surrogate: str | Path | None = None, sampler: dict | None = None):
        self.cfg = config if isinstance(config, dict) else load_config(config)
        if "_path" not in self.cfg:  # a dict that did not come from load_config (e.g. a run's config_effective.json)
            raise ValueError("a config given as a dict needs its '_path' — the TOML file it was loaded from (relative "
                             "paths resolve against it; the run copies it): load it with "
                             "immunocal.calib.config.load_config, or set cfg['_path'] to that file")
        self.cfg.setdefault("_base", str(Path(self.cfg["_path"]).resolve().parent))  # where relative paths start
        if surrogate is not None:
            self.cfg["emulator"] = {"kind": "surrogate", "path": str(Path(surrogate).resolve())}
        self.out = Path(out) if out else resolve(self.cfg, self.cfg.get("output", {}).get("dir", "calib_run"))
        self.force = force
        self.progress = progress
        self.sampler = {"method": "nuts", "draws": 1000, "tune": 1000, "chains": 4, "seed": 0,
                        **self.cfg.get("sampler", {}), **{k: v for k, v in (sampler or {}).items() if v is not None}}
        self.seconds: dict[str, float] = {}
        # PyMC's live progress bars only on a terminal (in a log they are noise, and their console outlives a
        # redirected stream); the stage lines below always, on stderr: stdout carries the result (summary JSON)
        self._bars = progress and sys.stdout.isatty()
        self._log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if progress else (lambda *a: None)

    # ------------------------------------------------------------------ inputs
    @cached_property
    def raw_measurements(self) -> Measurements:
        """The measurement table as read (before observable selection and log transform)."""
        return read_measurements(resolve(self.cfg, self.cfg["data"]["measurements"]))

    @cached_property
    def tables(self) -> tuple[Measurements, Conditions | None]:
        d = self.cfg["data"]
        meas = self.raw_measurements
        conds = read_conditions(resolve(self.cfg, d["conditions"])) if d.get("conditions") else None
        if d.get("observables"):
            missing = sorted(set(d["observables"]) - set(meas.observables))
            if missing:
                raise ValueError(f"{self.cfg['_path']}: [data] observables {missing} are not in {meas.source} "
                                 f"(it has {meas.observables})")
            meas = subset(meas, np.isin(meas.observable, d["observables"]))
        if d.get("time_window"):  # rows outside [first, last] are not data of this calibration (fitted or held out)
            first, last = (float(v) for v in d["time_window"])
            keep = (meas.time >= first) & (meas.time <= last)
            if not keep.any():
                raise ValueError(f"{self.cfg['_path']}: [data] time_window {d['time_window']} keeps no row of "
                                 f"{meas.source} (its times span {meas.time.min():g} to {meas.time.max():g})")
            meas = subset(meas, keep)
        if d.get("log_transform"):
            meas = log_transform(meas, d["log_transform"])
        return meas, conds

    @cached_property
    def observed_inputs(self) -> dict[str, dict[str, float]]:
        """``{parameter: {subject: value}}`` for every role-``observed`` parameter: each subject's uncensored
        measurement of the configured (raw) observable at the configured data day, for every subject that has one
        (fitted and held-out conditions)."""
        raw = self.raw_measurements
        out = {}
        for name, spec in self.cfg["parameters"].items():
            if spec.get("role") != "observed":
                continue
            obs, day = spec["observable"], float(spec["time"])
            if obs not in raw.observables:
                raise ValueError(f"{self.cfg['_path']}: [parameters.{name}] observable {obs!r} is not in "
                                 f"{raw.source} (it has {raw.observables})")
            rows = np.flatnonzero((raw.observable == obs) & np.isclose(raw.time, day, rtol=0, atol=1e-9))
            if len(rows) == 0:
                raise ValueError(f"{self.cfg['_path']}: [parameters.{name}] no {obs} measured at day {day:g} in "
                                 f"{raw.source}")
            vals: dict[str, float] = {}
            for r in rows:
                subj = str(raw.subject[r])
                if raw.censoring[r] != "none":
                    raise ValueError(f"{raw.source}, data row {r + 1}: subject {subj!r}'s {obs} at day {day:g} is "
                                     f"{raw.censoring[r]}-censored and cannot be its {name} (role 'observed'); make "
                                     f"{name} latent instead")
                if subj in vals:
                    raise ValueError(f"{raw.source}, data row {r + 1}: subject {subj!r} has two {obs} rows at day "
                                     f"{day:g}; the value of {name} is ambiguous")
                vals[subj] = float(raw.value[r])
            out[name] = vals
        return out

    def _conditioned_rows(self, meas: Measurements) -> np.ndarray:
        """Rows of ``meas`` that became role-``observed`` inputs (conditioned on, so not also fitted)."""
        mask = np.zeros(len(meas), bool)
        logs = self.cfg["data"].get("log_transform", {})
        for name, vals in self.observed_inputs.items():
            spec = self.cfg["parameters"][name]
            obs = logs.get(spec["observable"], spec["observable"])
            mask |= ((meas.observable == obs) & np.isclose(meas.time, float(spec["time"]), rtol=0, atol=1e-9)
                     & np.isin(meas.subject, list(vals)))
        return mask

    @cached_property
    def conditions(self) -> tuple[list[str], list[str]]:
        """(fitted, held-out) condition names; without ``[conditions]`` every condition of the data is fitted."""
        meas, conds = self.tables
        in_data = list(dict.fromkeys(meas.condition.tolist()))
        c = self.cfg.get("conditions", {})
        fit, held = list(c.get("fit", in_data)), list(c.get("heldout", []))
        where = self.cfg.get("_path", "config")
        for name in fit:
            if name not in in_data:
                raise ValueError(f"{where}: fitted condition {name!r} has no rows in {meas.source}")
        known = set(in_data) | set(conds.schedules if conds else ())
        for name in held:
            if name not in known:
                raise ValueError(f"{where}: held-out condition {name!r} is neither in the data nor in the conditions "
                                 "table")
        if conds is not None:
            for name in fit + held:
                if name not in conds.schedules:
                    raise ValueError(f"{conds.source}: no row for condition {name!r}")
        return fit, held

    @cached_property
    def heldout_subjects(self) -> list[str]:
        """``[data] heldout_subjects``: subjects left out of the fit and personalised after it (checked: each has
        rows, all of them in fitted conditions)."""
        held = list(self.cfg["data"].get("heldout_subjects", []))
        meas, _ = self.tables
        unknown = [s for s in held if s not in set(meas.subject.tolist())]
        if unknown:
            raise ValueError(f"{self.cfg['_path']}: [data] heldout_subjects {unknown[:5]} have no rows in "
                             f"{meas.source}")
        rows = np.isin(meas.subject, held)
        outside = sorted(set(meas.condition[rows].tolist()) - set(self.conditions[0]))
        if outside:
            raise ValueError(f"{self.cfg['_path']}: held-out subjects are measured under condition(s) {outside}, "
                             "which are not fitted (a personalised posterior needs the condition's emulator)")
        return held

    @cached_property
    def data(self) -> Measurements:
        """The fitted rows (without the rows that give role-``observed`` inputs: those are conditioned on, and
        without the held-out subjects)."""
        meas, _ = self.tables
        return subset(meas, np.isin(meas.condition, self.conditions[0]) & ~self._conditioned_rows(meas)
                      & ~np.isin(meas.subject, self.heldout_subjects))

    def surrogate_ids(self) -> str:
        """The emulators' identity as the summary records it (``condition=surrogate_id`` joined, sorted)."""
        return ";".join(sorted({f"{c}={e.surrogate_id}" for c, e in self.emulators.items()}))

    def refines(self) -> bool:
        """Whether the config asks for ``[refinement]`` rounds."""
        return int(self.cfg.get("refinement", {}).get("rounds", 0)) > 0

    def ensure_emulators(self) -> dict:
        """The emulators, trained or loaded on first use (a resumed run — :meth:`load_finished` — has none yet). A
        finished run that trained its emulators gets exactly the ones its fit used (saved in its folder, checked
        against the summary's surrogate id); a refined run without them is a named error, never a silent retrain
        on the design alone."""
        if getattr(self, "emulators", None) is not None:
            return self.emulators
        fit = self.conditions[0]
        saved = {c: self.out / EMULATOR_FILE.format(c.replace("/", "_")) for c in fit}
        finished = getattr(self, "idata", None) is not None and (self.out / "summary.json").is_file()
        if finished and all(p.is_file() for p in saved.values()):
            from .surrogate import GPSurrogate

            self.emulators, self.campaigns, self.validation = {}, {}, {}
            for c, path in saved.items():
                sur = GPSurrogate.load(path)
                check_surrogate_provenance(sur, path, self.descriptor, c, self.schedule(c))
                self.emulators[c] = sur
            self._surrogate_variance(self.cfg.get("emulator", {}))
            stored = json.loads((self.out / "summary.json").read_text()).get("surrogate_id")
            sid = self.surrogate_ids()
            if stored is not None and sid != stored:
                raise ValueError(f"{self.out}: the emulator files ({sid}) are not the ones this run's fit used "
                                 f"({stored}); run the calibration again")
            return self.emulators
        if finished and self.refines() \
                and "path" not in self.cfg.get("emulator", {}) and "paths" not in self.cfg.get("emulator", {}):
            raise ValueError(f"{self.out}: this finished run refined its emulators, but they are not saved in its "
                             f"folder ({EMULATOR_FILE.format('<condition>')}; a run from before they were): run "
                             "the calibration again")
        self.train()
        return self.emulators

    def personalise(self, rows: Measurements | None = None):
        """Posterior of the latents of new subjects given the fitted population (:mod:`immunocal.calib.personalise`):
        ``rows`` (default: the held-out subjects' rows), with the ``[personalise]`` settings. Returns the
        InferenceData (dims ``subject``)."""
        from .personalise import personalise

        self.ensure_emulators()
        if rows is None:
            meas, _ = self.tables
            rows = subset(meas, np.isin(meas.subject, self.heldout_subjects) & ~self._conditioned_rows(meas))
        p = dict(self.cfg.get("personalise", {}))
        n_pop = int(p.pop("population_draws", 200))
        return personalise(self, rows, method=p.pop("method", "nuts"), n_population_draws=n_pop,
                           progressbar=self._bars, **p)

    def true_model_personalised(self, idata, rows: Measurements | None = None):
        """The importance personalisation ``idata`` of ``rows`` (default: the held-out subjects' rows, as
        :meth:`personalise`) reweighted from the surrogates to the true forward model
        (:func:`immunocal.calib.personalise.true_model_reweighting`: per-subject Pareto k̂ in the group
        ``true_model``)."""
        from .personalise import subject_problem, true_model_reweighting

        self.ensure_emulators()
        if rows is None:
            meas, _ = self.tables
            rows = subset(meas, np.isin(meas.subject, self.heldout_subjects) & ~self._conditioned_rows(meas))
        p = self.cfg.get("personalise", {})
        specs, links, draws, observables = subject_problem(self, rows, int(p.get("population_draws", 200)))
        return true_model_reweighting(idata, self.emulators, self._exact_emulators(sorted(set(rows.condition)),
                                                                                   "blackbox"),
                                      specs, links, draws, rows, observables, self.tables[1], self.data.subjects,
                                      seed=int(p.get("seed", 0)))

    def schedule(self, condition: str) -> dict | None:
        conds = self.tables[1]
        return conds.schedules.get(condition) if conds else None

    @cached_property
    def forward(self):
        from .forward_api import check_trusted, load_forward_model

        m = self.cfg["model"]
        check_trusted(m["forward"], m.get("trusted_modules", ()), where=self.cfg.get("_path", "config"))
        return load_forward_model(m["forward"], **m.get("options", {}))

    @property
    def descriptor(self):
        return self.forward.descriptor

    @cached_property
    def parameters(self) -> list[ParameterSpec]:
        specs = []
        for n, spec in self.cfg["parameters"].items():
            if spec.get("role") == "observed":
                vals = self.observed_inputs[n]
                lacking = [s for s in self.data.subjects if s not in vals]
                if lacking:
                    raise ValueError(f"{self.cfg['_path']}: [parameters.{n}] fitted subject(s) {lacking[:5]} have no "
                                     f"{spec['observable']} at day {spec['time']:g} to take {n} from")
                spec = {k: v for k, v in spec.items() if k not in ("observable", "time")}
                spec["values"] = {s: vals[s] for s in self.data.subjects}
            specs.append(ParameterSpec(name=n, **spec))
        unknown = [s.name for s in specs if s.name not in self.forward.parameter_names]
        if unknown:
            raise ValueError(f"{self.cfg['_path']}: [parameters.{unknown[0]}] is not a parameter of forward model "
                             f"{self.forward.name!r} ({list(self.forward.parameter_names)})")
        return specs

    @property
    def free(self) -> list[str]:
        """Emulator inputs in the forward model's order: calibrated parameters (population + latent) and per-subject
        inputs known from the data (observed)."""
        roles = {n: spec.get("role", "population") for n, spec in self.cfg["parameters"].items()}
        return [n for n in self.forward.parameter_names if roles.get(n) in ("population", "latent", "observed")]

    @property
    def latent(self) -> list[str]:
        return [n for n, spec in self.cfg["parameters"].items() if spec.get("role") == "latent"]

    @property
    def observed(self) -> list[str]:
        return [n for n, spec in self.cfg["parameters"].items() if spec.get("role") == "observed"]

    @cached_property
    def fixed(self) -> dict[str, float]:
        """Values of the forward model's other parameters: the spec's value, else the registry preset's."""
        specs = {s.name: s for s in self.parameters}
        out = {}
        for n in self.forward.parameter_names:
            if n in self.free:
                continue
            s = specs.get(n)
            reg_model = self.cfg["model"].get("registry_model")
            if s is not None and s.value is not None:
                out[n] = float(s.value)
                if reg_model:  # checked like every other value: finite and inside the registry's range
                    from immunocal.priors import registry

                    if n in registry().names(reg_model):
                        registry().record(reg_model, n).check(
                            out[n], self.cfg["model"].get("preset"), where=f"{self.cfg['_path']}: [parameters.{n}] value")
            elif reg_model:
                from immunocal.priors import registry

                out[n] = registry().parameter_set(self.cfg["model"]["registry_model"],
                                                  self.cfg["model"].get("preset", "default"))[n]
            else:
                raise ValueError(f"{self.cfg['_path']}: parameter {n!r} of {self.forward.name!r} is neither "
                                 "calibrated nor given a value ([parameters.{n}] role = \"fixed\", value = …)")
        return out

    @cached_property
    def problem(self):
        """The calibration problem (:class:`immunocal.calib.problem.Problem`): built once, handed to every step."""
        from .problem import Problem

        space = self.space(self.free)
        for n, vals in self.observed_inputs.items():  # every subject's value (fitted and held out) inside the box
            j = list(space.names).index(n)
            out = {s: v for s, v in vals.items() if not space.lower[j] <= v <= space.upper[j]}
            if out:
                s0 = next(iter(out))
                raise ValueError(f"{self.cfg['_path']}: subject {s0!r} has {n} = {out[s0]:g} (observed), outside "
                                 f"the design box [{space.lower[j]:g}, {space.upper[j]:g}] ({len(out)} subject(s)); "
                                 f"widen [design.bounds] {n}")
        return Problem(tuple(self.forward.parameter_names), tuple(self.free), space, self.fixed,
                       tuple(n for n in self.free if n in self.latent), self.priors(),
                       tuple(n for n in self.free if n in self.observed))

    @cached_property
    def observables(self) -> dict[str, ObservableSpec]:
        specs = self.cfg.get("observables", {})
        unknown = sorted(set(specs) - set(self.data.observables))
        if unknown:
            raise ValueError(f"{self.cfg['_path']}: [observables.{unknown[0]}] names no observable of the data "
                             f"(the data have {sorted(self.data.observables)})")
        return {n: ObservableSpec(**spec) for n, spec in specs.items()}

    def space(self, names):
        """The parameter box of ``names``: ``[design.bounds]`` within the registry's ranges (scales from the
        registry), or the forward model's own ``space()``; a name in neither (e.g. a simulator setting such as the
        RIT pre-treatment volume) needs ``[design.bounds]`` and takes ``[design.scales]`` (default linear)."""
        from .design import ParameterSpace

        d = self.cfg.get("design", {})
        bounds = {k: tuple(v) for k, v in d.get("bounds", {}).items()}
        scales = dict(d.get("scales", {}))
        for k, v in {**{b: None for b in bounds}, **scales}.items():
            if k not in self.free:
                raise ValueError(f"{self.cfg['_path']}: [design] bounds/scales name {k!r}, which is not a calibrated "
                                 f"parameter ({self.free})")
            if v is not None and v not in ("linear", "log"):
                raise ValueError(f"{self.cfg['_path']}: [design.scales] {k} = {v!r}; choose 'linear' or 'log'")
        reg = self.cfg["model"].get("registry_model")
        known = set()
        if reg:
            from immunocal.priors import registry

            known = {n for n in names if n in registry().names(reg)}
        elif hasattr(self.forward, "space"):
            known = set(self.forward.space().names) & set(names)
        missing = [n for n in names if n not in known and n not in bounds]
        if missing:
            raise ValueError(f"{self.cfg['_path']}: no range for {missing}: give [design.bounds] (they are neither "
                             f"registry parameters nor in the forward model's space())")
        ref = {}
        if reg and known:
            ref = ParameterSpace.from_registry(reg, [n for n in names if n in known], self.cfg["model"].get("preset"),
                                               bounds={k: v for k, v in bounds.items() if k in known})
        elif known:
            ref = self.forward.space()
        lo, hi, sc = [], [], []
        for n in names:
            if n in known:
                j = list(ref.names).index(n)
                a, b = bounds.get(n, (ref.lower[j], ref.upper[j])) if not reg else (ref.lower[j], ref.upper[j])
                s = scales.get(n, ref.scales[j])
            else:
                (a, b), s = bounds[n], scales.get(n, "linear")
            lo.append(float(a))
            hi.append(float(b))
            sc.append(s)
        return ParameterSpace(tuple(names), tuple(lo), tuple(hi), tuple(sc))

    # ------------------------------------------------------------------ emulators
    def _input_space(self):
        """The box of the forward model's full input vector for exact / black-box emulators: the design box when
        every input is calibrated (or the model has no ``space()``), else ``None`` (the model's own ``space()``)."""
        names = list(self.forward.parameter_names)
        return self.space(names) if set(names) <= set(self.free) or not hasattr(self.forward, "space") else None

    def _exact_emulators(self, conditions, kind: str) -> dict:
        from .surrogate import BlackBoxEmulator, ExactEmulator

        cls = ExactEmulator if kind == "exact" else BlackBoxEmulator
        space = self._input_space()
        return {c: cls(self.forward, self.schedule(c), space=space) for c in conditions}

    def campaign_key(self) -> str:
        d = self.cfg.get("design", {})
        return (f"{d.get('method', 'sobol')}{d.get('n', 160)}-seed{d.get('seed', 0)}-"
                f"{getattr(self.forward, 'numerics_tag', 'exact')}-"
                f"{_digest(self.descriptor, self.problem.fixed, self.problem.space.to_dict())[:8]}")

    def train(self) -> dict:
        """Emulators of the fitted conditions: loaded (``path``/``paths``, provenance checked), exact, or trained on
        campaigns over ``[design]`` (resumable: a rerun finishes pending runs and reuses finished ones)."""
        em = self.cfg.get("emulator", {"kind": "surrogate"})
        kind = em.get("kind", "surrogate")
        fit = self.conditions[0]
        if kind in ("exact", "blackbox"):
            from .forward_api import compile_in_background

            # the true model runs in the likelihood: its kernels compile in background processes (the sensitivities
            # too on the exact route) while this process builds and compiles the likelihood graph
            compile_in_background(self.forward, jacobian=kind == "exact" and hasattr(self.forward, "simulate_jacobian"))
            self.emulators, self.campaigns, self.validation = self._exact_emulators(fit, kind), {}, {}
            return self.emulators
        if kind != "surrogate":
            raise ValueError(f"[emulator] kind must be 'surrogate', 'exact' or 'blackbox', got {kind!r}")
        if "path" in em or "paths" in em:
            self.emulators, self.campaigns, self.validation = self._load_surrogates(em, fit), {}, {}
            return self._surrogate_variance(em)
        if "design" not in self.cfg:
            raise ValueError(f"{self.cfg['_path']}: [emulator] kind = 'surrogate' needs a trained surrogate (path / "
                             "[emulator.paths]) or a [design] to train one")
        from .campaign import Campaign
        from .design import design as make_design
        from .surrogate import fit_from_campaign

        t0 = time.perf_counter()
        d = self.cfg["design"]
        space = self.problem.space
        points = make_design(space, int(d.get("n", 160)), method=d.get("method", "sobol"), seed=int(d.get("seed", 0)))
        self.emulators, self.validation, self.campaigns = {}, {}, {}
        for c in fit:
            folder = self.out / "campaigns" / self.campaign_key() / c.replace("/", "_")
            camp = Campaign(folder) if (folder / "meta.json").exists() else Campaign.create(
                folder, self.descriptor, points, condition=self.schedule(c) or {},
                parameter_names=list(self.problem.free), fixed=dict(self.problem.fixed), space=space,
                chunk_size=int(d.get("chunk_size", 8)))
            rounds = sorted(camp.meta.get("refinement_rounds", {}))
            self._log(f"[campaign] {c}: {camp.status()['pending']} of {camp.n} runs pending"
                      + (f" (recorded refinement rounds {rounds}: used as [refinement] says)" if rounds else ""))
            camp.run(workers=int(d.get("workers", 0)), progress=self.progress)
            # the design's runs only: refinement rounds recorded by earlier runs enter in refine(), as configured
            sur, rep = fit_from_campaign(camp, test_fraction=float(em.get("test_fraction", 0.2)),
                                         seed=int(d.get("seed", 0)), rounds=[])
            self.emulators[c], self.validation[c], self.campaigns[c] = sur, rep, camp
        self.seconds["emulators"] = round(time.perf_counter() - t0, 1)
        return self._surrogate_variance(em, provisional=self.refines())

    def _surrogate_variance(self, em: dict, provisional: bool = False) -> dict:
        """``[emulator] variance``: the GP's own (``"gp"``, default), each output's held-out mean squared error
        (``"held_out"``: constant over the box, cheap for many subjects) or its mean squared error at posterior draws
        (``"posterior"``: measured by :meth:`refine` after its last round — ``provisional``: the held-out one until
        then, for the pilot posteriors)."""
        mode = em.get("variance", "gp")
        if mode == "posterior" and provisional:
            mode = "held_out"
        for sur in self.emulators.values():
            sur.use_variance(mode)
        return self.emulators

    def _load_surrogates(self, em: dict, conditions) -> dict:
        from .surrogate import GPSurrogate

        if "paths" in em:
            missing = sorted(set(conditions) - set(em["paths"]))
            if missing:
                raise ValueError(f"[emulator.paths] has no surrogate for condition(s) {missing}")
            paths = {c: resolve(self.cfg, em["paths"][c]) for c in conditions}
        else:
            paths = {c: resolve(self.cfg, em["path"]) for c in conditions}
        out = {}
        for c, path in paths.items():
            sur = GPSurrogate.load(path)
            check_surrogate_provenance(sur, path, self.descriptor, c, self.schedule(c))
            if list(sur.space.names) != self.free:
                raise ValueError(f"{path}: surrogate takes parameters {list(sur.space.names)}, but the config "
                                 f"calibrates {self.free}")
            if self.cfg.get("design", {}).get("bounds"):
                want = self.space(self.free)
                if (tuple(want.lower), tuple(want.upper), tuple(want.scales)) != (
                        tuple(sur.space.lower), tuple(sur.space.upper), tuple(sur.space.scales)):
                    raise ValueError(f"{path}: surrogate was trained over the box {sur.space.to_dict()}, but the "
                                     f"config's [design] box is {want.to_dict()}")
            out[c] = sur
        return out

    # ------------------------------------------------------------------ the PyMC model and sampling
    def model(self, emulators=None, data=None, *, censor_bounds=None, parameters=None):
        return build_model(emulators or self.emulators, parameters or self.parameters, data or self.data,
                           self.observables, self.tables[1], model=self.cfg["model"].get("registry_model"),
                           preset=self.cfg["model"].get("preset"),
                           shared_subjects=bool(self.cfg["data"].get("shared_subjects")),
                           censor_bounds=censor_bounds)

    def _sample(self, model, **over):
        from .inference import sample

        dcfg = self.cfg.get("diagnostics", {})
        thresholds = {k: dcfg[k] for k in ("rhat_max", "ess_min") if k in dcfg}
        return sample(model, progressbar=self._bars, thresholds=thresholds, **{**self.sampler, **over})

    def subject_parameters(self, idata) -> np.ndarray:
        """Posterior draws of every fitted subject's free parameters (emulator-input order), ``(draws × subjects,
        len(free))``."""
        post = idata.posterior
        n_subj = len(post.coords["subject"]) if "subject" in post.coords else 1
        cols = []
        for n in self.free:
            v = post[n].values
            per_subject = n in self.latent or n in self.observed
            cols.append((v if per_subject else np.repeat(v[..., None], n_subj, axis=-1)).ravel())
        return np.column_stack(cols)

    def refine(self) -> None:
        """``[refinement] rounds`` of: pilot posterior on the current surrogates → ``points`` new runs per condition
        where it puts mass → refit (tagged per round in each campaign, so a rerun never repeats a round)."""
        from .surrogate import refine

        r = self.cfg.get("refinement", {})
        rounds = int(r.get("rounds", 0))
        if not rounds:
            return
        if not self.campaigns:
            raise ValueError(f"{self.cfg['_path']}: [refinement] needs surrogates trained from a [design]")
        t0 = time.perf_counter()
        em = self.cfg.get("emulator", {})
        self.validation_design = dict(self.validation)   # the design-only emulators' validation, kept for the record
        for k in range(rounds):
            n = int(r.get("draws", 300))
            self._log(f"[refinement] round {k + 1}/{rounds}: pilot posterior ({n} draws)")
            pilot = self._sample(self.model(), draws=n, tune=n, posterior_predictive=False, top_up=0)
            theta = self.subject_parameters(pilot)
            for c, camp in self.campaigns.items():
                # each refit holds out runs as the first fit did (now also from where the posterior is), so the
                # refined emulator is validated and "held_out" variance stays available
                self.emulators[c], self.validation[c] = refine(
                    camp, theta, int(r.get("points", 48)), workers=int(self.cfg.get("design", {}).get("workers", 0)),
                    progress=self.progress, tag=f"round{k + 1}", rounds=[f"round{j + 1}" for j in range(k + 1)],
                    seed=int(self.cfg.get("design", {}).get("seed", 0)),
                    test_fraction=float(em.get("test_fraction", 0.2)))
        if em.get("variance") == "posterior":
            self._posterior_error(pilot, int(r.get("variance_draws", 100)))
        self._surrogate_variance(em)
        self.seconds["refinement"] = round(time.perf_counter() - t0, 1)

    def _posterior_error(self, pilot, n: int) -> None:
        """The ``"posterior"`` emulator variance: the refined emulators against the true model at ``n`` draws of the
        last pilot posterior per condition (:meth:`surrogate_check` — each observable scored on the subjects with
        rows of it), each observable's mean squared error there (observables it cannot score keep the held-out
        error). The pilot is the posterior the fit will be near; its draws are not the refinement's runs (those are
        the draws farthest from the design), but they lie near them, so the estimate leans optimistic — the route
        check after the fit measures the error again at the fit's own posterior."""
        check = self.surrogate_check(pilot, n)
        self.posterior_error = {}
        for c, sur in self.emulators.items():
            scored = (check or {}).get("per_condition", {}).get(c, {})
            sur.set_posterior_error({o: r["rmse"] ** 2 for o, r in scored.items()})
            self.posterior_error[c] = {o: {"rmse": r["rmse"], "held_out_rmse": float(np.sqrt(
                np.mean(sur.heldout_var_[sur.observables.index(o)])))} for o, r in scored.items()}

    def fit(self):
        """Sample the posterior of the fitted data; returns the InferenceData (also ``self.idata``)."""
        t0 = time.perf_counter()
        self._log(f"[sampling] {self.sampler['method']}: {self.sampler['chains']} chains × {self.sampler['draws']} "
                  f"draws ({len(self.data)} rows, {len(self.data.subjects)} subjects)")
        model = self.model()
        self.idata = self._sample(model)
        if model.observed_RVs and self.sampler["method"] in ("nuts", "smc", "demetropolis"):
            import pymc as pm

            with model:  # pointwise log-likelihood of every row (censored included): LOO in the summary
                pm.compute_log_likelihood(self.idata, progressbar=False)
        self.seconds["sampling"] = round(time.perf_counter() - t0, 1)
        return self.idata

    def priors(self) -> dict:
        """The prior of every population parameter and of every latent parameter's location (link space)."""
        from immunocal.priors import Prior

        from .model import _prior_for

        reg, preset = self.cfg["model"].get("registry_model"), self.cfg["model"].get("preset")
        out = {}
        for s in self.parameters:
            if s.role == "population":
                out[s.name] = _prior_for(s, reg, preset)
            elif s.role == "latent":
                p = _prior_for(s, reg, preset).parameters
                out[f"{s.name}_loc"] = Prior("Normal", {"mu": p["mu"], "sigma": p["sigma"]})
        return out

    def chain_modes(self, idata) -> dict | None:
        """Each chain's posterior median (every free variable) scored by the log-likelihood of the fitted rows under
        the emulators and under the **true** forward model (the same observation layer; black-box emulators): chains
        in different modes, and a mode the true model rejects (a surrogate artefact), show up here."""
        import arviz as az
        import pymc as pm
        import xarray as xr

        if getattr(next(iter(self.emulators.values())), "family", "") in ("exact", "blackbox"):
            return None
        post = idata.posterior
        out = {}
        ems_true = self._exact_emulators(self.conditions[0], "blackbox")
        for label, model in (("emulator", self.model()), ("true_model", self.model(ems_true))):
            names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
            for ch in post.chain.values:
                point = {n: post[n].sel(chain=ch).median("draw").expand_dims(chain=[0], draw=[0])
                         for n in names if n in post}
                one = az.InferenceData(posterior=xr.Dataset(point))
                with model:
                    ll = pm.compute_log_likelihood(one, extend_inferencedata=False, progressbar=False)
                total = float(sum(ll[v].sum() for v in ll.data_vars))
                out.setdefault(f"chain_{int(ch)}", {})[f"log_likelihood_{label}"] = total
        true = [v["log_likelihood_true_model"] for v in out.values()]
        return {"per_chain": out, "true_model_spread": float(max(true) - min(true)),
                "note": "log-likelihood of the fitted rows at each chain's posterior median; a spread of more than "
                        "a few units means the chains sit in different modes, and a chain the true model scores "
                        "far lower sits in a surrogate artefact"}

    def _event_keys(self, observable: str) -> tuple[str, ...]:
        """Extra validation keys of a logit-valued observable (bernoulli/binomial): whether the emulator puts the
        event on the true model's side."""
        spec = self.observables.get(observable)
        return ("sign_agreement",) if spec is not None and spec.family in ("bernoulli", "binomial") else ()

    def surrogate_check(self, posterior, n: int | None = None) -> dict | None:
        """The emulators against the true forward model at ``n`` posterior draws of the fitted subjects — where the
        likelihood used them: under each condition, draws of that condition's subjects only, and each observable
        scored on the subjects with data rows of it there (a subject without a row of an observable never asks the
        emulator for it). RMSE, max |error|, own-interval coverage, per condition. ``posterior`` is an
        InferenceData or a matrix of free-parameter rows (emulator-input order; then every row under every
        condition, unmasked)."""
        from .surrogate import validate

        if getattr(next(iter(self.emulators.values())), "family", "") in ("exact", "blackbox"):
            return None
        n = n or int(self.cfg.get("diagnostics", {}).get("surrogate_check_draws", 40))
        rng = np.random.default_rng(int(self.sampler["seed"]))
        if isinstance(posterior, np.ndarray):
            post, names = posterior, None
        else:
            post = self.subject_parameters(posterior)
            coords = posterior.posterior.coords
            names = np.asarray(coords["subject"].values) if "subject" in coords else None
        out, n_draws, n_simulated = {}, 0, 0
        for c, em in self.emulators.items():
            rows = np.arange(len(post))
            mask = None
            if names is not None:
                in_c = self.data.condition == c
                rows = rows[np.isin(names[rows % len(names)], np.unique(self.data.subject[in_c]))]
                if not rows.size:
                    continue
            pick = rows[rng.choice(rows.size, size=min(n, rows.size), replace=False)]
            theta = post[pick]
            if names is not None:
                subj = names[pick % len(names)]
                mask = np.column_stack([np.isin(subj, np.unique(self.data.subject[in_c & (self.data.observable == o)]))
                                        for o in em.observables])
            n_draws = max(n_draws, len(theta))
            n_simulated += len(theta)
            full = self.problem.full_vector(theta)
            rep = validate(em, theta, self.forward.simulate(full, self.schedule(c)), mask=mask)["observables"]
            out[c] = {o: {k: r[k] for k in ("rmse", "max_abs_error", "coverage_90", *self._event_keys(o))}
                      for o, r in rep.items()}
        worst = max(((c, o) for c in out for o in out[c]), key=lambda co: out[co[0]][co[1]]["max_abs_error"])
        return {"n_draws": n_draws, "n_simulated": n_simulated,
                "max_abs_error": out[worst[0]][worst[1]]["max_abs_error"],
                "max_rmse": max(r["rmse"] for v in out.values() for r in v.values()),
                "worst_condition": worst[0], "per_condition": out}

    def surrogate_importance(self, idata, n: int | None = None, seconds_per_simulation: float | None = None
                             ) -> dict | None:
        """Can the surrogate posterior stand in for the true model's? At ``n`` thinned posterior draws the summed
        log-likelihood of the fitted rows under the true forward model (black-box emulators) minus under the run's
        surrogates is the log importance weight of the true posterior against the surrogate one; Pareto-smoothed
        (PSIS, ArviZ ``psislw``), its shape k̂ says whether the surrogate posterior, even reweighted, represents the
        true one (k̂ ≤ 0.7, Vehtari et al. 2024) — a surrogate error well inside the noise can still move a
        posterior of hundreds of rows by many posterior sds, which the RMSE rule does not see. Also the sd of the
        log weights and the weights' relative effective sample size. None unless the route is a surrogate.

        Its cost is ``n`` draws × every fitted subject simulated by the true model: with ``seconds_per_simulation``
        (measured by the surrogate check) and no ``[diagnostics] importance_draws`` in the config, the draws are cut
        to fit :data:`IMPORTANCE_BUDGET_S`, and below :data:`IMPORTANCE_MIN_DRAWS` the check is skipped — and says
        so (``skipped``), never silently (an expensive PDE surrogate keeps the RMSE rule alone)."""
        import arviz as az
        import pymc as pm

        from .diagnostics import importance_by_observable

        if getattr(next(iter(self.emulators.values())), "family", "") in ("exact", "blackbox"):
            return None
        asked = self.cfg.get("diagnostics", {}).get("importance_draws")
        n = n or int(asked or IMPORTANCE_DRAWS)
        if asked is None and seconds_per_simulation:
            per_draw = seconds_per_simulation * len(self.data.subjects)
            n = min(n, int(IMPORTANCE_BUDGET_S / per_draw))
            if n < IMPORTANCE_MIN_DRAWS:
                return {"skipped": (f"the true model at {IMPORTANCE_MIN_DRAWS} posterior draws of all "
                                    f"{len(self.data.subjects)} fitted subjects would take about "
                                    f"{IMPORTANCE_MIN_DRAWS * per_draw:.0f} s (> {IMPORTANCE_BUDGET_S:g} s); set "
                                    "[diagnostics] importance_draws to run it"),
                        "pareto_k": None, "reliable": None}
        thin = thin_posterior(idata, n)
        per_model = []  # {observable: summed log-likelihood per draw}, true model then surrogate
        for ems in (self._exact_emulators(self.conditions[0], "blackbox"), None):
            ll = pm.compute_log_likelihood(thin, model=self.model(ems), extend_inferencedata=False,
                                           progressbar=False)
            per_model.append({name.removeprefix("y_"): np.asarray(
                v.sum([d for d in v.dims if d not in ("chain", "draw")]).values, float).ravel()
                for name, v in ll.data_vars.items()})
        parts = {o: per_model[0][o] - per_model[1][o] for o in per_model[0]}
        log_w = sum(parts.values())
        if not np.all(np.isfinite(log_w)):
            return {"n_draws": int(log_w.size), "pareto_k": float("inf"), "log_weight_sd": float("inf"),
                    "relative_ess": 0.0, "reliable": False,
                    "note": "the true model's log-likelihood is not finite at some surrogate posterior draws",
                    "per_observable": {o: {"finite": bool(np.all(np.isfinite(v)))} for o, v in parts.items()}}
        smoothed, k = az.psislw(log_w)
        w = np.exp(smoothed - smoothed.max())
        w /= w.sum()
        return {"n_draws": int(log_w.size), "pareto_k": float(k), "log_weight_sd": float(log_w.std()),
                "relative_ess": float(1.0 / np.sum(w * w) / log_w.size), "reliable": bool(k <= 0.7),
                "per_observable": importance_by_observable(parts)}

    def prediction_forward(self):
        """The forward model the prediction simulates with: the run's, refined ``[predict] refinements`` times (the
        simulator's ``refined()``) — new subjects spread wider than the fitted ones, so a resolution converged at
        the posterior may not be there (``prediction_numerics_check`` says). A refinement asked of a simulator
        without ``refined()`` is a named error."""
        n = int(self.cfg.get("predict", {}).get("refinements", 0))
        if n and not hasattr(self.forward, "refined"):
            raise ValueError(f"{self.cfg.get('_path', 'config')}: [predict] refinements = {n}, but the forward "
                             f"model {self.forward.name!r} has no refined() resolution")
        forward = self.forward
        for _ in range(n):
            forward = forward.refined()
        return forward

    def _resolution_ladder(self, levels: int = 2, start=None) -> list:
        """``start`` (default the run's forward model) and its ``levels`` successive refinements (the simulator's
        ``refined()``, e.g. half the integration step each): the ladder the resolution checks compare along. ``[]``
        when the simulator has none."""
        if not hasattr(self.forward, "refined"):
            return []
        ladder = [self.forward if start is None else start]
        for _ in range(levels):
            ladder.append(ladder[-1].refined())
        return ladder

    @staticmethod
    def _ladder_report(diffs: list[dict], idata, ladder: list, what: str) -> dict:
        """Differences between consecutive rungs (``ladder``) and between the run's resolution and the finest
        (``max_abs_diff``, in units of the fitted noise sd: ``max_diff_over_noise``; ``converged`` below 0.1 sd); the
        ratio of consecutive differences shows the scheme in its asymptotic range (about 2^order when it is). An
        unconverged resolution is announced loudly (``what`` formatted with ``run``, ``finest``, ``worst``)."""
        noise = _noise_sd(idata, diffs[-1])
        tags = [getattr(f, "numerics_tag", "") for f in ladder]
        obs = sorted({o for d in diffs for o in d})
        to_finest = {o: diffs[-1][o] for o in obs}
        ratio = {o: to_finest[o] / noise[o] for o in noise if o in to_finest and noise[o] > 0}
        steps = diffs[:-1]
        observed = {o: (steps[i][o] / steps[i + 1][o] if steps[i + 1][o] > 0 else None)
                    for o in obs for i in range(len(steps) - 1)}
        worst = max(ratio.values(), default=0.0)
        if worst >= 0.1:
            _announce("NUMERICS: " + what.format(run=tags[0], finest=tags[-1], worst=worst)
                      + ": refine the resolution")
        return {"resolution": tags[0], "refined": tags[-1], "ladder": tags,
                "consecutive_max_abs_diff": steps, "refinement_ratio": observed,
                "max_abs_diff": to_finest, "max_diff_over_noise": ratio, "converged": bool(worst < 0.1)}

    def numerics_check(self, idata, n: int | None = None) -> dict | None:
        """The forward model's numerical resolution checked where the posterior is: at ``n`` posterior draws of the
        fitted subjects, every fitted condition simulated at the run's resolution and twice refined (the
        simulator's ``refined()``, e.g. half the integration step each time), compared on the fitted rows' days.
        The difference between the run's resolution and the finest is reported in units of the fitted noise sd
        (``converged``: below 0.1 sd — the discretisation error is then negligible beside the observation noise),
        with the consecutive differences and their ratio (the refinement shown, not assumed). An unconverged
        resolution is announced loudly. Every route: a surrogate is trained on the simulator at the run's
        resolution, so it is only as good as that. None when the simulator has no ``refined()``."""
        ladder = self._resolution_ladder()
        if not ladder:
            return None
        n = n or int(self.cfg.get("diagnostics", {}).get("surrogate_check_draws", 40))
        rng = np.random.default_rng(int(self.sampler["seed"]))
        post = self.subject_parameters(idata)
        full = self.problem.full_vector(post[rng.choice(len(post), size=min(n, len(post)), replace=False)])
        grid = np.asarray(self.forward.times, float)
        diffs = [{} for _ in ladder]  # rung i vs i+1, and (last) the run vs the finest
        for c in self.conditions[0]:
            days = np.unique(self.data.time[self.data.condition == c])
            ys = [f.simulate(full, self.schedule(c)) for f in ladder]
            for j, o in enumerate(self.forward.observables):
                _accumulate_ladder(diffs, o, [np.array([np.interp(days, grid, row) for row in y[:, j]])
                                              for y in ys])
        return {"n_draws": len(full),
                **self._ladder_report(diffs, idata, ladder, "the forward model at {run} differs from {finest} by "
                                      "{worst:.2f} noise sd at posterior draws")}

    def exact_gradient_seconds(self, idata) -> float | None:
        """Seconds for one value + Jacobian of every fitted unit (subject x condition) by the true model at a
        posterior draw, each to its own last data day when the model takes horizons — the exact route's cost per NUTS
        gradient (None when the route is not ``exact`` or the model
        has no ``simulate_jacobian``)."""
        em = next(iter(self.emulators.values()))
        if getattr(em, "family", "") != "exact" or not hasattr(self.forward, "simulate_jacobian"):
            return None
        full = self.problem.full_vector(self.subject_parameters(idata)[:1])
        fit = self.conditions[0]
        self.forward.simulate_jacobian(full, self.schedule(fit[0]))  # kernels loaded from the cache
        horizons = getattr(next(iter(self.emulators.values())), "accepts_until", False)
        t0 = time.perf_counter()
        for c in fit:
            rows = self.data.condition == c
            subjects = np.unique(self.data.subject[rows])
            theta = np.repeat(full, len(subjects), axis=0)
            if horizons:  # as in the likelihood: each subject to its own last data day
                last = [float(self.data.time[rows & (self.data.subject == s)].max()) for s in subjects]
                self.forward.simulate_jacobian(theta, self.schedule(c), until=last)
            else:
                self.forward.simulate_jacobian(theta, self.schedule(c))
        return time.perf_counter() - t0

    def route(self, idata, check: dict | None, importance: dict | None = None) -> dict:
        """The triage rule (:func:`immunocal.calib.diagnostics.route_advice`) applied to this fit (``check``: the
        surrogate's error at posterior draws, ``importance``: :meth:`surrogate_importance`); an escalation is
        announced loudly (a ``RouteWarning`` and a banner on stderr)."""
        from .diagnostics import LEAVE_SURROGATE, route_advice

        kind = self.cfg.get("emulator", {}).get("kind", "surrogate")
        exact = hasattr(self.forward, "simulate_jacobian") or hasattr(self.forward, "simulate_pt")
        rmse = noise = None
        if check is not None:
            rmse = {}
            for per_obs in check["per_condition"].values():
                for o, r in per_obs.items():
                    rmse[o] = max(rmse.get(o, 0.0), r["rmse"])
            noise = _noise_sd(idata, rmse)
        advice = route_advice(kind, exact, rmse, noise, self.exact_gradient_seconds(idata) if kind == "exact" else None,
                              pareto_k=None if importance is None else importance["pareto_k"],
                              pareto_k_by_observable=None if importance is None else {
                                  o: r["pareto_k"] for o, r in importance.get("per_observable", {}).items()
                                  if "pareto_k" in r})
        if importance is not None and importance.get("skipped"):
            advice["importance_check"] = f"skipped: {importance['skipped']}"
        if advice["advice"] in LEAVE_SURROGATE:
            msg = f"LIKELIHOOD ROUTE: {advice['reason']}"
            _announce(msg)
        return advice

    # ------------------------------------------------------------------ prediction of new subjects
    def prediction_rows(self, conditions) -> Measurements:
        """New subjects of each condition on the forward grid restricted to the data's day range (the condition's
        own rows; a condition without data: the range of all data), plus every data day of the condition."""
        meas, _ = self.tables
        k = int(self.cfg.get("predict", {}).get("subjects_per_draw", 4))
        grid = np.asarray(self.forward.times, float)
        cols = {f: [] for f in ("subject", "condition", "observable", "time")}
        for c in conditions:
            rows = meas.condition == c
            t = meas.time[rows] if rows.any() else meas.time
            days = np.union1d(grid[(grid >= t.min() - 1e-9) & (grid <= t.max() + 1e-9)], np.unique(meas.time[rows]))
            for o in self.data.observables:
                for j in range(k):
                    for d in days:
                        cols["subject"].append(f"{c}/new{j + 1}")
                        cols["condition"].append(c)
                        cols["observable"].append(o)
                        cols["time"].append(d)
        sigma = np.full(len(cols["time"]), np.nan)
        for o in self.data.observables:  # data with per-row sd: new subjects get the typical one
            s = self.data.sigma[self.data.observable == o]
            if np.all(np.isfinite(s)):
                sigma[np.asarray(cols["observable"]) == o] = float(np.median(s))
        return Measurements.from_arrays(cols["subject"], cols["condition"], cols["observable"], cols["time"],
                                        np.zeros(len(cols["time"])), sigma, source="prediction rows")

    def _new_subject_pools(self, name: str, rows: Measurements) -> dict[str, np.ndarray]:
        """Candidate values of an observed input for each new subject: those of its condition's real subjects."""
        vals = self.observed_inputs[name]
        raw = self.raw_measurements
        by_cond: dict[str, list[float]] = {}
        for subj, cond in dict.fromkeys(zip(raw.subject.tolist(), raw.condition.tolist())):
            if subj in vals:
                by_cond.setdefault(cond, []).append(vals[subj])
        everyone = np.array(list(vals.values()))
        return {subj: np.array(by_cond.get(cond, everyone))
                for subj, cond in dict.fromkeys(zip(rows.subject.tolist(), rows.condition.tolist()))}

    def censor_limits(self) -> dict[str, tuple[float, float]]:
        """Per continuous observable: the lower limit (``[predict] detection_limit``, else the data's own left-
        censoring value) and the upper (``[predict] endpoint``), in observable units (log-transformed as the data)."""
        p = self.cfg.get("predict", {})
        logs = set(self.cfg["data"].get("log_transform", {}).values())
        out = {}
        for o in self.data.observables:
            if self.observables.get(o, ObservableSpec()).family not in CONTINUOUS:
                continue
            g = np.log if o in logs else float
            left = self.tables[0].value[(self.tables[0].observable == o) & (self.tables[0].censoring == "left")]
            lo = float(g(p["detection_limit"])) if "detection_limit" in p else (float(left.min()) if len(left)
                                                                                 else -np.inf)
            hi = float(g(p["endpoint"])) if "endpoint" in p else np.inf
            out[o] = (lo, hi)
        return out

    def predict(self, idata, conditions) -> dict:
        """Posterior predictive of new subjects of ``conditions`` by the true forward model at posterior draws:
        PyMC's ``sample_posterior_predictive(predictions=True)`` on the same hierarchical model with a fresh subject
        dimension (new latent values drawn from the fitted population), the run's observation family and censoring
        at the detection limit / endpoint. Returns ``{"idata": predictions, "summary": coverage and control}``."""
        t0 = time.perf_counter()
        pred, rows, thin, limits = self._predictive(idata, conditions, self.prediction_forward(),
                                                    int(self.cfg.get("predict", {}).get("draws", 400)))
        summary = predictive_summary(pred, rows, self.tables[0], conditions, limits)
        priors = self.priors()
        summary["identifiability"] = prediction_identifiability(
            thin, pred, rows, conditions, posterior_contraction(idata, priors),
            {n: getattr(p, "_g", None) for n, p in priors.items() if getattr(p, "_g", None) is not None})
        self.seconds["prediction"] = round(time.perf_counter() - t0, 1)
        return {"idata": pred, "rows": rows, "summary": summary}

    def _predictive(self, idata, conditions, forward, draws: int, log: bool = True):
        """``sample_posterior_predictive`` of new subjects of ``conditions`` by ``forward`` at ``draws`` thinned
        posterior draws (the prediction's and its resolution check's one path). Returns the predictions, the
        prediction rows, the thinned posterior and the censoring limits."""
        from dataclasses import replace

        import pymc as pm

        from .surrogate import BlackBoxEmulator

        p = self.cfg.get("predict", {})
        rows = self.prediction_rows(conditions)
        space = self._input_space()
        ems = {c: BlackBoxEmulator(forward, self.schedule(c), space=space) for c in conditions}
        # new subjects sit at the average covariate (a covariate effect needs the new subject's covariates); an
        # observed input is drawn from the values of the condition's real subjects (else of all subjects)
        specs = [replace(s, covariates=(), values=self._new_subject_pools(n, rows) if s.role == "observed" else None)
                 for s, n in ((s, s.name) for s in self.parameters)]
        limits = self.censor_limits()
        model = self.model(ems, rows, censor_bounds=limits, parameters=specs)
        thin = thin_posterior(idata, draws)
        names = [subject_variable(s) for s in self.parameters if s.role == "latent"] + [v for n in self.observed for v in (f"{n}_pick", n)] + \
            [v for o in rows.observables for v in (f"y_{o}", f"mu_{o}")]
        if log:
            self._log(f"[predict] {len(conditions)} condition(s) × {int(p.get('subjects_per_draw', 4))} new subjects"
                      f" × {thin.posterior.sizes['chain'] * thin.posterior.sizes['draw']} posterior draws (true "
                      f"forward model, {getattr(forward, 'numerics_tag', '') or 'its own resolution'})")
        with model:
            pred = pm.sample_posterior_predictive(thin, var_names=names, predictions=True,
                                                  random_seed=int(p.get("seed", self.sampler["seed"])),
                                                  progressbar=self._bars and log)
        return pred, rows, thin, limits

    def prediction_numerics_check(self, idata, conditions, n: int | None = None) -> dict | None:
        """The prediction's resolution: new subjects of ``conditions`` at ``n`` thinned posterior draws predicted
        along the resolution ladder (the run's, refined, refined twice) with the same random draws, their mean
        trajectories compared where an observation could see them (clipped to the censoring limits); in units of
        the fitted noise sd (``converged`` below 0.1). New subjects spread wider than the fitted ones, so this is
        checked on its own; the ladder starts at the prediction's resolution (``[predict] refinements``). None when
        the simulator has no ``refined()``."""
        ladder = self._resolution_ladder(start=self.prediction_forward())
        if not ladder or not conditions:
            return None
        n = n or int(self.cfg.get("diagnostics", {}).get("surrogate_check_draws", 40))
        runs = [self._predictive(idata, conditions, f, n, log=False) for f in ladder]
        limits = runs[0][3]
        diffs = [{} for _ in ladder]
        for o in runs[0][1].observables:
            lo, hi = limits.get(o, (-np.inf, np.inf))
            _accumulate_ladder(diffs, o, [np.clip(r[0].predictions[f"mu_{o}"].values, lo, hi) for r in runs])
        return {"n_draws": n, "conditions": list(conditions),
                **self._ladder_report(diffs, idata, ladder, "predicted new subjects at {run} differ from {finest} "
                                      "by {worst:.2f} noise sd")}

    # ------------------------------------------------------------------ the whole run
    def fit_data_hash(self) -> str:
        """Identity of what the posterior depends on: the fitted rows and their conditions' schedules."""
        return _digest(self.data.digest(), {c: self.schedule(c) for c in self.conditions[0]})

    def load_finished(self) -> dict | None:
        """The summary of a finished run of this very calibration in the output folder — same config (hash of the
        public config, sampler settings included), same fitted rows and schedules, same forward numerics — with its
        InferenceData as ``self.idata``: a study killed half-way resumes without refitting what it has. A run whose
        config differs only in ``[predict]`` keeps its posterior and is predicted again (the folder's prediction
        files and the summary rewritten). None when there is none (or anything else differs)."""
        import arviz as az

        from .outputs import config_hash

        path = self.out / "summary.json"
        if not (path.is_file() and (self.out / "idata.nc").is_file()):
            return None
        summary = json.loads(path.read_text())
        numerics = summary.get("numerics", summary.get("numerics_at_posterior", {}).get("resolution"))
        same = summary.get("config_hash") == config_hash(public(self.cfg))
        repredict = not same and self._only_predict_differs()
        if (not (same or repredict) or summary.get("fit_data_hash") != self.fit_data_hash()
                or numerics != getattr(self.forward, "numerics_tag", "")):
            return None
        self.idata = az.from_netcdf(self.out / "idata.nc")
        if not repredict:
            self._log(f"[resume] {self.out}: a finished run of this config, data and numerics — reused")
            return summary
        self._log(f"[resume] {self.out}: a finished fit of this config, data and numerics — reused; [predict] "
                  "changed: predicting again")
        from .locking import folder_lock

        with folder_lock(self.out, "output folder"):
            self.seconds = dict(summary.get("seconds", {}))
            summary.pop("prediction", None)
            self._predict_phase(self.idata, summary, self._provenance(summary["data_hash"], summary["surrogate_id"]))
            summary["config_hash"] = config_hash(public(self.cfg))
            summary["seconds"] = self.seconds
            write_json(self.out / "config_effective.json", public(self.cfg))
            write_json(self.out / "summary.json", summary)
        return summary

    def run(self) -> dict:
        """Emulators, refinement, sampling, checks, personalisation and prediction into the output folder, which
        this run holds locked (:func:`immunocal.calib.locking.folder_lock`): a second run into the same folder is refused with
        this one's pid instead of overwriting its files."""
        from .locking import folder_lock

        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"output {self.out} exists and is not a folder")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"output folder {self.out} cannot be created: {exc.strerror or exc}") from None
        with folder_lock(self.out, "output folder"):
            return self._run()

    def _predict_phase(self, idata, summary: dict, attrs: dict) -> None:
        """The run's last phase: new subjects of the fitted and held-out conditions predicted at posterior draws
        (``[predict]``), their resolution check, files and figures, into ``summary["prediction"]`` — also what a
        finished fit re-runs when only ``[predict]`` changed (:meth:`load_finished`)."""
        from .outputs import save_idata

        fit, held = self.conditions
        meas, _ = self.tables
        if not ((self.cfg.get("conditions") or self.cfg.get("predict")) and self.cfg.get("predict", {}).get("draws", 1)):
            return
        pred = self.predict(idata, fit + held)
        save_idata(pred["idata"], self.out / "predictions.nc", attrs)
        summary["prediction"] = {"fit": restrict(pred["summary"], fit), "heldout": restrict(pred["summary"], held)}
        pred_numerics = self.prediction_numerics_check(idata, fit + held)
        if pred_numerics is not None:
            summary["prediction"]["numerics"] = pred_numerics
        write_json(self.out / "predictions.json", pred["summary"])
        plot_predictions(pred, meas, self.data.observables, fit, self.out, "predictions_fit.png",
                         "fitted conditions: data and new-subject predictive")
        if held:
            plot_predictions(pred, meas, self.data.observables, held, self.out, "predictions_heldout.png",
                             "held-out conditions: prediction (not fitted)")

    def _provenance(self, data_hash: str, sid: str) -> dict:
        from .outputs import provenance

        attrs = provenance(public(self.cfg), data_hash, sid)
        attrs.update({"measurements": str(resolve(self.cfg, self.cfg["data"]["measurements"]).resolve()),
                      "config_path": str(Path(self.cfg["_path"]).resolve()), "fit_data_hash": self.fit_data_hash()})
        return attrs

    def _only_predict_differs(self) -> bool:
        """The finished run in the output folder ran this config except for ``[predict]`` (its
        ``config_effective.json``): its posterior stands, its prediction does not."""
        path = self.out / "config_effective.json"
        if not path.is_file():
            return False
        stored, now = json.loads(path.read_text()), json.loads(json.dumps(public(self.cfg), default=str))
        stored.pop("predict", None)
        now.pop("predict", None)
        return stored == now

    def _run(self) -> dict:
        from .outputs import check_diagnostics, save_idata

        prepare_output_dir(self.out, force=self.force)
        t0 = time.perf_counter()
        fit, held = self.conditions
        self._log(f"[data] {len(self.data)} rows of {len(fit)} fitted condition(s); held out: {held or 'none'}")
        self.train()
        self.refine()
        if self.campaigns:  # trained here: saved for a resumed run (ensure_emulators)
            for c, em in self.emulators.items():
                em.save(self.out / EMULATOR_FILE.format(c.replace("/", "_")))
        idata = self.fit()
        from .forward_api import await_compiled

        await_compiled(self.forward)  # a background compilation still running is waited for, a failed one announced
        dcfg = self.cfg.get("diagnostics", {})
        diag = check_diagnostics(idata, rhat_max=dcfg.get("rhat_max", 1.01), ess_min=dcfg.get("ess_min", 400),
                                 strict=dcfg.get("strict", False)) \
            if self.sampler["method"] in ("nuts", "demetropolis", "smc") else \
            {"ok": None, "note": f"no MCMC diagnostics for method {self.sampler['method']}"}
        sid = self.surrogate_ids()
        meas, conds = self.tables
        data_hash = meas.digest() + (conds.digest() if conds else "")
        attrs = self._provenance(data_hash, sid)
        save_idata(idata, self.out / "idata.nc", attrs)
        shutil.copyfile(self.cfg["_path"], self.out / "config.toml")
        # what actually ran: a study or a command may change the config in memory (held-out subjects, saved
        # emulators, data paths), which the copied file does not show
        write_json(self.out / "config_effective.json", public(self.cfg))
        summary = {"output": str(self.out), "method": self.sampler["method"], "diagnostics": diag,
                   "data_hash": data_hash, "fit_data_hash": attrs["fit_data_hash"],
                   "config_hash": attrs["config_hash"], "surrogate_id": sid,
                   "numerics": getattr(self.forward, "numerics_tag", ""),
                   "conditions": {"fit": fit, "heldout": held},
                   "excluded_conditions": sorted(set(meas.condition.tolist()) - set(fit) - set(held)),
                   "problem": self.problem.to_dict(),
                   "posterior": posterior_summary(idata, self.latent + self.observed)}
        if "sample_stats" in idata.groups() and "laplace_init" in idata.sample_stats.attrs:  # [sampler] init's search
            summary["sampler_init"] = {"init": "laplace+adapt_full",
                                       **json.loads(idata.sample_stats.attrs["laplace_init"])}
        if "sample_stats" in idata.groups() and "top_up" in idata.sample_stats.attrs:  # [sampler] top_up's chains
            summary["sampler_top_up"] = json.loads(idata.sample_stats.attrs["top_up"])
        if self.observed:
            summary["observed_inputs"] = {n: {"rows_conditioned_on": int(self._conditioned_rows(
                subset(meas, np.isin(meas.condition, fit))).sum()), "subjects": len(self.data.subjects), **{
                k: float(f(list(v.values()))) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))}}
                for n, v in self.observed_inputs.items()}
        def validation_table(reports):
            return {c: {"n_train": r["n_train"], "n_test": r["n_test"], **{
                o: {k: v for k, v in e.items() if k in ("r2", "rmse", "max_abs_error", "coverage_50", "coverage_90",
                                                        *self._event_keys(o))}
                for o, e in r.get("observables", {}).items()}} for c, r in reports.items()}

        if self.validation:
            summary["surrogate_validation"] = validation_table(self.validation)
        if getattr(self, "validation_design", None):   # refined: the design-only emulators' validation too
            summary["surrogate_validation_before_refinement"] = validation_table(self.validation_design)
        if getattr(self, "posterior_error", None):  # [emulator] variance = "posterior": what the likelihood used
            summary["surrogate_posterior_error"] = self.posterior_error
        from .diagnostics import information_criteria, posterior_contraction

        summary["contraction"] = posterior_contraction(idata, self.priors())
        if "log_likelihood" in idata.groups():
            n_sigma = sum(1 for v in idata.posterior.data_vars if v.startswith("sigma_"))
            summary["information_criteria"] = information_criteria(
                idata, None if self.latent else len([s for s in self.parameters if s.role == "population"]) + n_sigma)
        t_check = time.perf_counter()
        check = self.surrogate_check(idata)
        t_check = time.perf_counter() - t_check
        importance = None
        if check is not None:
            summary["surrogate_at_posterior"] = check
            importance = summary["surrogate_importance"] = self.surrogate_importance(
                idata, seconds_per_simulation=t_check / max(check["n_simulated"], 1))
            if idata.posterior.sizes["chain"] > 1:
                summary["chain_modes"] = self.chain_modes(idata)
        summary["route"] = self.route(idata, check, importance)
        numerics = self.numerics_check(idata)
        if numerics is not None:
            summary["numerics_at_posterior"] = numerics
        if self.heldout_subjects:
            t1 = time.perf_counter()
            from .diagnostics import subject_posteriors

            self._log(f"[personalise] {len(self.heldout_subjects)} held-out subject(s) given the fitted population")
            self.personalised = self.personalise()
            save_idata(self.personalised, self.out / "personalised.nc", attrs)
            summary["personalised"] = subject_posteriors(self.personalised, self.latent)
            for failure in summary["personalised"].get("failures", []):  # recorded in the summary, and said
                warnings.warn(f"[personalise] {failure}", stacklevel=2)
            self.seconds["personalise"] = round(time.perf_counter() - t1, 1)
        self._predict_phase(idata, summary, attrs)
        self.seconds["total"] = round(time.perf_counter() - t0, 1)
        summary["seconds"] = self.seconds
        write_json(self.out / "diagnostics.json", diag)
        write_json(self.out / "summary.json", summary)
        return summary

def posterior_summary(idata, latent) -> dict:
    """Mean, sd and 90 % interval of population parameters and of the noise/hierarchy scales; for latent
    parameters the population median (link⁻¹ of the location) and the between-subject sd in link space."""
    post = idata.posterior
    out = {}
    for v in post.data_vars:
        if v.startswith(("mu_", "sd_")) or v.endswith(("_eta", "_link")) or v in latent or (
                v.endswith("_z") and v[:-2] in post.data_vars):  # a bounded prior's unconstrained twin
            continue
        vals = post[v].values.reshape(post.sizes["chain"] * post.sizes["draw"], -1)
        if vals.shape[1] != 1:
            continue
        x = vals[:, 0]
        out[v] = {"mean": float(x.mean()), "sd": float(x.std()), "q05": float(np.quantile(x, 0.05)),
                  "q95": float(np.quantile(x, 0.95))}
    for n in latent:
        v = post[n].values.reshape(post.sizes["chain"] * post.sizes["draw"], -1)
        out[n] = {"subject_median": float(np.median(v)), "subject_q05": float(np.quantile(v, 0.05)),
                  "subject_q95": float(np.quantile(v, 0.95))}
    return out


def check_surrogate_provenance(sur, path, forward, condition_id: str, schedule: dict | None) -> None:
    """Refuse a surrogate trained for another forward model (spec or options) or another condition (it would bias
    the posterior silently): its recorded descriptor must equal the config's, and its recorded condition (schedule)
    the condition's row of the conditions table (no table: a condition without schedule)."""
    from .forward_api import descriptor_key

    if getattr(sur, "forward_", None) is None:
        raise ValueError(f"{path}: surrogate has no provenance (forward model and condition it was trained on); "
                         "refit it from a campaign (`immunocal surrogate fit`)")
    if descriptor_key(sur.forward_) != descriptor_key(forward):
        raise ValueError(f"{path}: surrogate was trained on forward model {sur.forward_!r}, but the config's forward "
                         f"model is {forward!r}")
    trained = {k: v for k, v in (sur.condition_ or {}).items() if k != "condition"}
    trained_id = (sur.condition_ or {}).get("condition")
    expected = dict(schedule or {})
    if json.dumps(trained, sort_keys=True) != json.dumps(expected, sort_keys=True) or \
            (trained_id is not None and trained_id != condition_id):
        raise ValueError(f"{path}: surrogate was trained for condition {trained_id or '(unnamed)'} {trained}, but "
                         f"data condition {condition_id!r} is {expected}")


def with_saved_emulators(cfg: dict, paths: dict[str, str]) -> dict:
    """``cfg`` fitted on saved, already refined emulators (``{condition: file}``): its ``[emulator]`` section (the
    variance mode kept; a ``"posterior"`` variance travels in the files) with their paths and no ``[refinement]`` of
    its own — what a study's folds, or a refit, share instead of simulating and refining again."""
    out = copy.deepcopy(cfg)
    out["emulator"] = {**cfg.get("emulator", {}), "paths": dict(paths)}
    out.pop("refinement", None)
    return out


def refit_config(cfg: dict) -> dict:
    """The config a fit that missed the diagnostics thresholds is fitted again with: twice the draws and tuning and
    ``target_accept`` ≥ 0.95 (smaller steps: the answer to divergences and to chains that disagree; a narrow ESS
    miss alone is the config's ``[sampler] top_up``, inside the first fit)."""
    out = copy.deepcopy(cfg)
    s = out["sampler"]
    s.update(draws=2 * int(s["draws"]), tune=2 * int(s["tune"]), target_accept=max(0.95, s.get("target_accept", 0.9)))
    return out


def run_converged(cfg: dict, folder: Path, *, progress: bool = False, resume: bool = False,
                  refit: bool = True) -> tuple[Calibration, dict, dict | None, Path]:
    """Run the calibration ``cfg`` in ``folder``; when its fit misses the diagnostics thresholds (R-hat, ESS,
    divergences; after the config's top-ups), fit it once more with :func:`refit_config` in ``<folder>_retry``, on
    the emulators the first run trained and saved in its folder (the retry neither simulates nor refines again).
    A retry that still misses is returned and says so in its summary. ``resume``: a finished run of the same config and data in
    a folder is read back (:meth:`Calibration.load_finished`) instead of fitted again. Returns the calibration
    used, its summary, the first attempt's diagnostics when it was refitted (else None), and its folder."""

    def attempt(c: dict, f: Path):
        cal = Calibration(c, f, force=True, progress=progress)
        summary = cal.load_finished() if resume else None
        return cal, summary if summary is not None else cal.run()

    folder = Path(folder)
    cal, summary = attempt(cfg, folder)
    if not refit or summary["diagnostics"].get("ok") is not False:
        return cal, summary, None, folder
    first = summary["diagnostics"]
    retry = refit_config(cfg)
    em = cfg.get("emulator", {})
    saved = {c: folder / EMULATOR_FILE.format(c.replace("/", "_")) for c in cal.conditions[0]}
    if "path" not in em and "paths" not in em and all(f.is_file() for f in saved.values()):
        # trained (and refined) by the first run, which saved them in its folder: the retry loads them
        retry = with_saved_emulators(retry, {c: str(f.resolve()) for c, f in saved.items()})
    print(f"[refit] {folder}: the fit missed the diagnostics thresholds ({'; '.join(first.get('violations', []))})"
          f": fitting again with {retry['sampler']['draws']} draws, {retry['sampler']['tune']} tuning steps and "
          f"target_accept {retry['sampler']['target_accept']} in {folder.name}_retry", file=sys.stderr, flush=True)
    folder = folder.with_name(folder.name + "_retry")
    first_summary = summary
    cal, summary = attempt(retry, folder)
    for key in ("surrogate_validation", "surrogate_validation_before_refinement", "surrogate_posterior_error"):
        if key in first_summary and key not in summary:  # the emulators' own record: the retry loaded them
            summary[key] = first_summary[key]
    summary["seconds_first_attempt"] = first_summary.get("seconds")  # what the retry's own seconds leave out
    return cal, summary, first, folder
