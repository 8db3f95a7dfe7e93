"""CLI of the calibration layer: ``campaign run|resume|status``, ``surrogate fit|validate``, ``calibrate``, ``predict``, ``ppc``,
``sbc`` and ``bench calib``."""

from __future__ import annotations

import json
from pathlib import Path

from immunocal.calib.cli.types import (
    finite_float,
    holdout_fraction,
    nonnegative_int,
    output_file,
    output_folder,
    positive_int,
)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=float))


def _kv(items, what) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"{what} {it!r} must look like name=value")
        k, v = it.split("=", 1)
        out[k.strip()] = float(v)
    return out


def cmd_campaign_run(args) -> int:

    from immunocal.calib.campaign import Campaign
    from immunocal.calib.design import design

    fm, full = _campaign_model(args.forward, args.preset)
    vary = [v.strip() for v in args.vary.split(",")] if args.vary else list(fm.parameter_names)
    missing = [n for n in vary if n not in full.names]
    if missing:
        raise ValueError(f"--vary: {args.forward!r} has no parameter(s) {missing}; it has {list(full.names)}")
    fixed = {}
    if args.params:
        from immunocal.priors import ParameterSet

        ps = ParameterSet.from_file(args.params)
        fixed.update({n: ps[n] for n in fm.parameter_names if n in ps and n not in vary})
    fixed.update(_checked_fixed(_kv(args.fix, "--fix"), fm, vary, args.preset))
    space = full.subset(vary)
    cond = json.loads(args.condition) if args.condition else None
    if args.conditions_table:
        from immunocal.calib.data import read_conditions

        if not args.condition_id:
            raise ValueError("--conditions-table needs --condition-id (which row to simulate)")
        table = read_conditions(args.conditions_table)
        if args.condition_id not in table.schedules:
            raise ValueError(f"{args.conditions_table}: no condition {args.condition_id!r}; it has "
                             f"{sorted(table.schedules)}")
        cond = {**table.schedules[args.condition_id], "condition": args.condition_id, **(cond or {})}
    X = design(space, args.n, args.design, args.seed)
    camp = Campaign.create(args.out, args.forward, X, condition=cond, chunk_size=args.chunk_size,
                           parameter_names=vary, fixed=fixed, overwrite=args.overwrite, space=space)
    st = camp.run(workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    _print(st)
    return _campaign_exit(st)


def _campaign_exit(st: dict) -> int:
    """Exit status of a campaign run: 1 (and said) when every finished run failed — a model or setting error, not
    a region of the design; the failures are recorded (``campaign status --failures``)."""
    import sys

    if st["finished"] and st["failed"] == st["finished"]:
        print(f"immunocal: error: all {st['failed']} finished runs of {st['folder']} failed; see `immunocal campaign "
              f"status {st['folder']} --failures`", file=sys.stderr)
        return 1
    return 0


def _campaign_model(spec: str, preset: str | None):
    """The forward model of ``campaign run`` and the box of its full input vector: the model's own ``space()``
    (toy models), else the parameter registry's ranges for the model (``name``) and ``preset`` — which is checked
    and given to the simulator, so its non-varied parameters take the same preset's values."""
    from immunocal.calib.design import ParameterSpace
    from immunocal.calib.forward_api import load_forward_model
    from immunocal.priors import registry

    probe = load_forward_model(spec)
    reg = registry()
    if probe.name not in reg.models:
        if preset is not None:
            raise ValueError(f"--preset {preset!r}: forward model {spec!r} is not a registry model "
                             f"({reg.models}) and has no presets")
        if not hasattr(probe, "space"):
            raise ValueError(f"forward model {spec!r} has neither a space() nor registry ranges: no design box")
        return probe, probe.space()
    if preset is not None:
        reg.check_preset(probe.name, preset)
        if getattr(probe, "preset", preset) != preset:
            probe = load_forward_model(spec, preset=preset)
    return probe, ParameterSpace.from_registry(probe.name, probe.parameter_names, getattr(probe, "preset", preset))


def _checked_fixed(fixed: dict, fm, vary: list[str], preset: str | None) -> dict:
    """``--fix`` values: parameters of the model that are not varied, finite, and inside the registry's range for
    a registry model — checked before any run (a NaN once gave a campaign of failed runs and exit status 0)."""
    import math

    from immunocal.priors import registry

    for name, value in fixed.items():
        if name not in fm.parameter_names:
            raise ValueError(f"--fix {name}: {fm.name!r} has no parameter {name!r}; it has {list(fm.parameter_names)}")
        if name in vary:
            raise ValueError(f"--fix {name}: the parameter is also varied (--vary); fix it or vary it")
        if not math.isfinite(value):
            raise ValueError(f"--fix {name}={value}: not a finite number")
        if fm.name in registry().models:
            registry().record(fm.name, name).check(value, getattr(fm, "preset", preset), where="--fix")
    return fixed


def cmd_campaign_resume(args) -> int:
    from immunocal.calib.campaign import Campaign

    st = Campaign(args.folder).run(workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    _print(st)
    return _campaign_exit(st)


def cmd_campaign_status(args) -> int:
    from immunocal.calib.campaign import Campaign

    camp = Campaign(args.folder)
    st = camp.status()
    if args.failures:
        st["failures"] = camp.failures()
    _print(st)
    return 0


def cmd_surrogate_fit(args) -> int:
    from immunocal.calib.campaign import Campaign
    from immunocal.calib.surrogate import fit_from_campaign

    output_file(args.out, args.force)
    output_file(str(args.out) + ".validation.json", args.force)
    sur, rep = fit_from_campaign(Campaign(args.campaign), test_fraction=args.test_fraction, seed=args.seed,
                                 max_components=args.max_components, partial=args.partial)
    sur.save(args.out)
    rep["path"] = str(args.out)
    Path(str(args.out) + ".validation.json").write_text(json.dumps(rep, indent=2) + "\n")
    _print(rep)
    return 0


def cmd_surrogate_validate(args) -> int:
    from immunocal.calib.campaign import Campaign
    from immunocal.calib.surrogate import GPSurrogate, validate

    sur = GPSurrogate.load(args.surrogate)
    theta, Y = Campaign(args.campaign).training_data()
    if len(theta) == 0:
        raise ValueError(f"{args.campaign}: no successful runs to validate against")
    _print(validate(sur, theta, Y))
    return 0


def cmd_calibrate(args) -> int:
    from immunocal.calib.pipeline import calibrate

    summary = calibrate(args.config, out_dir=args.out, surrogate=args.surrogate, force=args.force,
                        progress=not args.quiet, method=args.method, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed)
    _print(summary)
    return 0 if summary["diagnostics"].get("ok") is not False else 3


def cmd_ppc(args) -> int:
    from immunocal.calib.pipeline import ppc

    res = ppc(args.run_dir)
    _print({o: {k: v for k, v in b.items() if k.startswith("fraction")} for o, b in res["observables"].items()})
    return 0


def cmd_wide_to_long(args) -> int:
    """Per-group wide tables (one column per animal) -> one long measurement table; ids qualified by the group."""
    import numpy as np

    from immunocal.calib.data import Measurements, wide_to_long

    parts = []
    for item in args.tables:
        cond, _, file = item.rpartition("=")
        path = Path(file)
        parts.append(wide_to_long(path, condition=cond or path.stem, observable=args.observable,
                                  time_column=args.time_column, detection_limit=args.detection_limit,
                                  endpoint=args.endpoint))
    seen: dict[str, str] = {}
    for m in parts:
        c = str(m.condition[0]) if len(m) else ""
        if c in seen:
            raise ValueError(f"condition {c!r} comes from two tables ({seen[c]} and {m.source}); name them "
                             "CONDITION=FILE")
        seen[c] = str(m.source)
    cat = {f: np.concatenate([getattr(m, f) for m in parts]) for f in
           ("subject", "condition", "observable", "time", "value", "sigma", "censoring")}
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    Measurements.from_arrays(**cat, source=str(out)).to_csv(out)
    print(json.dumps({"out": str(out), "rows": len(cat["value"]), "conditions": list(seen),
                      "subjects": len(set(cat["subject"].tolist())),
                      "censored": {k: int(np.sum(cat["censoring"] == k)) for k in ("left", "right")}}, indent=2))
    return 0


def cmd_export_petab(args) -> int:
    from immunocal.calib.petab import export_petab
    from immunocal.calib.petab_v2 import export_petab_v2

    output_folder(args.out, args.force)
    export = export_petab_v2 if args.petab_version == 2 else export_petab
    _print(export(args.measurements, args.conditions, args.out, rename_ids=args.rename_ids))
    return 0


def cmd_import_petab(args) -> int:
    from immunocal.calib.petab import import_petab
    from immunocal.calib.petab_v2 import import_petab_v2, is_petab_v2

    output_folder(args.out, args.force)
    _print((import_petab_v2 if is_petab_v2(args.source) else import_petab)(args.source, args.out))
    return 0


def cmd_identify(args) -> int:
    from immunocal.calib.identify import identify, write_report
    from immunocal.calib.workflow import Calibration

    output_folder(args.out, args.force)
    cal = Calibration(args.config, args.out, progress=False)
    idata = None
    if args.run is not None:
        from immunocal.calib.pipeline import load_run

        idata, _ = load_run(args.run, cal, what="reporting on")
    files = write_report(identify(cal, n_sobol=args.n_sobol, seed=args.seed, idata=idata, screen_r=args.screen,
                                  sbc_replicates=args.sbc), args.out)
    print((Path(args.out) / "identify.md").read_text(), end="")
    _print(files)
    return 0


def cmd_predict(args) -> int:
    from immunocal.calib.pipeline import predict

    res = predict(args.run_dir, args.conditions, out=args.out, progress=not args.quiet)
    _print({k: v for k, v in res.items() if k != "bands"})
    return 0


def cmd_sbc(args) -> int:
    from immunocal.calib.pipeline import sbc_from_config

    res = sbc_from_config(args.config, n_replicates=args.replicates, n_draws=args.ranks, seed=args.seed,
                          out_dir=args.out)
    _print({n: {k: v for k, v in r.items() if k != "ranks"} for n, r in res.items()})
    return 0


def cmd_bench_personalise(args) -> int:
    import os

    from immunocal.calib.bench import bench_personalise

    res = bench_personalise(args.out, args.population_draws)
    # every time here is wall clock: the load says how much of the machine the run had (as the other benchmarks)
    print(json.dumps({**res, "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
                      "_command": "immunocal bench personalise"}))
    return 0


def cmd_bench_nutpie(args) -> int:
    from immunocal.calib.bench import bench_nutpie

    print(json.dumps({**bench_nutpie(args.out, tuple(args.models)), "_command": "immunocal bench nutpie"}))
    return 0


def cmd_bench(args) -> int:
    from immunocal.calib.bench import run

    print(json.dumps(run(args.subjects, args.draws, args.chains, args.cores, exact=not args.no_exact,
                         quickstart=not (args.no_exact or args.no_quickstart))))
    return 0


def _sched(p) -> None:
    p.add_argument("--workers", type=nonnegative_int, default=None, help="worker processes (default: all cores; 0 = serial)")
    p.add_argument("--scheduler", default=None, help="Dask distributed scheduler address (tcp://host:port)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(commands) -> None:
    p = commands.add("campaign", help="run, resume or inspect a simulation campaign over a design")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = sub.add_parser("run", help="create a design and run the forward model over it")
    r.add_argument("--forward", required=True, help="forward model: toy.logistic, toy.linear or pkg.module:attr")
    r.add_argument("--out", required=True, type=Path, help="campaign folder")
    r.add_argument("--n", type=positive_int, default=128, help="number of design points")
    r.add_argument("--design", default="sobol", choices=["sobol", "lhs", "random"])
    r.add_argument("--seed", type=nonnegative_int, default=0)
    r.add_argument("--vary", default=None, help="comma-separated parameters to vary (default: all)")
    r.add_argument("--fix", action="append", help="name=value for a parameter not varied (repeatable)")
    r.add_argument("--params", default=None, help="parameter file (TOML/JSON) giving values of non-varied parameters")
    r.add_argument("--preset", default=None, help="registry preset for ranges")
    r.add_argument("--condition", default=None, help="condition as JSON (schedule, options)")
    r.add_argument("--conditions-table", default=None, help="conditions table (CSV/TSV) to take the condition from")
    r.add_argument("--condition-id", default=None, help="row of --conditions-table to simulate")
    r.add_argument("--chunk-size", type=positive_int, default=8)
    r.add_argument("--overwrite", action="store_true")
    _sched(r)
    r.set_defaults(func=cmd_campaign_run)
    r = sub.add_parser("resume", help="continue a campaign (after a crash or kill) without repeating finished runs")
    r.add_argument("folder", type=Path)
    _sched(r)
    r.set_defaults(func=cmd_campaign_resume)
    r = sub.add_parser("status", help="finished / failed / pending runs")
    r.add_argument("folder", type=Path)
    r.add_argument("--failures", action="store_true", help="list failed runs with parameters and error")
    r.set_defaults(func=cmd_campaign_status)

    p = commands.add("surrogate", help="fit or validate a PCA+GP surrogate on a campaign")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = sub.add_parser("fit", help="fit on a campaign (with a held-out validation report)")
    r.add_argument("campaign", type=Path)
    r.add_argument("--out", required=True, type=Path, help="surrogate file (.npz)")
    r.add_argument("--force", action="store_true", help="replace an existing surrogate file")
    r.add_argument("--test-fraction", type=holdout_fraction, default=0.2, help="runs held out for validation, in [0, 1)")
    r.add_argument("--partial", action="store_true",
                   help="train on a campaign that still has pending runs (refused otherwise)")
    r.add_argument("--max-components", type=positive_int, default=8)
    r.add_argument("--seed", type=nonnegative_int, default=0)
    r.set_defaults(func=cmd_surrogate_fit)
    r = sub.add_parser("validate", help="R², max error and interval coverage on another campaign's runs")
    r.add_argument("surrogate", type=Path)
    r.add_argument("campaign", type=Path)
    r.set_defaults(func=cmd_surrogate_validate)

    p = commands.add("calibrate", help="Bayesian calibration described by a TOML config")
    p.add_argument("config", type=Path)
    p.add_argument("--out", type=Path, default=None, help="output folder (overrides [output] dir)")
    p.add_argument("--surrogate", type=Path, default=None, help="use this surrogate (.npz) as the emulator")
    p.add_argument("--method", default=None, help="nuts, advi, fullrank_advi, pathfinder, smc, demetropolis")
    p.add_argument("--draws", type=positive_int, default=None)
    p.add_argument("--tune", type=nonnegative_int, default=None)
    p.add_argument("--chains", type=positive_int, default=None)
    p.add_argument("--seed", type=nonnegative_int, default=None)
    p.add_argument("--force", action="store_true",
                   help="replace the files of a previous run in the output folder (nothing else is ever deleted)")
    p.add_argument("--quiet", action="store_true", help="no progress output (campaigns, sampling, prediction)")
    p.set_defaults(func=cmd_calibrate)

    p = commands.add("identify", help="identifiability report of a calibration config: sensitivities, Fisher "
                                      "information and its poorly determined directions, Sobol indices")
    p.add_argument("config", type=Path)
    p.add_argument("--out", required=True, type=Path, help="report folder (identify.json, identify.md, PNG)")
    p.add_argument("--n-sobol", type=positive_int, default=512, help="Sobol base sample (a power of two)")
    p.add_argument("--run", type=Path, default=None,
                   help="a finished `immunocal calibrate` run of this config: its posterior medians as the nominal "
                        "point, plus contraction and posterior correlations")
    p.add_argument("--screen", type=nonnegative_int, default=0, metavar="R",
                   help="also Morris-screen every parameter of the registry model (R trajectories; 0: no screening) "
                        "- for models with many parameters, e.g. the DLN model's 76")
    p.add_argument("--sbc", type=nonnegative_int, default=0, metavar="N",
                   help="also run simulation-based calibration of the config's model with N refits (its observation "
                        "model, censoring included; ranks in sbc.json; 0: none)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_identify)

    p = commands.add("predict", help="predict conditions for new subjects from a calibration run (true forward "
                                     "model at posterior draws): bands, coverage, tumour-control fractions")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--conditions", nargs="+", default=None,
                   help="condition names of the run's conditions table (default: the run's fitted + held-out)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the run folder)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = commands.add("data", help="data-table tools")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    w = dsub.add_parser("wide-to-long", help="per-group wide tables (a time column + one column per animal) -> one "
                                             "long measurement table for `immunocal calibrate`")
    w.add_argument("tables", nargs="+", help="CONDITION=FILE, or FILE (the condition is the file name without .csv)")
    w.add_argument("--out", required=True, type=Path, help="long table to write (CSV)")
    w.add_argument("--observable", default="volume_mm3")
    w.add_argument("--time-column", default="day")
    w.add_argument("--detection-limit", type=finite_float, default=None,
                   help="values at or below it become left-censored rows at the limit")
    w.add_argument("--endpoint", type=finite_float, default=None,
                   help="humane endpoint: a value at or above it becomes a right-censored row (later cells empty)")
    w.add_argument("--force", action="store_true", help="replace --out if it exists")
    w.set_defaults(func=cmd_wide_to_long)

    e = dsub.add_parser("export-petab", help="our measurement (and conditions) tables -> PEtab v1 tables or a "
                                             "PEtab v2 problem (--petab-version 2)")
    e.add_argument("measurements", type=Path, help="measurement table (CSV/TSV)")
    e.add_argument("--conditions", type=Path, default=None, help="conditions table (CSV/TSV)")
    e.add_argument("--out", required=True, type=Path,
                   help="folder for measurementData.tsv, experimentalCondition.tsv (v1) or problem.yaml and its "
                        "tables (v2)")
    e.add_argument("--petab-version", type=int, choices=(1, 2), default=1,
                   help="1: PEtab v1 tables (no extra dependency); 2: a PEtab v2 problem with experiments (dosing "
                        "schedules as periods), written and linted by the petab library (immunocal[petab])")
    e.add_argument("--rename-ids", action="store_true",
                   help="give condition/observable names that are not PEtab ids valid ids (recorded in "
                        "immunocal_ids.tsv, mapped back on import); without it they are errors")
    e.add_argument("--force", action="store_true", help="write into a non-empty folder")
    e.set_defaults(func=cmd_export_petab)
    i = dsub.add_parser("import-petab", help="PEtab v1 tables or a v2 problem -> our measurements.csv (and "
                                             "conditions.csv)")
    i.add_argument("source", type=Path, help="a PEtab v2 problem (its YAML file, or a folder holding problem.yaml), "
                                             "or a folder with v1 measurementData.tsv (or one v1 measurement table)")
    i.add_argument("--out", required=True, type=Path, help="folder for measurements.csv, conditions.csv")
    i.add_argument("--force", action="store_true", help="write into a non-empty folder")
    i.set_defaults(func=cmd_import_petab)

    p = commands.add("ppc", help="posterior predictive bands over the data of a calibration run")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_ppc)

    p = commands.add("sbc", help="simulation-based calibration of the model in a config")
    p.add_argument("config", type=Path)
    p.add_argument("--replicates", type=positive_int, default=50)
    p.add_argument("--ranks", type=positive_int, default=99, help="posterior draws kept per replicate (ranks in 0..L)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=cmd_sbc)

    b = commands.model_verb("bench").add_parser("calib", help="surrogate and NUTS benchmark (JSON)")
    b.add_argument("--subjects", type=positive_int, default=100)
    b.add_argument("--draws", type=positive_int, default=1000)
    b.add_argument("--chains", type=positive_int, default=4)
    b.add_argument("--cores", type=positive_int, default=2)
    b.add_argument("--no-exact", action="store_true",
                   help="skip the exact route's RIT gradient timing (its first run compiles the tangent kernel) and "
                        "the quickstart's NUTS")
    b.add_argument("--no-quickstart", action="store_true",
                   help="skip NUTS on the quickstart's model (2 chains x 1000 draws after 1000 tuning steps: minutes)")
    b.set_defaults(func=cmd_bench)

    bp = commands.model_verb("bench").add_parser(
        "personalise", help="one new patient's latent posterior given a fitted population (JSON)")
    bp.add_argument("--out", type=Path, default=Path("bench-personalise"),
                    help="folder of the population fit (reused when finished; default ./bench-personalise)")
    bp.add_argument("--population-draws", type=positive_int, default=200)
    bp.set_defaults(func=cmd_bench_personalise)
    bn = commands.model_verb("bench").add_parser(
        "nutpie", help="nutpie vs PyMC's NUTS on the project's models: wall, ESS, R-hat, ESS per second (JSON)")
    bn.add_argument("--out", type=Path, default=Path("bench-nutpie"), help="folder for the MOC1 surrogates")
    bn.add_argument("--models", nargs="+", choices=["hier100", "moc1"], default=["hier100", "moc1"])
    bn.set_defaults(func=cmd_bench_nutpie)
