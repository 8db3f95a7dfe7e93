"""REFERENCE MODE — every convention of the published C++ program (seed 001 repository), in one place.

Behaviour reproduced (see ``shared/data/cart_reference/README.md``):

1. Step count ``steps = ceil(T/dt)`` with a fixed ``dt`` (the run may overshoot T; the seed's Algorithm 1 says floor).
   Step n is written with ``t = n·dt`` when ``n % output_every == 0`` or ``n == steps``; step 0 always.
2. Positivity projection after the RK2 predictor, after each RK2 substep and after diffusion, with **no stability
   guard** (the program clamps silently; with its dimensional defaults clamping annihilates CAR-T and tumour on
   contact). The projection points themselves are the SPEC §3 scheme used everywhere (kernels.reaction_half_step).
3. Index-clamped neighbours (zero flux) — the same as the default mode.
4. Diffusion by the truncated Jacobi iteration with absolute early stop (``diff_iters``, ``diff_tol``).
5. Initial state: T_A = tumor_value inside the sphere |x − centre| ≤ tumor_radius; C = cart_value where
   x ≤ cart_layer and sqrt((y−Ly/2)² + (z−Lz/2)²) ≤ cart_radius; all other fields 0.
6. Parameters: the hard-coded values (registry preset ``reference``), only γ settable (``--gamma``).
7. CSV layout ``t,i,j,k,x,y,z,C,E,TA,TB,S,A,H``, i fastest, files ``step_NNNNNN.csv``.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import numpy as np

from .grid import Grid
from .io import write_csv
from .model import CarTSolver, StepSettings
from .scenarios import boundary_layer

#: The published program's argument names and defaults (``--key=value``).
REFERENCE_DEFAULTS: dict[str, float | int | str] = {
    "nx": 40, "ny": 40, "nz": 40, "Lx": 1.0, "Ly": 1.0, "Lz": 1.0,
    "dt": 0.01, "T": 30.0, "output_every": 1,
    "exp_substeps": 1, "diff_iters": 60, "diff_tol": 1e-8,
    "tumor_radius": 0.2, "tumor_value": None, "cart_layer": 0.05, "cart_radius": 0.2, "cart_value": 1e7,
    "csv_precision": 16, "out_dir": "output", "threads": 0, "gamma": None,
}
_INT_KEYS = {"nx", "ny", "nz", "output_every", "exp_substeps", "diff_iters", "csv_precision", "threads"}


def parse_reference_args(text: str | list[str]) -> dict:
    """Parse the published program's ``--key=value`` arguments (defaults filled in). Unknown keys are errors."""
    tokens = shlex.split(text) if isinstance(text, str) else list(text)
    args = dict(REFERENCE_DEFAULTS)
    for tok in tokens:
        key, sep, val = tok.lstrip("-").partition("=")
        if key not in REFERENCE_DEFAULTS:
            raise ValueError(f"unknown reference argument '--{key}'; known: {sorted(REFERENCE_DEFAULTS)}")
        if not sep:
            val = "1"
        if key == "out_dir":
            args[key] = val
            continue
        try:
            args[key] = int(val) if key in _INT_KEYS else float(val)
        except ValueError:
            raise ValueError(f"failed to parse reference argument --{key}={val}") from None
    for key in ("nx", "ny", "nz"):
        if args[key] < 2:
            raise ValueError(f"reference argument --{key}={args[key]} is invalid: need ≥ 2")
    if not args["dt"] > 0 or not args["T"] >= 0:
        raise ValueError("reference arguments: dt must be > 0 and T must be ≥ 0")
    args["output_every"] = max(int(args["output_every"]), 1)
    return args


def reference_parameters(gamma: float | None = None):
    from immunocal.priors import registry

    ps = registry().parameter_set("cart", "reference")
    return ps if gamma is None else ps.replace(tumour_kill_rate=gamma)


def reference_grid(args: dict) -> Grid:
    return Grid((args["nx"], args["ny"], args["nz"]), (args["Lx"], args["Ly"], args["Lz"]))


def reference_initial_state(grid: Grid, tumor_radius: float, tumor_value: float, cart_layer: float,
                            cart_radius: float, cart_value: float) -> np.ndarray:
    """The program's initial condition (item 5 above); works for 1-, 2- and 3-D grids."""
    X, Y, Z = grid.mesh()
    c = grid.centre() + (0.0,) * (3 - grid.dim)
    dy = (Y - c[1]) if grid.dim >= 2 else 0.0
    dz = (Z - c[2]) if grid.dim >= 3 else 0.0
    r = np.sqrt((X - c[0]) ** 2 + dy**2 + dz**2)
    U = grid.zeros()
    U[2] = np.where(r <= tumor_radius, tumor_value, 0.0)
    U[0] = boundary_layer(grid, cart_layer, cart_radius, cart_value)
    return U


def run_reference(args: dict | str, csv_dir: str | Path | None = None, solver: str = "jacobi",
                  threads: int | None = None, progress: bool = False, keep_states: bool | None = None):
    """Run the published program's configuration; write its CSV files to ``csv_dir`` (if given).
    Returns ``(saved_steps, states)``: the step numbers written and the states at those steps (kept in memory only
    when ``keep_states`` — default: when no ``csv_dir`` is given; otherwise ``states`` is empty)."""
    keep = (csv_dir is None) if keep_states is None else bool(keep_states)
    if isinstance(args, str):
        args = parse_reference_args(args)
    params = reference_parameters(args.get("gamma"))
    grid = reference_grid(args)
    tumor_value = args["tumor_value"] if args["tumor_value"] is not None else 0.1 * params["tumour_carrying_capacity"]
    U0 = reference_initial_state(grid, args["tumor_radius"], tumor_value, args["cart_layer"],
                                 args["cart_radius"], args["cart_value"])
    settings = StepSettings(dt=args["dt"], exp_substeps=args["exp_substeps"], solver=solver,
                            diff_iters=args["diff_iters"], diff_tol=args["diff_tol"], guards=False,
                            threads=threads or (args["threads"] or None))
    steps = int(math.ceil(args["T"] / args["dt"]))  # the program's ceil, fixed dt
    every = args["output_every"]
    prec = int(args["csv_precision"])
    out = Path(csv_dir) if csv_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    saved, states = [0], ([U0.copy()] if keep else [])
    if out is not None:
        write_csv(out / "step_000000.csv", grid, U0, 0.0, precision=prec)

    def callback(n, t, U):
        if n % every == 0 or n == steps:
            saved.append(n)
            if keep:
                states.append(U.copy())
            if out is not None:
                write_csv(out / f"step_{n:06d}.csv", grid, U, n * args["dt"], precision=prec)

    CarTSolver(grid, params, settings).run(U0, steps * args["dt"], step_count=steps, callback=callback,
                                           progress=progress)
    return saved, states
