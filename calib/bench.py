"""``immunocal bench calib``: surrogate value+gradient time for 100 parameter vectors, NUTS time on the
linear-Gaussian hierarchical problem with 100 subjects (4 chains × 1000 draws), and the exact route's cost: value +
gradient of the RIT log volumes of the 40 Morisada MOC1 mice of the four fitted arms through the exact emulator.
The population emulator (:func:`bench_population_emulator`): the virtual CT041 cohort's PCA-GP at 30 patients,
the fused Numba kernel against the PyTensor graph of the same means.
``immunocal bench personalise``: one new patient's latent posterior given a fitted population (NUTS, ADVI)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def hierarchical_linear_problem(n_subjects: int, n_times: int = 5, seed: int = 0, mu0=0.0, s0=2.0, tau=0.7,
                                sigma=0.5, slope=0.5):
    """Data, model inputs and the exact posterior of the linear-Gaussian hierarchical test problem."""
    from immunocal.priors import Prior

    from .data import Measurements
    from .model import ObservableSpec, ParameterSpec
    from .surrogate import ExactEmulator
    from .toy import LinearModel, hierarchical_level_posterior

    rng = np.random.default_rng(seed)
    fm = LinearModel(times=np.arange(n_times, dtype=float))
    mu = rng.normal(mu0, s0)
    theta = rng.normal(mu, tau, n_subjects)
    subj = np.repeat(np.arange(n_subjects), n_times)
    t = np.tile(fm.times, n_subjects)
    y = theta[subj] + slope * t + rng.normal(0, sigma, subj.size)
    data = Measurements.from_arrays([f"s{i:03d}" for i in subj], ["control"] * y.size, ["y"] * y.size, t, y)
    params = [ParameterSpec("level", "latent", prior=Prior("Normal", {"mu": mu0, "sigma": s0}), sd=tau),
              ParameterSpec("slope", "fixed", value=slope)]
    obs = {"y": ObservableSpec(sigma=sigma)}
    mean, sd = hierarchical_level_posterior(y - slope * t, subj, mu0, s0, tau, sigma)
    return {"emulator": ExactEmulator(fm), "parameters": params, "data": data, "observables": obs,
            "exact_mean": mean, "exact_sd": sd}


def bench_surrogate(n_train: int = 128, seed: int = 0, mode: str | None = None) -> float:
    """Seconds per value+gradient evaluation of mean+variance at 100 parameter vectors (3-parameter logistic
    surrogate, ``n_train`` runs); ``mode`` is the PyTensor compile mode (None = default C backend, "NUMBA")."""
    import pytensor
    import pytensor.tensor as pt

    from .design import design
    from .surrogate import GPSurrogate
    from .toy import LogisticModel

    fm = LogisticModel()
    sp = fm.space()
    X = design(sp, n_train, seed=seed)
    sur = GPSurrogate(sp, fm.observables, fm.times, n_restarts=0).fit(X, fm.simulate(X))
    th = pt.dmatrix("theta")
    mean, var = sur.predict_pt(th)
    obj = mean.sum() + var.sum()
    f = pytensor.function([th], [obj, pytensor.grad(obj, th)], mode=mode)
    Xt = design(sp, 100, method="random", seed=seed + 1)
    from threadpoolctl import threadpool_limits

    f(Xt)
    reps = 20
    with threadpool_limits(1):  # as in immunocal.calib.inference.sample: one BLAS thread
        f(Xt)
        t0 = time.perf_counter()
        for _ in range(reps):
            f(Xt)
        return (time.perf_counter() - t0) / reps


def bench_nuts(n_subjects: int = 100, draws: int = 1000, chains: int = 4, cores: int = 2) -> dict:
    from .inference import sample
    from .model import build_model

    prob = hierarchical_linear_problem(n_subjects)
    m = build_model(prob["emulator"], prob["parameters"], prob["data"], prob["observables"],
                    store_predictions=False)
    t0 = time.perf_counter()
    idata = sample(m, draws=draws, tune=1000, chains=chains, cores=cores, seed=1, posterior_predictive=False)
    elapsed = time.perf_counter() - t0
    post = idata.posterior
    m_hat = np.concatenate([[float(post.level_loc.mean())], post.level.mean(("chain", "draw")).values])
    s_hat = np.concatenate([[float(post.level_loc.std())], post.level.std(("chain", "draw")).values])
    return {"nuts_hier100_s": elapsed,
            "nuts_hier100_max_abs_mean_err_in_sd": float(np.max(np.abs(m_hat - prob["exact_mean"]) / prob["exact_sd"])),
            "nuts_hier100_max_rel_sd_err": float(np.max(np.abs(s_hat / prob["exact_sd"] - 1)))}


def bench_exact_rit(repeats: int = 5, seed: int = 0) -> dict:
    """Seconds per value + gradient of the summed log volumes of the 40 mice of the Morisada MOC1 exact-route config's
    (``moc1_exact.toml``) four fitted arms (10 per arm, each simulated under its own arm to its own last data day — as
    the likelihood does — at the config's resolution, 3 parameters per mouse at random plausible values) through the exact emulator's Op (the
    kernel's forward-mode tangents, one core), best of ``repeats``; and the same model's values alone."""
    import tempfile

    import pytensor
    import pytensor.tensor as pt

    from .datasets import dataset_dir
    from .surrogate import ExactEmulator
    from .workflow import Calibration

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        cal = Calibration(dataset_dir("morisada2018") / "moc1_exact.toml", tmp, progress=False)
        fm, conditions, data = cal.forward, cal.conditions[0], cal.data
        schedules = {c: cal.schedule(c) for c in conditions}
        space = cal._input_space()
    inputs, values, horizons, total = [], [], [], 0.0
    for c in conditions:
        mice = np.unique(data.subject[data.condition == c])
        n = len(mice)
        horizons.append(np.array([data.time[data.subject == m].max() for m in mice], float))
        th = pt.dmatrix(f"theta_{c}")
        inputs.append(th)
        values.append(np.column_stack([rng.uniform(0.05, 0.2, n), np.exp(rng.uniform(0.0, np.log(100.0), n)),
                                       np.full(n, 0.05)]))
        total = total + ExactEmulator(fm, schedules[c], space=space).predict_pt(th, until=horizons[-1])[0].sum()
    f = pytensor.function(inputs, [total, *pytensor.grad(total, inputs)])
    f(*values)  # compile (kernel specialisations are cached on disk)

    def values_only():
        return [fm.simulate(v, schedules[c], until=u) for v, c, u in zip(values, conditions, horizons)]

    values_only()  # the value kernel's first call (cache load) is not what a gradient costs

    def best(fun):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fun()
            times.append(time.perf_counter() - t0)
        return min(times)

    return {"exact_rit_moc1_40_value_grad_s": best(lambda: f(*values)),
            "exact_rit_moc1_40_value_s": best(values_only),
            "exact_rit_moc1_subjects": int(sum(len(v) for v in values)),
            "exact_rit_numerics": fm.numerics_tag}


def bench_quickstart_nuts(draws: int = 1000, tune: int = 1000, chains: int = 2, cores: int = 2) -> dict:
    """NUTS wall clock on the quickstart's model — ``moc1_exact.toml``: the true RIT model with its exact gradients,
    the config's initialisation, mass matrix and ``target_accept`` — for ``chains`` × ``draws`` after ``tune``
    tuning steps on ``cores`` cores, through the workflow (no prediction). ``quickstart_nuts_s``: PyMC's own
    sampling time (tuning and draws, every chain; compilation and the initialisation excluded);
    ``quickstart_fit_s``: the workflow's whole fit (PyTensor compilation, the Laplace start, sampling and the
    pointwise log-likelihood); the run's diagnostics, leapfrog steps per draw and seconds per value + gradient."""
    import tempfile

    from .config import load_config
    from .datasets import dataset_dir
    from .quickstart import CONFIG
    from .workflow import Calibration

    cfg = load_config(dataset_dir("morisada2018") / CONFIG)
    cfg["sampler"].update(draws=draws, tune=tune, chains=chains, cores=cores)
    cfg["predict"]["draws"] = 0
    with tempfile.TemporaryDirectory() as tmp:
        cal = Calibration(cfg, tmp, force=True, progress=False)
        res = cal.run()
        stats = cal.idata.sample_stats
        steps = float(stats["n_steps"].mean()) if "n_steps" in stats else None
        nuts_s = float(cal.idata.posterior.attrs.get("sampling_time", float("nan")))
    d = res["diagnostics"]
    return {"quickstart_nuts_s": nuts_s, "quickstart_fit_s": res["seconds"]["sampling"],
            "quickstart_nuts_settings": {"config": f"calib/datasets/morisada2018/{CONFIG}", "draws": draws,
                                         "tune": tune, "chains": chains, "cores": cores,
                                         "init": cfg["sampler"].get("init")},
            "quickstart_nuts_rhat_max": d["rhat_max"], "quickstart_nuts_ess_bulk_min": d["ess_bulk_min"],
            "quickstart_nuts_ess_tail_min": d["ess_tail_min"], "quickstart_nuts_divergences": d["divergences"],
            "quickstart_nuts_leapfrog_per_draw": steps,
            "quickstart_gradient_s": (res.get("route") or {}).get("gradient_seconds"),
            "quickstart_nuts_target_s": 180.0}


def bench_population_emulator(n_design: int = 400, n_points: int = 30, seed: int = 1) -> dict:
    """The emulator term of a population fit's log density: the PCA-GP of the virtual CT041 cohort (the CAR-T cohort
    simulator at 5e8 cells, ``n_design`` Sobol runs, 80 % for training, as ``personalise.toml``'s ``[design]``) at
    ``n_points`` patients, mean value + gradient with a constant emulator variance, PyTensor's Numba backend: the
    fused kernel (:mod:`immunocal.calib.gp_kernel`, what the fit runs) against the same means as a PyTensor graph
    (what it ran before, and what the GP variance still needs). Seconds per evaluation, one thread, and the largest
    difference of the two gradients relative to their size."""
    import pytensor
    import pytensor.tensor as pt
    from threadpoolctl import threadpool_limits

    from .cohort import CohortSimulator
    from .design import design
    from .surrogate import GPSurrogate

    sim = CohortSimulator()
    X = design(sim.space(), n_design, seed=seed)
    train = np.random.default_rng(seed).permutation(n_design)[: int(0.8 * n_design)]
    Y = sim.simulate(X, {"cart_days": [0], "cart_doses": [5e8]})
    sur = GPSurrogate(sim.space(), sim.observables, sim.times, n_restarts=0, seed=seed)
    sur.fit(X[train], Y[train], mask=sim.emulation_mask(Y[train]))
    sur.heldout_var_ = np.ones((len(sim.observables), 1))
    sur.use_variance("held_out")
    th = pt.dmatrix("theta")
    w = np.random.default_rng(seed).normal(size=(n_points, len(sim.observables), 1))
    fused = (sur.predict_pt(th)[0] * w).sum()
    m_graph = sur._graph_components(sur.space.to_unit_pt(th))[1]
    graph = ((sur.y_mean_ + pt.dot(m_graph, sur.W_) * sur.y_scale_).reshape(w.shape) * w).sum()
    pts = design(sim.space(), n_points, method="random", seed=seed + 1)
    out, grads = {}, {}
    with threadpool_limits(1):
        for name, obj in (("fused", fused), ("graph", graph)):
            f = pytensor.function([th], [obj, pytensor.grad(obj, th)], mode="NUMBA")
            grads[name] = f(pts)[1]
            reps = 200
            t0 = time.perf_counter()
            for _ in range(reps):
                f(pts)
            out[f"population_emulator_{n_points}_eval_grad_{name}_numba_s"] = (time.perf_counter() - t0) / reps
    out["population_emulator_components_runs"] = [int(sur.alpha_.shape[0]), int(sur.alpha_.shape[1])]
    out["population_emulator_fused_vs_graph_grad_rel_diff"] = float(
        np.abs(grads["fused"] - grads["graph"]).max() / np.abs(grads["graph"]).max())
    out["population_emulator_speedup"] = (out[f"population_emulator_{n_points}_eval_grad_graph_numba_s"]
                                          / out[f"population_emulator_{n_points}_eval_grad_fused_numba_s"])
    return out


def run(subjects: int = 100, draws: int = 1000, chains: int = 4, cores: int = 2, exact: bool = True,
        quickstart: bool = True) -> dict:
    """``immunocal bench calib``: the surrogate (C and Numba backends), NUTS on the hierarchical test problem, the
    exact RIT route's gradient (``exact``), NUTS on the quickstart's model (``quickstart``: 2 × 1000 after 1000,
    minutes) and the BLAS PyTensor links to."""
    import pytensor

    out = {"surrogate_100_eval_grad_s": bench_surrogate(),
           "surrogate_100_eval_grad_numba_s": bench_surrogate(mode="NUMBA")}
    out.update(bench_population_emulator())
    out.update(bench_nuts(n_subjects=subjects, draws=draws, chains=chains, cores=cores))
    if exact:
        out.update(bench_exact_rit())
    if quickstart:
        out.update(bench_quickstart_nuts(cores=cores))
    out["pytensor_blas_ldflags"] = pytensor.config.blas__ldflags  # "" = NumPy C-API fallback (no BLAS linked)
    return out


def bench_personalise(out: str | Path, population_draws: int = 200, seed: int = 0) -> dict:
    """Seconds for one new patient's latent posterior given a fitted population (``immunocal.calib.personalise``), on the
    bundled VIRTUAL CT041 tables: the population is fitted once to 36 patients (``out``; a finished fit there is
    reused), then the 37th is personalised by importance sampling (the config's settings: the reference, with its
    Pareto k̂ and ESS), by NUTS (2 chains × 1000 draws after 1000 tuning, one core: R-hat says whether the chains
    agree), by ADVI (mean-field, 20,000 iterations, 1000 draws) and, where pymc-extras is installed, by Pathfinder
    (1000 draws); the others are scored against the reference
    (per latent |Δ posterior mean| / reference sd and the sd ratio, link scale). Seconds include compilation."""
    import time

    import arviz as az
    import numpy as np

    from .config import load_config
    from .datasets import dataset_dir
    from .personalise import personalise
    from .workflow import Calibration, subset

    cfg = load_config(dataset_dir("ct041_virtual") / "personalise.toml")
    cfg["data"]["measurements"] = str(dataset_dir("ct041_virtual") / "measurements.csv")
    cfg["data"]["conditions"] = str(dataset_dir("ct041_virtual") / "conditions.csv")
    cfg["data"]["heldout_subjects"] = ["V0037"]
    cfg["personalise"] = {**cfg.get("personalise", {}), "population_draws": population_draws}
    cal = Calibration(cfg, Path(out), force=True, progress=False)
    t0 = time.perf_counter()
    summary = cal.load_finished()
    if summary is None:
        summary = cal.run()
    else:
        cal.ensure_emulators()  # the fit's own (refined) emulators
    fit_s = time.perf_counter() - t0
    meas, _ = cal.tables
    rows = subset(meas, meas.subject == "V0037")
    res = {"personalise_population_fit_s": fit_s, "personalise_population_draws": population_draws,
           "population_diagnostics": summary["diagnostics"]}
    imp = {k: v for k, v in cfg["personalise"].items() if k not in ("method", "population_draws")}
    ref = None
    from .inference import pathfinder_available

    methods = [("importance", {"method": "importance", **imp}),
               ("nuts", {"method": "nuts", "chains": 2, "cores": 1, "draws": 1000, "tune": 1000}),
               ("advi", {"method": "advi", "draws": 1000})]
    if pathfinder_available():
        methods.append(("pathfinder", {"method": "pathfinder", "draws": 1000}))
    for name, kw in methods:
        t0 = time.perf_counter()
        idata = personalise(cal, rows, n_population_draws=population_draws, **{**kw, "seed": seed})
        res[f"personalise_one_patient_{name}_s"] = time.perf_counter() - t0
        z = idata.posterior["z"].isel(subject=0).stack(k=("chain", "draw")).values  # (latent, draws)
        if name == "importance":
            ref = z
            res["importance_pareto_k"] = float(idata.importance["pareto_k"].values[0])
            res["importance_ess"] = float(idata.importance["ess_importance"].values[0])
            continue
        dm = np.abs(z.mean(1) - ref.mean(1)) / ref.std(1)
        ratio = z.std(1) / ref.std(1)
        res[f"{name}_vs_importance"] = {"max_abs_dmean_over_sd": float(dm.max()),
                                        "sd_ratio_min": float(ratio.min()), "sd_ratio_max": float(ratio.max())}
        if name == "nuts":
            res["nuts_rhat_max"] = float(az.rhat(idata.posterior["z"]).to_array().max())
    res["targets"] = {"personalise_one_patient_nuts_s": 10.0, "personalise_one_patient_pathfinder_s": 1.0}
    if not pathfinder_available():
        res["pathfinder"] = "not measured: pymc-extras is not installed (optional extra 'pathfinder')"
    return res


def _nuts_quality(idata, names, wall: float) -> dict:
    """The run's convergence report (:func:`immunocal.calib.outputs.check_diagnostics`), its wall clock and bulk ESS
    per second."""
    from .outputs import check_diagnostics

    rep = check_diagnostics(idata, var_names=names, loud=False)
    out = {k: rep[k] for k in ("ess_bulk_min", "ess_tail_min", "rhat_max", "divergences")}
    out.update(wall_s=wall, ess_bulk_per_s=out["ess_bulk_min"] / wall)
    return out


def bench_nutpie(out: str | Path, models=("hier100", "moc1")) -> dict:
    """nutpie (Rust NUTS, the log-density compiled once by PyTensor's Numba backend) against PyMC's NUTS
    (:func:`immunocal.calib.inference.sample`) on the same PyMC models, same draws, tuning, chains and
    ``target_accept``: wall clock (compilation included), minimum bulk/tail ESS, R-hat, bulk ESS per second.
    ``hier100``: the linear-Gaussian hierarchical problem of :func:`bench_nuts` (4 × 1000 after 1000);
    ``moc1``: the quickstart's model (Morisada MOC1 on the true model, exact gradients; the quickstart's draws and
    tuning; PyMC's default initialisation on both sides)."""
    import importlib.util

    if importlib.util.find_spec("nutpie") is None:
        raise ValueError("bench nutpie needs nutpie (pip install 'immunocal[nutpie]')")
    import nutpie

    from .inference import sample
    from .model import build_model

    res = {}
    for name in models:
        if name == "hier100":
            prob = hierarchical_linear_problem(100)
            m = build_model(prob["emulator"], prob["parameters"], prob["data"], prob["observables"],
                            store_predictions=False)
            settings, mode = {"draws": 1000, "tune": 1000, "chains": 4, "target_accept": 0.9}, None
        elif name == "moc1":
            from .config import load_config
            from .datasets import dataset_dir
            from .quickstart import CONFIG, QUICK
            from .workflow import Calibration

            cfg = load_config(dataset_dir("morisada2018") / CONFIG)
            cal = Calibration(cfg, Path(out) / "moc1", force=True, progress=False)
            cal.ensure_emulators()
            m = cal.model()
            q = {**cfg["sampler"], **QUICK["sampler"]}
            settings = {"draws": q["draws"], "tune": q["tune"], "chains": 2, "target_accept": q["target_accept"]}
            mode = "NUMBA"
        else:
            raise ValueError(f"unknown bench model {name!r}; choose from ['hier100', 'moc1']")
        names = [v.name for v in m.free_RVs]
        t0 = time.perf_counter()
        idata = sample(m, seed=1, cores=2, posterior_predictive=False, compile_mode=mode, **settings)
        pymc = _nuts_quality(idata, names, time.perf_counter() - t0)
        t0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(m, backend="numba")
        t1 = time.perf_counter()
        idata = nutpie.sample(compiled, seed=1, cores=2, progress_bar=False, **settings)
        fast = _nuts_quality(idata, names, time.perf_counter() - t0)
        fast["compile_s"] = t1 - t0
        res[name] = {"settings": settings, "pymc_nuts": pymc, "nutpie": fast,
                     "nutpie_over_pymc_ess_per_s": fast["ess_bulk_per_s"] / pymc["ess_bulk_per_s"]}
    res["nutpie_version"] = nutpie.__version__
    return res
