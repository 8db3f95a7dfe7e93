"""Benchmark of one Strang step (``immunocal bench cart``): the published program's default 3-D set-up."""

from __future__ import annotations

import os
import time

import numpy as np

from .grid import Grid
from .model import CarTSolver, StepSettings
from .reference import REFERENCE_DEFAULTS, reference_initial_state, reference_parameters


def bench(n: int = 40, steps: int = 20, solver: str = "exact", threads: int | None = None,
          exp_substeps: int | None = None, warmup: int = 2) -> dict:
    """Wall seconds per step (mean, median, min; CPU seconds summed over threads; the 1-min load average, since
    the machine may be shared) on an n³ grid with the ``reference`` parameters, the program's default initial state
    (scaled to the grid) and its default scheme settings (dt 0.01, exp_substeps 1, diff_iters 60, diff_tol 1e-8)."""
    if n < 2 or steps < 1:
        raise ValueError(f"bench needs n ≥ 2 and steps ≥ 1 (got n={n}, steps={steps})")
    d = REFERENCE_DEFAULTS
    params = reference_parameters()
    grid = Grid.cube(3, n)
    U = reference_initial_state(grid, d["tumor_radius"], 0.1 * params["tumour_carrying_capacity"], d["cart_layer"],
                                d["cart_radius"], d["cart_value"])
    st = StepSettings(dt=d["dt"], exp_substeps=exp_substeps or d["exp_substeps"], solver=solver,
                      diff_iters=d["diff_iters"], diff_tol=d["diff_tol"], guards=False, threads=threads)
    sol = CarTSolver(grid, params, st)
    for w in range(warmup):
        sol.step(U, w * st.dt)
    times = []
    c0 = time.process_time()
    for s in range(steps):
        t0 = time.perf_counter()
        sol.step(U, (warmup + s) * st.dt)
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / steps
    t = np.array(times)
    return {"n": n, "solver": solver, "steps": steps, "s_per_step": float(t.mean()),
            "s_per_step_median": float(np.median(t)), "s_per_step_min": float(t.min()),
            "threads": sol.threads, "cpu_s_per_step": float(cpu),
            "load_average_1min": float(os.getloadavg()[0]), "cores": os.cpu_count(), "exp_substeps": st.exp_substeps,
            "diff_iters": st.diff_iters if solver == "jacobi" else None, "grid_nodes": grid.size}


def reference_program_step(binary: str, n: int = 40, steps: int = 20, warmup: int = 2, threads: int | None = None,
                           workdir: str | None = None) -> dict:
    """Wall seconds per step of the published C++ program (``binary``, built from the seed 001 repository) at its
    own defaults on an n³ grid: two runs of ``warmup`` and ``warmup + steps`` steps (one CSV at the start and one at
    the end each, ``--output_every`` beyond the run), per step = difference of the walls / steps — start-up, set-up
    and CSV output cancel. The program's stdout is discarded; a failing run is an error naming its exit code."""
    import shutil
    import subprocess
    import tempfile

    path = shutil.which(binary) or binary
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise FileNotFoundError(f"reference binary '{binary}' is not an executable file (build the published "
                                "program from github.com/maximvpolyakov/CAR-T-model, e.g. g++ -O3 -fopenmp "
                                "CARTmodel.cpp -o cartmodel)")
    dt = REFERENCE_DEFAULTS["dt"]
    walls = {}
    with tempfile.TemporaryDirectory(dir=workdir, prefix="cart-ref-") as tmp:
        for count in (warmup, warmup + steps):
            args = [path, f"--nx={n}", f"--ny={n}", f"--nz={n}", f"--T={count * dt:.12g}",
                    f"--output_every={10 * (count + 1)}", f"--out_dir={tmp}/run{count}"]
            if threads:
                args.append(f"--threads={threads}")
            t0 = time.perf_counter()
            proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            walls[count] = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"reference binary '{binary}' failed (exit {proc.returncode}): "
                                   f"{proc.stderr.strip()[-300:]}")
    return {"s_per_step": (walls[warmup + steps] - walls[warmup]) / steps, "wall_short_s": walls[warmup],
            "wall_long_s": walls[warmup + steps]}


def compare_with_reference(binary: str, n: int = 40, steps: int = 20, rounds: int = 3, threads: int | None = None,
                           solver: str = "exact") -> dict:
    """Our step and the published program's, interleaved over ``rounds`` (the machine may be shared: each round
    measures both back to back); reports each round and the ratio of the medians (program / ours)."""
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1 (got {rounds})")
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(bench(n=n, steps=steps, solver=solver, threads=threads))
        theirs.append(reference_program_step(binary, n=n, steps=steps, threads=threads))
    a = float(np.median([r["s_per_step_median"] for r in ours]))
    b = float(np.median([r["s_per_step"] for r in theirs]))
    return {"n": n, "steps": steps, "rounds": rounds, "solver": solver, "reference_binary": binary,
            "ours_s_per_step": a, "reference_s_per_step": b, "speedup": b / a,
            "ours": ours, "reference": theirs, "load_average_1min": float(os.getloadavg()[0]), "cores": os.cpu_count()}
