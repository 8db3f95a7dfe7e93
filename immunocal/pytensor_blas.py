"""PyTensor's C backend linked to a real BLAS: the OpenBLAS of the ``scipy-openblas32`` wheel (the build numpy and
scipy ship, with 32-bit integers as PyTensor's BLAS calls declare them).

Without it PyTensor probes the system for a BLAS at its first C compilation, finds none on a pip-only machine (numpy's
own OpenBLAS exports its symbols with a ``scipy_`` prefix), warns "could not link to a BLAS installation" and falls
back to NumPy's C API for its BLAS ops. Here its link flags name the wheel's library (with an rpath) and its compile
flags map each BLAS symbol PyTensor's C code uses to the library's prefixed name (``-Ddgemm_=scipy_dgemm_``), so
``CGemv``/``Dot22`` call OpenBLAS directly. A user's own ``blas__ldflags`` (``PYTENSOR_FLAGS`` or ``.pytensorrc``)
always wins; outside Linux nothing is changed (PyTensor then probes and warns as before).
Measured: ``immunocal bench calib`` (its ``surrogate_*`` entries) before/after, docs/calib.md "Numerical stack".
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: the BLAS routines PyTensor's C code declares (pytensor/tensor/blas_headers.py)
PYTENSOR_BLAS_SYMBOLS = tuple(f"{t}{r}_" for t in "sdcz" for r in (
    "axpy", "copy", "gemm", "gemv", "scal", "swap", "symm", "syr2k", "syrk", "trmm", "trsm")) + tuple(
    f"{t}{r}_" for t, r in (("s", "dot"), ("d", "dot"), ("s", "ger"), ("d", "ger"), ("s", "rot"), ("d", "rot"),
                            ("c", "gerc"), ("c", "geru"), ("z", "gerc"), ("z", "geru"), ("c", "hemm"),
                            ("c", "herk"), ("z", "hemm"), ("z", "herk")))


def openblas_flags() -> tuple[str, str] | None:
    """``(blas__ldflags, gcc__cxxflags additions)`` for the scipy-openblas32 wheel, or None when it is not installed
    or not on Linux. The symbol prefix is read from the library itself (``scipy_dgemm_`` or ``dgemm_``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import scipy_openblas32
    except ImportError:
        return None
    lib_dir = Path(scipy_openblas32.get_lib_dir())
    lib = ctypes.CDLL(str(lib_dir / scipy_openblas32.get_library(fullname=True)))
    prefix = next((p for p in ("scipy_", "") if hasattr(lib, f"{p}dgemm_")), None)
    if prefix is None:
        raise RuntimeError(f"{lib_dir}: the scipy-openblas32 library exports no dgemm_ (with or without the scipy_ "
                           "prefix); cannot link PyTensor to it")
    # no commas: PYTENSOR_FLAGS separates its entries by commas
    ldflags = f"-L{lib_dir} -l{scipy_openblas32.get_library()} -Xlinker -rpath -Xlinker {lib_dir}"
    defines = " ".join(f"-D{s}={prefix}{s}" for s in PYTENSOR_BLAS_SYMBOLS) if prefix else ""
    return ldflags, defines


def configure() -> None:
    """Give PyTensor the wheel's BLAS unless the user configured one (environment, ``.pytensorrc``) — before PyTensor
    is imported (through ``PYTENSOR_FLAGS``), or on its live config when it already is."""
    user = os.environ.get("PYTENSOR_FLAGS", "")
    rc = os.environ.get("PYTENSORRC", str(Path.home() / ".pytensorrc"))
    if "blas__ldflags" in user or any(Path(p).is_file() and "ldflags" in Path(p).read_text(errors="replace")
                                      for p in rc.split(os.pathsep)):
        return
    flags = openblas_flags()
    if flags is None:
        return
    ldflags, defines = flags
    if "pytensor" in sys.modules:
        from pytensor import config

        config.blas__ldflags = ldflags
        if defines and defines not in config.gcc__cxxflags:
            config.gcc__cxxflags = f"{config.gcc__cxxflags} {defines}".strip()
        return
    entries = [e for e in user.split(",") if e and not e.startswith("gcc__cxxflags=")]
    cxx = next((e.split("=", 1)[1] for e in user.split(",") if e.startswith("gcc__cxxflags=")), "")
    entries.append(f"blas__ldflags={ldflags}")
    if defines:
        entries.append(f"gcc__cxxflags={(cxx + ' ' + defines).strip()}")
    os.environ["PYTENSOR_FLAGS"] = ",".join(entries)
