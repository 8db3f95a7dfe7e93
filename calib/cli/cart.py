"""``immunocal simulate cart`` and ``immunocal bench cart`` (CAR-T model of seed 001; forward/cart)."""

from __future__ import annotations

import json
from pathlib import Path

from immunocal.calib.cli.types import fraction, output_file, output_folder, positive_float, positive_int

DEFAULT_PRESET = "normalised"


def _params(args):
    from immunocal.priors import ParameterSet, registry

    if args.params:
        if args.preset is not None:  # one source of values: the file, or a preset — never one silently ignored
            raise ValueError(f"--params {args.params} and --preset {args.preset}: give one (the file's values are "
                             "complete; its preset is recorded in it)")
        ps = ParameterSet.from_file(args.params)
        if ps.model != "cart":
            raise ValueError(f"--params file is for model '{ps.model}', not 'cart'")
        return ps
    return registry().parameter_set("cart", args.preset or DEFAULT_PRESET)


def cmd_simulate(args) -> int:
    if args.reference_args is not None:
        from immunocal.forward.cart.reference import parse_reference_args, run_reference

        ref = parse_reference_args(args.reference_args)
        if args.preset not in ("reference", None):
            raise ValueError("--reference-args runs the published program's configuration: use --preset reference")
        csv_dir = args.csv_dir or ref["out_dir"]
        output_folder(csv_dir, args.force, option="--csv-dir")
        saved, _ = run_reference(ref, csv_dir=csv_dir, solver=args.solver or "jacobi", threads=args.threads,
                                 progress=not args.quiet)
        print(json.dumps({"csv_dir": str(csv_dir), "steps_written": saved}))
        return 0

    import numpy as np

    from immunocal.forward.cart.grid import Grid
    from immunocal.forward.cart.io import save_snapshots, write_csv
    from immunocal.forward.cart.model import CarTSolver, StepSettings
    from immunocal.forward.cart.observables import summarise
    from immunocal.forward.cart.reference import REFERENCE_DEFAULTS, reference_initial_state
    from immunocal.forward.cart.scenarios import FocusGeometry, focus_state
    from immunocal.priors import registry

    if args.csv_dir:
        output_folder(args.csv_dir, args.force, option="--csv-dir")
    if args.snapshots:
        output_file(args.snapshots, args.force, option="--snapshots")
    ps = _params(args)
    preset = ps.preset if hasattr(ps, "preset") else args.preset or DEFAULT_PRESET
    opts = registry().preset_options("cart", preset) if preset in registry().presets("cart") else {}
    dim = args.dim if args.dim is not None else int(opts.get("dim", 3))
    n = args.n if args.n is not None else int(opts.get("n", opts.get("nx", 40)))
    dt = args.dt if args.dt is not None else float(opts.get("dt", 0.01))
    if n < 2:
        raise ValueError(f"--n {n} is invalid: need at least 2 nodes per axis")
    if not dt > 0:
        raise ValueError(f"--dt {dt} is invalid: need dt > 0")
    if not args.t_end > 0:
        raise ValueError(f"--t-end {args.t_end} is invalid: need > 0")
    grid = Grid.cube(dim, n)
    if preset == "normalised":
        U0 = focus_state(grid, FocusGeometry.from_preset(preset).with_(tb_fraction=args.tb_fraction))
    else:  # dimensional presets: the published program's default initial state
        d = REFERENCE_DEFAULTS
        U0 = reference_initial_state(grid, d["tumor_radius"], 0.1 * ps["tumour_carrying_capacity"], d["cart_layer"],
                                     d["cart_radius"], d["cart_value"])
    st = StepSettings(dt=dt, exp_substeps=args.exp_substeps if args.exp_substeps is not None
                      else int(opts.get("exp_substeps", 1)),
                      solver=args.solver or "exact", diff_iters=args.diff_iters, diff_tol=args.diff_tol,
                      guards=not args.no_guards, threads=args.threads)
    solver = CarTSolver(grid, ps, st)
    csv_dir = Path(args.csv_dir) if args.csv_dir else None
    snaps_t, snaps = [], []
    every = args.output_every
    if csv_dir:
        csv_dir.mkdir(parents=True, exist_ok=True)
        write_csv(csv_dir / "step_000000.csv", grid, U0, 0.0)
    if args.snapshots:
        snaps_t.append(0.0)
        snaps.append(U0.copy())

    def cb(k, t, U):
        if k % every == 0:
            if csv_dir:
                write_csv(csv_dir / f"step_{k:06d}.csv", grid, U, t)
            if args.snapshots:
                snaps_t.append(t)
                snaps.append(U.copy())

    from immunocal.forward.cart.model import InstabilityError

    try:
        res = solver.run(U0, args.t_end, callback=cb, progress=not args.quiet)
    except InstabilityError as exc:
        hint = "" if preset == "normalised" else (" (the published program clamps this silently; --no-guards "
                                                  "reproduces that)")
        raise ValueError(f"{exc}{hint}") from None
    if args.snapshots:
        if snaps_t[-1] != res.times[-1]:
            snaps_t.append(float(res.times[-1]))
            snaps.append(res.final.copy())
        save_snapshots(args.snapshots, grid, snaps_t, snaps, preset=preset, dt=dt)
    obs = summarise(res.times, *(res.integrals[:, f] for f in range(4)), res.means[:, 5], res.means[:, 6])
    out = {"preset": preset, "dim": dim, "n": n, "dt": dt, "t_end": args.t_end, "solver": st.solver,
           "diagnostics": res.diagnostics, "observables": obs.as_dict(),
           "final_integrals": dict(zip(("C", "E", "TA", "TB", "S", "A", "H"), np.asarray(res.integrals[-1]).tolist()))}
    print(json.dumps(out, indent=2, default=float))
    return 0


def cmd_bench(args) -> int:
    from immunocal.forward.cart.bench import bench, compare_with_reference

    if args.reference_binary:
        if args.exp_substeps:
            raise SystemExit("--exp-substeps cannot be combined with --reference-binary (the program runs at its "
                             "defaults)")
        print(json.dumps(compare_with_reference(args.reference_binary, n=args.n, steps=args.steps,
                                                rounds=args.rounds, threads=args.threads, solver=args.solver)))
        return 0
    print(json.dumps(bench(n=args.n, steps=args.steps, solver=args.solver, threads=args.threads,
                           exp_substeps=args.exp_substeps)))
    return 0


def register(commands) -> None:
    p = commands.model_verb("simulate").add_parser(
        "cart", help="CAR-T reaction-diffusion-chemotaxis model (seed 001)",
        description="Run the CAR-T PDE model. With --reference-args, run the published C++ program's configuration "
                    "(its own argument names, e.g. \"--nx=12 --T=0.2 --gamma=1.0\") and write its CSV files.")
    p.add_argument("--preset", default=None, help=f"parameter preset: reference, paper, normalised (default "
                   f"{DEFAULT_PRESET}; not with --params)")
    p.add_argument("--params", help="parameter file (TOML/JSON exported by `immunocal params export`)")
    p.add_argument("--dim", type=int, choices=(1, 2, 3), help="spatial dimension (default: preset option or 3)")
    p.add_argument("--n", type=positive_int, help="nodes per axis")
    p.add_argument("--dt", type=positive_float, help="time step")
    p.add_argument("--t-end", type=positive_float, default=12.0, help="final time (days)")
    p.add_argument("--solver", choices=("jacobi", "exact"), help="diffusion solver (default exact; "
                   "jacobi with --reference-args)")
    p.add_argument("--exp-substeps", type=positive_int, help="RK2 substeps per reaction half-step")
    p.add_argument("--diff-iters", type=positive_int, default=60, help="Jacobi sweeps (jacobi solver)")
    p.add_argument("--diff-tol", type=positive_float, default=1e-8, help="Jacobi absolute stop tolerance")
    p.add_argument("--tb-fraction", type=fraction, default=0.0, help="initial antigen-negative fraction (normalised)")
    p.add_argument("--csv-dir", help="write step_NNNNNN.csv files (seed layout) here")
    p.add_argument("--output-every", type=positive_int, default=1, help="CSV/snapshot every N steps")
    p.add_argument("--snapshots", help="write snapshots (.npz) to this file")
    p.add_argument("--force", action="store_true", help="replace existing --snapshots / write into a non-empty "
                   "--csv-dir")
    p.add_argument("--reference-args", help="the published program's arguments, e.g. \"--nx=12 --ny=12 --T=0.2\"")
    p.add_argument("--threads", type=positive_int, help="threads (default: all for large grids)")
    p.add_argument("--no-guards", action="store_true", help="disable the stability guards (not recommended)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)

    b = commands.model_verb("bench").add_parser(
        "cart", help="seconds per Strang step of the CAR-T model (prints JSON)",
        description="Benchmark one Strang step at n³ with the reference parameters and the published program's "
                    "default scheme settings.")
    b.add_argument("--n", type=positive_int, default=40)
    b.add_argument("--steps", type=positive_int, default=20)
    b.add_argument("--solver", choices=("jacobi", "exact"), default="exact")
    b.add_argument("--threads", type=positive_int)
    b.add_argument("--exp-substeps", type=positive_int)
    b.add_argument("--reference-binary", help="the published C++ program (built from its repository): time its "
                   "step at the same grid, interleaved with ours, and report the speed-up")
    b.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds with --reference-binary")
    b.set_defaults(func=cmd_bench)
