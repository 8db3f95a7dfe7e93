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
