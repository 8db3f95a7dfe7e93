"""The fused GP-mean kernel (calib/gp_kernel.py): its exponential, its values and Jacobian against the numpy
prediction and finite differences, under both PyTensor backends, and the values-only rewrite."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from numba import njit

from immunocal.calib.design import design
from immunocal.calib.gp_kernel import exp_nonpositive, gp_mean_jacobian, gp_mean_op_class
from immunocal.calib.surrogate import GPSurrogate
from immunocal.calib.toy import LogisticModel


@njit
def _vexp(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = exp_nonpositive(x[i])
    return out


def test_exponential_is_accurate_to_the_last_bits_over_the_kernels_range(rng):
    x = -np.concatenate([rng.random(100_000) * 700, rng.random(100_000) * 3, [0.0, 5e-324, 1e-300, 0.5 * np.log(2),
                                                                               np.log(2), 700.0]])
    rel = np.abs(_vexp(x) - np.exp(x)) / np.exp(x)
    assert rel.max() <= 4.5e-16  # two units in the last place
    assert _vexp(np.array([0.0]))[0] == 1.0
    # below -700 the kernel weight is exp(-700) ~ 1e-304 (never a subnormal or an overflow of 2^n)
    np.testing.assert_allclose(_vexp(np.array([-700.0, -800.0, -1e308])), np.exp(-700.0), rtol=1e-15)


def test_exponential_keeps_its_rounding_when_the_fastmath_kernel_compiles_it_first(tmp_path):
    """Numba passes a caller's fastmath flags on to a callee that does not set its own: compiled first from the
    kernel (reassociating), ``(x/ln2 + 1.5·2^52) − 1.5·2^52`` folded to ``x/ln2`` and exp(−1) came out as 0.5 (seen in
    a fresh CI environment, where the compile order differed). A fresh process and cache, the kernel first."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np
        from immunocal.calib.gp_kernel import exp_nonpositive, gp_mean_jacobian
        rng = np.random.default_rng(0)
        X, ls, w, x = rng.random((3, 50, 4)), 0.3 + rng.random((3, 4)), rng.normal(size=(3, 50)), rng.random((5, 4))
        Xs = np.ascontiguousarray((X / ls[:, None, :]).transpose(0, 2, 1))
        means, _ = gp_mean_jacobian(x, Xs, 1 / ls, w, True)
        d = (x[None, :, None, :] - X[:, None, :, :]) / ls[:, None, None, :]
        ref = np.einsum("kmn,kn->mk", np.exp(-0.5 * (d**2).sum(-1)), w)
        print(abs(exp_nonpositive(-1.0) / np.exp(-1.0) - 1), np.abs(means - ref).max() / np.abs(ref).max())
    """)
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    exp_err, mean_err = map(float, out.split())
    assert exp_err <= 4.5e-16 and mean_err <= 1e-12


@pytest.fixture(scope="module")
def logistic_surrogate():
    fm = LogisticModel()
    X = design(fm.space(), 60, seed=4)
    sur = GPSurrogate(fm.space(), fm.observables, fm.times, n_restarts=0).fit(X, fm.simulate(X))
    sur.heldout_var_ = np.full((len(fm.observables), len(fm.times)), 0.01)
    return sur.use_variance("held_out")


def test_kernel_means_and_jacobian_are_the_gp_formulas(logistic_surrogate, rng):
    sur = logistic_surrogate
    x = rng.random((9, sur.space.dim))
    means, jac = gp_mean_jacobian(x, *sur._kernel_constants(), True)
    # the numpy prediction's component means, m = k(x, X) α
    d = (x[None, :, None, :] - sur.X_[None, None, :, :]) / sur.ls_[:, None, None, :]  # (k, m, n, p)
    kx = sur.amp_[:, None, None] * np.exp(-0.5 * (d**2).sum(-1))
    np.testing.assert_allclose(means, np.einsum("kmn,kn->mk", kx, sur.alpha_), rtol=1e-10,
                               atol=1e-12 * np.abs(means).max())
    h = 1e-6
    for q in range(x.shape[1]):
        xp, xm = x.copy(), x.copy()
        xp[:, q] += h
        xm[:, q] -= h
        fd = (gp_mean_jacobian(xp, *sur._kernel_constants(), False)[0]
              - gp_mean_jacobian(xm, *sur._kernel_constants(), False)[0]) / (2 * h)
        np.testing.assert_allclose(jac[:, :, q], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    assert gp_mean_jacobian(x, *sur._kernel_constants(), False)[1].shape == (0, 0, 0)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
def test_constant_variance_prediction_uses_the_kernel_in_both_backends(logistic_surrogate, rng, mode):
    sur = logistic_surrogate
    X = design(sur.space, 7, method="random", seed=13)
    th = pt.dmatrix("theta")
    mean, var = sur.predict_pt(th)
    w = rng.normal(size=(7, len(sur.observables), len(sur.times)))
    obj = (mean * w).sum()
    f = pytensor.function([th], [mean, var, pytensor.grad(obj, th)], mode=mode)
    m, v, g = f(X)
    np.testing.assert_allclose(m, sur.predict(X, return_var=False), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(v, np.broadcast_to(sur.heldout_var_, m.shape))
    fd = np.zeros_like(X)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            h = 1e-5 * X[i, j]
            Xp, Xm = X.copy(), X.copy()
            Xp[i, j] += h
            Xm[i, j] -= h
            fd[i, j] = ((sur.predict(Xp, return_var=False) - sur.predict(Xm, return_var=False)) * w).sum() / (2 * h)
    assert np.abs(g - fd).max() <= 1e-5 * np.abs(fd).max()
    op = gp_mean_op_class()
    assert any(isinstance(n.op, op) and n.op.with_jacobian for n in f.maker.fgraph.apply_nodes)
    # without the gradient the Jacobian is never computed (values-only rewrite)
    values = pytensor.function([th], mean, mode=mode)
    kinds = [n.op.with_jacobian for n in values.maker.fgraph.apply_nodes if isinstance(n.op, op)]
    assert kinds == [False]
    np.testing.assert_allclose(values(X), m, rtol=1e-12)


def test_op_refuses_wrong_shapes_and_second_derivatives(logistic_surrogate):
    op = gp_mean_op_class()
    Xs, inv_ls, w = logistic_surrogate._kernel_constants()
    with pytest.raises(TypeError, match="x must be 2-d"):
        op(True)(pt.dvector("x"), Xs, inv_ls, w)
    x = pt.dmatrix("x")
    _means, jac = op(True)(x, Xs, inv_ls, w)
    with pytest.raises(pytensor.gradient.DisconnectedInputError):  # the Jacobian output is not differentiable
        pytensor.grad(jac.sum(), x)
    with pytest.raises(NotImplementedError, match="has no gradient"):
        pytensor.grad(op(False)(x, Xs, inv_ls, w)[0].sum(), x)


def test_population_emulator_benchmark_reports_both_paths_and_their_agreement():
    from immunocal.calib.bench import bench_population_emulator

    res = bench_population_emulator(n_design=60, n_points=5)
    assert res["population_emulator_fused_vs_graph_grad_rel_diff"] < 1e-9
    assert res["population_emulator_5_eval_grad_fused_numba_s"] > 0
    assert res["population_emulator_speedup"] == pytest.approx(
        res["population_emulator_5_eval_grad_graph_numba_s"] / res["population_emulator_5_eval_grad_fused_numba_s"])
    assert res["population_emulator_components_runs"][1] == 48  # 80 % of the design


def test_pytensors_disk_cache_key_follows_the_kernels_source(monkeypatch, logistic_surrogate):
    """PyTensor caches a Numba-compiled Op on disk under its props and a version: the kernel source's hash, so a
    changed kernel is never served from an older compile (a stale compile of an earlier kernel gave wrong means in a
    reused compile directory)."""
    import immunocal.calib.gp_kernel as gk
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    x = pt.dmatrix("x")
    node = gp_mean_op_class()(True)(x, *logistic_surrogate._kernel_constants())[0].owner
    _, key = numba_funcify_and_cache_key(node.op, node=node)
    monkeypatch.setattr(gk, "_SOURCE_VERSION", gk._SOURCE_VERSION + 1)
    _, other = numba_funcify_and_cache_key(node.op, node=node)
    assert key is not None and key != other
