"""Python entry points of the DLN model: default parameters from the registry, single and batched simulations."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from immunocal.forward.errors import SimulationError
from immunocal.priors import ParameterError, registry

from . import model
from .model import PARAM_NAMES, DLNResult
from .plan import TreatmentPlan

MODEL = "dln"


class DlnNumericalError(SimulationError, FloatingPointError):
    """A DLN run produced non-finite values."""


def default_parameters(preset: str = "default", **overrides: float):
    """The registry's validated parameter set for ``preset`` (with optional validated overrides)."""
    return registry().parameter_set(MODEL, preset, overrides or None)


def param_array(params: Mapping[str, float] | None = None) -> np.ndarray:
    """Parameters in kernel order (``model.PARAM_NAMES``); ``None`` means the registry defaults."""
    ps = default_parameters() if params is None else params
    if hasattr(ps, "as_array"):
        return ps.as_array(PARAM_NAMES)
    missing = [n for n in PARAM_NAMES if n not in ps]
    if missing:
        raise ParameterError(f"dln parameters missing: {missing}")
    return np.ascontiguousarray([float(ps[n]) for n in PARAM_NAMES], dtype=np.float64)


def _opts(tumour_update: str, influx_mode: str) -> np.ndarray:
    if tumour_update not in model.TUMOUR_UPDATES:
        raise ValueError(f"unknown tumour_update '{tumour_update}'; choose from {list(model.TUMOUR_UPDATES)}")
    if influx_mode not in model.INFLUX_MODES:
        raise ValueError(f"unknown influx_mode '{influx_mode}'; choose from {list(model.INFLUX_MODES)}")
    return np.array([model.TUMOUR_UPDATES[tumour_update], model.INFLUX_MODES[influx_mode]], dtype=np.int64)


def simulate(
    plan: TreatmentPlan,
    params: Mapping[str, float] | None = None,
    *,
    tumour_update: str = "survive_then_grow",
    influx_mode: str = "seed",
) -> DLNResult:
    """Run eqs 1-27 over the plan's horizon (1-day steps). ``params``: a registry ParameterSet (or a full mapping)."""
    prm = param_array(params)
    return simulate_array(plan, prm, tumour_update=tumour_update, influx_mode=influx_mode)


def simulate_array(
    plan: TreatmentPlan,
    prm: np.ndarray,
    *,
    tumour_update: str = "survive_then_grow",
    influx_mode: str = "seed",
) -> DLNResult:
    """As :func:`simulate` with a kernel-ordered parameter array (no validation: for inner loops)."""
    net = plan.network
    init = net.initial_tumour(prm[model.N0_TUM], prm[model.C0])
    tr, dl, flux = model.run_single(
        prm,
        net.drain_matrix,
        plan.target_dose,
        plan.dln_dose,
        plan.drug_dose,
        init,
        _opts(tumour_update, influx_mode),
    )
    if not (np.all(np.isfinite(tr)) and np.all(np.isfinite(dl))):
        raise DlnNumericalError("DLN simulation produced non-finite values; check the parameter values")
    return DLNResult(net.targets, net.dlns, tr, dl, flux, net.volume_coefficients(float(prm[model.K_VOL])))


def simulate_batch(
    plan: TreatmentPlan,
    prms: np.ndarray,
    *,
    tumour_update: str = "survive_then_grow",
    influx_mode: str = "seed",
) -> np.ndarray:
    """Tumour volumes (n_sim, days+1, I) in mm^3 for each kernel-ordered parameter row (Numba prange)."""
    prms = np.ascontiguousarray(np.atleast_2d(prms), dtype=np.float64)
    if prms.shape[1] != model.N_PARAMS:
        raise ValueError(
            f"parameter rows must have {model.N_PARAMS} columns (model.PARAM_NAMES), got {prms.shape[1]}"
        )
    net = plan.network
    init = (
        np.stack([net.initial_tumour(row[model.N0_TUM], row[model.C0]) for row in prms])
        if net.initial_cells or net.inoculation_delay_days
        else np.repeat(prms[:, model.N0_TUM : model.N0_TUM + 1], len(net.targets), axis=1)
    )
    cells = model.run_batch(
        prms,
        net.drain_matrix,
        plan.target_dose,
        plan.dln_dose,
        plan.drug_dose,
        np.ascontiguousarray(init),
        _opts(tumour_update, influx_mode),
    )
    k = (
        np.stack([net.volume_coefficients(row[model.K_VOL]) for row in prms])
        if net.volume_per_cell
        else np.repeat(prms[:, model.K_VOL : model.K_VOL + 1], len(net.targets), axis=1)
    )
    return cells * k[:, None, :]


def _observation_days(plan: TreatmentPlan, days) -> np.ndarray:
    days = np.asarray(days, dtype=int)
    if days.min() < 0 or days.max() > plan.days:
        raise ValueError(f"observation days must lie in [0, {plan.days}], got {days.min()}..{days.max()}")
    return days


def log_volume_batch_jacobian(
    plan: TreatmentPlan,
    theta: np.ndarray,
    names,
    days,
    base: Mapping[str, float] | None = None,
    floor_mm3: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`log_volume_batch` and its exact Jacobian with respect to the columns of ``theta``: forward-mode
    sensitivities through the same map (``model._run``), ``(log_volume (n, I, D), jacobian (n, I, D, len(names)))``.
    Where the volume is floored the derivative is 0 (the floor is flat). Parameters that act only through
    thresholds or durations (``model.SWITCH_PARAMS``: piecewise constant, derivative 0 almost everywhere) are
    refused — a gradient-based sampler could not move them."""
    days = _observation_days(plan, days)
    names = list(names)
    switch = [n for n in names if PARAM_NAMES.index(n) in model.SWITCH_PARAMS] if set(names) <= set(PARAM_NAMES) \
        else []
    if switch:
        raise ValueError(f"DLN sensitivities: {switch} act only through thresholds/durations on the 1-day grid "
                         "(the map is piecewise constant in them: no gradient); calibrate them with a gradient-free "
                         "sampler (emulator kind 'blackbox')")
    prms = parameter_rows(theta, names, base)
    cols = np.array([PARAM_NAMES.index(n) for n in names], dtype=np.int64)
    net = plan.network
    n_sim, n_t, nk = prms.shape[0], len(net.targets), len(cols)
    init = np.stack([net.initial_tumour(row[model.N0_TUM], row[model.C0]) for row in prms])
    delay = net.delays()
    d_init = np.zeros((n_sim, n_t, nk))
    k_vol = np.stack([net.volume_coefficients(row[model.K_VOL]) for row in prms])
    d_log_k = np.zeros((n_sim, n_t, nk))
    for j, c in enumerate(cols):  # targets without a per-target override take the parameter itself
        for i, target in enumerate(net.targets):
            if c == model.N0_TUM and target not in net.initial_cells:
                d_init[:, i, j] = (1.0 + prms[:, model.C0]) ** -delay[i]
            if c == model.C0 and delay[i] > 0:  # n0 (1 + C0)^-d
                d_init[:, i, j] = -delay[i] * init[:, i] / (1.0 + prms[:, model.C0])
            if c == model.K_VOL and target not in net.volume_per_cell:
                d_log_k[:, i, j] = 1.0 / k_vol[:, i]
    cells, dcells = model.run_batch_tangent(prms, cols, net.drain_matrix, plan.target_dose, plan.dln_dose,
                                            plan.drug_dose, np.ascontiguousarray(init), d_init, _opts(
                                                "survive_then_grow", "seed"))
    vols = cells * k_vol[:, None, :]
    kept = vols[:, days, :] > floor_mm3
    with np.errstate(divide="ignore", invalid="ignore"):
        dlog = dcells[:, days] / cells[:, days, :, None] + d_log_k[:, None]
    jac = np.where(kept[..., None], dlog, 0.0)
    out = np.log(np.maximum(vols[:, days, :], floor_mm3))
    return out.transpose(0, 2, 1), jac.transpose(0, 2, 1, 3)


def parameter_rows(
    theta: np.ndarray,
    names: tuple[str, ...] | list[str],
    base: Mapping[str, float] | None = None,
    validate: bool = True,
) -> np.ndarray:
    """Kernel-ordered parameter rows (n, N_PARAMS) from a batch ``theta`` (n, len(names)) of named parameters, the
    rest from ``base`` (default: registry defaults). ``validate`` checks every value against its registry range."""
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    names = list(names)
    if theta.shape[1] != len(names):
        raise ValueError(f"theta has {theta.shape[1]} columns but {len(names)} parameter names were given")
    unknown = [n for n in names if n not in PARAM_NAMES]
    if unknown:
        registry().record(MODEL, unknown[0])  # raises UnknownParameterError with suggestions
    if validate:
        reg = registry()
        for j, n in enumerate(names):
            rec = reg.record(MODEL, n)
            for x in theta[:, j]:
                rec.check(x, where="theta")
    rows = np.repeat(param_array(base)[None, :], theta.shape[0], axis=0)
    for j, n in enumerate(names):
        rows[:, PARAM_NAMES.index(n)] = theta[:, j]
    return rows


def log_volume_batch(
    plan: TreatmentPlan,
    theta: np.ndarray,
    names,
    days,
    base: Mapping[str, float] | None = None,
    floor_mm3: float = 1e-3,
) -> np.ndarray:
    """log(max(V, floor)) of every target on ``days``: shape (n, I, len(days)) for a named parameter batch ``theta``.

    The building block for a calibration adapter (immunocal.calib.forward_api): one plan = one condition."""
    days = _observation_days(plan, days)
    vols = simulate_batch(plan, parameter_rows(theta, names, base))
    return np.log(np.maximum(vols[:, days, :], floor_mm3)).transpose(0, 2, 1)
