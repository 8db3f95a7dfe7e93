"""PyTensor's C backend is linked to a real BLAS (the scipy-openblas32 wheel, immunocal/pytensor_blas.py) instead of
warning "could not link to a BLAS installation" and falling back to NumPy's C API (issue "Hardening", §4); a user's
own BLAS setting wins."""

import os
import subprocess
import sys

import numpy as np

import immunocal  # noqa: F401  (configures PyTensor before it is imported)
from immunocal.pytensor_blas import PYTENSOR_BLAS_SYMBOLS, openblas_flags


def test_the_wheels_openblas_exports_every_symbol_pytensor_calls():
    import ctypes

    import scipy_openblas32

    ldflags, defines = openblas_flags()
    lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True)))
    for name in PYTENSOR_BLAS_SYMBOLS:
        target = next(d.split("=", 1)[1] for d in defines.split() if d.startswith(f"-D{name}="))
        assert hasattr(lib, target), target
    assert "-lscipy_openblas" in ldflags and "," not in ldflags  # PYTENSOR_FLAGS separates entries by commas


def test_blas_ops_compile_against_openblas_and_agree_with_numpy():
    import pytensor
    import pytensor.tensor as pt

    assert "scipy_openblas" in pytensor.config.blas__ldflags
    a, x, b = pt.matrix("a"), pt.vector("x"), pt.matrix("b")
    f = pytensor.function([a, x, b], [pt.dot(a, x), pt.dot(a, b)], mode="FAST_RUN")
    ops = {type(node.op).__name__ for node in f.maker.fgraph.apply_nodes}
    assert ops & {"CGemv", "Gemv"} and ops & {"Dot22", "Gemm"}, ops
    rng = np.random.default_rng(0)
    av, xv, bv = rng.normal(size=(7, 5)), rng.normal(size=5), rng.normal(size=(5, 3))
    y, z = f(av, xv, bv)
    np.testing.assert_allclose(y, av @ xv, rtol=1e-12)
    np.testing.assert_allclose(z, av @ bv, rtol=1e-12)


def _fresh(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_no_blas_warning_and_a_users_setting_wins(tmp_path):
    code = ("import immunocal.calib, pytensor, pytensor.tensor as pt; a = pt.matrix('a'); "
            "pytensor.function([a], pt.dot(a, a))([[1.0]]); print(pytensor.config.blas__ldflags)")
    env = {"PYTENSORRC": str(tmp_path / "none"), "PYTENSOR_FLAGS": f"compiledir={tmp_path / 'c'}"}
    ours = _fresh(code, env)
    assert ours.returncode == 0, ours.stderr
    assert "scipy_openblas" in ours.stdout and "BLAS" not in ours.stderr
    theirs = _fresh("import immunocal, pytensor; print(pytensor.config.blas__ldflags)",
                    {**env, "PYTENSOR_FLAGS": "blas__ldflags=-lmyblas"})
    assert theirs.stdout.strip() == "-lmyblas"
