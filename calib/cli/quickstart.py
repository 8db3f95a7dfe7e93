"""``immunocal quickstart [--out DIR]`` — the main job on bundled data."""

from __future__ import annotations

import sys


def cmd_quickstart(args) -> int:
    from immunocal.calib.quickstart import run_quickstart

    report = run_quickstart(args.out, calibrate=not args.registry_only)
    for model, info in report["models"].items():
        pending = f", {info['n_pending']} pending" if info["n_pending"] else ""
        print(f"{model}: {info['n_parameters']} parameters{pending}; presets {', '.join(info['presets'])}")
    cal = report.get("calibration")
    if cal:
        d = cal["diagnostics"]
        print(f"MOC1 hierarchical fit: max R-hat {d['rhat_max']:.3f}, min bulk ESS {d['ess_bulk_min']:.0f}, "
              f"min tail ESS {d['ess_tail_min']:.0f}, divergences {d['divergences']}")
        if not d["ok"]:
            print("WARNING: poor diagnostics (" + "; ".join(d["violations"]) + ") with the quick settings; "
                  "`immunocal calibrate calib/datasets/morisada2018/moc1_exact.toml --out DIR` runs the same fit with "
                  "the config's full chains", file=sys.stderr)
        num = cal.get("numerics_at_posterior")
        if num:
            print(f"resolution at posterior draws: {num['ladder'][0]} vs {num['ladder'][-1]} differ by "
                  f"{num['max_diff_over_noise']['log_volume']:.3f} noise sd"
                  + ("" if num["converged"] else " — NOT converged (see report.json)"))
        print(f"held-out arms: {100 * cal['heldout_coverage_90']:.0f} % of observations inside the 90 % "
              f"predictive interval, {100 * cal['heldout_coverage_50']:.0f} % inside the 50 % interval")
        for c, tc in cal["tumour_control"].items():
            print(f"  {c}: tumour control observed {tc['observed_control_fraction']:.2f}, "
                  f"predicted {tc['predicted_control_fraction']:.2f}")
    print(f"report: {args.out}/report.json; figures: {args.out}/ppc_fit_arms.png, "
          f"{args.out}/heldout_prediction.png; took {report['seconds']:.0f} s")
    return 0


def register(commands) -> None:
    p = commands.add("quickstart", help="run the main job on bundled data and write a report")
    p.add_argument("--out", default="immunocal-out", help="report folder (default: ./immunocal-out)")
    p.add_argument("--registry-only", action="store_true",
                   help="only check and export the parameter registry (seconds; no calibration)")
    p.set_defaults(func=cmd_quickstart)
