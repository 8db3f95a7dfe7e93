"""The PCA-GP emulator's mean and its Jacobian in one fused Numba pass (the hot path of a surrogate-route NUTS fit).

A GP component's mean at a point x of the unit cube is ``m(x) = Σ_t w_t exp(−½ Σ_q ((x_q − X_tq) / ℓ_q)²)`` over its
training runs t (``w = amp · α``), and ``∂m/∂x_q = Σ_t w_t e_t (X_tq − x_q) / ℓ_q²``. PyTensor's graph of the same
formulas (:meth:`immunocal.calib.surrogate.GPSurrogate.predict_pt` with the GP variance) builds several
``components × points × runs`` temporaries for the value and again for the gradient; here one loop over the runs
gives the value and the Jacobian ``(points, components, inputs)``, and the gradient of any scalar of the means is the
vector–Jacobian product (:class:`GPMeanOp`). Used when the emulator variance is a constant (``"held_out"``,
``"posterior"``): the GP variance needs ``‖L⁻¹k‖²``, O(runs²) per point, and keeps the graph.

The exponential is evaluated by :func:`exp_nonpositive` (Cody–Waite reduction by ln 2 and a degree-13 Taylor
polynomial, the power of two assembled from its bits; relative error ≤ 2e-16 against ``np.exp``, tested) because the
C library's ``exp`` is a scalar call LLVM cannot vectorise: the kernel evaluates components × points × runs of them
(95,000 for a fold of the virtual CT041 cohort) per log-density gradient.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238         # ln 2 split so that n · _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.9082149292705877e-10
_SHIFT = 6755399441055744.0          # 1.5 · 2^52: x + _SHIFT rounds x to an integer held in the low mantissa bits
_SHIFT_BITS = 0x4338000000000000     # its bit pattern
_SOURCE_VERSION = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12], 16)
_TAYLOR = tuple(1.0 / np.prod(np.arange(1, k + 1, dtype=float)) for k in range(13, -1, -1))  # 1/13!, …, 1/0!


@intrinsic
def _bits_of(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a bitcast LLVM vectorises)."""
    from llvmlite import ir

    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _float_of(typingctx, bits):
    """The float64 with the given IEEE-754 bits."""
    from llvmlite import ir

    if bits != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(cache=True, fastmath=False)  # explicit: a fastmath caller would pass its flags on (reassociation undoes the reduction)
def exp_nonpositive(x: float) -> float:
    """``exp(x)`` for ``x ≤ 0`` (an RBF kernel's argument); arguments below −700 give ``exp(−700)`` ≈ 1e-304 (a
    kernel weight that cannot matter; it keeps 2^n normal)."""
    x = max(x, -700.0)
    kd = x * _INV_LN2 + _SHIFT
    n = kd - _SHIFT                       # round(x / ln 2)
    r = (x - n * _LN2_HI) - n * _LN2_LO   # |r| ≤ ln2 / 2
    p = _TAYLOR[0]                        # Horner, written out: a loop over the tuple measured 2x slower
    p = p * r + _TAYLOR[1]
    p = p * r + _TAYLOR[2]
    p = p * r + _TAYLOR[3]
    p = p * r + _TAYLOR[4]
    p = p * r + _TAYLOR[5]
    p = p * r + _TAYLOR[6]
    p = p * r + _TAYLOR[7]
    p = p * r + _TAYLOR[8]
    p = p * r + _TAYLOR[9]
    p = p * r + _TAYLOR[10]
    p = p * r + _TAYLOR[11]
    p = p * r + _TAYLOR[12]
    p = p * r + _TAYLOR[13]
    k = _bits_of(kd) - _SHIFT_BITS        # the integer n
    return p * _float_of((k + 1023) << 52)


@njit(cache=True, fastmath=False)
def _weights(Xs, xs, w, e):
    """``e[t] = w[t] · exp(−½ ‖Xs[:, t] − xs‖²)`` over the runs t (one component, one point)."""
    p, n = Xs.shape
    for t in range(n):
        e[t] = 0.0
    for q in range(p):
        xq = xs[q]
        for t in range(n):
            d = Xs[q, t] - xq
            e[t] += d * d
    for t in range(n):
        e[t] = w[t] * exp_nonpositive(-0.5 * e[t])


@njit(cache=True, fastmath=False)
def _sum(e):
    """``Σ_t e[t]`` in four interleaved partial sums: a fixed order (no fastmath reassociation) that LLVM still
    vectorises — one running sum is a chain of dependent scalar additions (the kernel took 1.7x as long)."""
    n = e.size
    n4 = n - n % 4
    s0 = s1 = s2 = s3 = 0.0
    for t in range(0, n4, 4):
        s0 += e[t]
        s1 += e[t + 1]
        s2 += e[t + 2]
        s3 += e[t + 3]
    for t in range(n4, n):
        s0 += e[t]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, fastmath=False)
def _dot_centred(e, X, c):
    """``Σ_t e[t] · (X[t] − c)``, summed as :func:`_sum`."""
    n = e.size
    n4 = n - n % 4
    g0 = g1 = g2 = g3 = 0.0
    for t in range(0, n4, 4):
        g0 += e[t] * (X[t] - c)
        g1 += e[t + 1] * (X[t + 1] - c)
        g2 += e[t + 2] * (X[t + 2] - c)
        g3 += e[t + 3] * (X[t + 3] - c)
    for t in range(n4, n):
        g0 += e[t] * (X[t] - c)
    return (g0 + g1) + (g2 + g3)


@njit(cache=True, fastmath=False)
def gp_mean_jacobian(x, Xs, inv_ls, w, with_jacobian):
    """Means ``(m, k)`` of ``k`` GP components at ``m`` points ``x`` ``(m, p)`` of the unit cube and, with
    ``with_jacobian``, their Jacobian ``(m, k, p)`` (else ``(0, 0, 0)``). ``Xs`` ``(k, p, n)``: each component's
    training inputs divided by its length scales (runs contiguous); ``inv_ls`` ``(k, p)``; ``w`` ``(k, n)`` = amp · α
    (zero for a padded run)."""
    m, p = x.shape
    k, _, n = Xs.shape
    means = np.zeros((m, k))
    jac = np.zeros((m, k, p)) if with_jacobian else np.zeros((0, 0, 0))
    e = np.empty(n)
    xs = np.empty(p)
    for j in range(k):
        for i in range(m):
            for q in range(p):
                xs[q] = x[i, q] * inv_ls[j, q]
            _weights(Xs[j], xs, w[j], e)
            means[i, j] = _sum(e)
            if with_jacobian:
                for q in range(p):
                    jac[i, j, q] = _dot_centred(e, Xs[j, q], xs[q]) * inv_ls[j, q]
    return means, jac


@functools.cache
def gp_mean_op_class():
    """:class:`GPMeanOp` (built on first use: PyTensor is imported lazily)."""
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
    from pytensor.tensor.rewriting.basic import register_specialize

    class GPMeanOp(Op):
        """``(x (m, p), Xs (k, p, n), inv_ls (k, p), w (k, n)) -> [means (m, k), jacobian (m, k, p)]``
        (:func:`gp_mean_jacobian`); ``with_jacobian = False``: the values only (the Jacobian output is empty).
        Differentiable in ``x`` only, once: the gradient of a scalar of the means is ``Σ_k ḡ[m, k] J[m, k, :]``."""

        __props__ = ("with_jacobian",)

        def __init__(self, with_jacobian: bool = True):
            self.with_jacobian = bool(with_jacobian)

        def make_node(self, x, Xs, inv_ls, w):
            ins = [pt.as_tensor_variable(v, dtype="float64") for v in (x, Xs, inv_ls, w)]
            for v, nd, name in zip(ins, (2, 3, 2, 2), ("x", "Xs", "inv_ls", "w")):
                if v.ndim != nd:
                    raise TypeError(f"GPMeanOp: {name} must be {nd}-d, got {v.ndim}-d")
            return Apply(self, ins, [pt.matrix(dtype="float64"), pt.tensor3(dtype="float64")])

        def perform(self, node, inputs, outputs):
            means, jac = gp_mean_jacobian(*[np.ascontiguousarray(v, np.float64) for v in inputs], self.with_jacobian)
            outputs[0][0], outputs[1][0] = means, jac

        def infer_shape(self, fgraph, node, shapes):
            (m, p), (k, _, _) = shapes[0], shapes[1]
            return [(m, k), (m, k, p) if self.with_jacobian else (0, 0, 0)]

        def grad(self, inputs, output_grads):
            from pytensor.gradient import DisconnectedType, disconnected_type

            if not self.with_jacobian:
                raise NotImplementedError("GPMeanOp(with_jacobian=False) has no gradient")
            g_means, g_jac = output_grads
            if not isinstance(g_jac.type, DisconnectedType):
                raise NotImplementedError("no second derivatives: the Jacobian output is not differentiable")
            jac = self(*inputs)[1]
            return [pt.sum(g_means[:, :, None] * jac, axis=1), disconnected_type(), disconnected_type(),
                    disconnected_type()]

        def connection_pattern(self, node):
            return [[True, False], [False, False], [False, False], [False, False]]

    @register_funcify_default_op_cache_key(GPMeanOp)
    def _numba_gp_mean(op, node=None, **kwargs):
        with_jacobian = op.with_jacobian

        @njit(fastmath=False)  # PyTensor's graph is compiled with fastmath: explicit, so it is not passed on
        def gp_mean(x, Xs, inv_ls, w):
            return gp_mean_jacobian(np.ascontiguousarray(x), Xs, inv_ls, w, with_jacobian)

        # PyTensor caches the compiled function on disk under the Op's props and this version: the source's hash,
        # so a changed kernel is never served from an older compile
        return gp_mean, _SOURCE_VERSION

    @register_specialize
    @node_rewriter([GPMeanOp])
    def local_gp_mean_values_only(fgraph, node):
        """A function that reads the means but not the Jacobian (a log density without its gradient, predictive
        draws) skips the Jacobian."""
        if not node.op.with_jacobian or fgraph.clients.get(node.outputs[1]):
            return None
        return {node.outputs[0]: GPMeanOp(False)(*node.inputs)[0]}

    return GPMeanOp
