"""Observed convergence orders of the CAR-T solver on a smooth 1-D problem (study ``cart_convergence``).

The test problem is the normalised model with reduced transport coefficients and smooth, strictly positive initial
fields that are flat near the walls (the index-clamped Neumann condition places the wall half a cell outside the
boundary nodes, which is a first-order perturbation of the domain [0, L] unless the solution is flat there).
"""

from __future__ import annotations

import numpy as np

from .grid import Grid
from .model import simulate


def smooth_state(grid: Grid) -> np.ndarray:
    X, _, _ = grid.mesh()
    bump = np.exp(-((X - 0.5) ** 2) / 0.01)
    U = grid.zeros()
    U[0] = 0.05 + 0.2 * bump
    U[1] = 0.02 + 0.05 * bump
    U[2] = 0.3 + 0.4 * np.exp(-((X - 0.55) ** 2) / 0.008)
    U[3] = 0.05 + 0.05 * bump
    U[4] = 0.1 + 0.5 * bump
    U[5] = 0.1 + 0.2 * bump
    U[6] = 0.1 + 0.1 * bump
    return U


def smooth_params(ps):
    return ps.replace(car_t_diffusion=2e-3, tumour_diffusion=1e-3, chemokine_diffusion=3e-3,
                      suppressor_diffusion=2e-3, hypoxia_diffusion=4e-3, exhausted_diffusion=1e-3,
                      chemotactic_sensitivity=2e-3)


def time_order(ps, dts=(1 / 10, 1 / 20, 1 / 40, 1 / 80), t_end: float = 1.0, n: int = 101,
               diffusion_scheme: str = "backward_euler") -> dict:
    grid = Grid.cube(1, n)
    ps = smooth_params(ps)
    U0 = smooth_state(grid)
    ref = simulate(grid, ps, U0, t_end, min(dts) / 16, diffusion_scheme=diffusion_scheme).final
    errs = [float(np.abs(simulate(grid, ps, U0, t_end, h, diffusion_scheme=diffusion_scheme).final - ref).max())
            for h in dts]
    return {"dt": list(dts), "max_error": errs, "order": float(np.polyfit(np.log(dts), np.log(errs), 1)[0]),
            "diffusion_scheme": diffusion_scheme}


def space_order(ps, ns=(21, 41, 81), n_ref: int = 321, dt: float = 0.01, t_end: float = 0.5) -> dict:
    ps = smooth_params(ps)
    fine = Grid.cube(1, n_ref)
    ref = simulate(fine, ps, smooth_state(fine), t_end, dt).final
    hs, errs = [], []
    for n in ns:
        g = Grid.cube(1, n)
        u = simulate(g, ps, smooth_state(g), t_end, dt).final
        errs.append(float(np.abs(u - ref[..., :: (n_ref - 1) // (n - 1)]).max()))
        hs.append(1.0 / (n - 1))
    return {"dx": hs, "max_error": errs, "order": float(np.polyfit(np.log(hs), np.log(errs), 1)[0])}
