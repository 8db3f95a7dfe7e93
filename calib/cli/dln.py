"""``immunocal simulate dln`` and ``immunocal bench dln`` (seed-003 draining-lymph-node model)."""

from __future__ import annotations

import json

from immunocal.calib.cli.types import output_file, positive_int


def cmd_simulate(args) -> int:
    from immunocal.forward.dln import load_plan, simulate
    from immunocal.forward.dln.api import default_parameters
    from immunocal.priors.registry import ParameterSet

    plan = load_plan(args.plan)
    if args.params:
        params = ParameterSet.from_file(args.params)
        if params.model != "dln":
            raise ValueError(f"{args.params}: parameter file is for model '{params.model}', not 'dln'")
    else:
        params = default_parameters()
    if not str(args.out).endswith(".csv"):
        raise ValueError(f"--out must be a .csv file, got {args.out}")
    output_file(args.out, args.force)
    try:
        res = simulate(plan, params, tumour_update=args.tumour_update, influx_mode=args.influx_mode)
    except FloatingPointError as exc:
        raise ValueError(str(exc)) from None
    res.to_csv(args.out)
    summary = {t: round(float(res.volume(t)[-1]), 4) for t in plan.network.targets}
    print(f"wrote {args.out} (days 0..{plan.days}); final volumes (mm^3): {json.dumps(summary)}")
    return 0


def cmd_bench(args) -> int:
    from immunocal.forward.dln.bench import run_bench

    print(json.dumps(run_bench(n_batch=args.n, repeats=args.repeats)))
    return 0


def register(commands) -> None:
    p = commands.model_verb("simulate").add_parser(
        "dln",
        help="DLN cancer-immunity-cycle model (seed 003): per-target/per-DLN trajectories as CSV",
        description="Run the seed-003 DLN model for a plan file (TOML/JSON, see forward/dln/examples/) and write a "
        "long CSV: day, kind (target|dln), compartment, variable, value.",
    )
    p.add_argument("--plan", required=True, help="plan file (.toml or .json)")
    p.add_argument(
        "--params", help="parameter file exported by `immunocal params export` (default: registry)"
    )
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--tumour-update",
        default="survive_then_grow",
        choices=["survive_then_grow", "seed_additive"],
        help="form of eq 1 (default: proliferation of the cells surviving the step)",
    )
    p.add_argument(
        "--influx-mode",
        default="seed",
        choices=["seed", "conservative"],
        help="CTL/Treg influx normalisation: the seed's 1/M or 1/I (conserves cells)",
    )
    p.set_defaults(func=cmd_simulate)
    b = commands.model_verb("bench").add_parser(
        "dln", help="DLN model speed (JSON: single_sim_s, batch10k_s)"
    )
    b.add_argument("--n", type=positive_int, default=10_000, help="batch size (default 10000)")
    b.add_argument(
        "--repeats", type=positive_int, default=200, help="repeats of the single simulation (median reported)"
    )
    b.set_defaults(func=cmd_bench)
