"""Diffusion sub-step Φ_D(Δt): backward Euler (I − Δt·D_u·Δ_h) u* = u for each field (seed 001 eq 60).

Two solvers of the same linear system:

``exact`` (default)
    Direct solve by diagonalisation. With index-clamped (zero-flux) neighbours the 1-D operator is the tridiagonal
    matrix with −1 (not −2) in its first and last diagonal entries; its eigenvectors are the DCT-II basis
    ``cos(π m (i + ½)/N)`` with eigenvalues ``−(4/Δx²) sin²(π m / 2N)``. So ``u* = IDCT(DCT(u) / (1 + Δt D λ))``
    along every active axis (scipy.fft, orthonormal DCT-II/III, multi-threaded). Exact to round-off (~1e-15).
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
from .kernels import jacobi_solve

SOLVERS = ("exact", "jacobi")
#: Time discretisation of Φ_D. The seed (eq 60) uses backward Euler, which is first order in time, so the Strang
#: step is first order overall when diffusion matters; ``crank_nicolson`` (exact solver only) restores order 2.
DIFFUSION_SCHEMES = ("backward_euler", "crank_nicolson")


def default_workers() -> int:
    """Threads for scipy.fft (same as Numba's thread count)."""
    import numba

    return int(numba.get_num_threads()) or (os.cpu_count() or 1)


class ExactDiffusion:
    """DCT-II backward-Euler solver for all seven fields at once (fields with D ≤ 0 are left untouched)."""

    def __init__(self, grid: Grid, diffusivities: np.ndarray, workers: int | None = None,
                 split_fields: bool = False, scheme: str = "backward_euler"):
        if scheme not in DIFFUSION_SCHEMES:
            raise ValueError(f"unknown diffusion time scheme '{scheme}'; choose one of {DIFFUSION_SCHEMES}")
        self.scheme = scheme
        self.grid = grid
        self.split_fields = split_fields
        self.D = np.asarray(diffusivities, dtype=np.float64)
        self.workers = workers or (default_workers() if grid.size >= 30_000 else 1)
        self.active = np.flatnonzero(self.D > 0.0)
        nz, ny, nx = grid.array_shape
        # active axes of the 4-D state array U[f, k, j, i]: x -> 3, y -> 2, z -> 1
        self.axes = tuple(ax for ax, n in ((1, nz), (2, ny), (3, nx)) if n > 1)
        lam = np.zeros(grid.array_shape)
        dx, dy, dz = grid.spacing3
        for n, h, shape in ((nx, dx, (1, 1, nx)), (ny, dy, (1, ny, 1)), (nz, dz, (nz, 1, 1))):
            if n > 1:
                m = np.arange(n)
                lam = lam + ((4.0 / h**2) * np.sin(np.pi * m / (2 * n)) ** 2).reshape(shape)
        self.eigen = lam  # minus the eigenvalues of Δ_h (≥ 0)
        self._dt = None
        self._factor = None
        self._pool = None

    def factor(self, dt: float) -> np.ndarray:
        if self._dt != dt:
            a = dt * self.D[self.active, None, None, None] * self.eigen[None]
            if self.scheme == "backward_euler":
                self._factor = 1.0 / (1.0 + a)
            else:  # Crank–Nicolson: second order in time, not positivity preserving for dt·D·λ > 2
                self._factor = (1.0 - 0.5 * a) / (1.0 + 0.5 * a)
            self._dt = dt
        return self._factor

    def _solve(self, U: np.ndarray, fac: np.ndarray, fields: np.ndarray, rows: slice) -> None:
        if fields.size == U.shape[0]:  # all fields: no gather copy
            hat = scipy.fft.dctn(U, type=2, axes=self.axes, norm="ortho", workers=self.workers)
            hat *= fac
            U[...] = scipy.fft.idctn(hat, type=2, axes=self.axes, norm="ortho", workers=self.workers,
                                     overwrite_x=True)
            return
        sub = U[fields]
        hat = scipy.fft.dctn(sub, type=2, axes=self.axes, norm="ortho", workers=1)
        hat *= fac[rows]
        U[fields] = scipy.fft.idctn(hat, type=2, axes=self.axes, norm="ortho", workers=1, overwrite_x=True)

    def __call__(self, U: np.ndarray, dt: float) -> None:
        """In place: U[f] ← (I − dt D_f Δ_h)^{-1} U[f] for every field with D_f > 0 (fields split over threads;
        scipy.fft releases the GIL) when ``split_fields``; off by default: with Numba's OpenMP threads spinning
        after each parallel region the extra threads were slower on 2 cores)."""
        nact = self.active.size
        if nact == 0:
            return
        fac = self.factor(dt)
        nthreads = min(self.workers, nact)
        if not self.split_fields or nthreads <= 1 or U[0].size < 4096:
            self._solve(U, fac, self.active, slice(None))
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=nthreads, thread_name_prefix="cart-dct")
        bounds = np.linspace(0, nact, nthreads + 1).round().astype(int)
        futures = [self._pool.submit(self._solve, U, fac, self.active[a:b], slice(a, b))
                   for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        for fut in futures:
            fut.result()


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
