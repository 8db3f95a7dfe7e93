"""Initial states and treatment scenarios of the normalised studies (seed 001 §3.2–3.4).

Geometry (normalised: domain [0, 1]^d, densities as fractions of K_T): a tumour focus = ball of radius
``tumour_radius`` at the domain centre with a smooth edge (tanh, width ``edge``) and plateau density
``tumour_density``, split into T_A and T_B by ``tb_fraction``; CAR-T administered locally next to the focus:
a ball of radius ``cart_radius`` whose centre lies on the x-axis through the focus centre, just outside the focus
(``cart_offset`` beyond its edge on the low-x side). All other fields start at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .grid import Grid


@dataclass(frozen=True)
class FocusGeometry:
    tumour_radius: float = 0.25
    tumour_density: float = 0.5
    tb_fraction: float = 0.0
    edge: float = 0.02
    cart_radius: float = 0.1
    cart_offset: float = 0.03
    cart_density: float = 0.5

    def with_(self, **kw) -> "FocusGeometry":
        return replace(self, **kw)

    @classmethod
    def from_preset(cls, preset: str = "normalised") -> "FocusGeometry":
        """Geometry from the preset options of the registry (``[presets.normalised]`` in cart.toml)."""
        from immunocal.priors import registry

        opts = registry().preset_options("cart", preset)
        keys = {"tumour_radius", "tumour_density", "cart_radius", "cart_offset", "cart_density", "edge"}
        return cls(**{k: float(v) for k, v in opts.items() if k in keys})


def _distance(grid: Grid, centre) -> np.ndarray:
    X, Y, Z = grid.mesh()
    d2 = (X - centre[0]) ** 2
    if grid.dim >= 2:
        d2 = d2 + (Y - centre[1]) ** 2
    if grid.dim >= 3:
        d2 = d2 + (Z - centre[2]) ** 2
    return np.sqrt(d2)


def tumour_profile(grid: Grid, geom: FocusGeometry) -> np.ndarray:
    r = _distance(grid, grid.centre())
    return geom.tumour_density * 0.5 * (1.0 - np.tanh((r - geom.tumour_radius) / geom.edge))


def car_t_profile(grid: Grid, geom: FocusGeometry, density: float | None = None) -> np.ndarray:
    c = list(grid.centre())
    c[0] = c[0] - geom.tumour_radius - geom.cart_offset
    r = _distance(grid, c)
    dens = geom.cart_density if density is None else density
    return dens * 0.5 * (1.0 - np.tanh((r - geom.cart_radius) / geom.edge))


def focus_state(grid: Grid, geom: FocusGeometry) -> np.ndarray:
    """Initial state U[7, nz, ny, nx] of the focus geometry."""
    U = grid.zeros()
    tum = tumour_profile(grid, geom)
    U[2] = (1.0 - geom.tb_fraction) * tum
    U[3] = geom.tb_fraction * tum
    U[0] = car_t_profile(grid, geom)
    return U
