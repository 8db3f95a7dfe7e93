"""Uniform node-centred grids in 1, 2 or 3 dimensions (seed 001 eqs 49–52).

Nodes sit at ``x_i = i·Δx``, ``Δx = L/(N−1)``, ``i = 0 … N−1``. Every field is stored as a C-ordered array of shape
``(nz, ny, nx)`` (``i`` fastest, as in the published program); a 1-D grid has ``ny = nz = 1`` and a 2-D grid
``nz = 1``, so one set of 3-D kernels serves all dimensions (a size-1 axis contributes no flux: its index-clamped
neighbour is the node itself). The seven fields live in one contiguous array ``U[7, nz, ny, nx]``.

Zero-flux boundaries follow the seed's index clamping: an out-of-range neighbour index is replaced by the boundary
node, which conserves the plain node sum exactly (the wall sits half a cell outside the boundary nodes). The
discrete Laplacian is therefore diagonalised by the DCT-II, which the exact diffusion solver uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A uniform node-centred grid.

    Parameters
    ----------
    shape : tuple of int
        Nodes per axis, ``(nx,)``, ``(nx, ny)`` or ``(nx, ny, nz)``; each ≥ 2.
    lengths : tuple of float
        Domain lengths per axis (same length as ``shape``), each > 0.
    """

    shape: tuple[int, ...]
    lengths: tuple[float, ...]

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        lengths = tuple(float(v) for v in self.lengths)
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"grid dimension must be 1, 2 or 3, got shape {shape}")
        if len(lengths) != len(shape):
            raise ValueError(f"grid lengths {lengths} must have one entry per axis of shape {shape}")
        for axis, n in zip("xyz", shape):
            if n < 2:
                raise ValueError(f"grid size n{axis} = {n} is invalid: need at least 2 nodes per axis")
        for axis, length in zip("xyz", lengths):
            if not np.isfinite(length) or length <= 0:
                raise ValueError(f"domain length L{axis} = {length} is invalid: need a finite value > 0")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "lengths", lengths)

    @classmethod
    def cube(cls, dim: int, n: int, length: float = 1.0) -> "Grid":
        """``n`` nodes per axis on ``[0, length]^dim``."""
        if dim not in (1, 2, 3):
            raise ValueError(f"dimension must be 1, 2 or 3, got {dim}")
        return cls((n,) * dim, (length,) * dim)

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n3(self) -> tuple[int, int, int]:
        """``(nx, ny, nz)`` with 1 for missing axes."""
        s = self.shape + (1,) * (3 - self.dim)
        return s[0], s[1], s[2]

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Storage shape of one field, ``(nz, ny, nx)``."""
        nx, ny, nz = self.n3
        return nz, ny, nx

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(length / (n - 1) for n, length in zip(self.shape, self.lengths))

    @property
    def spacing3(self) -> np.ndarray:
        """``[dx, dy, dz]`` with 1.0 for missing axes (their neighbours are the node itself: no flux)."""
        s = self.spacing + (1.0,) * (3 - self.dim)
        return np.array(s, dtype=np.float64)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def cell_volume(self) -> float:
        """Volume (length, area) represented by one node: ``Π Δx`` (node sums times this are integrals)."""
        return float(np.prod(self.spacing))

    def coords(self) -> list[np.ndarray]:
        """1-D node coordinates per axis ``[x, (y, (z))]``."""
        return [np.arange(n) * h for n, h in zip(self.shape, self.spacing)]

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates ``X, Y, Z`` broadcast to the storage shape ``(nz, ny, nx)`` (0 on missing axes)."""
        nx, ny, nz = self.n3
        dx, dy, dz = self.spacing3
        x = (np.arange(nx) * dx)[None, None, :]
        y = (np.arange(ny) * dy)[None, :, None] if self.dim >= 2 else np.zeros((1, 1, 1))
        z = (np.arange(nz) * dz)[:, None, None] if self.dim >= 3 else np.zeros((1, 1, 1))
        shp = self.array_shape
        return np.broadcast_to(x, shp), np.broadcast_to(y, shp), np.broadcast_to(z, shp)

    def centre(self) -> tuple[float, ...]:
        return tuple(0.5 * length for length in self.lengths)

    def zeros(self) -> np.ndarray:
        """A zero state ``U[7, nz, ny, nx]`` (C-contiguous float64)."""
        return np.zeros((7,) + self.array_shape, dtype=np.float64)

    def integrate(self, field: np.ndarray) -> float:
        """Node sum times cell volume (the quantity index-clamped diffusion and chemotaxis conserve)."""
        return float(field.sum() * self.cell_volume)

    def mean(self, field: np.ndarray) -> float:
        return float(field.mean())
