"""Inference drivers: NUTS (default), ADVI / full-rank ADVI, Pathfinder (if pymc-extras is installed), SMC and
DEMetropolis-Z (gradient-free, for black-box forward models)."""

from __future__ import annotations

import contextlib
import importlib.util

import numpy as np

METHODS = ("nuts", "advi", "fullrank_advi", "pathfinder", "smc", "demetropolis")
#: NUTS initialisations a config may name (``[sampler] init``): PyMC's — a diagonal mass matrix (the default) or a
#: dense one adapted from the warm-up's sample covariance (for posteriors whose correlations make the trees deep) — and
#: ``laplace+adapt_full`` (:func:`laplace_start`): the dense adaptation started from the Laplace approximation at the
#: posterior mode, chains started at its draws
NUTS_INITS = ("jitter+adapt_diag", "adapt_diag", "jitter+adapt_full", "adapt_full", "laplace+adapt_full")
#: pseudo-samples the Laplace covariance counts for in the dense adaptation (``laplace+adapt_full``): PyMC re-estimates
#: the mass matrix after every warm-up draw; with this weight its first estimates are the Laplace covariance, not the
#: covariance of a few dozen correlated draws along the path from the start (which made 8-deep trees)
LAPLACE_PRIOR_WEIGHT = 100


class DaemonProcessError(RuntimeError):
    """Chains in parallel processes (``cores`` > 1) were asked for inside a daemonic process — a Dask worker under
    its nanny, a ``multiprocessing`` pool worker — which Python does not allow to start child processes. Run the
    chains one after another there (``[sampler] cores = 1``: the same draws, tested) or start the Dask workers with
    ``DASK_DISTRIBUTED__WORKER__DAEMON=False``."""


def check_chain_processes(cores: int) -> None:
    """:class:`DaemonProcessError` when ``cores`` > 1 chain processes cannot be started from this process."""
    import multiprocessing

    if cores > 1 and multiprocessing.current_process().daemon:
        raise DaemonProcessError(
            f"[sampler] cores = {cores}: this process ({multiprocessing.current_process().name}) is a daemon — a Dask "
            "worker under its nanny or a process-pool worker — and cannot start the chains' processes; set [sampler] "
            "cores = 1 (chains one after another, the same draws) or start the workers with "
            "DASK_DISTRIBUTED__WORKER__DAEMON=False")


class LaplaceInitError(ValueError):
    """``laplace+adapt_full`` found no usable posterior mode (the optimiser failed, or the log density is not
    concave there): the initialisation is not silently swapped for another — name one in ``[sampler] init``."""


def pathfinder_available() -> bool:
    return importlib.util.find_spec("pymc_extras") is not None


def sample(model, method: str = "nuts", *, draws: int = 1000, tune: int = 1000, chains: int = 4,
           cores: int | None = None, seed: int = 0, target_accept: float = 0.9, advi_iterations: int = 20000,
           progressbar: bool = False, posterior_predictive: bool = True, compile_mode: str | None = None,
           init: str = "jitter+adapt_diag", top_up: int = 0, thresholds: dict | None = None):
    """Run ``method`` on ``model`` and return an ArviZ ``InferenceData`` (with posterior_predictive and
    observed_data where the model has observed variables).

    ``compile_mode="NUMBA"`` compiles the log-density with PyTensor's Numba backend instead of C. Sampling runs with
    one BLAS thread (threadpoolctl + ``OPENBLAS_NUM_THREADS=1`` for chain processes): on the 6-mouse surrogate example
    (2 chains × 600 iterations, loaded 2-core machine) this took 45 s instead of 148 s with default threading
    (Numba mode: 41 s, but 70 s of compilation instead of 10 s).

    ``top_up`` (NUTS): up to that many batches of ``chains`` more chains when the first ones miss only on effective
    sample size (:func:`top_up_chains`); ``thresholds``: the R-hat and ESS they are checked against
    (``{"rhat_max": …, "ess_min": …}``, default the outputs' thresholds)."""

    if compile_mode in ("C", "c", "default"):
        compile_mode = None
    if method not in METHODS:
        raise ValueError(f"unknown inference method {method!r}; choose one of {list(METHODS)}")
    if init not in NUTS_INITS:
        raise ValueError(f"unknown NUTS initialisation {init!r}; choose one of {list(NUTS_INITS)}")
    if top_up and method != "nuts":
        raise ValueError(f"top_up = {top_up}: more chains are drawn for NUTS only, not for method {method!r}")
    with one_blas_thread():
        return _sample(model, method, draws, tune, chains, cores, seed, target_accept, advi_iterations,
                       progressbar, posterior_predictive, compile_mode, init, top_up, thresholds)


@contextlib.contextmanager
def one_blas_thread():
    """Inside: one BLAS thread (threadpoolctl, and ``OPENBLAS_NUM_THREADS=1`` for processes started inside, e.g.
    chain processes). Multi-threaded BLAS on the small products of GP emulators and 6 × 6 covariances only
    oversubscribes the cores: surrogate value+gradient at 100 points 4.7 ms single-threaded vs 16–250 ms with
    default threading; one fold's importance sampling of 8 patients (``immunocal.calib.personalise``) 19.0 vs
    20.4–23.3 s on an idle 2-core machine and 28 vs 41–43 s beside two fold processes, identical draws."""
    import os

    from threadpoolctl import threadpool_limits

    old_env = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with threadpool_limits(1):
            yield
    finally:
        if old_env is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = old_env


def _nuts(model, draws, tune, chains, cores, seed, target_accept, progressbar, compile_kwargs,
          init="jitter+adapt_diag", top_up=0, thresholds=None):
    """``pm.sample`` with PyMC's own NUTS initialisation (``init``, the same per-chain seeds) done up
    front by ``pm.init_nuts`` and handed over as the step and the chains' starting points. The same sampler as
    ``pm.sample(model)``; what it skips is ``assign_step_methods`` building the whole model's gradient graph once per
    free variable only to learn that each is differentiable — on the 37-patient CT041 personalisation model (30
    free variables, emulator graphs) that was 66 s of a 255 s fold (profiled, ``cProfile``), for every fit."""
    import pymc as pm

    seeds = [int(rng.integers(2**30)) for rng in np.random.default_rng(seed).spawn(chains)]  # as pm.sample does
    laplace = None
    if init == "laplace+adapt_full":
        initial_points, potential, laplace, fun = laplace_start(model, chains, seeds, compile_kwargs)
        step = pm.NUTS(potential=potential, model=model, target_accept=target_accept, rng=seeds[0],
                       initial_point=initial_points[0], logp_dlogp_func=fun)  # the log density compiled once
    else:
        initial_points, step = pm.init_nuts(init=init, chains=chains, model=model, random_seed=seeds,
                                            progressbar=progressbar, tune=tune, target_accept=target_accept,
                                            compile_kwargs=compile_kwargs)
    state = step.sampling_state  # before any tuning: each top-up batch starts from it, as each chain does
    idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed, step=step,
                      initvals=initial_points, progressbar=progressbar, compute_convergence_checks=False,
                      compile_kwargs=compile_kwargs)
    if top_up:
        idata = top_up_chains(model, step, state, idata, top_up, thresholds or {}, draws=draws, tune=tune,
                              chains=chains, cores=cores, seed=seed, progressbar=progressbar,
                              compile_kwargs=compile_kwargs)
    if laplace is not None:
        import json

        idata.sample_stats.attrs["laplace_init"] = json.dumps(laplace)
    return idata


#: the R-hat above which more chains are not sampled: chains that disagree this much need a longer warm-up or a
#: reparametrisation, not more of the same (the misses more chains answer are narrow: R-hat ≤ 1.02, docs/calib.md)
TOP_UP_RHAT_MAX = 1.05


def top_up_chains(model, step, state, idata, batches: int, thresholds: dict, *, draws: int, tune: int, chains: int,
                  cores: int, seed: int, progressbar: bool = False, compile_kwargs: dict | None = None):
    """More chains for a NUTS run that missed the diagnostics thresholds **only** on effective sample size (no
    divergence, R-hat ≤ :data:`TOP_UP_RHAT_MAX`): up to ``batches`` batches of ``chains`` chains at the same settings
    — the same compiled sampler, reset to its untuned ``state``, new jittered starts and seeds — each pooled with the
    chains before it (``az.concat`` along ``chain``) and checked again. A miss with a divergence or chains that
    disagree is returned as it is, for the caller's diagnostics to report. Why: a narrow ESS miss answered by
    refitting with twice the draws and a higher ``target_accept`` cost about four first fits (deeper trees) on the
    CT041 folds, two more chains about one. Every batch is recorded in ``sample_stats.attrs["top_up"]`` (JSON: the
    diagnostics before it, its seed)."""
    import json

    import arviz as az
    import pymc as pm
    from pymc.blocking import DictToArrayBijection
    from pymc.sampling.mcmc import _init_jitter

    from .outputs import ESS_MIN, RHAT_MAX, check_diagnostics

    rhat_max = float(thresholds.get("rhat_max", RHAT_MAX))
    ess_min = float(thresholds.get("ess_min", ESS_MIN))
    fun = step._logp_dlogp_func  # the sampler's compiled log density: the new starts cost no compilation

    def logp(point):
        q, _ = DictToArrayBijection.map(point)
        return fun([q], extra_vars={})[0]

    record = []
    for batch in range(1, batches + 1):
        rep = check_diagnostics(idata, rhat_max=rhat_max, ess_min=ess_min, loud=False)
        narrow = rep["divergences"] == 0 and (rep["rhat_max"] is None or rep["rhat_max"] <= TOP_UP_RHAT_MAX)
        if rep["ok"] or not narrow:
            break
        batch_seed = int(np.random.default_rng([seed, batch]).integers(2**30))
        seeds = [int(rng.integers(2**30)) for rng in np.random.default_rng(batch_seed).spawn(chains)]
        starts = _init_jitter(model, None, seeds, jitter=True, jitter_max_retries=10, logp_fn=logp)
        step.sampling_state = state
        more = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=batch_seed, step=step,
                         initvals=starts, progressbar=progressbar, compute_convergence_checks=False,
                         compile_kwargs=compile_kwargs)
        idata = az.concat(idata, more, dim="chain")
        record.append({"batch": batch, "seed": batch_seed, "chains_added": chains, "before": {
            k: rep[k] for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "violations")}})
    if record:
        idata.sample_stats.attrs["top_up"] = json.dumps(record)
    return idata


def laplace_start(model, chains: int, seeds, compile_kwargs=None, weight: float = LAPLACE_PRIOR_WEIGHT):
    """The ``laplace+adapt_full`` NUTS start: the posterior mode of ``model`` in its unconstrained space (scipy's
    L-BFGS-B on the model's log density and gradient, from the model's initial point), the Hessian there by central
    differences of the gradient (2 n gradients), and the Laplace covariance ``(-H)^-1``. Returns ``(initial_points,
    potential, info)``: one start per chain drawn from the Laplace approximation (seeded by ``seeds``, so the chains
    start dispersed at the posterior's scale), PyMC's dense adapting potential started from the Laplace mean and
    covariance with ``weight`` pseudo-samples, what the search cost (evaluations, seconds, the Hessian's
    eigenvalue range) and the compiled log density and gradient (for the sampler: compiled once). :class:`LaplaceInitError` when the optimiser fails or ``-H`` is not positive definite.

    Why: PyMC's ``jitter+adapt_full`` re-estimates the dense mass matrix from the first warm-up draws, which on the
    Morisada MOC1 true-model fit (45 unconstrained dimensions) gave trees 8 deep for 200 iterations — 32 000 gradients
    in 600 warm-up iterations vs 5 500 with this start (docs/calib.md, "NUTS initialisation")."""
    import time

    import scipy.optimize
    from pymc.blocking import DictToArrayBijection, RaveledVars
    from pymc.step_methods.hmc.quadpotential import QuadPotentialFullAdapt

    t0 = time.perf_counter()
    fun = model.logp_dlogp_function(ravel_inputs=True, **(compile_kwargs or {}))
    fun.set_extra_values({})
    start = model.initial_point()
    x0 = DictToArrayBijection.map({v.name: start[v.name] for v in model.value_vars})
    n_eval = 0

    def negative(x):
        nonlocal n_eval
        n_eval += 1
        logp, grad = fun(x)
        return -float(logp), -np.asarray(grad, float)

    res = scipy.optimize.minimize(negative, x0.data, jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    names = [f"{name}[{i}]" if int(np.prod(shape)) > 1 else name
             for name, shape, *_ in x0.point_map_info for i in range(int(np.prod(shape)))]

    def along(vector):  # the unconstrained coordinates a direction mostly moves
        top = np.argsort(-np.abs(vector))[:3]
        return ", ".join(f"{names[i]} ({vector[i]:+.2f}, at {res.x[i]:.3g})" for i in top if abs(vector[i]) > 0.1)

    grad = np.asarray(res.jac, float)
    steep = bool(np.all(np.isfinite(grad)) and np.max(np.abs(grad)) > 1.0)  # not a stationary point
    if steep or not (res.success and np.all(np.isfinite(res.x)) and np.isfinite(res.fun)):
        moved = np.asarray(res.x, float) - x0.data
        if steep:
            where = (f" where the log density still rises steeply (max |gradient| {np.max(np.abs(grad)):.3g}) along "
                     f"{along(grad / np.linalg.norm(grad))}")
        elif np.all(np.isfinite(moved)) and np.linalg.norm(moved) > 0:
            where = f", having run furthest along {along(moved / np.linalg.norm(moved))}"
        else:
            where = ""
        raise LaplaceInitError(f"laplace+adapt_full: no posterior mode — the search "
                               f"{'stopped' if res.success else f'failed ({res.message.strip()})'} after {n_eval} "
                               f"evaluations{where}: a density growing towards a boundary or a hierarchical funnel (an "
                               "sd going to 0: try a non-centred parametrisation) has none; choose another [sampler] "
                               "init, e.g. 'jitter+adapt_full'")
    mode, n = res.x, len(res.x)
    hessian = np.empty((n, n))
    for i in range(n):  # central differences of the exact gradient
        h = 1e-5 * max(1.0, abs(mode[i]))
        e = np.zeros(n)
        e[i] = h
        hessian[:, i] = (fun(mode + e)[1] - fun(mode - e)[1]) / (2 * h)
    precision = -0.5 * (hessian + hessian.T)
    eig, vec = np.linalg.eigh(precision)
    if not (np.all(np.isfinite(eig)) and eig[0] > 1e-10 * abs(eig[-1])):  # relative: round-off of a singular -H
        raise LaplaceInitError(f"laplace+adapt_full: the log density is not concave at its mode (smallest eigenvalue "
                               f"of -H {eig[0]:.3g}, along {along(vec[:, 0]) or 'no single coordinate'}): no Laplace "
                               "approximation; choose another [sampler] init, e.g. 'jitter+adapt_full'")
    cov = (vec / eig) @ vec.T
    chol = vec / np.sqrt(eig)  # chol @ chol.T = cov
    points = []
    for seed in seeds[:chains]:
        z = np.random.default_rng(seed).standard_normal(n)
        points.append(DictToArrayBijection.rmap(RaveledVars(mode + chol @ z, x0.point_map_info)))
    potential = QuadPotentialFullAdapt(n, mode, cov, weight, rng=seeds[0])
    info = {"mode_log_density": -float(res.fun), "evaluations": n_eval + 2 * n,
            "seconds": round(time.perf_counter() - t0, 2), "dimensions": n, "hessian_eigenvalues": [float(eig[0]), float(eig[-1])], "prior_weight": weight}
    return points, potential, info, fun


def _sample(model, method, draws, tune, chains, cores, seed, target_accept, advi_iterations, progressbar,
            posterior_predictive, compile_mode, init="jitter+adapt_diag", top_up=0, thresholds=None):
    import pymc as pm

    if cores is None:
        cores = min(chains, 2) if method == "nuts" else 1
    if method in ("nuts", "smc", "demetropolis"):
        check_chain_processes(min(cores, chains))
    with model:
        if method == "nuts":
            idata = _nuts(model, draws, tune, chains, cores, seed, target_accept, progressbar,
                          {"mode": compile_mode} if compile_mode else None, init, top_up, thresholds)
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
            idata = pm.sample_smc(draws=draws, chains=chains, cores=cores, random_seed=seed,
                                  progressbar=progressbar, compute_convergence_checks=False)
        else:
            idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
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
