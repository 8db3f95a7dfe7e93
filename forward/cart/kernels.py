"""Numba kernels of the CAR-T model: reaction–chemotaxis right-hand side R(U), the RK2 reaction half-step with
positivity projection, and the Jacobi diffusion sweep of the published solver.

All kernels take the state ``U[7, nz, ny, nx]`` (C-contiguous) and the parameter vector ``p`` (order in
:mod:`immunocal.forward.cart.params`), so changing parameter values never recompiles. Neighbours use index clamping
(zero flux; seed 001 §2.3). The readable numpy counterpart of :func:`reaction_rhs` is
:func:`immunocal.forward.cart.model.reaction_rhs_numpy`; ``tests/cart`` checks that both agree.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .params import (
    I_ALPHA,
    I_BETAA,
    I_BETAH,
    I_CHI0,
    I_DC_DEATH,
    I_DE_DEATH,
    I_DELTA,
    I_DTA,
    I_DTB,
    I_ETA,
    I_GAMMA,
    I_KC,
    I_KE0,
    I_KH,
    I_KT,
    I_LAMA,
    I_LAMH,
    I_LAMS,
    I_MU0,
    I_MU1,
    I_NU,
    I_PR,
    I_RHO,
    I_RT,
    I_SIGA,
    I_SIGM,
    I_SIGS,
    I_XI,
)

#: Added to K_C + C in the proliferation denominator, as the published program does (below round-off unless
#: K_C + C < 1e-14).
GROWTH_DENOM_EPS = 1e-30


@njit(cache=True, parallel=True)
def reaction_rhs(U, p, inv_h, chi, out):
    """``out = R(U)``: reactions of seed 001 eqs (1)–(8) plus chemotaxis −∇·(χ_C(A) C ∇S) in conservative
    face-flux form (eqs 54–56). ``inv_h = [1/dx, 1/dy, 1/dz]``; ``chi`` is scratch of shape ``U.shape[1:]``.
    """
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    chi0 = p[I_CHI0]
    alpha = p[I_ALPHA]
    rho = p[I_RHO]
    kc = p[I_KC]
    delta = p[I_DELTA]
    gamma = p[I_GAMMA]
    ke0 = p[I_KE0]
    beta_a = p[I_BETAA]
    beta_h = p[I_BETAH]
    pr = p[I_PR]
    d_c = p[I_DC_DEATH]
    d_e = p[I_DE_DEATH]
    r_t = p[I_RT]
    k_t = p[I_KT]
    mu0 = p[I_MU0]
    mu1 = p[I_MU1]
    nu = p[I_NU]
    xi = p[I_XI]
    d_ta = p[I_DTA]
    d_tb = p[I_DTB]
    sig_s = p[I_SIGS]
    lam_s = p[I_LAMS]
    sig_a = p[I_SIGA]
    sig_m = p[I_SIGM]
    lam_a = p[I_LAMA]
    eta = p[I_ETA]
    lam_h = p[I_LAMH]
    k_h = p[I_KH]
    ix, iy, iz = inv_h[0], inv_h[1], inv_h[2]
    nrows = nz * ny
    for r in prange(nrows):
        k = r // ny
        j = r - k * ny
        for i in range(nx):
            chi[k, j, i] = chi0 / (1.0 + alpha * U[5, k, j, i])
    for r in prange(nrows):
        k = r // ny
        j = r - k * ny
        jm = j - 1 if j > 0 else 0
        jp = j + 1 if j < ny - 1 else ny - 1
        km = k - 1 if k > 0 else 0
        kp = k + 1 if k < nz - 1 else nz - 1
        for i in range(nx):
            im = i - 1 if i > 0 else 0
            ip = i + 1 if i < nx - 1 else nx - 1
            c = U[0, k, j, i]
            e = U[1, k, j, i]
            ta = U[2, k, j, i]
            tb = U[3, k, j, i]
            s = U[4, k, j, i]
            a = U[5, k, j, i]
            h = U[6, k, j, i]
            ch = chi[k, j, i]
            # face fluxes F = χ_face · C_face · ΔS/Δx (eqs 55–56)
            fxp = 0.5 * (ch + chi[k, j, ip]) * 0.5 * (c + U[0, k, j, ip]) * ((U[4, k, j, ip] - s) * ix)
            fxm = 0.5 * (chi[k, j, im] + ch) * 0.5 * (U[0, k, j, im] + c) * ((s - U[4, k, j, im]) * ix)
            fyp = 0.5 * (ch + chi[k, jp, i]) * 0.5 * (c + U[0, k, jp, i]) * ((U[4, k, jp, i] - s) * iy)
            fym = 0.5 * (chi[k, jm, i] + ch) * 0.5 * (U[0, k, jm, i] + c) * ((s - U[4, k, jm, i]) * iy)
            fzp = 0.5 * (ch + chi[kp, j, i]) * 0.5 * (c + U[0, kp, j, i]) * ((U[4, kp, j, i] - s) * iz)
            fzm = 0.5 * (chi[km, j, i] + ch) * 0.5 * (U[0, km, j, i] + c) * ((s - U[4, km, j, i]) * iz)
            div = (fxp - fxm) * ix + (fyp - fym) * iy + (fzp - fzm) * iz
            ke = ke0 * (1.0 + beta_a * a + beta_h * h)
            muab = mu0 + nu * c
            muba = mu1 * math.exp(-xi * c)
            fh = h / (k_h + h)
            pr_eff = pr / (1.0 + a)
            growth = rho * (c * ta) / (kc + c + GROWTH_DENOM_EPS)
            n = ta + tb
            logistic = r_t * (1.0 - n / k_t)
            out[0, k, j, i] = growth - delta * c * ta - ke * c + pr_eff * e - d_c * c - div
            out[1, k, j, i] = ke * c - pr_eff * e - d_e * e
            out[2, k, j, i] = logistic * ta - gamma * c * ta - muab * ta + muba * tb - d_ta * ta
            out[3, k, j, i] = logistic * tb + muab * ta - muba * tb - d_tb * tb
            out[4, k, j, i] = sig_s * ta - lam_s * s
            out[5, k, j, i] = sig_a * (ta + tb) + sig_m * fh - lam_a * a
            out[6, k, j, i] = eta * (ta + tb) - lam_h * h


@njit(cache=True, parallel=True)
def _predict(U, k1, hstep, tmp, rowmin):
    """tmp = max(U + h·k1, 0); rowmin[r, f] = min over the row of the unprojected value (stability guard)."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        for f in range(7):
            m = np.inf
            for i in range(nx):
                v = U[f, k, j, i] + hstep * k1[f, k, j, i]
                if v < m:
                    m = v
                tmp[f, k, j, i] = v if v > 0.0 else 0.0
            rowmin[r, f] = m


@njit(cache=True, parallel=True)
def _correct(U, k1, k2, half_h, rowmin, rowbad):
    """U = U + (h/2)·k1; U = U + (h/2)·k2 (two additions, the program's order); U = max(U, 0)."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        bad = 0
        for f in range(7):
            m = np.inf
            for i in range(nx):
                v = U[f, k, j, i] + half_h * k1[f, k, j, i]
                v = v + half_h * k2[f, k, j, i]
                if not (v == v and abs(v) < np.inf):
                    bad = 1
                if v < m:
                    m = v
                U[f, k, j, i] = v if v > 0.0 else 0.0
            if m < rowmin[r, f]:
                rowmin[r, f] = m
        rowbad[r] = bad


@njit(cache=True)
def _field_max(U, fmax):
    for f in range(7):
        fmax[f] = U[f].max()


@njit(cache=True)
def reaction_half_step(U, p, inv_h, dt_half, substeps, work, chi, rowmin, rowbad, worst):
    """Φ_R(dt_half) by RK2 (Heun) over ``substeps`` substeps, exactly as the published program and SPEC §3:
    per substep ``k1 = R(U); tmp = max(U + h k1, 0); k2 = R(tmp); U += h/2 k1; U += h/2 k2; U = max(U, 0)``.

    ``work`` is scratch of shape ``(3,) + U.shape`` (k1, k2, tmp). On return ``worst[f]`` holds, per field, the most
    negative value before projection relative to the field's max at the start of the substep (≤ 0; 0 if none),
    and ``worst[7]`` is 1.0 if a non-finite value appeared. The caller turns these into errors (guards).
    """
    h = dt_half / substeps
    k1 = work[0]
    k2 = work[1]
    tmp = work[2]
    fmax = np.empty(7)
    for f in range(8):
        worst[f] = 0.0
    for _ in range(substeps):
        _field_max(U, fmax)
        reaction_rhs(U, p, inv_h, chi, k1)
        _predict(U, k1, h, tmp, rowmin)
        reaction_rhs(tmp, p, inv_h, chi, k2)
        _correct(U, k1, k2, 0.5 * h, rowmin, rowbad)
        if rowbad.max() > 0:
            worst[7] = 1.0
            return
        for f in range(7):
            m = rowmin[:, f].min()
            if m < 0.0:
                scale = fmax[f] if fmax[f] > 0.0 else 1.0
                rel = m / scale
                if rel < worst[f]:
                    worst[f] = rel


@njit(cache=True, parallel=True)
def _jacobi_sweep(cur, nxt, b, ax, ay, az, denom, rowmax):
    nz, ny, nx = cur.shape
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        jm = j - 1 if j > 0 else 0
        jp = j + 1 if j < ny - 1 else ny - 1
        km = k - 1 if k > 0 else 0
        kp = k + 1 if k < nz - 1 else nz - 1
        m = 0.0
        for i in range(nx):
            im = i - 1 if i > 0 else 0
            ip = i + 1 if i < nx - 1 else nx - 1
            v = (b[k, j, i] + ax * (cur[k, j, ip] + cur[k, j, im]) + ay * (cur[k, jp, i] + cur[k, jm, i])
                 + az * (cur[kp, j, i] + cur[km, j, i])) / denom
            nxt[k, j, i] = v
            d = abs(v - cur[k, j, i])
            if d > m:
                m = d
        rowmax[r] = m


@njit(cache=True)
def jacobi_solve(u, D, dt, inv_h2, ndim_active, max_iters, tol, scratch, rowmax):
    """The published program's solve of (I − dt·D·Δ_h) u* = u (eq 61), in place: start from u, Jacobi sweeps with
    index-clamped neighbours, stop after a sweep whose max |u_new − u_old| < tol (absolute) or after max_iters
    sweeps; nothing to do when D ≤ 0. Returns the number of sweeps."""
    if D <= 0.0 or dt <= 0.0:
        return 0
    ax = dt * D * inv_h2[0]
    ay = dt * D * inv_h2[1] if ndim_active >= 2 else 0.0
    az = dt * D * inv_h2[2] if ndim_active >= 3 else 0.0
    denom = 1.0 + 2.0 * (ax + ay + az)
    b = u.copy()
    a0 = u
    a1 = scratch
    a1[:] = u
    it = 0
    while it < max_iters:
        if it % 2 == 0:
            _jacobi_sweep(a0, a1, b, ax, ay, az, denom, rowmax)
        else:
            _jacobi_sweep(a1, a0, b, ax, ay, az, denom, rowmax)
        it += 1
        if rowmax.max() < tol:
            break
    if it % 2 == 1:
        u[:] = a1
    return it


@njit(cache=True, parallel=True)
def clamp_nonneg(U):
    flat = U.reshape(-1)
    for n in prange(flat.size):
        if flat[n] < 0.0:
            flat[n] = 0.0
