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


@njit(cache=True, inline="always", error_model="numpy")
def _rates(p):
    """The parameter vector as a tuple of scalars, read once per kernel call (order of :func:`_node_rhs`)."""
    return (p[I_CHI0], p[I_ALPHA], p[I_RHO], p[I_KC], p[I_DELTA], p[I_GAMMA], p[I_KE0], p[I_BETAA], p[I_BETAH],
            p[I_PR], p[I_DC_DEATH], p[I_DE_DEATH], p[I_RT], p[I_KT], p[I_MU0], p[I_MU1], p[I_NU], p[I_XI],
            p[I_DTA], p[I_DTB], p[I_SIGS], p[I_LAMS], p[I_SIGA], p[I_SIGM], p[I_LAMA], p[I_ETA], p[I_LAMH],
            p[I_KH])


@njit(cache=True, inline="always", error_model="numpy")
def _chi_field(U, chi0, alpha, chi):
    """chi = χ_C(A) = χ_0/(1 + α_A A) at every node (needed at the neighbours of each face)."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        for i in range(nx):
            chi[k, j, i] = chi0 / (1.0 + alpha * U[5, k, j, i])


@njit(cache=True, inline="always", error_model="numpy")
def _face_flux_x(U, chi, ix, k, j, i, ip):
    """The chemotactic flux F = χ_face · C_face · ΔS/Δx through the x-face between nodes i and ip (eqs 55–56)."""
    return 0.5 * (chi[k, j, i] + chi[k, j, ip]) * 0.5 * (U[0, k, j, i] + U[0, k, j, ip]) * (
        (U[4, k, j, ip] - U[4, k, j, i]) * ix)


@njit(cache=True, inline="always", error_model="numpy")
def _node_rhs(U, chi, rates, ix, iy, iz, k, j, i, km, kp, jm, jp, fxm, ip):
    """R(U) at node (k, j, i) — THE one place of seed 001 eqs (1)–(8) in the compiled solver: reactions plus
    chemotaxis −∇·(χ_C(A) C ∇S) in conservative face-flux form (eqs 54–56), neighbours index-clamped by the caller.
    ``fxm`` is the flux through the node's lower x-face — the previous node's upper one along the row (the same
    operands, so the same bits), :func:`_face_flux_x` at a row's first node. Returns the seven rates (C, E, T_A,
    T_B, S, A, H) and the flux through the upper x-face (the next node's ``fxm``)."""
    (chi0, alpha, rho, kc, delta, gamma, ke0, beta_a, beta_h, pr, d_c, d_e, r_t, k_t, mu0, mu1, nu, xi, d_ta, d_tb,
     sig_s, lam_s, sig_a, sig_m, lam_a, eta, lam_h, k_h) = rates
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
    return (growth - delta * c * ta - ke * c + pr_eff * e - d_c * c - div,
            ke * c - pr_eff * e - d_e * e,
            logistic * ta - gamma * c * ta - muab * ta + muba * tb - d_ta * ta,
            logistic * tb + muab * ta - muba * tb - d_tb * tb,
            sig_s * ta - lam_s * s,
            sig_a * (ta + tb) + sig_m * fh - lam_a * a,
            eta * (ta + tb) - lam_h * h, fxp)


@njit(cache=True, inline="always", error_model="numpy")
def _row_rates(U, chi, rates, inv_h, k, j, dst):
    """``dst[f, k, j, i]`` = R(U) along row (k, j) (:func:`_node_rhs` node by node, the x-face flux carried)."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    ix, iy, iz = inv_h[0], inv_h[1], inv_h[2]
    jm = j - 1 if j > 0 else 0
    jp = j + 1 if j < ny - 1 else ny - 1
    km = k - 1 if k > 0 else 0
    kp = k + 1 if k < nz - 1 else nz - 1
    fxm = _face_flux_x(U, chi, ix, k, j, 0, 0)  # zero-flux wall (index clamping)
    for i in range(nx):
        ip = i + 1 if i < nx - 1 else nx - 1
        v = _node_rhs(U, chi, rates, ix, iy, iz, k, j, i, km, kp, jm, jp, fxm, ip)
        fxm = v[7]
        dst[0, k, j, i] = v[0]
        dst[1, k, j, i] = v[1]
        dst[2, k, j, i] = v[2]
        dst[3, k, j, i] = v[3]
        dst[4, k, j, i] = v[4]
        dst[5, k, j, i] = v[5]
        dst[6, k, j, i] = v[6]


@njit(cache=True, parallel=True, error_model="numpy")
def reaction_rhs(U, p, inv_h, chi, out):
    """``out = R(U)`` (:func:`_node_rhs` at every node). ``inv_h = [1/dx, 1/dy, 1/dz]``; ``chi`` is scratch of shape
    ``U.shape[1:]``."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    rates = _rates(p)
    _chi_field(U, p[I_CHI0], p[I_ALPHA], chi)
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        _row_rates(U, chi, rates, inv_h, k, j, out)


@njit(cache=True, parallel=True, error_model="numpy")
def _predictor(U, p, inv_h, hstep, chi, half, tmp, rowmin, rowmax):
    """First RK2 stage, one pass over the rows: k1 = R(U); tmp = max(U + h·k1, 0); ``half = U + (h/2)·k1`` (the
    corrector's first addition, so the corrector never reads U or k1 again); per row and field the minimum of the
    unprojected value (``rowmin``, the stability guard) and the maximum of U (``rowmax``, the guard's scale),
    reduced over the row while it is in cache."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    rates = _rates(p)
    _chi_field(U, p[I_CHI0], p[I_ALPHA], chi)
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        _row_rates(U, chi, rates, inv_h, k, j, tmp)
        half_h = 0.5 * hstep
        for f in range(7):
            lo = np.inf
            hi = -np.inf
            for i in range(nx):
                u = U[f, k, j, i]
                rate = tmp[f, k, j, i]
                w = u + hstep * rate
                half[f, k, j, i] = u + half_h * rate
                if w < lo:
                    lo = w
                if u > hi:
                    hi = u
                tmp[f, k, j, i] = w if w > 0.0 else 0.0
            rowmin[r, f] = lo
            rowmax[r, f] = hi


@njit(cache=True, parallel=True, error_model="numpy")
def _corrector(U, tmp, p, inv_h, half_h, chi, half, rowmin, rowbad):
    """Second RK2 stage, one pass over the rows: k2 = R(tmp); U = (U + (h/2)·k1) + (h/2)·k2 (two additions, the
    program's order; the first is ``half`` from the predictor); then, while the row is in cache, ``rowmin`` lowered
    by the unprojected values, ``rowbad`` set for a non-finite one, and U = max(U, 0)."""
    nz, ny, nx = U.shape[1], U.shape[2], U.shape[3]
    rates = _rates(p)
    _chi_field(tmp, p[I_CHI0], p[I_ALPHA], chi)
    ix, iy, iz = inv_h[0], inv_h[1], inv_h[2]
    for r in prange(nz * ny):
        k = r // ny
        j = r - k * ny
        jm = j - 1 if j > 0 else 0
        jp = j + 1 if j < ny - 1 else ny - 1
        km = k - 1 if k > 0 else 0
        kp = k + 1 if k < nz - 1 else nz - 1
        fxm = _face_flux_x(tmp, chi, ix, k, j, 0, 0)  # zero-flux wall (index clamping)
        for i in range(nx):
            ip = i + 1 if i < nx - 1 else nx - 1
            v = _node_rhs(tmp, chi, rates, ix, iy, iz, k, j, i, km, kp, jm, jp, fxm, ip)
            fxm = v[7]
            U[0, k, j, i] = half[0, k, j, i] + half_h * v[0]
            U[1, k, j, i] = half[1, k, j, i] + half_h * v[1]
            U[2, k, j, i] = half[2, k, j, i] + half_h * v[2]
            U[3, k, j, i] = half[3, k, j, i] + half_h * v[3]
            U[4, k, j, i] = half[4, k, j, i] + half_h * v[4]
            U[5, k, j, i] = half[5, k, j, i] + half_h * v[5]
            U[6, k, j, i] = half[6, k, j, i] + half_h * v[6]
        bad = 0
        for f in range(7):
            lo = rowmin[r, f]
            for i in range(nx):
                w = U[f, k, j, i]
                if not (w == w and abs(w) < np.inf):
                    bad = 1
                if w < lo:
                    lo = w
                U[f, k, j, i] = w if w > 0.0 else 0.0
            rowmin[r, f] = lo
        rowbad[r] = bad


@njit(cache=True, error_model="numpy")
def reaction_half_step(U, p, inv_h, dt_half, substeps, work, chi, rowmin, rowbad, worst):
    """Φ_R(dt_half) by RK2 (Heun) over ``substeps`` substeps, exactly as the published program and SPEC §3:
    per substep ``k1 = R(U); tmp = max(U + h k1, 0); k2 = R(tmp); U += h/2 k1; U += h/2 k2; U = max(U, 0)``
    (two fused passes, :func:`_predictor` and :func:`_corrector`).

    ``work`` is scratch of shape ``(3,) + U.shape`` (U + (h/2)·k1, the predicted state, and the row maxima in
    ``work[2]``'s first ``rows × 7`` values). ``rowmin``, ``rowbad`` are per-row scratch (rows = nz·ny). On return ``worst[f]`` holds, per field, the
    most negative value before projection relative to the field's max at the start of the substep (≤ 0; 0 if none),
    and ``worst[7]`` is 1.0 if a non-finite value appeared. The caller turns these into errors (guards).
    """
    h = dt_half / substeps
    half = work[0]
    tmp = work[1]
    rowmax = work[2].reshape(-1)[: rowmin.size].reshape(rowmin.shape)
    for f in range(8):
        worst[f] = 0.0
    for _ in range(substeps):
        _predictor(U, p, inv_h, h, chi, half, tmp, rowmin, rowmax)
        _corrector(U, tmp, p, inv_h, 0.5 * h, chi, half, rowmin, rowbad)
        if rowbad.max() > 0:
            worst[7] = 1.0
            return
        for f in range(7):
            m = rowmin[:, f].min()
            if m < 0.0:
                fmax = rowmax[:, f].max()
                scale = fmax if fmax > 0.0 else 1.0
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



@njit(cache=True)
def tridiagonal_factors(base, a, cp, inv):
    """Thomas factors of the systems ``(base − a·Δ_1) x = r`` along axis 1 of arrays of shape ``(fields, n, m, l)``,
    Δ_1 the index-clamped (zero-flux) 1-D Laplacian times h² (−1 on the two end diagonals, −2 inside, +1 off the
    diagonal): per field f and column (·, j, i) the diagonal is ``base[f, j, i] + a[f]·(1 or 2)`` and the
    off-diagonals −a[f]. On return ``cp[f, k, j, i]`` is the modified super-diagonal c'_k and ``inv`` the inverse
    pivot 1/m_k. Diagonally dominant (base ≥ 1, a ≥ 0), so no pivoting is needed."""
    nf, n, ny, nx = cp.shape
    for f in range(nf):
        af = a[f]
        for j in range(ny):
            for i in range(nx):
                prev = 0.0
                for k in range(n):
                    d = base[f, j, i]
                    if n > 1:
                        d += af if (k == 0 or k == n - 1) else 2.0 * af
                    m = d + af * prev  # d − (−a)·c'_{k−1}
                    inv[f, k, j, i] = 1.0 / m
                    prev = -af / m
                    cp[f, k, j, i] = prev


@njit(cache=True, parallel=True)
def tridiagonal_solve(B, a, cp, inv):
    """In place: ``B[f, :, j, i] ← (base − a[f]·Δ_1)^{-1} B[f, :, j, i]`` for every field and column, with the factors
    of :func:`tridiagonal_factors` (forward sweep g_k = (r_k + a·g_{k−1})/m_k, back substitution x_k = g_k − c'_k
    x_{k+1}); the inner index i runs contiguously, so both sweeps vectorise."""
    nf, n, ny, nx = B.shape
    for r in prange(nf * ny):
        f = r // ny
        j = r - f * ny
        af = a[f]
        for i in range(nx):
            B[f, 0, j, i] = B[f, 0, j, i] * inv[f, 0, j, i]
        for k in range(1, n):
            for i in range(nx):
                B[f, k, j, i] = (B[f, k, j, i] + af * B[f, k - 1, j, i]) * inv[f, k, j, i]
        for k in range(n - 2, -1, -1):
            for i in range(nx):
                B[f, k, j, i] = B[f, k, j, i] - cp[f, k, j, i] * B[f, k + 1, j, i]


@njit(cache=True, parallel=True)
def neumann_apply(B, w0, w1):
    """In place: ``B[f, :, j, i] ← w0[f, j, i]·B + w1[f]·Δ_1 B`` along axis 1 (the explicit half of Crank–Nicolson;
    Δ_1 as in :func:`tridiagonal_factors`)."""
    nf, n, ny, nx = B.shape
    for r in prange(nf * ny):
        f = r // ny
        j = r - f * ny
        wf = w1[f]
        for i in range(nx):
            below = B[f, 0, j, i]
            for k in range(n):
                here = B[f, k, j, i]
                above = B[f, k + 1, j, i] if k < n - 1 else here
                B[f, k, j, i] = w0[f, j, i] * here + wf * ((above - here) - (here - below))
                below = here


@njit(cache=True, parallel=True)
def store_nonneg(dst, src):
    """dst = max(src, 0) (the projection after the diffusion solve, fused with writing its result back)."""
    a = dst.reshape(-1)
    b = src.reshape(-1)
    for n in prange(a.size):
        v = b[n]
        a[n] = v if v > 0.0 else 0.0
