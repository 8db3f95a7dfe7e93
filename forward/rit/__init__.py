"""Forward model B: radioimmunotherapy impulsive delay-differential model of seed 002 (RT + anti-PD-L1/anti-CTLA-4).

Modules: :mod:`.radiobiology` (LQ / modified LQ / LQL, BED, iso-BED), :mod:`.schedule` (validated treatment
schedule), :mod:`.kernels` (Numba kernels: exponential midpoint rule, the seed's explicit Euler), :mod:`.model` (simulation API and the calibration hook
:func:`simulate_volumes`), :mod:`.tcp` (Markov mode, population TCP), :mod:`.analysis` (AICc, sensitivity index).
Equations and discretisation choices: docs/rit.md.
"""

from .model import (
    EulerInstabilityError,
    FreeGrowthError,
    RitConfig,
    RitResult,
    StepSizeError,
    parameter_array,
    simulate,
    simulate_volumes,
    simulate_volumes_batch,
    step_error_estimate,
)
from .radiobiology import bed, iso_bed_dose, iso_bed_schedule, survival_lq, survival_lql, survival_modified_lq
from .schedule import Schedule

__all__ = [
    "EulerInstabilityError",
    "FreeGrowthError",
    "RitConfig",
    "RitResult",
    "Schedule",
    "StepSizeError",
    "bed",
    "iso_bed_dose",
    "iso_bed_schedule",
    "parameter_array",
    "simulate",
    "simulate_volumes",
    "simulate_volumes_batch",
    "step_error_estimate",
    "survival_lq",
    "survival_lql",
    "survival_modified_lq",
]
