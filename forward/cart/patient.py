"""Parameters in → observables out: the API for cohort-scale use (virtual patients, designs, calibration).

:func:`simulate_patient` runs either the homogeneous ODE (fast: ~10 ms) or a coarse spatial model (1-, 2- or 3-D
focus geometry) for one parameter vector and returns :class:`PatientResult` with the SPEC §3 observables and the
time series at the requested observation times. It never recompiles when parameter values change and raises
(never silently clamps) on invalid input or an unstable step.

Example::

    from immunocal.forward.cart import simulate_patient
    r = simulate_patient({"exhaustion_rate": 0.08}, dose=0.05, tumour0=0.5, t_end=120)
    r.observables.recist, r.observables.pfs, r.series["burden"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import homogeneous
from .grid import Grid
from .model import Infusion, simulate
from .observables import Observables, infiltration_depth, summarise
from .scenarios import FocusGeometry, car_t_profile, focus_state, focus_volume


def resolve_parameters(params=None, preset: str = "normalised"):
    """A validated :class:`priors.ParameterSet`: ``params`` may be a ParameterSet (used as is), a mapping of
    overrides applied to ``preset``, or None (the preset itself)."""
    from immunocal.priors import ParameterSet, registry

    if isinstance(params, ParameterSet):
        return params
    ps = registry().parameter_set("cart", preset)
    if params:
        ps = ps.replace(**dict(params))
    return ps


@dataclass
class PatientResult:
    observables: Observables
    times: np.ndarray
    series: dict[str, np.ndarray] = field(default_factory=dict)
    model: str = "homogeneous"


def simulate_patient(params=None, *, preset: str = "normalised", model: str = "homogeneous",
                     dose: float = 0.05, tumour0: float = 0.5, tb_fraction: float = 0.0,
                     infusion_times: Sequence[float] = (0.0,), t_end: float = 120.0,
                     observation_times: Sequence[float] | None = None, detection_limit: float = 1e-3,
                     dim: int = 1, n: int = 41, dt: float = 0.05, geometry: FocusGeometry | None = None,
                     rtol: float = 1e-7, spatial_units: str = "integral") -> PatientResult:
    """Simulate one (virtual) patient.

    Parameters
    ----------
    params : ParameterSet | mapping of overrides | None — model parameters (``preset`` fills the rest).
    model : ``"homogeneous"`` (ODE eqs 9–15) or ``"spatial"`` (coarse focus geometry, exact diffusion).
    dose : CAR-T added per infusion (homogeneous: density in units of K_T; spatial: peak density of the local
        administration profile). ``infusion_times`` : days of each infusion (first usually 0).
    tumour0, tb_fraction : initial burden (density, K_T units) and its antigen-negative fraction.
    t_end, observation_times : horizon (days) and the times at which series are returned (default: daily).
    detection_limit : burden below which a response counts as CR (same units as the burden series: density for
        the homogeneous model, spatial integral for the spatial one).
    dim, n, dt, geometry : spatial grid (``n`` nodes per axis on [0, 1]^dim), step and focus geometry.
    spatial_units : ``"integral"`` (spatial series are domain integrals) or ``"focus"`` (integrals divided by the
        initial focus's volume, :func:`~immunocal.forward.cart.scenarios.focus_volume`: densities in K_T units
        comparable with the homogeneous compartment; ``detection_limit`` is then in the same units).

    Series: ``C, E, TA, TB, S`` (densities / integrals), ``A, H`` (values / domain means), ``burden`` = TA + TB and
    ``kill`` = γ·C·T_A (the CAR-T kill rate; spatial: its integral), at ``observation_times``.
    """
    ps = resolve_parameters(params, preset)
    if not (np.isfinite(dose) and dose >= 0):
        raise ValueError(f"dose = {dose} is invalid: need a finite value ≥ 0")
    if not (np.isfinite(tumour0) and tumour0 > 0):
        raise ValueError(f"tumour0 = {tumour0} is invalid: need a finite value > 0")
    if not 0.0 <= tb_fraction <= 1.0:
        raise ValueError(f"tb_fraction = {tb_fraction} is invalid: need a value in [0, 1]")
    if spatial_units not in ("integral", "focus"):
        raise ValueError(f"spatial_units = {spatial_units!r}; choose 'integral' or 'focus'")
    if not (np.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end = {t_end} is invalid: need a finite value > 0")
    obs_t = np.arange(0.0, t_end + 1e-9, 1.0) if observation_times is None else np.asarray(observation_times, float)
    if obs_t.size < 2 or obs_t[0] != 0.0 or np.any(np.diff(obs_t) <= 0) or obs_t[-1] > t_end + 1e-9:
        raise ValueError("observation_times must start at 0, increase strictly and end by t_end")
    if model == "homogeneous":
        u0 = np.zeros(7)
        u0[2] = (1.0 - tb_fraction) * tumour0
        u0[3] = tb_fraction * tumour0
        sol = homogeneous.solve(ps, u0, t_end, t_eval=obs_t, method="LSODA", rtol=rtol, atol=1e-12,
                                infusions=[(float(t), dose) for t in infusion_times])
        C, E, TA, TB, S, A, H = sol.y
        kill = ps["tumour_kill_rate"] * C * TA
        infil = None
    elif model == "spatial":
        grid = Grid.cube(dim, n)
        geom = (geometry or FocusGeometry.from_preset(preset)).with_(tumour_density=tumour0, tb_fraction=tb_fraction,
                                                   cart_density=dose)
        U0 = focus_state(grid, geom)
        U0[0] = 0.0
        prof = car_t_profile(grid, geom)
        infs = [Infusion(float(t), prof) for t in infusion_times]
        step_obs = max(int(round(np.min(np.diff(obs_t)) / dt)), 1)
        gamma_vol = ps["tumour_kill_rate"] * grid.cell_volume

        c_start = sum((inf.profile for inf in infs if inf.time == 0.0), np.zeros_like(U0[0]))
        kill_t, kill_v = [0.0], [gamma_vol * float(np.vdot(c_start, U0[2]))]  # after a day-0 infusion

        def kill_rate(k, t, U):  # ∫ γ C T_A at the recorded steps
            if k % step_obs == 0 or t >= t_end:
                kill_t.append(t)
                kill_v.append(gamma_vol * float(np.vdot(U[0], U[2])))

        res = simulate(grid, ps, U0, t_end, dt, infusions=infs, record_every=step_obs, callback=kill_rate)
        unit = focus_volume(grid, geom) if spatial_units == "focus" else 1.0
        C, E, TA, TB, S = (np.interp(obs_t, res.times, res.integrals[:, f]) / unit for f in range(5))
        A, H = (np.interp(obs_t, res.times, res.means[:, f]) for f in (5, 6))
        kill = np.interp(obs_t, kill_t, kill_v) / unit
        infil = infiltration_depth(grid, res.final[0], U0[2] + U0[3])
    else:
        raise ValueError(f"unknown model '{model}'; choose 'homogeneous' or 'spatial'")
    obs = summarise(obs_t, C, E, TA, TB, A, H, detection_limit=detection_limit, infiltration=infil)
    series = {"C": C, "E": E, "TA": TA, "TB": TB, "S": S, "A": A, "H": H, "burden": TA + TB, "kill": kill}
    return PatientResult(obs, obs_t, series, model)
