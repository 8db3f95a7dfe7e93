"""The RIT model as a calibration simulator: a batch of parameter vectors × one condition → log tumour volume.

The simulator protocol (the calibration layer's ``immunocal.calib.forward_api.ForwardModel``): ``name``,
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

import functools
import json
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
    dt: float | None = None
    substeps: int | None = None
    name: str = "rit"
    observables: tuple[str, ...] = (LOG_VOLUME,)
    #: simulate / simulate_jacobian take ``until`` (one last needed data day per row; forward protocol)
    supports_until = True

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
        self.config()  # dt and substeps are validated by RitConfig (named errors)
        self.times = np.arange(lo, hi + 0.5, 1.0)  # data days, daily grid

    def config(self):
        """The preset's :class:`~forward.rit.RitConfig` with this simulator's settings (``None`` keeps the preset's:
        the converged default grid dt = 0.05 d x 4 substeps, docs/rit.md)."""
        return _config(self.preset, self.pretreatment_volume_mm3, self.dt, self.substeps)

    def refined(self) -> RitSimulator:
        """The same simulator on half the grid step ``dt`` (same substeps per step): every step of the scheme halves
        — the substep, and the untreated free-growth step (``FREE_GROWTH_STEP_FACTOR dt``), which doubling the
        substeps alone would leave untouched. The workflow's resolution checks walk this ladder
        (``immunocal.calib.workflow.Calibration.numerics_check``, ``prediction_numerics_check``)."""
        from dataclasses import replace

        cfg = self.config()
        return replace(self, dt=cfg.dt / 2, substeps=cfg.substeps)

    @property
    def numerics_tag(self) -> str:
        """The time-integration settings (scheme, step, kernel revision): part of every campaign's identity."""
        return self.config().numerics_tag

    def warm_up(self, jacobian: bool = False) -> None:
        """Compile (or load from Numba's on-disk cache) the kernel specialisation :meth:`simulate` runs
        (:meth:`simulate_jacobian`'s when ``jacobian``): one run of the preset's values to one day after day 0 (the
        forward protocol's warm-up; ``immunocal.calib.forward_api.compile_in_background`` calls it in a separate
        process)."""
        from immunocal.priors import registry

        ps = registry().parameter_set("rit", self.preset)
        theta = np.array([[self.config().pretreatment_volume_mm3 if n == PRETREATMENT_VOLUME else ps[n]
                           for n in self.parameter_names]])
        until = np.array([self.day_offset + 1.0])
        if jacobian:
            self.simulate_jacobian(theta, {}, until=until)
        else:
            self.simulate(theta, {}, until=until)

    def simulate(self, theta: np.ndarray, condition: dict | None = None, until=None) -> np.ndarray:
        """Log volumes ``(n, 1, len(times))``; ``until`` (n,): each row simulated only up to that data day (later
        outputs hold the value there: finite, not the model's — for callers that read no later time)."""
        return self._log_volumes(theta, condition, jacobian=False, until=until)[0]

    def simulate_jacobian(self, theta: np.ndarray, condition: dict | None = None,
                          until=None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`simulate` and its exact Jacobian ``(n, 1, len(times), len(parameter_names))``: the kernel's
        forward-mode tangents (the derivative of the discretisation itself, to round-off), 0 where the volume is
        floored (the ``exact`` emulator's gradient; docs/rit.md "Exact sensitivities")."""
        return self._log_volumes(theta, condition, jacobian=True, until=until)

    def _log_volumes(self, theta, condition, jacobian: bool, until=None):
        from .model import simulate_volumes_batch

        theta = np.atleast_2d(np.asarray(theta, float))
        t_model = self.times - self.day_offset  # negative before day 0: the free-growth phase
        schedule = _schedule(condition, self.day_offset, max(float(t_model[-1]), 0.0) + 1.0)
        names, v_pre = list(self.parameter_names), None
        if PRETREATMENT_VOLUME in names:  # each row its own day-0 volume (the last Jacobian column of the batch)
            j = names.index(PRETREATMENT_VOLUME)
            v_pre = theta[:, j]
            if np.any(~(v_pre > 0)):
                raise ValueError(f"{PRETREATMENT_VOLUME} must be > 0, got {v_pre[~(v_pre > 0)][0]}")
            names.pop(j)
            theta = np.delete(theta, j, axis=1)
        horizons = None
        if until is not None:
            until = np.asarray(until, float).reshape(-1)
            if until.shape != (theta.shape[0],) or not np.all(np.isfinite(until)):
                raise ValueError(f"until must hold one finite data day per row ({theta.shape[0]}), got {until!r}")
            horizons = until - self.day_offset
        res = simulate_volumes_batch(self.preset, names, theta, schedule, t_model, self.config(),
                                     pretreatment_volumes=v_pre, jacobian=jacobian, horizons=horizons)
        vols = res[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(np.maximum(vols, VOLUME_FLOOR_MM3))
        out[~res[1]] = np.nan
        if not jacobian:
            return out[:, None, :], None
        jac = np.where((vols > VOLUME_FLOOR_MM3)[..., None], res[2] / vols[..., None], 0.0)
        if v_pre is not None:  # back to the simulator's column order
            jac = np.insert(jac[..., :-1], self.parameter_names.index(PRETREATMENT_VOLUME), jac[..., -1], axis=-1)
        jac[~res[1]] = np.nan
        return out[:, None, :], jac[:, None, :, :]


@functools.lru_cache(maxsize=64)
def _config(preset: str, pretreatment_volume_mm3, dt, substeps):
    """The preset's :class:`~forward.rit.RitConfig` with a simulator's settings (``None`` keeps the preset's), built
    once per settings: a likelihood asks for it for every arm at every gradient."""
    from .model import RitConfig

    over = {key: value for key, value in (("pretreatment_volume_mm3", pretreatment_volume_mm3), ("dt", dt),
                                          ("substeps", substeps)) if value is not None}
    return RitConfig.from_preset(preset, **over)


_SCHEDULES: dict = {}


def _jsonable(value):
    """A table cell JSON cannot write (NumPy arrays and scalars) as its full value — never a truncated repr."""
    return value.tolist() if hasattr(value, "tolist") else repr(value)


def _schedule(condition: dict | None, day_offset: float, t_end: float):
    """:meth:`~forward.rit.Schedule.from_condition` of a conditions-table row, remembered by the row's content (its
    JSON; schedules are immutable): a likelihood builds the same few schedules at every gradient (~50 µs each)."""
    from .schedule import Schedule

    key = (json.dumps(condition or {}, sort_keys=True, default=_jsonable), float(day_offset), float(t_end))
    schedule = _SCHEDULES.get(key)
    if schedule is None:
        if len(_SCHEDULES) >= 4096:  # bounded: a design of many conditions keeps the most recent ones
            _SCHEDULES.clear()
        schedule = _SCHEDULES[key] = Schedule.from_condition(condition or {}, day_offset, t_end)
    return schedule
