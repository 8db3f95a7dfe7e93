"""Inference drivers: NUTS (default), ADVI / full-rank ADVI, Pathfinder (if pymc-extras is installed), SMC and
DEMetropolis-Z (gradient-free, for black-box forward models)."""

from __future__ import annotations

import importlib.util

import numpy as np

METHODS = ("nuts", "advi", "fullrank_advi", "pathfinder", "smc", "demetropolis")
#: PyMC's NUTS initialisations a config may name (``[sampler] init``): a diagonal mass matrix (the default) or a dense
#: one adapted from the warm-up's sample covariance (for posteriors whose correlations make the trees deep)
NUTS_INITS = ("jitter+adapt_diag", "adapt_diag", "jitter+adapt_full", "adapt_full")


def pathfinder_available() -> bool:
    return importlib.util.find_spec("pymc_extras") is not None


def sample(model, method: str = "nuts", *, draws: int = 1000, tune: int = 1000, chains: int = 4,
           cores: int | None = None, seed: int = 0, target_accept: float = 0.9, advi_iterations: int = 20000,
           progressbar: bool = False, posterior_predictive: bool = True, compile_mode: str | None = None,
           init: str = "jitter+adapt_diag"):
    """Run ``method`` on ``model`` and return an ArviZ ``InferenceData`` (with posterior_predictive and
    observed_data where the model has observed variables).

    ``compile_mode="NUMBA"`` compiles the log-density with PyTensor's Numba backend instead of C. Sampling runs with
    one BLAS thread (threadpoolctl + ``OPENBLAS_NUM_THREADS=1`` for chain processes): on the 6-mouse surrogate example
    (2 chains × 600 iterations, loaded 2-core machine) this took 45 s instead of 148 s with default threading
    (Numba mode: 41 s, but 70 s of compilation instead of 10 s)."""

    if compile_mode in ("C", "c", "default"):
        compile_mode = None
    if method not in METHODS:
        raise ValueError(f"unknown inference method {method!r}; choose one of {list(METHODS)}")
    if init not in NUTS_INITS:
        raise ValueError(f"unknown NUTS initialisation {init!r}; choose one of {list(NUTS_INITS)}")
    import os

    from threadpoolctl import threadpool_limits

    # one BLAS thread per chain: multi-threaded BLAS on small GP products only oversubscribes the cores (measured:
    # surrogate value+gradient at 100 points 4.7 ms single-threaded vs 16–250 ms with default threading)
    old_env = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with threadpool_limits(1):
            return _sample(model, method, draws, tune, chains, cores, seed, target_accept, advi_iterations,
                           progressbar, posterior_predictive, compile_mode, init)
    finally:
        if old_env is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = old_env


def _nuts(model, draws, tune, chains, cores, seed, target_accept, progressbar, compile_kwargs,
          init="jitter+adapt_diag"):
    """``pm.sample`` with PyMC's own NUTS initialisation (``init``, the same per-chain seeds) done up
    front by ``pm.init_nuts`` and handed over as the step and the chains' starting points. The same sampler as
    ``pm.sample(model)``; what it skips is ``assign_step_methods`` building the whole model's gradient graph once per
    free variable only to learn that each is differentiable — on the 37-patient CT041 personalisation model (30
    free variables, emulator graphs) that was 66 s of a 255 s fold (profiled, ``cProfile``), for every fit."""
    import pymc as pm

    seeds = [int(rng.integers(2**30)) for rng in np.random.default_rng(seed).spawn(chains)]  # as pm.sample does
    initial_points, step = pm.init_nuts(init=init, chains=chains, model=model, random_seed=seeds,
                                        progressbar=progressbar, tune=tune, target_accept=target_accept,
                                        compile_kwargs=compile_kwargs)
    return pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed, step=step,
                     initvals=initial_points, progressbar=progressbar, compute_convergence_checks=False,
                     compile_kwargs=compile_kwargs)


def _sample(model, method, draws, tune, chains, cores, seed, target_accept, advi_iterations, progressbar,
            posterior_predictive, compile_mode, init="jitter+adapt_diag"):
    import pymc as pm

    with model:
        if method == "nuts":
            idata = _nuts(model, draws, tune, chains, cores or min(chains, 2), seed, target_accept, progressbar,
                          {"mode": compile_mode} if compile_mode else None, init)
        elif method in ("advi", "fullrank_advi"):
            approx = pm.fit(n=advi_iterations, method=method, random_seed=seed, progressbar=progressbar)
            idata = approx.sample(draws, random_seed=seed)
            idata.posterior.attrs["method"] = method
        elif method == "pathfinder":
            if not pathfinder_available():
                raise ValueError("Pathfinder needs pymc-extras, which is not installed (pip install pymc-extras); "
                                 "use method='advi' or 'fullrank_advi' for a fast approximation")
            from pymc_extras.inference import fit_pathfinder

            idata = fit_pathfinder(model=model, num_draws=draws, random_seed=seed, progressbar=progressbar,
                                   concurrent=None, display_summary=False)
        elif method == "smc":
            idata = pm.sample_smc(draws=draws, chains=chains, cores=cores or 1, random_seed=seed,
                                  progressbar=progressbar, compute_convergence_checks=False)
        else:
            idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores or 1, random_seed=seed,
                              step=pm.DEMetropolisZ(), progressbar=progressbar, compute_convergence_checks=False)
        if posterior_predictive and model.observed_RVs:
            import warnings

            with warnings.catch_warnings():
                # Potentials that only keep parameters inside the emulators' training box (immunocal.calib.model): the posterior
                # draws already obey them and observations do not depend on them, so PyMC's warning that predictive
                # sampling ignores Potentials does not apply; any other Potential keeps the warning
                if all(p.name.startswith("emulator_domain_") for p in model.potentials):
                    warnings.filterwarnings("ignore", message="The effect of Potentials on other parameters")
                pm.sample_posterior_predictive(idata, extend_inferencedata=True, random_seed=seed,
                                               progressbar=False)
    idata.posterior.attrs["inference_method"] = method
    return idata
