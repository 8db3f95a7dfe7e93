"""Exact solutions, conservation laws, positivity and convergence orders of the CAR-T solver."""

import numpy as np
import pytest

from immunocal.forward.cart.diffusion import ExactDiffusion, JacobiDiffusion
from immunocal.forward.cart.grid import Grid
from immunocal.forward.cart.kernels import reaction_half_step
from immunocal.forward.cart.model import CarTSolver, StepSettings, reaction_rhs_numba, simulate
from immunocal.forward.cart.params import param_array
from immunocal.forward.cart.verification import smooth_params, smooth_state
from immunocal.priors import registry


def _zero_params(**values):
    """All reaction rates zero (a transport-only or decay-only model), then the given values. Returned as a kernel
    vector: zero rates lie outside some registry ranges, and the solver accepts raw vectors for such tests."""
    ps = dict(registry().parameter_set("cart", "normalised"))
    zero = {k: 0.0 for k in ps if k not in ("tumour_carrying_capacity", "car_t_half_saturation",
                                              "hypoxia_half_saturation", "chemokine_decay_rate",
                                              "suppressor_decay_rate", "hypoxia_decay_rate")}
    zero.update(chemokine_decay_rate=0.01, suppressor_decay_rate=0.01, hypoxia_decay_rate=0.01)
    zero.update(values)
    ps.update(zero)
    return param_array(ps)


@pytest.mark.parametrize("solver", ["exact", "jacobi"])
@pytest.mark.parametrize("shape,mode", [((33,), (3,)), ((17, 12), (2, 1)), ((9, 8, 7), (1, 2, 3))])
def test_cosine_mode_decays_by_backward_euler_factor(solver, shape, mode):
    grid = Grid(shape, tuple(1.0 + 0.1 * i for i in range(len(shape))))
    D = np.array([0.02, 0.01, 0.005, 0.005, 0.03, 0.04, 0.05])
    dt = 0.1
    U = grid.zeros()
    mode3 = tuple(mode) + (0,) * (3 - len(mode))
    lam = 0.0
    prof = np.ones(grid.array_shape)
    for ax, (n, h, m) in enumerate(zip(grid.n3, grid.spacing3, mode3)):
        if n < 2:
            continue
        i = np.arange(n)
        shape_ax = [1, 1, 1]
        shape_ax[2 - ax] = n
        prof = prof * np.cos(np.pi * m * (i + 0.5) / n).reshape(shape_ax)  # DCT-II eigenvector
        lam += 4.0 / h**2 * np.sin(np.pi * m / (2 * n)) ** 2
    U[:] = prof
    solve = ExactDiffusion(grid, D) if solver == "exact" else JacobiDiffusion(grid, D, diff_iters=5000, diff_tol=0)
    solve(U, dt)
    for f in range(7):
        np.testing.assert_allclose(U[f], prof / (1.0 + dt * D[f] * lam), rtol=0, atol=1e-12)


def _dense_laplacian(grid):
    """Δ_h of the index-clamped (zero-flux) node grid as a dense matrix in the C order of (nz, ny, nx)."""
    op = np.zeros((1, 1))
    for n, h in zip(grid.array_shape, grid.spacing3[::-1]):  # z, y, x with their spacings
        lap = np.zeros((n, n))
        for i in range(n - 1):
            lap[i, i] -= 1.0
            lap[i + 1, i + 1] -= 1.0
            lap[i, i + 1] = lap[i + 1, i] = 1.0
        eye_before, eye_after = np.eye(op.shape[0]), np.eye(n)
        op = np.kron(op, eye_after) + np.kron(eye_before, lap / h**2)
    return op


@pytest.mark.parametrize("scheme", ["backward_euler", "crank_nicolson"])
@pytest.mark.parametrize("shape,lengths", [((9,), (1.3,)), ((7, 5), (1.0, 0.6)), ((6, 5, 4), (1.0, 0.8, 0.45))])
def test_exact_diffusion_is_the_dense_implicit_solve(rng, scheme, shape, lengths):
    """The DCT + Thomas solver against numpy's dense solve of the same linear system, every field, both time
    schemes, anisotropic spacings; a field with D = 0 is left bit-for-bit untouched."""
    grid = Grid(shape, lengths)
    D = np.array([0.02, 0.0, 0.005, 0.3, 0.03, 0.0, 1.5])
    dt = 0.07
    U = rng.random((7,) + grid.array_shape)
    lap = _dense_laplacian(grid)
    eye = np.eye(lap.shape[0])
    expected = np.empty_like(U)
    for f in range(7):
        u = U[f].ravel()
        if scheme == "backward_euler":
            expected[f] = np.linalg.solve(eye - dt * D[f] * lap, u).reshape(U[f].shape)
        else:
            expected[f] = np.linalg.solve(eye - 0.5 * dt * D[f] * lap,
                                          (eye + 0.5 * dt * D[f] * lap) @ u).reshape(U[f].shape)
    solve = ExactDiffusion(grid, D, scheme=scheme)
    for _ in range(2):  # the second call reuses the cached factors
        V = U.copy()
        solve(V, dt)
        np.testing.assert_allclose(V, expected, rtol=0, atol=1e-13)
        assert np.array_equal(V[[1, 5]], U[[1, 5]])
    W = U - 0.5  # negative values: the fused projection
    unprojected = W.copy()
    solve(unprojected, dt)
    solve(W, dt, project=True)
    np.testing.assert_array_equal(W, np.maximum(unprojected, 0.0))


def test_reaction_half_step_is_heun_with_projection(rng):
    """The fused predictor/corrector kernels against the RK2 of the module docstring written in numpy on the
    readable right-hand side: per substep k1 = R(U); tmp = max(U + h k1, 0); k2 = R(tmp); U = max((U + h/2 k1) +
    h/2 k2, 0), and the guard's record of the largest undershoot relative to the field's max."""
    from immunocal.forward.cart.model import reaction_rhs_numpy

    grid = Grid((7, 6, 5), (1.0, 0.9, 0.7))
    p = param_array(registry().parameter_set("cart", "normalised"))
    U = rng.random((7,) + grid.array_shape) * np.array([0.3, 0.1, 0.8, 0.2, 1.0, 0.5, 0.4])[:, None, None, None]
    U[0, :, :, :2] = 0.0  # an empty region next to a CAR-T front: the chemotactic flux undershoots there
    dt_half, substeps = 0.4, 2
    ref, worst_ref = U.copy(), np.zeros(7)
    h = dt_half / substeps
    for _ in range(substeps):
        fmax = ref.reshape(7, -1).max(axis=1)
        k1 = reaction_rhs_numpy(ref, p, grid)
        pred = ref + h * k1
        k2 = reaction_rhs_numpy(np.maximum(pred, 0.0), p, grid)
        new = (ref + 0.5 * h * k1) + 0.5 * h * k2
        low = np.minimum(pred.reshape(7, -1).min(axis=1), new.reshape(7, -1).min(axis=1))
        worst_ref = np.minimum(worst_ref, np.where(low < 0, low / np.where(fmax > 0, fmax, 1.0), 0.0))
        ref = np.maximum(new, 0.0)
    V = U.copy()
    shape = grid.array_shape
    rows = shape[0] * shape[1]
    worst = np.zeros(8)
    reaction_half_step(V, p, 1.0 / grid.spacing3, dt_half, substeps, np.empty((3, 7) + shape), np.empty(shape),
                       np.empty((rows, 7)), np.zeros(rows, dtype=np.int64), worst)
    np.testing.assert_allclose(V, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(worst[:7], worst_ref, rtol=1e-9, atol=1e-15)
    assert worst[0] < 0 and worst[7] == 0.0


@pytest.mark.parametrize("solver", ["exact", "jacobi"])
def test_diffusion_conserves_mass(rng, solver):
    grid = Grid((11, 9, 6), (1.0, 0.9, 0.5))
    D = np.array([0.014, 0.001, 5e-5, 5e-5, 0.0045, 0.02, 1.5])
    U = rng.random((7,) + grid.array_shape)
    before = U.sum(axis=(1, 2, 3))
    (ExactDiffusion(grid, D) if solver == "exact" else JacobiDiffusion(grid, D, 60, 1e-8))(U, 0.05)
    np.testing.assert_allclose(U.sum(axis=(1, 2, 3)), before, rtol=1e-13)


def test_chemotaxis_conserves_mass(rng):
    """With all reactions off, R(U) for C is −div F with zero boundary flux: its node sum vanishes."""
    grid = Grid((13, 10, 7), (1.0, 0.8, 0.6))
    p = param_array(_zero_params(chemotactic_sensitivity=0.3, chemotaxis_suppression=1.0))
    U = rng.random((7,) + grid.array_shape)
    r = reaction_rhs_numba(U, p, grid)
    assert abs(r[0].sum()) < 1e-13 * np.abs(r[0]).sum()
    assert np.abs(r[0]).max() > 0.1
    # and over full steps with the exact solver (C only moves: total C conserved to round-off)
    U[2:4] = 0.0
    U[0] = 0.3 + 0.7 * U[0]  # bounded away from 0: no projection, which would add mass
    X, Y, Z = grid.mesh()
    U[4] = 0.5 + 0.5 * np.cos(np.pi * X) * np.cos(np.pi * Y / 0.8)  # smooth chemokine: a stable explicit step
    res = simulate(grid, _zero_params(chemotactic_sensitivity=0.02, chemokine_decay_rate=0.01), U, 0.5, 0.05,
                   exp_substeps=2)
    c = res.integral("C")
    assert abs(c[-1] - c[0]) < 1e-12 * c[0]


@pytest.mark.parametrize("dt", [0.1, 0.05])
def test_linear_decay_matches_exponential_to_second_order(dt):
    """S, A, H with no sources decay as exp(−λ t); the RK2/Strang error is O(dt²) (ratio ≈ 4 when dt halves)."""
    grid = Grid.cube(1, 5)
    lam = {"chemokine_decay_rate": 0.9, "suppressor_decay_rate": 0.6, "hypoxia_decay_rate": 0.3}
    ps = _zero_params(**lam)
    errs = []
    for h in (dt, dt / 2):
        U = grid.zeros()
        U[4:7] = 1.0
        res = simulate(grid, ps, U, 2.0, h)
        exact = np.exp(-2.0 * np.array(list(lam.values())))
        errs.append(np.abs(res.final[4:7, 0, 0, 0] - exact) / exact)
    errs = np.array(errs)
    assert np.all(errs[0] < 2e-3 * (dt / 0.1) ** 2)
    np.testing.assert_allclose(errs[0] / errs[1], 4.0, rtol=0.05)


def test_positivity_and_guard_tolerance():
    """Normalised run of the focus geometry stays ≥ 0 and far from the negativity guard."""
    from immunocal.forward.cart.scenarios import FocusGeometry, focus_state

    grid = Grid.cube(2, 24)
    ps = registry().parameter_set("cart", "normalised")
    res = simulate(grid, ps, focus_state(grid, FocusGeometry(tumour_density=0.9)), 3.0, 0.05, record_every=10)
    assert res.final.min() >= 0.0
    assert min(res.diagnostics["max_relative_undershoot"].values()) > -1e-3


def _smooth_state(grid):
    """Smooth, strictly positive, flat near the walls (so the index-clamped wall position does not matter)."""
    return smooth_state(grid)


def _smooth_params():
    return smooth_params(registry().parameter_set("cart", "normalised"))


def _time_slope(**kw):
    grid = Grid.cube(1, 101)
    ps = _smooth_params()
    U0 = _smooth_state(grid)
    ref = simulate(grid, ps, U0, 1.0, 1 / 640, **kw).final
    dts = [1 / 10, 1 / 20, 1 / 40]
    errs = [np.abs(simulate(grid, ps, U0, 1.0, h, **kw).final - ref).max() for h in dts]
    return np.polyfit(np.log(dts), np.log(errs), 1)[0], errs


def test_time_convergence_strang_with_crank_nicolson_diffusion_is_order_two():
    slope, errs = _time_slope(diffusion_scheme="crank_nicolson")
    assert abs(slope - 2.0) < 0.3, (errs, slope)


def test_time_convergence_seed_scheme_is_order_one():
    """The seed's Φ_D is backward Euler (eq 60), first order in time, so the Strang step (eq 57) is first order
    overall on a problem where diffusion matters (SPEC §9: "Euler 1")."""
    slope, errs = _time_slope()
    assert abs(slope - 1.0) < 0.3, (errs, slope)


@pytest.mark.xfail(strict=True, reason="seed eq 57 claims a second-order Strang scheme, but with its backward-Euler "
                   "diffusion (eq 60) the observed order in time is 1.0 (errors 2.1e-3, 1.0e-3, 5.1e-4 at dt = 1/10, "
                   "1/20, 1/40); order 2 needs a second-order Φ_D (crank_nicolson: see test above)")
def test_time_convergence_seed_scheme_order_two_as_claimed():
    slope, errs = _time_slope()
    assert abs(slope - 2.0) < 0.3, (errs, slope)


def test_time_convergence_reaction_chemotaxis_only_is_order_two():
    """With diffusion off (Φ_D = identity) the RK2 reaction–chemotaxis part is second order."""
    grid = Grid.cube(1, 101)
    ps = dict(_smooth_params())
    U0 = _smooth_state(grid)
    for k in ("car_t_diffusion", "tumour_diffusion", "chemokine_diffusion", "suppressor_diffusion",
              "hypoxia_diffusion", "exhausted_diffusion"):
        ps[k] = 0.0
    p = param_array(ps)
    ref = simulate(grid, p, U0, 1.0, 1 / 640).final
    dts = [1 / 10, 1 / 20, 1 / 40]
    errs = [np.abs(simulate(grid, p, U0, 1.0, h).final - ref).max() for h in dts]
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert abs(slope - 2.0) < 0.3, (errs, slope)


def test_space_convergence_order_two():
    ps = _smooth_params()
    dt, t_end = 0.01, 0.5
    fine = Grid.cube(1, 321)
    ref = simulate(fine, ps, _smooth_state(fine), t_end, dt).final
    hs, errs = [], []
    for n in (21, 41, 81):
        g = Grid.cube(1, n)
        u = simulate(g, ps, _smooth_state(g), t_end, dt).final
        stride = (321 - 1) // (n - 1)
        errs.append(np.abs(u - ref[..., ::stride]).max())
        hs.append(1.0 / (n - 1))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 2.0) < 0.3, (errs, slope)


def test_spatially_varying_car_t_diffusion(rng):
    """D_C(x) solver: a constant field reproduces the DCT solver; a varying one conserves mass; jacobi refuses it."""
    grid = Grid((9, 7, 5), (1.0, 0.8, 0.6))
    ps = registry().parameter_set("cart", "normalised")
    U = rng.random((7,) + grid.array_shape)
    const = np.full(grid.array_shape, ps["car_t_diffusion"])
    a = CarTSolver(grid, ps, StepSettings(dt=0.05), car_t_diffusion_field=const)
    b = CarTSolver(grid, ps, StepSettings(dt=0.05))
    Ua, Ub = U.copy(), U.copy()
    a.diffusion(Ua, 0.05)
    b.diffusion(Ub, 0.05)
    np.testing.assert_allclose(Ua, Ub, rtol=0, atol=1e-11)
    X, _, _ = grid.mesh()
    var = CarTSolver(grid, ps, StepSettings(dt=0.05), car_t_diffusion_field=0.001 + 0.05 * X)
    Uc = U.copy()
    var.diffusion(Uc, 0.05)
    assert abs(Uc[0].sum() - U[0].sum()) < 1e-12 * U[0].sum()
    with pytest.raises(ValueError, match="needs solver='exact'"):
        CarTSolver(grid, ps, StepSettings(dt=0.05, solver="jacobi"), car_t_diffusion_field=const)
