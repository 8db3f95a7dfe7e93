"""The RIT model as a calibration simulator: a batch of parameter vectors × one condition → log tumour volume.

The simulator protocol (the calibration layer's ``calib.forward_api.ForwardModel``): ``name``,
``parameter_names`` (the columns of ``theta``), ``observables``, ``times`` and ``simulate(theta, condition)`` with
shape ``(n, len(observables), len(times))``. The object is rebuilt in campaign workers from a serialisable descriptor
(this class's import path + its keyword arguments), so workers never re-read data files.

Time: data days count from inoculation (or any origin of the data set); the model's day 0 — the day the tumour
reaches its pre-treatment volume — sits at data day ``day_offset``. Data days before it (pre-treatment measurements)
are read off the untreated free-growth phase that precedes day 0 in the model. The condition (a conditions-table row, data days)
becomes a :class:`~forward.rit.Schedule` through :meth:`Schedule.from_condition` (several drugs; unknown keys refused).
Parameters not in ``parameter_names`` keep the values of the registry preset ``preset``. ``parameter_names`` may
include :data:`PRETREATMENT_VOLUME` — the volume that defines model day 0, a setting of the run rather than a registry
parameter — so that a calibration can make it per-animal (a latent) instead of one value for all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_VOLUME = "log_volume"
#: the pseudo-parameter for a per-row pre-treatment volume (mm³)
PRETREATMENT_VOLUME = "pretreatment_volume_mm3"
#: volumes below this (mm³; a controlled tumour keeps ~1 cell) are floored before taking logs
VOLUME_FLOOR_MM3 = 1e-6


@dataclass
class RitSimulator:
    """Log tumour volume of the RIT model (seed 002) on a daily grid of data days."""

    preset: str = "dewan_table3"
    parameter_names: tuple[str, ...] = ("tumour_proliferation_rate", "immune_kill_rate", "tumour_alpha")
    data_days: tuple[float, float] = (7.0, 121.0)
    day_offset: float = 7.0
    pretreatment_volume_mm3: float | None = None
    name: str = "rit"
    observables: tuple[str, ...] = (LOG_VOLUME,)

    def __post_init__(self):
        self.parameter_names = tuple(self.parameter_names)
        self.observables = tuple(self.observables)
        lo, hi = (float(v) for v in self.data_days)
        if not hi > lo:
            raise ValueError(f"data_days must be an increasing pair, got {self.data_days}")
        if self.observables != (LOG_VOLUME,):
            raise ValueError(f"the RIT simulator emits only {LOG_VOLUME!r}, not {list(self.observables)}")
        if self.pretreatment_volume_mm3 is not None and not self.pretreatment_volume_mm3 > 0:
            raise ValueError(f"pretreatment_volume_mm3 must be > 0, got {self.pretreatment_volume_mm3}")
        self.times = np.arange(lo, hi + 0.5, 1.0)  # data days, daily grid

    def config(self):
        from .model import RitConfig

        over = {} if self.pretreatment_volume_mm3 is None else {"pretreatment_volume_mm3": self.pretreatment_volume_mm3}
        return RitConfig.from_preset(self.preset, **over)

    @property
    def numerics_tag(self) -> str:
        """The time-integration settings (scheme, step, kernel revision): part of every campaign's identity."""
        return self.config().numerics_tag

    def simulate(self, theta: np.ndarray, condition: dict | None = None) -> np.ndarray:
        from .model import simulate_volumes_batch
        from .schedule import Schedule

        theta = np.atleast_2d(np.asarray(theta, float))
        t_model = self.times - self.day_offset  # negative before day 0: the free-growth phase
        schedule = Schedule.from_condition(condition or {}, self.day_offset, max(float(t_model[-1]), 0.0) + 1.0)
        if PRETREATMENT_VOLUME in self.parameter_names:  # one run per row, each with its own day-0 volume
            from dataclasses import replace

            j = self.parameter_names.index(PRETREATMENT_VOLUME)
            names = [n for n in self.parameter_names if n != PRETREATMENT_VOLUME]
            rest = np.delete(theta, j, axis=1)
            if np.any(~(theta[:, j] > 0)):
                raise ValueError(f"{PRETREATMENT_VOLUME} must be > 0, got {theta[~(theta[:, j] > 0), j][0]}")
            parts = [simulate_volumes_batch(self.preset, names, rest[i:i + 1], schedule, t_model,
                                            replace(self.config(), pretreatment_volume_mm3=float(theta[i, j])))
                     for i in range(len(theta))]
            vols, ok = np.vstack([v for v, _ in parts]), np.concatenate([o for _, o in parts])
        else:
            vols, ok = simulate_volumes_batch(self.preset, self.parameter_names, theta, schedule, t_model,
                                              self.config())
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(np.maximum(vols, VOLUME_FLOOR_MM3))
        out[~ok] = np.nan
        return out[:, None, :]
