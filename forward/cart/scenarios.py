"""Initial states and treatment scenarios of the normalised studies (seed 001 §3.2–3.4).

Geometry (normalised: domain [0, 1]^d, densities as fractions of K_T): a tumour focus = ball of radius
``tumour_radius`` at the domain centre with a smooth edge (tanh, width ``edge``) and plateau density
``tumour_density``, split into T_A and T_B by ``tb_fraction``; CAR-T administered locally next to the focus:
a ball of radius ``cart_radius`` whose centre lies on the x-axis through the focus centre, just outside the focus
(``cart_offset`` beyond its edge on the low-x side). All other fields start at 0.

``cart_source = "layer"`` places the CAR-T instead as the published program's boundary layer (seed 001 repository,
:mod:`immunocal.forward.cart.reference` item 5): density ``cart_density`` where x ≤ ``cart_layer`` and the distance
from the domain's x-axis through the centre is ≤ ``layer_radius`` — cells infused at the tissue boundary that must
reach the focus by random motility (D_C) and chemotaxis (χ0), the transport the infiltration latent scales.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .grid import Grid


#: where the CAR-T are administered: a ball beside the focus, or the published program's boundary layer
CART_SOURCES = ("focus", "layer")


@dataclass(frozen=True)
class FocusGeometry:
    tumour_radius: float = 0.25
    tumour_density: float = 0.5
    tb_fraction: float = 0.0
    edge: float = 0.02
    cart_radius: float = 0.1
    cart_offset: float = 0.03
    cart_density: float = 0.5
    cart_source: str = "focus"
    cart_layer: float = 0.05
    layer_radius: float = 0.2

    def __post_init__(self):
        if self.cart_source not in CART_SOURCES:
            raise ValueError(f"FocusGeometry.cart_source = {self.cart_source!r}; choose one of {CART_SOURCES}")
        for k in ("tumour_radius", "edge", "cart_radius", "cart_layer", "layer_radius"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"FocusGeometry.{k} = {v} is invalid: need a finite value > 0")
        for k in ("tumour_density", "cart_density"):
            v = getattr(self, k)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"FocusGeometry.{k} = {v} is invalid: need a finite value ≥ 0")

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


def boundary_layer(grid: Grid, layer: float, radius: float, value: float) -> np.ndarray:
    """``value`` where x ≤ ``layer`` and the distance from the x-axis through the domain centre is ≤ ``radius``
    (sharp edges; the published program's initial CAR-T state; 1-, 2- and 3-D grids)."""
    X, Y, Z = grid.mesh()
    c = grid.centre() + (0.0,) * (3 - grid.dim)
    dy = (Y - c[1]) if grid.dim >= 2 else 0.0
    dz = (Z - c[2]) if grid.dim >= 3 else 0.0
    ryz = np.sqrt(dy**2 + dz**2) * np.ones_like(X)
    return np.where((X <= layer) & (ryz <= radius), value, 0.0)


def car_t_profile(grid: Grid, geom: FocusGeometry, density: float | None = None) -> np.ndarray:
    """The administered CAR-T density field of ``geom`` (``density`` replaces ``geom.cart_density``)."""
    dens = geom.cart_density if density is None else density
    if geom.cart_source == "layer":
        return boundary_layer(grid, geom.cart_layer, geom.layer_radius, dens)
    c = list(grid.centre())
    c[0] = c[0] - geom.tumour_radius - geom.cart_offset
    r = _distance(grid, c)
    return dens * 0.5 * (1.0 - np.tanh((r - geom.cart_radius) / geom.edge))


def focus_volume(grid: Grid, geom: FocusGeometry) -> float:
    """The initial focus's volume on the grid (∫ tumour profile / plateau density; area in 2-D, length in 1-D): the
    unit in which spatial integrals become densities comparable with the homogeneous model's compartment."""
    return grid.integrate(tumour_profile(grid, geom.with_(tumour_density=1.0)))


def focus_state(grid: Grid, geom: FocusGeometry) -> np.ndarray:
    """Initial state U[7, nz, ny, nx] of the focus geometry."""
    U = grid.zeros()
    tum = tumour_profile(grid, geom)
    U[2] = (1.0 - geom.tb_fraction) * tum
    U[3] = geom.tb_fraction * tum
    U[0] = car_t_profile(grid, geom)
    return U
