"""Diffusion sub-step Φ_D(Δt): backward Euler (I − Δt·D_u·Δ_h) u* = u for each field (seed 001 eq 60).

Two solvers of the same linear system:

``exact`` (default)
    Direct solve. With index-clamped (zero-flux) neighbours the 1-D operator is the tridiagonal matrix with −1 (not
    −2) in its first and last diagonal entries; its eigenvectors are the DCT-II basis ``cos(π m (i + ½)/N)`` with
    eigenvalues ``−(4/Δx²) sin²(π m / 2N)``. The fastest active axes (x, and y in 3-D) are diagonalised by the
    orthonormal DCT-II/III (scipy.fft, multi-threaded); in that basis each column along the remaining (slowest)
    active axis is the tridiagonal system ``(1 + Δt D λ_⊥ − Δt D Δ_z) û* = û`` (λ_⊥ the transverse eigenvalue sum),
    solved by the Thomas algorithm (kernels.tridiagonal_solve, factors cached per Δt). Exact to round-off
    (~1e-15), like the full 3-D DCT it replaced, at two thirds of its transforms; in 1-D no transform at all.
    A spatially varying D_C(x) is solved by conjugate gradients (face coefficients = arithmetic means of nodal
    values, relative residual 1e-12).
``jacobi``
    The published program's algorithm (eq 61): Jacobi sweeps from u, absolute ∞-norm stop ``diff_tol``, at most
    ``diff_iters`` sweeps. Kept for reference compatibility; a truncated Jacobi solve is *not* the implicit solution.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft

from .grid import Grid
from .kernels import (
    clamp_nonneg,
    jacobi_solve,
    neumann_apply,
    store_nonneg,
    tridiagonal_factors,
    tridiagonal_solve,
)

SOLVERS = ("exact", "jacobi")
#: Time discretisation of Φ_D. The seed (eq 60) uses backward Euler, which is first order in time, so the Strang
#: step is first order overall when diffusion matters; ``crank_nicolson`` (exact solver only) restores order 2.
DIFFUSION_SCHEMES = ("backward_euler", "crank_nicolson")


def default_workers() -> int:
    """Threads for scipy.fft (same as Numba's thread count)."""
    import numba

    return int(numba.get_num_threads()) or (os.cpu_count() or 1)


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """a and b are the same memory with the same layout (scipy.fft's in-place result is a new array object)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.shape == b.shape
            and a.strides == b.strides)


class ExactDiffusion:
    """Backward-Euler (or Crank–Nicolson) solve for all seven fields at once (fields with D ≤ 0 are left
    untouched): DCT over the transverse active axes, Thomas along the slowest active axis (module docstring)."""

    def __init__(self, grid: Grid, diffusivities: np.ndarray, workers: int | None = None,
                 scheme: str = "backward_euler"):
        if scheme not in DIFFUSION_SCHEMES:
            raise ValueError(f"unknown diffusion time scheme '{scheme}'; choose one of {DIFFUSION_SCHEMES}")
        self.scheme = scheme
        self.grid = grid
        self.D = np.asarray(diffusivities, dtype=np.float64)
        self.workers = workers or (default_workers() if grid.size >= 30_000 else 1)
        self.active = np.flatnonzero(self.D > 0.0)
        shape = grid.array_shape  # (nz, ny, nx): axes 1, 2, 3 of the state U[f, k, j, i]
        spacing = dict(zip((3, 2, 1), grid.spacing3))  # x -> axis 3, y -> 2, z -> 1
        active_axes = [ax for ax in (1, 2, 3) if shape[ax - 1] > 1]
        #: the slowest active axis is solved by Thomas, the others by the DCT
        self.tri_axis = active_axes[0] if active_axes else None
        self.dct_axes = tuple(active_axes[1:])
        lam = np.zeros(shape)
        for ax in self.dct_axes:
            n, h = shape[ax - 1], spacing[ax]
            m = np.arange(n).reshape([n if a == ax else 1 for a in (1, 2, 3)])
            lam = lam + (4.0 / h**2) * np.sin(np.pi * m / (2 * n)) ** 2
        if self.tri_axis is None:
            self.view = (1, 1, 1)
            self.inv_h2 = 0.0
        else:
            t = self.tri_axis
            rest = shape[t:]
            self.view = (shape[t - 1], *((1,) * (2 - len(rest))), *rest)  # (n, m, l) of the Thomas kernel
            self.inv_h2 = 1.0 / spacing[t] ** 2
        # transverse eigenvalue sum (≥ 0) in the Thomas view: one value per column (j, i)
        self.transverse = np.ascontiguousarray(lam.reshape(self.view)[0])
        self._dt = None

    def _factor(self, dt: float) -> None:
        if self._dt == dt:
            return
        D = self.D[self.active]
        half = 0.5 if self.scheme == "crank_nicolson" else 1.0
        a = half * dt * D
        self.base = 1.0 + a[:, None, None] * self.transverse[None]
        self.a = a * self.inv_h2
        shape = (D.size, *self.view)
        self.cp, self.inv = np.empty(shape), np.empty(shape)
        tridiagonal_factors(self.base, self.a, self.cp, self.inv)
        if self.scheme == "crank_nicolson":
            # the explicit half (1 − ½Δt D λ_⊥) + ½Δt D Δ_z: not positivity preserving where Δt·D·λ > 2
            self.explicit0 = 2.0 - self.base
        self._dt = dt

    def __call__(self, U: np.ndarray, dt: float, project: bool = False) -> None:
        """In place: U[f] ← (I − dt D_f Δ_h)^{-1} U[f] (Crank–Nicolson: (I − ½dt D_f Δ_h)^{-1}(I + ½dt D_f Δ_h) U[f])
        for every field with D_f > 0; with ``project`` then U ← max(U, 0) everywhere, fused with the write-back."""
        nact = self.active.size
        if nact == 0:
            if project:
                clamp_nonneg(U)
            return
        self._factor(dt)
        every = nact == U.shape[0]
        sub = U if every else U[self.active]  # all fields: no gather copy
        if self.dct_axes:
            # in place when every field diffuses (U is overwritten anyway): no 3.5 MB temporary at 40³
            hat = scipy.fft.dctn(sub, type=2, axes=self.dct_axes, norm="ortho", workers=self.workers,
                                 overwrite_x=every)
        else:
            hat = sub  # 1-D: no transform, solved in place
        cols = hat.reshape((nact, *self.view))
        if self.scheme == "crank_nicolson":
            neumann_apply(cols, self.explicit0, self.a)
        tridiagonal_solve(cols, self.a, self.cp, self.inv)
        if self.dct_axes:
            hat = scipy.fft.idctn(hat, type=2, axes=self.dct_axes, norm="ortho", workers=self.workers,
                                  overwrite_x=True)
        if every and not _same_buffer(hat, U):
            if project:
                store_nonneg(U, hat)
                return
            U[...] = hat
        elif not every:
            U[self.active] = hat
        if project:
            clamp_nonneg(U)


class JacobiDiffusion:
    """The published program's Jacobi iteration (see module docstring)."""

    def __init__(self, grid: Grid, diffusivities: np.ndarray, diff_iters: int = 60, diff_tol: float = 1e-8):
        if int(diff_iters) < 1:
            raise ValueError(f"diff_iters = {diff_iters} is invalid: need at least 1 Jacobi sweep")
        if not np.isfinite(diff_tol) or diff_tol < 0:
            raise ValueError(f"diff_tol = {diff_tol} is invalid: need a finite value ≥ 0")
        self.grid = grid
        self.D = np.asarray(diffusivities, dtype=np.float64)
        self.diff_iters = int(diff_iters)
        self.diff_tol = float(diff_tol)
        self.inv_h2 = 1.0 / grid.spacing3**2
        self.scratch = np.empty(grid.array_shape)
        nz, ny, nx = grid.array_shape
        self.rowmax = np.empty(nz * ny)
        self.last_sweeps = np.zeros(7, dtype=np.int64)

    def __call__(self, U: np.ndarray, dt: float) -> None:
        for f in range(7):
            self.last_sweeps[f] = jacobi_solve(U[f], self.D[f], dt, self.inv_h2, self.grid.dim, self.diff_iters,
                                               self.diff_tol, self.scratch, self.rowmax)


class VariableCoefficientDiffusion:
    """Backward Euler for one field with spatially varying D(x): (I − dt ∇_h·(D ∇_h)) u* = u, face coefficients as
    arithmetic means of nodal D, index-clamped (zero-flux) boundaries; solved by CG to relative residual 1e-12."""

    def __init__(self, grid: Grid, D_field: np.ndarray):
        import scipy.sparse as sp

        D_field = np.asarray(D_field, dtype=np.float64)
        try:
            D_field = np.broadcast_to(D_field, grid.array_shape)
        except ValueError:
            raise ValueError(f"D_C(x) has shape {D_field.shape}; expected the field shape {grid.array_shape} "
                             "(nz, ny, nx)") from None
        if not np.all(np.isfinite(D_field)) or np.any(D_field < 0):
            raise ValueError("spatially varying D_C(x) must be finite and ≥ 0 everywhere")
        self.grid = grid
        n = grid.size
        idx = np.arange(n).reshape(grid.array_shape)
        rows, cols, vals = [], [], []
        for axis, h in zip((2, 1, 0), grid.spacing3):
            if grid.array_shape[axis] < 2:
                continue
            a = np.take(idx, range(0, grid.array_shape[axis] - 1), axis=axis).ravel()
            b = np.take(idx, range(1, grid.array_shape[axis]), axis=axis).ravel()
            dface = 0.5 * (D_field.ravel()[a] + D_field.ravel()[b]) / h**2
            rows += [a, b, a, b]
            cols += [b, a, a, b]
            vals += [dface, dface, -dface, -dface]
        self.L = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        self._dt = None

    def __call__(self, u: np.ndarray, dt: float) -> None:
        import scipy.sparse as sp
        from scipy.sparse.linalg import cg

        if self._dt != dt:
            self.M = (sp.identity(self.grid.size, format="csr") - dt * self.L).tocsr()
            self.pre = sp.diags(1.0 / self.M.diagonal())
            self._dt = dt
        b = u.ravel().copy()
        x, info = cg(self.M, b, x0=b, rtol=1e-12, atol=0.0, M=self.pre, maxiter=10_000)
        if info != 0:
            raise RuntimeError(f"variable-coefficient diffusion: CG did not converge (info={info})")
        u[...] = x.reshape(u.shape)


def make_diffusion(solver: str, grid: Grid, diffusivities: np.ndarray, diff_iters: int = 60,
                   diff_tol: float = 1e-8, workers: int | None = None, scheme: str = "backward_euler"):
    if scheme != "backward_euler" and solver != "exact":
        raise ValueError(f"diffusion scheme '{scheme}' needs solver='exact'")
    if solver == "exact":
        return ExactDiffusion(grid, diffusivities, workers=workers, scheme=scheme)
    if solver == "jacobi":
        return JacobiDiffusion(grid, diffusivities, diff_iters=diff_iters, diff_tol=diff_tol)
    raise ValueError(f"unknown diffusion solver '{solver}'; choose one of {SOLVERS}")
