"""``immunocal simulate|tcp|bench rit`` — the radioimmunotherapy model of seed 002 (forward/rit)."""

from __future__ import annotations

import json

from immunocal.calib.cli.types import (
    nonnegative_float,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
)


def _common(p, with_out: bool = True) -> None:
    p.add_argument(
        "--preset",
        default=None,
        help="registry preset: dewan_table1, deng_table1, dewan_table2, dewan_table3 (default)",
    )
    p.add_argument(
        "--params", metavar="FILE", help="parameter file (TOML/JSON from `immunocal params export`)"
    )
    p.add_argument("--rt", help="radiation fractions DOSExN@DAYS, e.g. '8x3@0,1,2', '20@0', '8x2@0,1+6@4'")
    p.add_argument("--ctla4", help="anti-CTLA-4 injection days, e.g. '2,5,8'")
    p.add_argument("--pdl1", help="anti-PD-L1 injection days, e.g. '0,3,6,9'")
    p.add_argument(
        "--schedule",
        metavar="FILE",
        help="schedule file (TOML/JSON: rt_days, rt_doses_gy, ctla4_days, "
        "pdl1_days, t_end); cannot be combined with --rt/--ctla4/--pdl1",
    )
    p.add_argument("--t-end", type=positive_float, default=None, help="horizon in days after day 0 (default 60)")
    p.add_argument(
        "--dt", type=positive_float, default=0.05,
        help="time grid of events and output in days (default 0.05, as the seed)",
    )
    p.add_argument(
        "--substeps",
        type=positive_int,
        default=None,
        help="integration substeps per dt step (default 4 for the exponential scheme — converged, "
        "docs/rit.md — "
        "and 1 for the explicit scheme)",
    )
    p.add_argument(
        "--scheme",
        choices=["exponential", "explicit"],
        default="exponential",
        help="exponential (default: second-order exponential midpoint rule, positive, mass-consistent T-cell "
        "transfer) or explicit (the seed's literal explicit Euler, for the record)",
    )
    p.add_argument(
        "--check-dt",
        action="store_true",
        help="print the step-doubling error estimate of the volume (JSON) as well",
    )


def _setup(args):
    from immunocal.forward.rit import RitConfig, Schedule
    from immunocal.priors import ParameterSet, registry

    if args.params:
        ps = ParameterSet.from_file(args.params)
        if ps.model != "rit":
            raise ValueError(f"{args.params}: parameter file is for model '{ps.model}', not 'rit'")
        if args.preset and args.preset != ps.preset:
            raise ValueError(f"--preset {args.preset} contradicts the preset '{ps.preset}' of {args.params}")
    else:
        ps = registry().parameter_set("rit", args.preset or "dewan_table3")
    if args.schedule:
        if args.rt or args.ctla4 or args.pdl1:
            raise ValueError("give either --schedule FILE or --rt/--ctla4/--pdl1, not both")
        sched = Schedule.from_file(args.schedule)
        if args.t_end is not None:
            sched = sched.with_horizon(args.t_end)
    else:
        sched = Schedule.from_strings(
            rt=args.rt, ctla4=args.ctla4, pdl1=args.pdl1, t_end=60.0 if args.t_end is None else args.t_end
        )
    config = RitConfig.from_preset(ps.preset, dt=args.dt, scheme=args.scheme, substeps=args.substeps)
    return ps, sched, config


def _step_check(ps, sched, config, show: bool) -> None:
    """Step-doubling estimate at the nominal parameters: warns on stderr above 1 %; printed with
    --check-dt."""
    import sys
    import warnings

    from immunocal.forward.rit import step_error_estimate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = step_error_estimate(ps, sched, config, warn=False)
    if show:
        print(json.dumps({"step_error_estimate": est}))
    if not est["ok"]:
        print(
            f"WARNING: estimated relative volume error {est['estimated_max_rel_error']:.3g} at day "
            f"{est['at_day']:g} exceeds {est['tolerance']:g} (dt = {config.dt:g} d, {config.substeps} "
            f"substep(s), {config.scheme}); "
            "use more --substeps or a smaller --dt",
            file=sys.stderr,
        )


def cmd_simulate(args) -> int:
    from immunocal.forward.rit import simulate

    output_file(args.out, args.force)
    ps, sched, config = _setup(args)
    res = simulate(ps, sched, config)
    path = res.to_csv(args.out)
    v = res.volume
    print(
        f"rit {ps.preset}: {len(res.t)} time points (dt = {config.dt:g} d, {config.substeps} substep(s), "
        f"{config.scheme} scheme), free growth "
        f"{res.info['free_growth_days']:.2f} d to {config.pretreatment_volume_mm3:g} mm^3; "
        f"V(t_end) = {v[-1]:.4g} "
        f"mm^3, min C = {res.info['min_C']:.3g} cells; wrote {path}"
    )
    _step_check(ps, sched, config, args.check_dt)
    return 0


def cmd_tcp(args) -> int:
    import numpy as np

    from immunocal.forward.rit.tcp import population_tcp

    if args.out:
        output_file(args.out, args.force)
    ps, sched, config = _setup(args)
    res = population_tcp(
        ps, sched, np.random.default_rng(args.seed), n_sims=args.n_sims, config=config, rel_sd=args.rel_sd
    )
    _step_check(ps, sched, config, args.check_dt)
    out = {"preset": ps.preset, "seed": args.seed, "rel_sd": args.rel_sd, **res.to_dict()}
    text = json.dumps(out, indent=2)
    if args.out:
        from pathlib import Path

        p = Path(args.out)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(p)
    print(text)
    return 0


def cmd_bench(args) -> int:
    from immunocal.forward.rit.bench import benchmark

    print(json.dumps(benchmark(repeats=args.repeats, gradient=args.gradient, complex_step=args.complex_step)))
    return 0


def register(commands) -> None:
    p = commands.model_verb("simulate").add_parser(
        "rit",
        help="radioimmunotherapy DDE (seed 002): write every state over time as CSV",
        description="Free growth from C(0) to the preset's pre-treatment volume (day 0), then the schedule.",
    )
    _common(p)
    p.add_argument("--out", required=True, metavar="FILE.csv", help="output CSV")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_simulate)

    p = commands.model_verb("tcp").add_parser(
        "rit",
        help="population TCP of the radioimmunotherapy model (Markov mode, 5 %% parameter perturbation)",
    )
    _common(p)
    p.add_argument("--n-sims", type=positive_int, default=200, help="number of simulated subjects (default 200)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the numpy Generator")
    p.add_argument("--rel-sd", type=nonnegative_float, default=0.05, help="relative SD of the parameter perturbation")
    p.add_argument("--out", metavar="FILE.json", help="also write the JSON result to this file")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_tcp)

    p = commands.model_verb("bench").add_parser(
        "rit", help="time one 60-day simulation and a 200-run population TCP (prints JSON)"
    )
    p.add_argument("--repeats", type=positive_int, default=20, help="repetitions of the single simulation (median)")
    p.add_argument("--gradient", action="store_true",
                   help="also time the volumes with their exact derivatives (forward-mode tangents; compiles the "
                        "tangent specialisation of the kernel the first time: minutes)")
    p.add_argument("--complex-step", action="store_true",
                   help="also time the complex-step reference derivatives (compiles a third kernel specialisation)")
    p.set_defaults(func=cmd_bench)
