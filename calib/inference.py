"""Inference drivers: NUTS (default), ADVI / full-rank ADVI, Pathfinder (if pymc-extras is installed), SMC and
DEMetropolis-Z (gradient-free, for black-box forward models)."""

from __future__ import annotations

import importlib.util

METHODS = ("nuts", "advi", "fullrank_advi", "pathfinder", "smc", "demetropolis")


def pathfinder_available() -> bool:
    return importlib.util.find_spec("pymc_extras") is not None


def sample(model, method: str = "nuts", *, draws: int = 1000, tune: int = 1000, chains: int = 4,
           cores: int | None = None, seed: int = 0, target_accept: float = 0.9, advi_iterations: int = 20000,
           progressbar: bool = False, posterior_predictive: bool = True, compile_mode: str | None = None):
    """Run ``method`` on ``model`` and return an ArviZ ``InferenceData`` (with posterior_predictive and
    observed_data where the model has observed variables).

    ``compile_mode="NUMBA"`` compiles the log-density with PyTensor's Numba backend (uses numpy's BLAS). Where
    PyTensor's C backend cannot link a BLAS (pip installs), surrogate models with GP variance sample ~3.6× faster
    with it, at ~2× the compile time (measured: 6-mouse logistic surrogate model, 2×600 iterations, 41 s vs 148 s
    sampling, 111 s vs 179 s in total)."""
    import pymc as pm

    if compile_mode in ("C", "c", "default"):
        compile_mode = None
    if method not in METHODS:
        raise ValueError(f"unknown inference method {method!r}; choose one of {list(METHODS)}")
    with model:
        if method == "nuts":
            idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores or min(chains, 2),
                              random_seed=seed, target_accept=target_accept, progressbar=progressbar,
                              compute_convergence_checks=False,
                              compile_kwargs={"mode": compile_mode} if compile_mode else None)
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
            pm.sample_posterior_predictive(idata, extend_inferencedata=True, random_seed=seed,
                                           progressbar=False)
    idata.posterior.attrs["inference_method"] = method
    return idata
