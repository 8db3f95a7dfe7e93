"""``immunocal quickstart [--out DIR]`` — the main job on bundled data."""

from __future__ import annotations


def cmd_quickstart(args) -> int:
    from calib.quickstart import run_quickstart

    report = run_quickstart(args.out)
    for model, info in report["models"].items():
        pending = f", {info['n_pending']} pending" if info["n_pending"] else ""
        print(f"{model}: {info['n_parameters']} parameters{pending}; presets {', '.join(info['presets'])}")
    print(f"report written to {args.out}/report.json (parameter files params_*.toml beside it)")
    return 0


def register(commands) -> None:
    p = commands.add("quickstart", help="run the main job on bundled data and write a report")
    p.add_argument("--out", default="immunocal-out", help="report folder (default: ./immunocal-out)")
    p.set_defaults(func=cmd_quickstart)
