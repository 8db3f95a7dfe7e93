"""Parameter registry, priors and bounded transforms — the one source of truth for parameter values.

``priors`` imports neither PyMC nor Numba at import time; ``forward`` and ``calib`` build on it.
"""

from .errors import (
    ParameterError,
    ParameterFileError,
    ParameterRangeError,
    UnknownParameterError,
)
from .prior import Prior, default_prior
from .registry import ParameterRecord, ParameterSet, Registry, read_parameter_file, registry
from .transforms import bounded_expit, bounded_logit, project

__all__ = [
    "ParameterError",
    "ParameterFileError",
    "ParameterRangeError",
    "ParameterRecord",
    "ParameterSet",
    "Prior",
    "Registry",
    "UnknownParameterError",
    "bounded_expit",
    "bounded_logit",
    "default_prior",
    "project",
    "read_parameter_file",
    "registry",
]
