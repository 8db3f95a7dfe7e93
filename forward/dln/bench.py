"""Benchmark of the DLN map: one 2-target, 1-DLN, 60-day simulation and 10,000 of them with different parameters."""

from __future__ import annotations

import time

import numba
import numpy as np

from .api import default_parameters, param_array, simulate_array, simulate_batch
from .model import PARAM_NAMES
from .plan import Network, TreatmentPlan

#: immune parameters perturbed across the batch (each row gets its own values: no recompilation)
PERTURBED = (
    "ctl_cytotoxicity",
    "ctl_priming",
    "ctl_migration",
    "exhaustion_survival",
    "pd1_survival_control",
    "tumour_proliferation_rate",
    "antigen_release_radiation",
)


def bench_plan(days: int = 60) -> TreatmentPlan:
    net = Network(("primary", "distant"), ("dln",), {"primary": ("dln",), "distant": ("dln",)})
    return TreatmentPlan.build(
        net,
        days,
        [{"target": "primary", "days": [10, 11, 12], "dose_gy": 8.0}],
        [{"name": "anti_ctla4", "days": [10, 13, 16]}, {"name": "anti_pd1", "days": [10, 13]}],
    )


def run_bench(n_batch: int = 10_000, repeats: int = 200, seed: int = 0) -> dict:
    plan = bench_plan()
    base = param_array(default_parameters())
    simulate_array(plan, base)  # JIT (or cache load)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        simulate_array(plan, base)
        times.append(time.perf_counter() - t0)
    rng = np.random.default_rng(seed)
    prms = np.repeat(base[None, :], n_batch, axis=0)
    for name in PERTURBED:
        j = PARAM_NAMES.index(name)
        prms[:, j] = np.clip(base[j] * rng.uniform(0.8, 1.2, n_batch), 0.0, 0.999 if base[j] < 1 else np.inf)
    simulate_batch(plan, prms[:8])  # JIT of the parallel kernel
    t0 = time.perf_counter()
    vols = simulate_batch(plan, prms)
    batch = time.perf_counter() - t0
    if not np.all(np.isfinite(vols)):
        raise FloatingPointError("benchmark batch produced non-finite volumes")
    return {
        "single_sim_s": float(np.median(times)),
        "single_sim_min_s": float(np.min(times)),
        "batch10k_s": batch if n_batch == 10_000 else None,
        "batch_s": batch,
        "n_batch": n_batch,
        "days": plan.days,
        "targets": len(plan.network.targets),
        "dlns": len(plan.network.dlns),
        "numba_threads": numba.get_num_threads(),
    }
