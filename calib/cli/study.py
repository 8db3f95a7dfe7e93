"""``immunocal study NAME --out DIR [--quick]`` — run one study script from the ``studies`` package, found by name
at run time (the library itself does not depend on the studies); ``immunocal report`` (:mod:`immunocal.calib.report`)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

#: the package holding the study scripts (one module per study, each with ``run(out, quick)``)
STUDIES_PACKAGE = "immunocal.studies"


def available_studies() -> list[str]:
    pkg = importlib.import_module(STUDIES_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def cmd_study(args) -> int:
    names = available_studies()
    if args.name not in names:
        raise ValueError(f"unknown study '{args.name}'; available: {names}")
    module = importlib.import_module(f"{STUDIES_PACKAGE}.{args.name}")
    out = Path(args.out)
    extra = {}
    import inspect

    takes = inspect.signature(module.run).parameters
    if getattr(args, "scheduler", None):
        if "scheduler" not in takes:
            raise ValueError(f"study '{args.name}' does not distribute over Dask (--scheduler is for studies whose "
                             "run() takes a scheduler)")
        extra["scheduler"] = args.scheduler
    processes = getattr(args, "processes", None)
    if processes is not None:
        if processes < 1:
            raise ValueError(f"--processes must be ≥ 1, got {processes}")
        if "processes" not in takes:
            raise ValueError(f"study '{args.name}' does not run its tasks in parallel processes (--processes is for "
                             "studies whose run() takes processes)")
        if extra.get("scheduler"):
            raise ValueError("give --processes or --scheduler, not both")
        extra["processes"] = processes
    out.mkdir(parents=True, exist_ok=True)
    module.run(out=out, quick=args.quick, **extra)
    print(f"study {args.name}: results in {out / (args.name + '.json')}")
    return 0


def register(commands) -> None:
    p = commands.add("study", help="run a study (reproduced figure/table); writes NAME.json and PNGs to --out")
    p.add_argument("name", help="study name (file in studies/)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="reduced sizes for a fast check")
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786): the study's independent tasks "
                                       "run on that cluster (studies that support it)")
    p.add_argument("--processes", type=int, help="run the study's independent tasks that many at a time in local "
                                                 "worker processes (studies that support it)")
    p.set_defaults(func=cmd_study)
    register_report(commands)


def cmd_report(args) -> int:
    from immunocal.calib.report import update_readme

    path = update_readme(args.results, args.readme, args.figures)
    print(f"updated the results section of {path} from {args.results}; figures in {args.figures}")
    return 0


def register_report(commands) -> None:
    p = commands.add("report", help="regenerate the README's results section from study outputs")
    p.add_argument("--results", required=True, help="folder holding the studies' JSON and PNG outputs")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--figures", default="docs/figures", help="where the README's figures are copied")
    p.set_defaults(func=cmd_report)
