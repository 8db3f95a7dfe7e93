"""Python API of the radioimmunotherapy model (seed 002): configuration, simulation, volumes for calibration.

Typical use::

    from immunocal.priors import registry
    from immunocal.forward.rit import Schedule, simulate, simulate_volumes

    ps = registry().parameter_set("rit", "dewan_table3")
    sched = Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=30)
    res = simulate(ps, sched)              # RitResult: every state on the Euler grid, day 0 = pre-treatment volume
    v = simulate_volumes(ps, sched, [0, 3, 6, 9, 12])   # mm^3 at the requested days
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from immunocal.forward.errors import SimulationError
from immunocal.priors import ParameterSet, registry

from . import kernels as K
from .kernels import N_STATES as N_STATE_COLUMNS
from .schedule import Schedule

__all__ = [
    "MODEL",
    "EulerInstabilityError",
    "FreeGrowthError",
    "RitConfig",
    "RitResult",
    "StepSizeError",
    "parameter_array",
    "simulate",
    "simulate_volumes",
    "simulate_volumes_batch",
    "step_error_estimate",
]

MODEL = "rit"
DEFAULT_DT = 0.05
#: integration substeps per dt step of the treatment phase (the exponential scheme's converged default, docs/rit.md)
DEFAULT_SUBSTEPS = 4
#: revision of the kernel's numerics (2: exponential midpoint rule with cumulative histories; 1 was IMEX Euler)
KERNEL_REVISION = 2
#: free growth (untreated, non-stiff; pure growth is integrated exactly) steps with this multiple of dt under the
#: exponential scheme
FREE_GROWTH_STEP_FACTOR = 10
#: time-integration schemes: the default exponential midpoint rule and the seed's literal explicit Euler
SCHEMES = ("exponential", "explicit")
MAX_FREE_GROWTH_DAYS = 2000.0


class EulerInstabilityError(SimulationError, ValueError):
    """An explicit Euler step drove a population negative (rate x dt > 1): the step is too large."""


class StepSizeError(ValueError):
    """The requested time step needs more memory than allowed (known before anything is allocated)."""


#: largest working memory one deterministic run may ask for (recorded states + delay histories); override with the
#: environment variable IMMUNOCAL_RIT_MAX_BYTES
MAX_RUN_BYTES = 2 * 1024**3
#: relative error of V above 1 mm^3 beyond which the step-doubling estimate warns
STEP_ERROR_TOLERANCE = 0.01


def run_memory_bytes(config: RitConfig, schedule: Schedule, n_fractions: int, record: bool = True) -> int:
    """Bytes one run allocates: recorded states (if ``record``) and the two cumulative delay histories."""
    n_steps = int(round(schedule.t_end / config.dt))
    hist = 2 * (n_steps * config.substeps + 1 + int(5.0 / (config.dt / config.substeps)) + 3)
    states = (n_steps + 1) * (N_STATE_COLUMNS + n_fractions) if record else 0
    return 8 * (hist + states)


def _check_memory(config: RitConfig, schedule: Schedule, n_fractions: int, record: bool = True) -> None:
    import os

    need = run_memory_bytes(config, schedule, n_fractions, record)
    limit = int(os.environ.get("IMMUNOCAL_RIT_MAX_BYTES", MAX_RUN_BYTES))
    if need > limit:
        raise StepSizeError(
            f"dt = {config.dt:g} d with {config.substeps} substep(s) over {schedule.t_end:g} days needs "
            f"{need / 1024**3:.3g} GiB (limit {limit / 1024**3:.3g} GiB, IMMUNOCAL_RIT_MAX_BYTES); "
            "use a larger dt (the default 0.05 d with 4 substeps is converged, docs/rit.md)"
        )


class FreeGrowthError(SimulationError, ValueError):
    """The untreated tumour never reaches the pre-treatment volume that defines day 0."""


@dataclass(frozen=True)
class RitConfig:
    """Non-parameter settings: survival model, vascular damage switch, pre-treatment volume, numerics.

    ``scheme``: ``"exponential"`` (default) — exponential midpoint rule: second order, positivity preserving, exact
    in the stiff limit of the T-cell activation term ``(a + b') A^ T^``, mass-consistent transfer T^ -> T^_a -> T_a
    (see docs/rit.md, "Time integration"); ``"explicit"`` — plain explicit Euler as printed in the seed, which at
    dt = 0.05 d is unstable for the seed's own parameters.
    ``on_negative`` (explicit scheme only): when a step makes a population negative — ``"raise"`` (default,
    :class:`EulerInstabilityError`) or ``"clip"`` (set it to 0, count the events in ``RitResult.info``).
    """

    survival: str = "lq"
    vascular_damage: bool = False
    pretreatment_volume_mm3: float = 32.0
    dt: float = DEFAULT_DT
    substeps: int | None = None
    markov_threshold: float = 1000.0
    on_negative: str = "raise"
    scheme: str = "exponential"

    def __post_init__(self):
        if self.survival not in K.SURVIVAL_CODES:
            raise ValueError(
                f"unknown survival model '{self.survival}'; choose one of {sorted(K.SURVIVAL_CODES)}"
            )
        dt = float(self.dt)
        if not math.isfinite(dt) or dt <= 0 or dt > 1.0:
            raise ValueError(f"time step dt must be in (0, 1] day, got {self.dt!r}")
        if self.substeps is None:  # the seed's literal scheme is one Euler step per dt
            object.__setattr__(self, "substeps", DEFAULT_SUBSTEPS if self.scheme == "exponential" else 1)
        if isinstance(self.substeps, bool) or not isinstance(self.substeps, (int, np.integer)) or self.substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {self.substeps!r}")
        v = float(self.pretreatment_volume_mm3)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"pre-treatment volume must be a positive number of mm^3, got {self.pretreatment_volume_mm3!r}"
            )
        if not (math.isfinite(self.markov_threshold) and self.markov_threshold >= 0):
            raise ValueError(
                f"markov_threshold must be a finite number of cells >= 0, got {self.markov_threshold!r}"
            )
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.on_negative not in ("raise", "clip"):
            raise ValueError(f"on_negative must be 'raise' or 'clip', got {self.on_negative!r}")

    @property
    def free_growth_step(self) -> float:
        """Step of the untreated free-growth phase: ``FREE_GROWTH_STEP_FACTOR dt`` (exponential), ``dt`` (explicit)."""
        return self.dt * (FREE_GROWTH_STEP_FACTOR if self.scheme == "exponential" else 1)

    @property
    def numerics_tag(self) -> str:
        """Identifies the numerics a result was computed with (scheme, grid, substeps, kernel revision): stored
        artefacts (campaigns, fit checkpoints) are keyed by it, so results of another scheme are never reused."""
        return f"{self.scheme}-dt{self.dt:g}x{self.substeps}-k{KERNEL_REVISION}"

    @property
    def max_free_steps(self) -> int:
        return int(math.ceil(MAX_FREE_GROWTH_DAYS / self.free_growth_step))

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> RitConfig:
        """Settings of a registry preset (``survival``, ``vascular_damage``, ``pretreatment_volume_mm3``)."""
        opts = registry().preset_options(MODEL, preset)
        base = {k: opts[k] for k in ("survival", "vascular_damage", "pretreatment_volume_mm3") if k in opts}
        base.update(overrides)
        return cls(**base)


def _as_parameter_set(params) -> ParameterSet:
    if isinstance(params, ParameterSet):
        if params.model != MODEL:
            raise ValueError(f"parameter set is for model '{params.model}', not '{MODEL}'")
        return params
    if isinstance(params, str):
        return _preset_parameter_set(registry(), params)
    raise TypeError("params must be a priors.ParameterSet of model 'rit' or a preset name")


@functools.lru_cache(maxsize=64)
def _preset_parameter_set(reg, preset: str) -> ParameterSet:
    """A preset's (immutable) parameter set, built once per registry: validating every value costs ~50 µs, which a
    likelihood evaluating four arms per gradient paid eight times."""
    return reg.parameter_set(MODEL, preset)


@functools.lru_cache(maxsize=64)
def _preset_theta(reg, preset: str) -> np.ndarray:
    """A preset's kernel parameter vector (read, never written: callers copy it)."""
    return parameter_array(_preset_parameter_set(reg, preset))


def parameter_array(params) -> np.ndarray:
    """The kernel parameter vector (order :data:`immunocal.forward.rit.kernels.PARAM_NAMES`) of a validated parameter set."""
    ps = _as_parameter_set(params)
    theta = ps.as_array(K.PARAM_NAMES)
    _check_consistency(theta)
    return theta


def _check_consistency(theta: np.ndarray) -> None:
    if theta[K.P_TD2] < theta[K.P_TD1]:
        raise ValueError(
            f"mitotic_delay_end (tau_d2 = {theta[K.P_TD2]}) must be >= mitotic_delay_start "
            f"(tau_d1 = {theta[K.P_TD1]})"
        )
    if theta[K.P_C0] * theta[K.P_VC] <= 0:
        raise ValueError("initial tumour volume C(0) V_C must be positive")


@dataclass
class RitResult:
    """Trajectories on the Euler grid ``t = 0, dt, ..., t_end`` (days after the pre-treatment volume is reached).

    ``states[:, k]`` follows :data:`immunocal.forward.rit.kernels.STATE_NAMES`; ``cohorts[:, i]`` is the doomed cohort of
    fraction ``i``. ``info``: ``free_growth_days`` (time from C(0) to day 0), ``n_negative_clipped``,
    ``controlled_day`` (Markov mode), ``final_C``, ``min_C``.
    """

    t: np.ndarray
    states: np.ndarray
    cohorts: np.ndarray
    schedule: Schedule
    config: RitConfig
    info: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.states[:, K.STATE_NAMES.index(name)]
        except ValueError:
            raise KeyError(f"unknown state '{name}'; states: {K.STATE_NAMES}") from None

    @property
    def volume(self) -> np.ndarray:
        return self["volume_mm3"]

    def at(self, name: str, times) -> np.ndarray:
        """A state linearly interpolated at the given days."""
        return np.interp(np.asarray(times, dtype=float), self.t, self[name])

    def columns(self) -> dict[str, np.ndarray]:
        cols = {"day": self.t}
        cols.update({n: self.states[:, i] for i, n in enumerate(K.STATE_NAMES)})
        cols.update({f"C_doomed_{i + 1}": self.cohorts[:, i] for i in range(self.cohorts.shape[1])})
        return cols

    def to_csv(self, path: str | Path) -> Path:
        """Write every state over time as CSV (atomic write)."""
        path = Path(path)
        cols = self.columns()
        header = ",".join(cols)
        data = np.column_stack(list(cols.values()))
        tmp = path.with_suffix(path.suffix + ".tmp")
        np.savetxt(tmp, data, delimiter=",", header=header, comments="", fmt="%.10g")
        tmp.replace(path)
        return path


def _schedule_arrays(schedule: Schedule, dt: float):
    """The kernel's schedule arrays on the grid of step ``dt`` (event indices, doses, drug amounts, step count); fresh
    copies of a cached result (schedules are immutable and hashable; checking the grid costs ~40 µs a call)."""
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in _schedule_arrays_cached(schedule, float(dt)))


@functools.lru_cache(maxsize=256)
def _schedule_arrays_cached(schedule: Schedule, dt: float):
    rt_idx = schedule.grid_indices(schedule.rt_days, dt, "radiation")
    c4_idx = schedule.grid_indices(schedule.ctla4_days, dt, "anti-CTLA-4")
    p1_idx = schedule.grid_indices(schedule.pdl1_days, dt, "anti-PD-L1")
    n_steps = int(round(schedule.t_end / dt))
    if abs(n_steps * dt - schedule.t_end) > 1e-6:
        raise ValueError(f"horizon t_end = {schedule.t_end:g} d is not a multiple of dt = {dt:g} d")
    return (
        rt_idx,
        np.asarray(schedule.rt_doses_gy, dtype=np.float64),
        c4_idx,
        np.asarray(schedule.ctla4_factors, dtype=np.float64),
        p1_idx,
        np.asarray(schedule.pdl1_factors, dtype=np.float64),
        n_steps,
    )


_DUMMY_RNG = np.random.default_rng(0)


@functools.lru_cache(maxsize=256)
def _batch_grid(schedule: Schedule, config: RitConfig, times: bytes):
    """What :func:`_batch` needs of the schedule, the grid and the observation days ``times`` (float64 bytes) — the
    memory check, the kernel's schedule arrays, the observation positions (negative: before day 0, read off the
    free-growth record) and those pre-day-0 days — built once per (schedule, config, days): a likelihood asks for the
    same ones for every arm at every gradient (~100 µs each time). The arrays are shared: read, never written."""
    days = np.frombuffer(times, dtype=np.float64)
    _check_memory(config, schedule, len(schedule.rt_days))
    arrays = _schedule_arrays_cached(schedule, float(config.dt))
    pos = _obs_positions(days, config.dt, schedule.t_end)
    pre = pos < 0
    return arrays, pos, pre, np.ascontiguousarray(days[pre])


def _check_info(info: np.ndarray, config: RitConfig, theta: np.ndarray) -> None:
    status = int(info[K.I_STATUS])
    if status == K.FREE_GROWTH_FAILED:
        raise FreeGrowthError(
            f"the untreated tumour did not reach the pre-treatment volume {config.pretreatment_volume_mm3:g} mm^3 "
            f"within {MAX_FREE_GROWTH_DAYS:g} days (carrying capacity 1/lambda_2 = "
            f"{(1 / theta[K.P_LAM2]) if theta[K.P_LAM2] > 0 else math.inf:.3g} cells, V_C = {theta[K.P_VC]:g} mm^3)"
        )
    if status == K.NONFINITE:
        raise EulerInstabilityError("the simulation produced a non-finite value (NaN/inf); reduce dt")
    if info[K.I_N_NEGATIVE] > 0 and config.on_negative == "raise":
        step = int(info[K.I_FIRST_NEGATIVE_STEP])
        raise EulerInstabilityError(
            f"explicit Euler step at day {step * config.dt:g} (dt = {config.dt:g} d) made a population negative: "
            "a loss rate x dt exceeds 1 (e.g. immune kill p(1+p1) with anti-PD-L1); reduce dt, or pass "
            "on_negative='clip' to set such values to 0 and count the events"
        )


_NO_TIMES = np.zeros(0)


def _run_deterministic(theta: np.ndarray, config: RitConfig, arrays: tuple, states: np.ndarray, cohorts: np.ndarray,
                       info: np.ndarray, pre_times: np.ndarray = _NO_TIMES, out_pre: np.ndarray = _NO_TIMES) -> None:
    """One deterministic kernel run (no Markov mode) filling ``states``, ``cohorts`` and ``info`` in place (and
    ``out_pre`` with the free-growth volumes at the negative model times ``pre_times``).

    ``arrays`` is the tuple returned by :func:`_schedule_arrays`; drug amounts scale the registry doses of ``theta``.
    """
    _run_kernel(theta, config.pretreatment_volume_mm3, config, arrays, states, cohorts, info, pre_times, out_pre)


def _run_kernel(theta, v_pre, config: RitConfig, arrays: tuple, states, cohorts, info, pre_times, out_pre,
                tangents=None) -> None:
    """The deterministic kernel call (float64 ``theta``, or complex128 for complex-step derivatives; ``tangents``:
    the kernel's forward-mode sensitivities ``(dth, dv_pre, out_dV, out_dpre)``, see :func:`kernels.run`)."""
    rt_idx, rt_dose, c4_idx, c4_fac, p1_idx, p1_fac, n_steps = arrays
    args = (theta, K.SURVIVAL_CODES[config.survival], config.vascular_damage, v_pre, config.dt, n_steps,
            config.substeps, config.free_growth_step, rt_idx, rt_dose, c4_idx, c4_fac * theta[K.P_IC4], p1_idx,
            p1_fac * theta[K.P_IP1], config.scheme == "exponential", False, 0.0, _DUMMY_RNG, False,
            config.max_free_steps, states, cohorts, info, pre_times, out_pre)
    K.run(*args, tangents)  # None passed, not omitted: one value specialisation shared with kernels.run_rows


def simulate(
    params, schedule: Schedule, config: RitConfig | None = None, *, dt: float | None = None
) -> RitResult:
    """Deterministic simulation: free growth from C(0) to the pre-treatment volume (day 0), then the schedule.

    ``params``: a :class:`priors.ParameterSet` of model ``rit`` (or a preset name); ``config`` defaults to the
    parameter set's preset options. ``dt`` overrides ``config.dt``.
    """
    ps = _as_parameter_set(params)
    config = config or RitConfig.from_preset(ps.preset)
    if dt is not None:
        config = replace(config, dt=dt)
    theta = parameter_array(ps)
    _check_survival(theta, config, schedule)
    _check_memory(config, schedule, len(schedule.rt_days))
    rt_idx, rt_dose, c4_idx, c4_fac, p1_idx, p1_fac, n_steps = _schedule_arrays(schedule, config.dt)
    states = np.zeros((n_steps + 1, K.N_STATES))
    cohorts = np.zeros((n_steps + 1, len(rt_idx)))
    info = np.zeros(K.N_INFO)
    _run_deterministic(theta, config, (rt_idx, rt_dose, c4_idx, c4_fac, p1_idx, p1_fac, n_steps), states, cohorts,
                       info)
    _check_info(info, config, theta)
    t = np.arange(n_steps + 1) * config.dt
    return RitResult(
        t=t,
        states=states,
        cohorts=cohorts,
        schedule=schedule,
        config=config,
        info=_info_dict(info, config.dt),
    )


def _info_dict(info: np.ndarray, dt: float) -> dict:
    cs = int(info[K.I_CONTROLLED_STEP])
    return {
        "free_growth_days": float(info[K.I_T_FREE]),
        "n_negative_clipped": int(info[K.I_N_NEGATIVE]),
        "controlled_day": cs * dt if cs >= 0 else None,
        "n_capped_probabilities": int(info[K.I_N_CAPPED]),
        "final_C": float(info[K.I_FINAL_C]),
        "min_C": float(info[K.I_MIN_C]),
    }


def _obs_positions(times, dt: float, t_end: float) -> np.ndarray:
    """Grid positions of observation days ``times`` (days after day 0; negative = before treatment, in the free-
    growth phase, position -1 here: those come from the kernel's free-growth record)."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or not np.all(np.isfinite(times)):
        raise ValueError("observation times must be a 1-d array of finite days")
    if np.any(times > t_end + 1e-9):
        raise ValueError(
            f"observation times must lie in (-inf, t_end = {t_end:g}] days (negative: before day 0, in free growth), "
            f"got {times.min():g}..{times.max():g}"
        )
    return np.where(times < 0, -1.0, np.minimum(np.maximum(times, 0.0) / dt, round(t_end / dt)))


def simulate_volumes(
    params,
    schedule: Schedule,
    times: Sequence[float],
    config: RitConfig | None = None,
    *,
    dt: float | None = None,
) -> np.ndarray:
    """Tumour volume V = C_tot V_C + T_a V_T [mm^3] at ``times`` (days after day 0) — the calibration hook.
    Negative times lie in the untreated free-growth phase before day 0 (pre-treatment measurements).

    Deterministic, smooth in the parameters (day 0 is located by a fractional last free-growth step, delays are
    interpolated), linear interpolation between grid points. Raises :class:`EulerInstabilityError` when the
    explicit Euler step is unstable for these parameters (reduce ``dt``) unless ``config.on_negative='clip'``.
    """
    ps = _as_parameter_set(params)
    config = config or RitConfig.from_preset(ps.preset)
    if dt is not None:
        config = replace(config, dt=dt)
    theta = parameter_array(ps)[None, :]
    vols, info, _ = _batch(theta, schedule, times, config)
    _check_info(info[0], config, theta[0])
    return vols[0]


def _check_survival(thetas: np.ndarray, config: RitConfig, schedule: Schedule) -> None:
    """The modified LQ (eq 2) with c < 0 can give SF_C(d) > 1 at large d (radiation creating cells): reject
    parameter rows and schedules for which ln SF_C(d) > 0 at any fraction. (A slightly negative beta0 (1 + c sqrt d)
    is allowed as long as SF_C <= 1, e.g. the 5 % perturbation of c = -0.2001 at 20 Gy.)"""
    if config.survival != "modified_lq" or not schedule.rt_doses_gy:
        return
    th = np.atleast_2d(thetas)
    d = np.asarray(sorted(set(schedule.rt_doses_gy)), dtype=float)[None, :]
    beta = th[:, K.P_BETA, None] * (1.0 + th[:, K.P_C, None] * np.sqrt(d))
    log_sf = -th[:, K.P_ALPHA, None] * d - beta * d * d
    bad = np.argwhere(log_sf > 0)
    if bad.size:
        r, k = (int(v) for v in bad[0])
        raise ValueError(
            f"modified LQ: SF_C({d[0, k]:g} Gy) = {math.exp(log_sf[r, k]):.4g} > 1 for c = {th[r, K.P_C]:g}"
            + (f" (row {r})" if th.shape[0] > 1 else "")
            + "; beta0 (1 + c sqrt(d)) is too negative: raise c (Supp. Table 4: c >= -0.2236 keeps beta >= 0 "
            "up to 20 Gy) or lower the dose"
        )


#: complex step: d f / d theta_k = Im f(theta + i H e_k) / H — the exact derivative of the discrete map, to round-off
#: (no difference is taken, so no cancellation; H^2 underflows to 0, so complex arithmetic is dual-number arithmetic)
COMPLEX_STEP = 1e-200


JACOBIAN_METHODS = ("tangent", "complex_step")


def _batch(thetas: np.ndarray, schedule: Schedule, times, config: RitConfig, v_pre: np.ndarray | None = None,
           jac_cols: Sequence[int] = (), jacobian_method: str = "tangent", horizons: np.ndarray | None = None):
    """Deterministic runs, one per row of ``thetas`` (one compiled kernel call each: ~0.3 ms at dt = 0.05 d), with
    per-row pre-treatment volumes ``v_pre`` (default: the config's). ``jac_cols``: kernel parameter indices (``-1``
    = the pre-treatment volume) whose exact derivatives are returned too — by the kernel's forward-mode tangents
    (``"tangent"``: one run carries all K directions; exponential scheme) or by one complex-step run of the same
    kernel per column (``"complex_step"``, :data:`COMPLEX_STEP`: the reference the tangents are tested against).
    Returns ``(volumes (n, T), info (n, N_INFO), jacobian (n, T, K) or None)``."""
    if jacobian_method not in JACOBIAN_METHODS:
        raise ValueError(f"jacobian_method must be one of {JACOBIAN_METHODS}, got {jacobian_method!r}")
    if len(jac_cols) and jacobian_method == "tangent" and config.scheme != "exponential":
        raise ValueError("forward-mode tangents exist for the exponential scheme only (the explicit scheme clips "
                         "negative values, which has no derivative); use jacobian_method='complex_step'")
    _check_survival(thetas, config, schedule)
    arrays, pos, pre, pre_times = _batch_grid(schedule, config,
                                              np.ascontiguousarray(times, dtype=np.float64).tobytes())
    rt_idx, n_steps = arrays[0], arrays[-1]
    out = np.zeros((thetas.shape[0], len(pos)))
    info = np.zeros((thetas.shape[0], K.N_INFO))
    v_pre = np.full(thetas.shape[0], config.pretreatment_volume_mm3) if v_pre is None else np.asarray(v_pre, float)
    jac = np.zeros((thetas.shape[0], len(pos), len(jac_cols))) if len(jac_cols) else None
    if jac is not None and jacobian_method == "complex_step":  # work arrays of the per-row reference path
        states = np.zeros((n_steps + 1, K.N_STATES))
        cohorts = np.zeros((n_steps + 1, len(rt_idx)))
        out_pre = np.zeros(len(pre_times))
        grid = np.arange(n_steps + 1, dtype=np.float64)
        c_states = np.zeros((n_steps + 1, K.N_STATES), dtype=np.complex128)
        c_cohorts = np.zeros((n_steps + 1, len(rt_idx)), dtype=np.complex128)
        c_pre = np.zeros(len(pre_times), dtype=np.complex128)
        c_info = np.zeros(K.N_INFO)
    if jac is not None and jacobian_method == "tangent":
        nk = len(jac_cols)
        dth = np.zeros((K.N_PARAMS, nk))
        dvpre = np.zeros(nk)
        for j, col in enumerate(jac_cols):
            if col < 0:
                dvpre[j] = 1.0
            else:
                dth[col, j] = 1.0
    row_steps = np.full(thetas.shape[0], n_steps, dtype=np.int64)
    if horizons is not None:  # stop at the first grid point at or after the row's horizon
        row_steps = np.minimum(n_steps, np.maximum(0, np.ceil(horizons / config.dt - 1e-9))).astype(np.int64)
    if jac is None or jacobian_method == "tangent":  # one compiled call for all rows (kernels.run_rows)
        rt_idx, rt_dose, c4_idx, c4_fac, p1_idx, p1_fac, _ = arrays
        args = (np.ascontiguousarray(thetas), np.ascontiguousarray(v_pre, dtype=np.float64), row_steps,
                K.SURVIVAL_CODES[config.survival], config.vascular_damage, config.dt, n_steps, config.substeps,
                config.free_growth_step, rt_idx, rt_dose, c4_idx, c4_fac, p1_idx, p1_fac,
                config.scheme == "exponential", config.max_free_steps, _DUMMY_RNG, pos, pre_times, out, info)
        if jac is None:
            K.run_rows(*args, np.zeros((0, 0, 0)), None)
        else:
            K.run_rows(*args, jac, (dth, dvpre, np.zeros((n_steps + 1, len(jac_cols))),
                                    np.zeros((len(pre_times), len(jac_cols)))))
        return out, info, jac
    for r in range(thetas.shape[0]):  # complex step: one complex run of the kernel per row and column
        th = np.ascontiguousarray(thetas[r])
        row_arrays, g = (*arrays[:-1], int(row_steps[r])), grid[:int(row_steps[r]) + 1]
        _run_kernel(th, float(v_pre[r]), config, row_arrays, states, cohorts, info[r], pre_times, out_pre)
        out[r] = np.interp(pos, g, states[:len(g), K.S_V])
        out[r, pre] = out_pre
        if info[r, K.I_STATUS] != K.OK:
            continue
        for j, col in enumerate(jac_cols):
            th_c = th.astype(np.complex128)
            vp = complex(v_pre[r])
            if col < 0:
                vp += 1j * COMPLEX_STEP
            else:
                th_c[col] += 1j * COMPLEX_STEP
            _run_kernel(th_c, vp, config, row_arrays, c_states, c_cohorts, c_info, pre_times, c_pre)
            jac[r, :, j] = np.interp(pos, g, c_states[:len(g), K.S_V].imag) / COMPLEX_STEP
            jac[r, pre, j] = c_pre.imag / COMPLEX_STEP
    return out, info, jac


@functools.lru_cache(maxsize=256)
def _columns(reg, preset: str, names: tuple[str, ...]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Kernel columns of the parameters ``names`` and their admissible bounds under ``preset`` (the registry's
    records; an unknown name or preset raises its named error), once per registry, preset and names."""
    reg.check_preset(MODEL, preset)
    records = [reg.record(MODEL, n) for n in names]
    bounds = np.array([r.bounds_for(preset) for r in records], dtype=np.float64).reshape(len(names), 2)
    return [K.PARAM_NAMES.index(n) for n in names], bounds[:, 0].copy(), bounds[:, 1].copy()


def simulate_volumes_batch(
    base,
    names: Sequence[str],
    values: np.ndarray,
    schedule: Schedule,
    times: Sequence[float],
    config: RitConfig | None = None,
    *,
    dt: float | None = None,
    validate: bool = True,
    pretreatment_volumes: np.ndarray | None = None,
    jacobian: bool = False,
    jacobian_method: str = "tangent",
    horizons: np.ndarray | None = None,
):
    """Volumes for many parameter vectors at once (one compiled kernel call per row, ~0.3 ms each).

    ``values`` (n, len(names)) replaces the parameters ``names`` of the parameter set ``base``. Rows are checked
    against the registry bounds when ``validate`` (a row out of range raises, naming the row). Returns
    ``(volumes (n, len(times)), ok (n,) bool)``; rows whose explicit Euler step was unstable or whose tumour never
    reached the pre-treatment volume have ``ok = False`` and NaN volumes (a campaign records them, never stops).
    ``pretreatment_volumes`` (n,): each row's day-0 volume (default: the config's).
    ``jacobian``: also return the exact derivatives ``d V / d values`` (n, len(times), len(names)) — plus a last
    column ``d V / d pretreatment volume`` when ``pretreatment_volumes`` is given — by the kernel's forward-mode
    tangents (default; exponential scheme) or complex-step runs of the same kernel (``jacobian_method=
    "complex_step"``, either scheme) — NaN on rows that are not ok: ``(volumes, ok, jacobian)``.
    ``horizons`` (n,): model days up to which each row is needed — the run stops at the first grid point at or after
    it (no cost beyond), and later times hold the value (and derivative) there: finite, not the model's.
    """
    ps = _as_parameter_set(base)
    config = config or RitConfig.from_preset(ps.preset)
    if dt is not None:
        config = replace(config, dt=dt)
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    names = list(names)
    if values.shape[1] != len(names):
        raise ValueError(f"values has {values.shape[1]} columns for {len(names)} parameter names")
    reg = registry()
    cols, lo, hi = _columns(reg, ps.preset, tuple(names))
    theta0 = _preset_theta(reg, base) if isinstance(base, str) else parameter_array(ps)
    thetas = np.repeat(theta0[None, :], values.shape[0], axis=0)
    thetas[:, cols] = values
    if validate:  # column-wise; the first offending row is named with the registry's own message
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        bad_rows = np.flatnonzero(bad.any(axis=1) | (thetas[:, K.P_TD2] < thetas[:, K.P_TD1])
                                  | ~(thetas[:, K.P_C0] * thetas[:, K.P_VC] > 0))
        if bad_rows.size:
            r = int(bad_rows[0])
            try:
                reg.validate(MODEL, dict(zip(names, values[r])), preset=ps.preset)
                _check_consistency(thetas[r])
            except ValueError as exc:
                raise type(exc)(f"row {r}: {exc}") from None
    jac_cols = (*cols, -1) if pretreatment_volumes is not None else tuple(cols)
    if pretreatment_volumes is not None:
        pretreatment_volumes = np.asarray(pretreatment_volumes, dtype=np.float64).reshape(-1)
        if pretreatment_volumes.shape != (values.shape[0],) or not np.all(pretreatment_volumes > 0):
            raise ValueError(f"pretreatment_volumes must be {values.shape[0]} positive volumes (mm^3), one per row")
    if horizons is not None:
        horizons = np.asarray(horizons, dtype=np.float64).reshape(-1)
        if horizons.shape != (values.shape[0],) or np.any(np.isnan(horizons)):
            raise ValueError(f"horizons must be {values.shape[0]} model days, one per row")
    vols, info, jac = _batch(thetas, schedule, times, config, pretreatment_volumes, jac_cols if jacobian else (),
                             jacobian_method, horizons)
    ok = info[:, K.I_STATUS] == K.OK
    if config.on_negative == "raise":
        ok &= info[:, K.I_N_NEGATIVE] == 0
    vols[~ok] = np.nan
    if not jacobian:
        return vols, ok
    jac[~ok] = np.nan
    return vols, ok, jac


def step_error_estimate(params, schedule: Schedule, config: RitConfig | None = None, *, warn: bool = True) -> dict:
    """Step-doubling estimate of the integration error of a run with ``config``: the same run with half the step
    (twice the substeps), and ``4/3 max |V_h / V_{h/2} - 1|`` over the grid days where V > 1 mm^3 (Richardson
    factor of a second-order scheme). Warns (``RuntimeWarning``) when the estimate exceeds
    :data:`STEP_ERROR_TOLERANCE` (1 %); ``ok`` says whether it does not."""
    import warnings

    ps = _as_parameter_set(params)
    config = config or RitConfig.from_preset(ps.preset)
    fine = replace(config, substeps=2 * config.substeps)
    coarse_run = simulate(ps, schedule, config)
    fine_run = simulate(ps, schedule, fine)
    v, vf = coarse_run.volume, fine_run.volume
    sel = vf > 1.0
    rel = np.abs(v[sel] / vf[sel] - 1.0) if sel.any() else np.zeros(1)
    k = int(np.argmax(rel))
    order = 2.0 if config.scheme == "exponential" else 1.0
    est = float(rel[k] * 2**order / (2**order - 1))
    day = float(coarse_run.t[sel][k]) if sel.any() else None
    out = {
        "dt": config.dt,
        "substeps": config.substeps,
        "integration_step": config.dt / config.substeps,
        "scheme": config.scheme,
        "estimated_max_rel_error": est,
        "at_day": day,
        "tolerance": STEP_ERROR_TOLERANCE,
        "ok": bool(est <= STEP_ERROR_TOLERANCE),
    }
    if warn and not out["ok"]:
        warnings.warn(
            f"RIT step-doubling estimate: relative volume error {est:.3g} at day {day:g} exceeds "
            f"{STEP_ERROR_TOLERANCE:g} with dt = {config.dt:g} d, {config.substeps} substep(s); "
            "use more substeps or a smaller dt",
            RuntimeWarning,
            stacklevel=2,
        )
    return out
