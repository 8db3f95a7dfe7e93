"""Benchmark of the radioimmunotherapy model (``immunocal bench rit``): timings after JIT compilation."""

from __future__ import annotations

import time

import numpy as np

from immunocal.priors import registry

from .model import simulate, simulate_volumes_batch
from .schedule import Schedule
from .tcp import population_tcp

GRADIENT_PARAMETERS = ("tumour_proliferation_rate", "immune_kill_rate", "tumour_alpha")


def _median_seconds(fn, repeats: int) -> float:
    fn()  # JIT / cache load
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def benchmark(repeats: int = 20, gradient: bool = False, complex_step: bool = False) -> dict:
    """Median seconds of one deterministic 60-day simulation (Table 3, 8 Gy x 3 + anti-CTLA-4 at 2, 5, 8,
    dt = 0.05 d, free growth included) and seconds of one 200-run population TCP of the same schedule; the
    volumes of that run alone and with their exact derivatives in the three usually calibrated parameters
    (``gradient``: forward-mode tangents; with ``complex_step`` also the complex-step reference)."""
    ps = registry().parameter_set("rit", "dewan_table3")
    sched = Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=60.0)
    simulate(ps, sched)  # JIT / cache load
    population_tcp(ps, sched, np.random.default_rng(0), n_sims=2)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        simulate(ps, sched)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = population_tcp(ps, sched, np.random.default_rng(1), n_sims=200)
    t_tcp = time.perf_counter() - t0
    grad = None
    if gradient or complex_step:
        days = np.arange(0.0, 60.0, 1.0)
        x = np.array([[ps[n] for n in GRADIENT_PARAMETERS]])
        grad = {"parameters": list(GRADIENT_PARAMETERS), "values_s": _median_seconds(
            lambda: simulate_volumes_batch(ps, GRADIENT_PARAMETERS, x, sched, days), repeats)}
        for method in ("tangent", "complex_step") if complex_step else ("tangent",):
            grad[f"values_and_{method}_s"] = _median_seconds(lambda m=method: simulate_volumes_batch(
                ps, GRADIENT_PARAMETERS, x, sched, days, jacobian=True, jacobian_method=m), repeats)
            grad[f"{method}_over_values"] = grad[f"values_and_{method}_s"] / grad["values_s"]
    return {
        **({"gradient": grad} if grad else {}),
        "single_sim_s": float(np.median(times)),
        "tcp200_s": t_tcp,
        "tcp200": res.tcp,
        "dt": 0.05,
        "substeps": 4,
        "scheme": "exponential",
        "horizon_days": 60.0,
        "preset": "dewan_table3",
        "schedule": "8x3@0,1,2 + anti-CTLA-4 2,5,8",
    }
