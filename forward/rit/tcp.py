"""Markov stochastic mode and population tumour-control probability (seed 002 §2.7, Supplementary §3.1).

Below ``markov_threshold`` (1000) viable cells, C becomes an integer and each step draws, for the whole population
at once, births ~ Bin(C, P_p) and deaths ~ Bin(C - births, P_d / (1 - P_p)) — exactly the multinomial of the seed's
per-cell experiment (2 cells w.p. P_p, 0 w.p. P_d, 1 otherwise) with P_p = lambda_1 (1 - lambda_2 C_tot) dt and
P_d = p (1 + p1) (T_a/C_tot)^q / (s + (T_a/C_tot)^q) dt. A run is *controlled* when C reaches 0.
Population TCP: N runs, each with the non-fixed parameters multiplied by (1 + 0.05 z), z ~ N(0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numba import njit
from scipy import stats

from immunocal.priors import registry

from . import kernels as K
from .model import (
    _NO_TIMES,
    MODEL,
    RitConfig,
    _as_parameter_set,
    _check_survival,
    _schedule_arrays,
    parameter_array,
)
from .schedule import Schedule

__all__ = [
    "TcpResult",
    "binomial_ci",
    "birth_death_extinction",
    "galton_watson_extinction",
    "perturbed_parameters",
    "population_tcp",
]


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion (scipy)."""
    if n <= 0:
        raise ValueError(f"number of simulations must be positive, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"number of controls {k} must lie in [0, {n}]")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


@dataclass
class TcpResult:
    """Population TCP with its 95 % Clopper-Pearson interval and per-run outcomes."""

    tcp: float
    ci: tuple[float, float]
    n_sims: int
    n_controlled: int
    controlled: np.ndarray
    control_day: np.ndarray
    schedule: Schedule
    n_outside_bounds: int = 0
    n_capped_probabilities: int = 0
    volumes: np.ndarray | None = None
    t: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "tcp": self.tcp,
            "ci95": list(self.ci),
            "n_sims": self.n_sims,
            "n_controlled": self.n_controlled,
            "n_draws_outside_table4_bounds": self.n_outside_bounds,
            "n_capped_markov_probabilities": self.n_capped_probabilities,
            "schedule": self.schedule.to_dict(),
        }


def perturbed_parameters(
    params, n: int, rng: np.random.Generator, rel_sd: float = 0.05, names: list[str] | None = None
) -> tuple[np.ndarray, int]:
    """``n`` kernel parameter vectors with the preset's free parameters scaled by ``1 + rel_sd z`` (vectorised).

    Returns ``(thetas (n, n_params), n_rows_outside_bounds)``. Draws are not clipped: parameters the seed fitted at
    a Table-4 bound (e.g. alpha_C = 0.02, phi = 0.03 in Table 3) are perturbed on both sides, as in the seed; rows
    leaving the registry bounds are counted. Draws that would be non-physical (negative) raise.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed))")
    if n < 1:
        raise ValueError(f"number of simulations must be >= 1, got {n}")
    if not (0 <= rel_sd < 0.5):
        raise ValueError(f"relative perturbation must be in [0, 0.5), got {rel_sd}")
    ps = _as_parameter_set(params)
    reg = registry()
    names = list(names) if names is not None else reg.free_parameters(MODEL, ps.preset)
    cols = [K.PARAM_NAMES.index(nm) for nm in names]
    theta0 = parameter_array(ps)
    thetas = np.repeat(theta0[None, :], n, axis=0)
    thetas[:, cols] *= 1.0 + rel_sd * rng.standard_normal((n, len(cols)))
    if np.any(thetas[:, cols] < 0):
        raise ValueError("a perturbed parameter became negative; lower the relative perturbation")
    lo = np.array([reg.record(MODEL, nm).bounds_for(ps.preset)[0] for nm in names])
    hi = np.array([reg.record(MODEL, nm).bounds_for(ps.preset)[1] for nm in names])
    outside = np.any((thetas[:, cols] < lo) | (thetas[:, cols] > hi), axis=1)
    # keep q (an exponent in [0, 1]) and the delay ramp well defined
    thetas[:, K.P_Q] = np.clip(thetas[:, K.P_Q], 0.0, 1.0)
    return thetas, int(outside.sum())


def population_tcp(
    params,
    schedule: Schedule,
    rng: np.random.Generator,
    n_sims: int = 200,
    config: RitConfig | None = None,
    rel_sd: float = 0.05,
    record_volumes: bool = False,
    dt: float | None = None,
) -> TcpResult:
    """Population TCP (eq 24) over ``n_sims`` Markov runs with 5 % relative normal parameter perturbation.

    ``rel_sd = 0`` gives the TCP of the Markov process at the nominal parameters.
    """
    ps = _as_parameter_set(params)
    config = config or RitConfig.from_preset(ps.preset)
    if dt is not None:
        config = replace(config, dt=dt)
    thetas, n_out = perturbed_parameters(ps, n_sims, rng, rel_sd)
    _check_survival(thetas, config, schedule)
    rt_idx, rt_dose, c4_idx, c4_fac, p1_idx, p1_fac, n_steps = _schedule_arrays(schedule, config.dt)
    vols = np.zeros((n_sims, n_steps + 1)) if record_volumes else np.zeros((0, 0))
    info = np.zeros((n_sims, K.N_INFO))
    states = np.zeros((n_steps + 1 if record_volumes else 0, K.N_STATES))
    cohorts = np.zeros((n_steps + 1 if record_volumes else 0, len(rt_idx)))
    code, exponential = K.SURVIVAL_CODES[config.survival], config.scheme == "exponential"
    for r in range(
        n_sims
    ):  # one compiled call per subject, all drawing from the one generator (reproducible)
        th = thetas[r]
        K.run(
            th,
            code,
            config.vascular_damage,
            config.pretreatment_volume_mm3,
            config.dt,
            n_steps,
            config.substeps,
            config.free_growth_step,
            rt_idx,
            rt_dose,
            c4_idx,
            c4_fac * th[K.P_IC4],
            p1_idx,
            p1_fac * th[K.P_IP1],
            exponential,
            True,
            config.markov_threshold,
            rng,
            not record_volumes,
            config.max_free_steps,
            states,
            cohorts,
            info[r],
            _NO_TIMES,
            _NO_TIMES,
            None,  # no tangents (passed, not omitted: the value specialisation every caller shares)
        )
        if record_volumes:
            vols[r] = states[:, K.S_V]
    bad = info[:, K.I_STATUS] != K.OK
    if np.any(bad):
        raise ValueError(
            f"{int(bad.sum())} of {n_sims} stochastic runs failed (free growth never reached the "
            "pre-treatment volume, or a non-finite value); check the parameters"
        )
    controlled = info[:, K.I_CONTROLLED_STEP] >= 0
    k = int(controlled.sum())
    return TcpResult(
        tcp=k / n_sims,
        ci=binomial_ci(k, n_sims),
        n_sims=n_sims,
        n_controlled=k,
        controlled=controlled,
        control_day=np.where(controlled, info[:, K.I_CONTROLLED_STEP] * config.dt, np.nan),
        schedule=schedule,
        n_outside_bounds=n_out,
        n_capped_probabilities=int(info[:, K.I_N_CAPPED].sum()),
        volumes=vols if record_volumes else None,
        t=np.arange(n_steps + 1) * config.dt if record_volumes else None,
    )


# ---------------------------------------------------------------------------------------------------------- checks
@njit(cache=True)
def _birth_death(n0, pp, pd, n_steps, n_runs, rng, out):
    for r in range(n_runs):
        n = n0
        for _ in range(n_steps):
            if n == 0:
                break
            n, _ = K.markov_step(n, pp, pd, rng)
        out[r] = n


def birth_death_extinction(
    n0: int, p_birth: float, p_death: float, n_steps: int, n_runs: int, rng: np.random.Generator
) -> np.ndarray:
    """Final population of ``n_runs`` runs of the model's Markov step (:func:`immunocal.forward.rit.kernels.markov_step`,
    vectorised binomial draws) with constant per-step probabilities — the reference process for the statistical test of the Markov mode."""
    if not (0 <= p_birth < 1 and 0 <= p_death <= 1 and p_birth + p_death <= 1):
        raise ValueError("need 0 <= p_birth < 1, 0 <= p_death and p_birth + p_death <= 1")
    out = np.zeros(n_runs, dtype=np.int64)
    _birth_death(int(n0), float(p_birth), float(p_death), int(n_steps), int(n_runs), rng, out)
    return out


def galton_watson_extinction(n0: int, p_birth: float, p_death: float, n_steps: int) -> float:
    """Exact probability that the discrete-time birth-death chain (offspring 2 / 0 / 1 with probabilities
    p_birth / p_death / rest) started from ``n0`` cells is extinct after ``n_steps`` steps:
    ``q_{k+1} = p_d + (1 - p_b - p_d) q_k + p_b q_k^2``, ``q_0 = 0``, answer ``q_K^{n0}``."""
    q = 0.0
    for _ in range(int(n_steps)):
        q = p_death + (1.0 - p_birth - p_death) * q + p_birth * q * q
    return q ** int(n0)


@njit(cache=True)
def _birth_death_exact(n0, lam, mu, h, n_steps, n_runs, rng, out):
    for r in range(n_runs):
        n = n0
        for _ in range(n_steps):
            if n == 0:
                break
            n = K.birth_death_exact(n, lam, mu, h, rng)
        out[r] = n


def birth_death_exact_runs(
    n0: int, lam: float, mu: float, h: float, n_steps: int, n_runs: int, rng: np.random.Generator
) -> np.ndarray:
    """Final population of ``n_runs`` runs of ``n_steps`` steps of the default scheme's Markov step
    (:func:`immunocal.forward.rit.kernels.birth_death_exact`) with constant per-cell rates ``lam`` (birth), ``mu`` (death)."""
    if not (lam >= 0 and mu >= 0 and h > 0):
        raise ValueError("need lam >= 0, mu >= 0 and h > 0")
    out = np.zeros(n_runs, dtype=np.int64)
    _birth_death_exact(int(n0), float(lam), float(mu), float(h), int(n_steps), int(n_runs), rng, out)
    return out


def linear_birth_death_extinction(n0: int, lam: float, mu: float, t: float) -> float:
    """Exact probability that the continuous-time linear birth-death process (rates ``lam``, ``mu`` per cell)
    started from ``n0`` cells is extinct by time ``t``: ``(mu (E - 1) / (lam E - mu))^n0``, ``E = e^{(lam - mu) t}``
    (``(mu t / (1 + mu t))^n0`` when ``lam = mu``)."""
    if lam == mu:
        p = mu * t / (1.0 + mu * t)
    else:
        e = math.exp((lam - mu) * t)
        p = mu * (e - 1.0) / (lam * e - mu)
    return p ** int(n0)
