"""immunocal — uncertainty-aware Bayesian calibration of mechanistic tumour–immune therapy models.

The repository's folders install as subpackages of this namespace (``pyproject.toml``, ``[tool.setuptools.package-dir]``):

* :mod:`immunocal.forward` — the Numba forward models (``forward/``: CAR-T ``cart``, radioimmunotherapy ``rit``,
  draining lymph node ``dln``);
* :mod:`immunocal.priors` — the parameter registry, priors and transforms (``priors/``);
* :mod:`immunocal.calib` — the calibration layer: campaigns, emulators, likelihoods, sampling, prediction,
  diagnostics, the workflow and the ``immunocal`` command line (``calib/``);
* :mod:`immunocal.studies` — one short script per study (``studies/``), run by ``immunocal study NAME``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("immunocal")
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

from .pytensor_blas import configure as _configure_pytensor_blas

_configure_pytensor_blas()
