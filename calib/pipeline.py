"""Config-driven calibration (``immunocal calibrate CONFIG.toml``), posterior predictive checks and SBC.

Config (TOML; relative paths are relative to the config file) — see docs/calib.md for a complete example::

    [model]        forward = "toy.logistic"   # or "package.module:attribute"
                   registry_model = "rit"     # optional: priors and fixed values from priors/
                   preset = "default"
    [data]         measurements = "measurements.csv"   conditions = "conditions.csv" (optional)
    [emulator]     kind = "surrogate" | "exact" | "blackbox";  path = "surrogate.npz"
                   [emulator.paths] cond_a = "a.npz" ...   (one surrogate per condition)
    [parameters.NAME]  role = "population" | "latent" | "fixed"; prior = {distribution = ..., ...};
                   value = ... (fixed); sd = 0.3 or {distribution = "HalfNormal", sigma = 0.5}; covariates = [...]
    [observables.NAME] family = "normal" | "student_t" | "ordinal_logistic" | "ordinal_probit" | "bernoulli" |
                   "binomial"; sigma = 0.1 or {prior}; nu; cutpoints; n_trials
    [sampler]      method = "nuts"; draws; tune; chains; cores; seed; target_accept; compile_mode = "NUMBA" (optional)
    [diagnostics]  rhat_max = 1.01; ess_min = 400; strict = false
    [output]       dir = "runs/NAME"
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np

from .data import read_conditions, read_measurements
from .model import ObservableSpec, ParameterSpec, build_model
from .outputs import write_json

_TOP = {"model", "data", "emulator", "parameters", "observables", "sampler", "diagnostics", "output", "sbc"}
_SAMPLER = {"method", "draws", "tune", "chains", "cores", "seed", "target_accept", "advi_iterations",
            "compile_mode"}
#: allowed keys of each section (``*`` = a table of named entries, each with the keys given)
_SCHEMA = {
    "model": {"forward", "registry_model", "preset"},
    "data": {"measurements", "conditions", "shared_subjects"},
    "emulator": {"kind", "path", "paths"},
    "parameters": {"*": {"role", "prior", "value", "sd", "covariates", "coef_sd"}},
    "observables": {"*": {"family", "sigma", "nu", "link", "cutpoints", "n_trials"}},
    "sampler": _SAMPLER,
    "diagnostics": {"rhat_max", "ess_min", "strict"},
    "output": {"dir"},
    "sbc": {"sampler"},
}


def _line_of(text: str, section: str, key: str) -> int | None:
    """Line number of ``key`` inside ``[section]`` (or of ``[section.key]``) in the TOML text, for messages."""
    lines = text.splitlines()
    header = None
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            name = stripped.lstrip("[").split("]")[0].strip()
            if name == f"{section}.{key}":
                return i
            header = name
        elif header == section and stripped.split("=")[0].strip() == key:
            return i
    return None


def _check_keys(cfg: dict, text: str, path: Path) -> None:
    """Reject unknown keys in every section, naming the key path and the line (typos are never dropped)."""
    for sec, allowed in _SCHEMA.items():
        body = cfg.get(sec)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ValueError(f"{path}: [{sec}] must be a table, got {type(body).__name__}")
        if "*" in allowed:
            for name, entry in body.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"{path}, line {_line_of(text, sec, name)}: {sec}.{name} must be a table")
                for key in sorted(set(entry) - allowed["*"]):
                    line = _line_of(text, f"{sec}.{name}", key)
                    raise ValueError(f"{path}{f', line {line}' if line else ''}: unknown key {sec}.{name}.{key}; "
                                     f"allowed: {sorted(allowed['*'])}")
        else:
            for key in sorted(set(body) - allowed):
                line = _line_of(text, sec, key)
                raise ValueError(f"{path}{f', line {line}' if line else ''}: unknown key {sec}.{key}; allowed: "
                                 f"{sorted(allowed)}")


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such config file")
    text = path.read_text()
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: malformed TOML: {exc}") from None
    unknown = sorted(set(cfg) - _TOP)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; allowed: {sorted(_TOP)}")
    for sec in ("model", "data", "parameters"):
        if sec not in cfg:
            raise ValueError(f"{path}: missing section [{sec}]")
    if "forward" not in cfg["model"]:
        raise ValueError(f"{path}: [model] needs 'forward' (e.g. \"toy.logistic\")")
    _check_keys(cfg, text, path)
    cfg["_base"] = str(path.resolve().parent)
    cfg["_path"] = str(path)
    return cfg


def _p(cfg: dict, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else Path(cfg["_base"]) / p


def load_emulators(cfg: dict, conditions_in_data):
    from .forward_api import load_forward_model
    from .surrogate import BlackBoxEmulator, ExactEmulator, GPSurrogate

    em = cfg.get("emulator", {"kind": "surrogate"})
    kind = em.get("kind", "surrogate")
    fwd_spec = cfg["model"]["forward"]
    if kind in ("exact", "blackbox"):
        fm = load_forward_model(fwd_spec)
        sched = cfg.get("_conditions")
        cls = ExactEmulator if kind == "exact" else BlackBoxEmulator
        return {c: cls(fm, (sched.schedules.get(c) if sched else None)) for c in conditions_in_data}
    if kind != "surrogate":
        raise ValueError(f"[emulator] kind must be 'surrogate', 'exact' or 'blackbox', got {kind!r}")
    sched = cfg.get("_conditions")
    if "paths" in em:
        missing = sorted(set(conditions_in_data) - set(em["paths"]))
        if missing:
            raise ValueError(f"[emulator.paths] has no surrogate for condition(s) {missing}")
        paths = {c: _p(cfg, em["paths"][c]) for c in conditions_in_data}
    elif "path" in em:
        paths = {c: _p(cfg, em["path"]) for c in conditions_in_data}
    else:
        raise ValueError("[emulator] kind='surrogate' needs 'path' (or [emulator.paths] per condition)")
    out = {}
    for c, path in paths.items():
        sur = GPSurrogate.load(path)
        check_surrogate_provenance(sur, path, fwd_spec, c, sched.schedules.get(c) if sched else None)
        out[c] = sur
    return out


def check_surrogate_provenance(sur, path, forward_spec: str, condition_id: str, schedule: dict | None) -> None:
    """Refuse a surrogate trained for another forward model or another condition (it would bias the posterior
    silently): its recorded forward spec must equal the config's, and its recorded condition (schedule) must equal
    the condition's row of the conditions table (no table: a condition without schedule)."""
    if getattr(sur, "forward_", None) is None:
        raise ValueError(f"{path}: surrogate has no provenance (forward model and condition it was trained on); "
                         "refit it from a campaign (`immunocal surrogate fit`)")
    if sur.forward_ != forward_spec:
        raise ValueError(f"{path}: surrogate was trained on forward model {sur.forward_!r}, but [model] forward is "
                         f"{forward_spec!r}")
    trained = {k: v for k, v in (sur.condition_ or {}).items() if k != "condition"}
    trained_id = (sur.condition_ or {}).get("condition")
    expected = dict(schedule or {})
    if json.dumps(trained, sort_keys=True) != json.dumps(expected, sort_keys=True) or \
            (trained_id is not None and trained_id != condition_id):
        raise ValueError(f"{path}: surrogate was trained for condition {trained_id or '(unnamed)'} {trained}, but "
                         f"data condition {condition_id!r} is {expected}")


def build_from_config(cfg: dict, data=None):
    data = data if data is not None else read_measurements(_p(cfg, cfg["data"]["measurements"]))
    conds = read_conditions(_p(cfg, cfg["data"]["conditions"])) if cfg["data"].get("conditions") else None
    cfg["_conditions"] = conds
    ems = load_emulators(cfg, list(dict.fromkeys(data.condition.tolist())))
    params = [ParameterSpec(name=n, **spec) for n, spec in cfg["parameters"].items()]
    unknown = sorted(set(cfg.get("observables", {})) - set(data.observables))
    if unknown:
        raise ValueError(f"{cfg.get('_path', 'config')}: [observables.{unknown[0]}] names no observable of the data "
                         f"(the data have {sorted(data.observables)})")
    obs = {n: ObservableSpec(**spec) for n, spec in cfg.get("observables", {}).items()}
    model = build_model(ems, params, data, obs, conds, model=cfg["model"].get("registry_model"),
                        preset=cfg["model"].get("preset"), shared_subjects=bool(cfg["data"].get("shared_subjects")))
    return model, data, conds, ems


def _public(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


#: the files a calibration run writes (and ``ppc`` adds) into its output folder
RUN_FILES = ("idata.nc", "diagnostics.json", "summary.json", "config.toml", "ppc.json", "ppc.png")


def prepare_output_dir(out: Path, produced: tuple[str, ...], force: bool = False) -> None:
    """Check an output folder before any computation: creatable and writable; empty, or — with ``force`` — holding
    only the files of a previous run (``produced``), which are then removed so no stale file stays beside new ones.
    Anything else in it is never deleted: the run is refused with the files named."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    if out.is_dir():
        present = sorted(p.name for p in out.iterdir())
        if present:
            foreign = [n for n in present if n not in produced and not n.endswith(".tmp")]
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


def calibrate(config_path: str | Path, out_dir: str | Path | None = None, surrogate: str | Path | None = None,
              force: bool = False, **sampler_overrides) -> dict:
    """Run the calibration described by a config file. Writes ``idata.nc``, ``diagnostics.json``,
    ``summary.json`` and a copy of the config into the output folder (checked first: see
    :func:`prepare_output_dir`; ``force`` replaces a previous run's files); returns the summary."""
    import arviz as az

    from .inference import sample
    from .outputs import check_diagnostics, provenance, save_idata

    cfg = load_config(config_path)
    if surrogate is not None:
        cfg["emulator"] = {"kind": "surrogate", "path": str(Path(surrogate).resolve())}
    out = Path(out_dir) if out_dir else _p(cfg, cfg.get("output", {}).get("dir", "calib_run"))
    prepare_output_dir(out, RUN_FILES, force=force)
    model, data, conds, ems = build_from_config(cfg)
    s = {"method": "nuts", "draws": 1000, "tune": 1000, "chains": 4, "seed": 0, **cfg.get("sampler", {}),
         **{k: v for k, v in sampler_overrides.items() if v is not None}}
    idata = sample(model, **s)
    dcfg = cfg.get("diagnostics", {})
    diag = check_diagnostics(idata, rhat_max=dcfg.get("rhat_max", 1.01), ess_min=dcfg.get("ess_min", 400),
                             strict=dcfg.get("strict", False)) if s["method"] in ("nuts", "demetropolis") \
        else {"ok": None, "note": f"no MCMC diagnostics for method {s['method']}"}
    data_hash = data.digest() + (conds.digest() if conds else "")
    sid = ";".join(sorted({f"{c}={e.surrogate_id}" for c, e in ems.items()}))
    attrs = provenance(_public(cfg), data_hash, sid)
    attrs["measurements"] = str(_p(cfg, cfg["data"]["measurements"]).resolve())
    attrs["config_path"] = str(Path(config_path).resolve())
    save_idata(idata, out / "idata.nc", attrs)
    shutil.copyfile(config_path, out / "config.toml")
    summ = az.summary(idata, var_names=[v for v in idata.posterior.data_vars
                                        if not v.startswith(("mu_", "sd_")) and not v.endswith("_eta")],
                      kind="stats")
    summary = {"output": str(out), "method": s["method"], "diagnostics": diag, "data_hash": data_hash,
               "config_hash": attrs["config_hash"], "surrogate_id": sid,
               "posterior": {k: {"mean": float(r["mean"]), "sd": float(r["sd"])} for k, r in summ.iterrows()}}
    write_json(out / "diagnostics.json", diag)
    write_json(out / "summary.json", summary)
    return summary


def ppc(run_dir: str | Path, plot: bool = True) -> dict:
    """Posterior predictive bands over the data of a finished run (``RUN_DIR/idata.nc``); writes ``ppc.json`` and
    ``ppc.png``. The draws are PyMC's own posterior predictive of each observed variable (``y_*``, every row, the
    run's family — Student-t with its ν — and censoring), made by ``sample_posterior_predictive`` at sampling time."""
    import arviz as az

    from .diagnostics import ppc_bands

    run_dir = Path(run_dir)
    if not (run_dir / "idata.nc").exists():
        raise FileNotFoundError(f"{run_dir}: no idata.nc (run 'immunocal calibrate' first)")
    idata = az.from_netcdf(run_dir / "idata.nc")
    data = read_measurements(idata.posterior.attrs["measurements"])
    stored = str(idata.posterior.attrs.get("data_hash", ""))
    if stored[:16] != data.digest():
        raise ValueError(f"{idata.posterior.attrs['measurements']}: the measurements changed since the run {run_dir} "
                         f"(data hash {data.digest()} vs {stored[:16] or 'none recorded'}); rerun "
                         "`immunocal calibrate` before checking its predictive")
    result = {"run": str(run_dir), "observables": {}}
    for o in data.observables:
        rows = np.flatnonzero(data.observable == o)
        if "posterior_predictive" not in idata.groups() or f"y_{o}" not in idata.posterior_predictive:
            raise ValueError(f"{run_dir}: the run has no posterior predictive draws of {o!r} (y_{o})")
        pred = idata.posterior_predictive[f"y_{o}"].stack(s=("chain", "draw")).values.T
        y = data.value[rows]
        bands = ppc_bands(y, pred)
        unc = data.censoring[rows] == "none"
        bands["fraction_inside_90_uncensored"] = float(np.mean((y[unc] >= np.array(bands["lower_90"])[unc]) &
                                                               (y[unc] <= np.array(bands["upper_90"])[unc])))
        bands.update({"subject": data.subject[rows].tolist(), "time": data.time[rows].tolist(), "value": y.tolist(),
                      "censoring": data.censoring[rows].tolist()})
        result["observables"][o] = bands
    write_json(run_dir / "ppc.json", result)
    if plot and result["observables"]:
        _plot_ppc(result, run_dir / "ppc.png")
    return result


def _plot_ppc(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = list(result["observables"])
    fig, axes = plt.subplots(1, len(obs), figsize=(6.5 * len(obs), 4.5), squeeze=False)
    for ax, o in zip(axes[0], obs):
        b = result["observables"][o]
        subj = np.array(b["subject"])
        t = np.array(b["time"])
        for k, s in enumerate(list(dict.fromkeys(subj))[:8]):
            sel = subj == s
            order = np.argsort(t[sel])
            col = f"C{k}"
            ax.fill_between(t[sel][order], np.array(b["lower_90"])[sel][order], np.array(b["upper_90"])[sel][order],
                            color=col, alpha=0.2)
            ax.plot(t[sel][order], np.array(b["median"])[sel][order], color=col)
            cz = np.array(b["censoring"])[sel]
            for flag, marker in (("none", "o"), ("left", "v"), ("right", "^")):
                keep = cz == flag
                if keep.any():
                    ax.plot(t[sel][keep], np.array(b["value"])[sel][keep], marker, color=col, ms=4 if flag == "none"
                            else 7, ls="none", label=f"{flag}-censored" if flag != "none" and k == 0 else None)
        ax.set_xlabel("time")
        ax.set_ylabel(o)
        ax.set_title(f"{o}: 90 % PPC bands, {b['fraction_inside_90']:.0%} of data inside", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sbc_from_config(config_path: str | Path, n_replicates: int = 50, n_draws: int = 99, seed: int = 0,
                    out_dir: str | Path | None = None) -> dict:
    """SBC of the model described by a config: truths and data from the prior predictive (censored rows drawn
    censored at the data's bounds, as the observation model says), refits with the config's sampler (continuous
    observables), ranks + chi-square uniformity test per free variable."""
    import pymc as pm

    from .diagnostics import sbc_rank, uniformity_test
    from .inference import sample

    cfg = load_config(config_path)
    model, data, _, _ = build_from_config(cfg)
    data_vars = [v.name for v in model.data_vars if v.name.startswith("data_")]
    obs_names = [f"y_{v[len('data_'):]}" for v in data_vars]
    if not data_vars:
        raise ValueError("SBC from a config needs continuous (normal/student_t) observables")
    free = [v.name for v in model.free_RVs if not v.name.endswith("_eta")]
    free += [n for n in model.calib_info.latent]
    with model:
        prior = pm.sample_prior_predictive(draws=n_replicates, random_seed=seed)
    s = {"method": "nuts", "draws": 500, "tune": 500, "chains": 2, "cores": 1, "seed": seed,
         **cfg.get("sampler", {}),
         **cfg.get("sbc", {}).get("sampler", {})}
    ranks: dict[str, list[int]] = {n: [] for n in free}
    for i in range(n_replicates):
        with model:
            pm.set_data({dv: prior.prior_predictive[on].isel(chain=0, draw=i).values
                         for dv, on in zip(data_vars, obs_names)})
        idata = sample(model, **{**s, "seed": seed + i + 1}, posterior_predictive=False)
        for n in free:
            truth = np.atleast_1d(prior.prior[n].isel(chain=0, draw=i).values)
            d = idata.posterior[n].stack(s=("chain", "draw")).values
            d = d.reshape(-1, d.shape[-1]) if d.ndim > 1 else d[None, :]
            for j in range(len(truth)):
                dj = d[j][np.linspace(0, d.shape[1] - 1, n_draws).astype(int)]
                ranks[n].append(sbc_rank(truth[j], dj))
    result = {n: {"ranks": r, **uniformity_test(np.array(r), n_draws)} for n, r in ranks.items()}
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(out_dir) / "sbc.json", result)
    return result
