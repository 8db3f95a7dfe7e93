"""Posteriors of new subjects given a fitted population: personalisation without refitting the population.

A finished calibration with latent parameters (:class:`immunocal.calib.workflow.Calibration`) has a posterior over its
population quantities φ — each latent's location, spread and covariate effects, the learned noise sds and ordinal
cut-points. A new subject (a test patient) with covariates x and observations y then has the posterior

    p(z | y, x, D) ∝ ∫ p(y | θ(z), φ) N(z; loc + β·x̃, sd²) p(φ | D) dφ
                   ≈ (1/S) Σ_s p(y | θ(z), φ_s) N(z; loc_s + β_s·x̃, sd_s²)

in the latents' link space z (θ = link⁻¹(z)), with φ_s S posterior draws of the fit and x̃ the covariates scaled as
the fitted subjects' were (:func:`immunocal.calib.model.standardised_covariates`). The mixture over draws is exact for the
draws (no Gaussian approximation of the population posterior) and smooth in z, so NUTS, Pathfinder and ADVI all
apply. The population is not updated by the new subject (the fit's data D only: "learned on the training folds").
Several new subjects go into one model as independent blocks (their posteriors factorise).

The observation densities per draw are :func:`immunocal.calib.likelihoods.rows_logp_per_draw` (the same families and
censoring as the fit); the emulators are the fit's own (:func:`immunocal.calib.model.emulate_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import Conditions, Measurements
from .likelihoods import CONTINUOUS, rows_logp_per_draw
from .model import emulate_rows, standardised_covariates


def population_draws(idata, latent_specs, observables, n: int = 200, seed: int = 0) -> dict:
    """``n`` draws (evenly thinned over chains) of everything a new subject's posterior needs: per latent ``loc``
    ``(S,)``, ``sd`` ``(S,)`` and ``beta`` ``(S, k)``; per observable the noise sd ``sigma`` ``(S,)`` and ordinal
    ``cutpoints`` ``(S, K−1)`` where the fit learned them; ``index``: the draws' positions among the fit's
    posterior samples stacked over (chain, draw)."""
    post = idata.posterior
    flat = {v: post[v].stack(sample=("chain", "draw")).transpose("sample", ...).values for v in post.data_vars}
    total = next(iter(flat.values())).shape[0]
    idx = np.unique(np.linspace(0, total - 1, min(n, total)).astype(int))
    out: dict = {"n": len(idx), "index": idx, "latent": {}, "observables": {}}
    for s in latent_specs:
        loc = flat[f"{s.name}_loc"][idx]
        sd = flat[f"{s.name}_sd"][idx] if f"{s.name}_sd" in flat else np.full(len(idx), float(s.sd))
        beta = flat[f"{s.name}_beta"][idx] if s.covariates else np.zeros((len(idx), 0))
        out["latent"][s.name] = {"loc": loc, "sd": sd, "beta": beta}
    for o in observables:
        entry = {}
        if f"sigma_{o}" in flat:
            entry["sigma"] = flat[f"sigma_{o}"][idx]
        if f"cutpoints_{o}" in flat:
            entry["cutpoints"] = flat[f"cutpoints_{o}"][idx]
        out["observables"][o] = entry
    return out


def _checked_latents(emulators, latent_specs: Sequence) -> list:
    """The latent specs in the emulators' input order (the emulators' inputs must be exactly the latents)."""
    names = list(next(iter(emulators.values())).space.names)
    if sorted(names) != sorted(s.name for s in latent_specs):
        raise ValueError(f"personalisation needs emulators over the latent parameters "
                         f"{sorted(s.name for s in latent_specs)} only; they also take "
                         f"{[n for n in names if n not in {s.name for s in latent_specs}]} (population-level inputs: "
                         "fix them, or make them latent)")
    return sorted(latent_specs, key=lambda s: names.index(s.name))


def _population_means(draws: dict, latent_specs: Sequence, subjects: Sequence[str], conditions: Conditions | None,
                      fitted_subjects: Sequence[str]) -> np.ndarray:
    """``(S, subjects, latents)``: each new subject's population location of each latent under each draw."""
    means = []
    for spec in latent_specs:
        d = draws["latent"][spec.name]
        mean = np.repeat(d["loc"][:, None], len(subjects), axis=1)
        if spec.covariates:
            mean = mean + d["beta"] @ standardised_covariates(conditions, subjects, spec.covariates,
                                                              reference=fitted_subjects).T
        means.append(mean)
    return np.stack(means, axis=2)


def _check_rows(emulators, rows: Measurements) -> list[tuple[str, str]]:
    units = list(dict.fromkeys(zip(rows.subject.tolist(), rows.condition.tolist())))
    if len(units) != len(rows.subjects):
        raise ValueError(f"{rows.source}: a new subject appears under several conditions")
    missing = sorted(set(rows.condition.tolist()) - set(emulators))
    if missing:
        raise ValueError(f"{rows.source}: no emulator for condition(s) {missing}: the fit covered "
                         f"{sorted(emulators)}")
    return units


def _subject_log_density(emulators, latent_specs: Sequence, links: dict, draws: dict, means: np.ndarray,
                         rows: Measurements, observables: dict, z, per_draw: bool = False):
    """PyTensor ``(subjects,)``: each new subject's log posterior density (up to a constant) at its latents ``z``
    ``(subjects, latents)`` — log (1/S) Σ_s N(z; means_s, sd_s²) p(y | θ(z), φ_s) (module docstring). ``means``:
    :func:`_population_means` for ``rows.subjects`` in that order. ``per_draw``: the terms of the sum instead,
    ``(S, subjects)`` (log N(z; means_s, sd_s²) + log p(y | θ(z), φ_s)). Call inside a model context (the emulators'
    domain walls are model potentials)."""
    import pymc as pm
    import pytensor.tensor as pt

    subjects = rows.subjects
    units = _check_rows(emulators, rows)
    s_index = {s: i for i, s in enumerate(subjects)}
    S = draws["n"]
    lp = pt.zeros((S, len(subjects)))
    cols = []
    for j, spec in enumerate(latent_specs):
        sd = draws["latent"][spec.name]["sd"][:, None]
        lp = lp + (-0.5 * pt.square((z[:, j][None, :] - means[:, :, j]) / sd) - np.log(sd) - 0.5 * np.log(2 * np.pi))
        cols.append(links[spec.name].link_inverse(z[:, j]))
    theta_units = pt.stack(cols, axis=1)[np.array([s_index[s] for s, _ in units])]
    mu_all, var_all = emulate_rows(emulators, units, theta_units, rows)
    row_subject = np.array([s_index[s] for s in rows.subject])
    for o, spec in observables.items():
        r = np.flatnonzero(rows.observable == o)
        if len(r) == 0:
            continue
        d = draws["observables"].get(o, {})
        ll = rows_logp_per_draw(spec, mu_all[r], var_all[r], rows.value[r], rows.censoring[r], rows.sigma[r],
                                d.get("sigma"), d.get("cutpoints"))  # (S, rows)
        # each row's log-likelihood onto its subject (accumulating: several rows per subject)
        lp = lp + pt.inc_subtensor(pt.zeros((len(subjects), S))[row_subject[r]], ll.T).T
    return lp if per_draw else pm.math.logsumexp(lp, axis=0) - np.log(S)


def new_subject_model(emulators, latent_specs: Sequence, links: dict, draws: dict, rows: Measurements,
                      observables: dict, conditions: Conditions | None, fitted_subjects: Sequence[str]):
    """The PyMC model of new subjects' latents given population ``draws`` (module docstring); ``links``: each
    latent's prior (its link). ``rows``: the new subjects' data; ``conditions``: a table with their covariates;
    ``fitted_subjects``: the subjects the population was fitted to (covariate scaling). The emulators' inputs must
    be exactly the latents (other inputs fixed inside the emulator or the simulator)."""
    import pymc as pm

    latent_specs = _checked_latents(emulators, latent_specs)
    latents = [s.name for s in latent_specs]
    subjects = rows.subjects
    _check_rows(emulators, rows)
    means = _population_means(draws, latent_specs, subjects, conditions, fitted_subjects)
    start = means.mean(0)  # the population mean: the chains' start
    with pm.Model(coords={"subject": subjects, "latent": latents}) as m:
        # z = start + offset with a flat offset: the chains start at the population mean (an initval would stop
        # PyMC's Numba compile mode); the density is written on the offset's value variable (pm.logp of
        # distributions whose parameters depend on a model RV would clone it), the latents are recorded from the RV
        offset = pm.Flat("z_offset", dims=("subject", "latent"))
        z_rv = pm.Deterministic("z", start + offset, dims=("subject", "latent"))
        for j, spec in enumerate(latent_specs):
            pm.Deterministic(spec.name, links[spec.name].link_inverse(z_rv[:, j]), dims="subject")
        dens = _subject_log_density(emulators, latent_specs, links, draws, means, rows, observables,
                                    start + m.rvs_to_values[offset])
        pm.Potential("population_mixture", dens.sum())
    return m


#: settings of :func:`importance_posterior` (``[personalise]`` keys of ``method = "importance"``)
IMPORTANCE_DEFAULTS = {"particles": 4000, "stages": 4, "max_stages": 8, "draws": 1000, "seed": 0, "components": 4,
                       "defensive": 0.2, "block": 500, "khat_max": 0.7}


def _prior_mixture_logpdf(z: np.ndarray, means: np.ndarray, sds: np.ndarray) -> np.ndarray:
    """log (1/S) Σ_s N(z; means_s, diag sds_s²) for particles ``z`` ``(P, L)``; ``means`` ``(S, L)``, ``sds``
    ``(S, L)``."""
    from scipy.special import logsumexp

    q = -0.5 * np.square((z[None, :, :] - means[:, None, :]) / sds[:, None, :]) - np.log(sds[:, None, :])
    return logsumexp(q.sum(-1), axis=0) - np.log(len(means)) - 0.5 * z.shape[1] * np.log(2 * np.pi)


def _mixture_terms(emulators, latent_specs: Sequence, links: dict, population: dict, means: np.ndarray,
                   rows: Measurements, observables: dict, block: int):
    """A numpy function ``z (subjects, m, latents) -> (S, subjects, m)``: the terms of each subject's mixture density
    (:func:`_subject_log_density` ``per_draw``) at m points per subject, evaluated ``block`` points per subject at a
    time through one compiled PyTensor function (the block's B·n points are pseudo-subjects sharing their subject's
    rows and population means)."""
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    subjects, B = rows.subjects, block
    n, L, S = len(subjects), len(latent_specs), population["n"]
    per = {s: np.flatnonzero(rows.subject == s) for s in subjects}
    take = np.concatenate([per[s] for s in subjects for _ in range(B)])
    pseudo = np.concatenate([[f"{s}~{b}"] * len(per[s]) for s in subjects for b in range(B)])
    block_rows = Measurements.from_arrays(pseudo, rows.condition[take], rows.observable[take], rows.time[take],
                                          rows.value[take], rows.sigma[take], rows.censoring[take], rows.source)
    zin = pt.matrix("z")
    with pm.Model():
        per_draw = _subject_log_density(emulators, latent_specs, links, population, np.repeat(means, B, axis=1),
                                        block_rows, observables, zin, per_draw=True)
    per_draw_fn = pytensor.function([zin], per_draw)

    def terms(z):
        m = z.shape[1]
        pad = np.concatenate([z, np.repeat(z[:, :1], -m % B, axis=1)], axis=1)
        out = np.empty((S, n, pad.shape[1]))
        for k in range(0, pad.shape[1], B):
            out[:, :, k:k + B] = per_draw_fn(np.ascontiguousarray(pad[:, k:k + B].reshape(n * B, L))).reshape(S, n, B)
        return out[:, :, :m]

    return terms


class _GaussianMixture:
    """A Gaussian mixture density with its sampler (weights ``(K,)``, means ``(K, L)``, covariances ``(K, L, L)``)."""

    def __init__(self, weights, means, covariances):
        self.weights, self.means = np.asarray(weights), np.asarray(means)
        self.chol = np.linalg.cholesky(covariances)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[k] + np.einsum("nij,nj->ni", self.chol[k], rng.standard_normal((n, self.means.shape[1])))

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_triangular
        from scipy.special import logsumexp

        L = z.shape[1]
        out = []
        for w, m, c in zip(self.weights, self.means, self.chol):
            r = solve_triangular(c, (z - m).T, lower=True)
            out.append(np.log(w) - 0.5 * np.sum(r * r, axis=0) - np.sum(np.log(np.diag(c)))
                       - 0.5 * L * np.log(2 * np.pi))
        return logsumexp(np.array(out), axis=0)


def importance_posterior(emulators, latent_specs: Sequence, links: dict, population: dict, rows: Measurements,
                         observables: dict, conditions: Conditions | None, fitted_subjects: Sequence[str],
                         progress=None, **settings):
    """Each new subject's posterior (the density of :func:`new_subject_model`; ``population``:
    :func:`population_draws`) by adaptive importance sampling,
    returned as InferenceData (one chain of ``draws`` resampled draws; per-subject diagnostics in the group
    ``importance``).

    The posterior of a handful of latents given a fitted population is low-dimensional but can be multimodal
    (observables that do not separate the latents leave ridges and several modes: NUTS chains then stay in
    different modes, R-hat > 1.2 seen on the virtual CT041 cohort). Importance sampling does not move along the
    density, so modes do not trap it: stage 0 draws ``particles`` from the population mixture (the prior: draw s,
    then z ~ N(means_s, sd_s²)); each further stage draws from the defensive mixture
    ``defensive`` · prior + (1 − ``defensive``) · a Gaussian mixture (``components``, scikit-learn) fitted to the
    particles so far resampled; after ``stages`` stages, further stages (up to ``max_stages``) run while a
    subject's Pareto k̂ exceeds ``khat_max``. All stages' particles are weighed together, each against the average
    of all stages' proposals (deterministic-mixture weights; the prior term bounds them by the likelihood). The
    weights are Pareto-smoothed (``arviz.psislw``); k̂ is the reliability check (k̂ ≤ 0.7: the estimate is
    trustworthy, Vehtari et al. 2024) and a subject above ``khat_max`` is reported, not hidden
    (``summary["personalised"]["failures"]``); the ESS is that of all stages' particles. The density is evaluated
    in blocks of ``block`` particles per subject, all subjects at once (one compiled PyTensor function)."""
    import arviz as az
    import xarray as xr
    from scipy.special import logsumexp
    from sklearn.mixture import GaussianMixture

    unknown = sorted(set(settings) - set(IMPORTANCE_DEFAULTS))
    if unknown:
        raise ValueError(f"[personalise] method = 'importance': unknown setting(s) {unknown}; "
                         f"allowed: {sorted(IMPORTANCE_DEFAULTS)}")
    opt = {**IMPORTANCE_DEFAULTS, **settings}
    P, B, n_draws = int(opt["particles"]), int(opt["block"]), int(opt["draws"])
    alpha = float(opt["defensive"])
    if (P < B or P % B or not 0.0 < alpha <= 1.0 or int(opt["stages"]) < 1 or n_draws < 1
            or int(opt["max_stages"]) < int(opt["stages"])):
        raise ValueError(f"[personalise] importance settings: particles ({P}) must be a multiple of block ({B}), "
                         f"0 < defensive ({alpha}) ≤ 1, 1 ≤ stages ≤ max_stages, draws ≥ 1")
    rng = np.random.default_rng(int(opt["seed"]))
    latent_specs = _checked_latents(emulators, latent_specs)
    latents = [s.name for s in latent_specs]
    subjects = rows.subjects
    _check_rows(emulators, rows)
    means = _population_means(population, latent_specs, subjects, conditions, fitted_subjects)  # (S, n, L)
    sds = np.column_stack([population["latent"][s.name]["sd"] for s in latent_specs])  # (S, L)
    n, L, S = len(subjects), len(latents), population["n"]

    terms = _mixture_terms(emulators, latent_specs, links, population, means, rows, observables, B)

    def target(z):  # z (n, m, L) -> (n, m)
        return logsumexp(terms(z), axis=0) - np.log(S)

    T, T_max = int(opt["stages"]), int(opt["max_stages"])
    zs = np.empty((n, T_max * P, L))  # every stage's particles: weighed together at the end
    lp = np.empty((n, T_max * P))  # target log density
    lp0 = np.empty((n, T_max * P))  # log density of the population mixture (the prior, stage 0's proposal)
    gmms: list[list] = [[] for _ in range(n)]  # per subject, the Gaussian mixture of each later stage

    def log_weights(i: int, upto: int) -> np.ndarray:
        """Deterministic-mixture weights of the first ``upto`` stages' particles: target / the average of the
        stages' proposals (every particle weighed against all proposals: far fewer extreme weights than stage by
        stage; Owen & Zhou 2000, Cornuet et al. 2012)."""
        zi, l0 = zs[i, :upto * P], lp0[i, :upto * P]
        logq = [l0] + [np.logaddexp(np.log(alpha) + l0, np.log1p(-alpha) + g.logpdf(zi)) for g in gmms[i][:upto - 1]]
        return lp[i, :upto * P] - (np.logaddexp.reduce(np.array(logq), axis=0) - np.log(upto))

    stage = 0
    while True:
        sl = slice(stage * P, (stage + 1) * P)
        for i in range(n):
            s_idx = rng.integers(0, S, P)
            zi = means[s_idx, i] + sds[s_idx] * rng.standard_normal((P, L))
            if stage:
                from_gmm = rng.random(P) >= alpha
                zi[from_gmm] = gmms[i][stage - 1].sample(int(from_gmm.sum()), rng)
            zs[i, sl] = zi
            lp0[i, sl] = _prior_mixture_logpdf(zi, means[:, i], sds)
        lp[:, sl] = target(zs[:, sl])
        stage += 1
        if progress:
            progress(stage, T)
        if stage >= T:  # enough stages when every subject's weights pass the PSIS check (or at max_stages)
            smoothed = [az.psislw(log_weights(i, stage)) for i in range(n)]  # (log weights, k̂) per subject
            if stage >= T_max or max(k for _, k in smoothed) <= float(opt["khat_max"]) or alpha >= 1:
                break
        if alpha < 1:
            for i in range(n):
                lw = log_weights(i, stage)
                w = np.exp(lw - lw.max())
                pick = rng.choice(len(w), size=P, p=w / w.sum())
                gmm = GaussianMixture(int(opt["components"]), covariance_type="full", reg_covar=1e-3,
                                      random_state=int(rng.integers(2**31))).fit(zs[i, pick])
                # wider than the posterior (covariances × 1.5): proposal tails heavier than the target's
                gmms[i].append(_GaussianMixture(gmm.weights_, gmm.means_, 1.5 * gmm.covariances_))
    T = stage
    result = {"khat": np.empty(n), "ess": np.empty(n), "stages": T}
    draws_z = np.empty((n, n_draws, L))
    for i in range(n):
        lw, khat = smoothed[i]  # the stopping check's smoothed weights of all T stages
        w = np.exp(lw - lw.max())
        w /= w.sum()
        result["khat"][i], result["ess"][i] = float(khat), float(1.0 / np.sum(w**2))
        positions = (rng.random() + np.arange(n_draws)) / n_draws  # systematic resampling
        draws_z[i] = zs[i, np.minimum(np.searchsorted(np.cumsum(w), positions), T * P - 1)]
    # the population draw behind each posterior draw (recorded as its position among the fit's stacked samples),
    # from p(s | z, y) ∝ N(z; means_s, sd_s²) p(y | θ(z), φ_s): with it, (φ_s, z) pairs are joint posterior draws
    # (posterior predictives of observables whose noise or cut-points the population learned)
    t = terms(draws_z)
    cdf = np.cumsum(np.exp(t - t.max(axis=0)), axis=0)
    u = rng.random((n, n_draws)) * cdf[-1]
    which = (cdf < u[None]).sum(axis=0)  # (n, draws)
    zt = draws_z.transpose(1, 0, 2)[None]  # (chain, draw, subject, latent)
    post = {"z": (("chain", "draw", "subject", "latent"), zt),
            "population_sample": (("chain", "draw", "subject"),
                                  np.asarray(population.get("index", np.arange(S)))[which.T[None]].astype(np.int64))}
    for j, spec in enumerate(latent_specs):
        post[spec.name] = (("chain", "draw", "subject"), np.asarray(links[spec.name].link_inverse(zt[..., j])))
    coords = {"chain": [0], "draw": np.arange(n_draws), "subject": subjects, "latent": latents}
    posterior = xr.Dataset(post, coords=coords, attrs={"inference_method": "importance"})
    diag = xr.Dataset({"pareto_k": ("subject", result["khat"]), "ess_importance": ("subject", result["ess"])},
                      coords={"subject": subjects},
                      attrs={"particles": P, "stages": result["stages"], "defensive": alpha,
                             "components": int(opt["components"]), "khat_max": float(opt["khat_max"])})
    return az.InferenceData(posterior=posterior, importance=diag)


def true_model_reweighting(idata, emulators, true_emulators, latent_specs: Sequence, links: dict, population: dict,
                           rows: Measurements, observables: dict, conditions: Conditions | None,
                           fitted_subjects: Sequence[str], *, block: int = 250, seed: int = 0):
    """The new subjects' posteriors of an importance personalisation (``idata``, :func:`importance_posterior` with
    ``emulators`` — surrogates — and ``population``) moved to the true forward model (``true_emulators``, e.g. the
    black-box emulators of the rows' conditions), given the same population.

    Each posterior draw z of a subject is weighed by the ratio of the two mixture densities — the true model's
    likelihood of the subject's rows against the surrogate's, each averaged over the population draws —, the
    log weights are Pareto-smoothed per subject (``arviz.psislw``) and the draws resampled (systematic) with them;
    each resampled draw gets its population draw from ``p(s | z, y)`` under the true model. Per subject the weights'
    Pareto k̂ (≤ 0.7: the reweighted posterior can be trusted), ESS and log-weight sd go into the group
    ``true_model``; a subject above 0.7 is named in its ``failures`` attribute, not hidden. Cost: one true-model run
    per distinct draw and subject (the importance draws are resampled: they repeat)."""
    import arviz as az
    import xarray as xr
    from scipy.special import logsumexp

    post = idata.posterior
    if "z" not in post or "population_sample" not in post:
        raise ValueError("true_model_reweighting needs an importance personalisation ([personalise] method = "
                         "'importance': draws of z with their population samples)")
    latent_specs = _checked_latents(emulators, latent_specs)
    subjects = rows.subjects
    missing = sorted(set(subjects) - set(post.coords["subject"].values.tolist()))
    if missing:
        raise ValueError(f"true_model_reweighting: subject(s) {missing} of the rows have no posterior in idata")
    means = _population_means(population, latent_specs, subjects, conditions, fitted_subjects)
    z = post["z"].sel(subject=subjects).stack(k=("chain", "draw")).transpose("subject", "k", "latent").values
    n, m, _ = z.shape
    # resampled draws repeat: each distinct one is simulated once (padded to the subjects' largest count)
    distinct = [np.unique(z[i], axis=0, return_inverse=True) for i in range(n)]
    width = max(len(u) for u, _ in distinct)
    zu = np.stack([np.concatenate([u, np.repeat(u[:1], width - len(u), axis=0)]) for u, _ in distinct])
    back = [inv.ravel() for _, inv in distinct]

    def at_draws(t):  # (S, n, width) at the distinct draws -> (S, n, m) at every draw
        return np.stack([t[:, i, back[i]] for i in range(n)], axis=1)

    surrogate = at_draws(_mixture_terms(emulators, latent_specs, links, population, means, rows, observables,
                                        block)(zu))
    true_terms = at_draws(_mixture_terms(true_emulators, latent_specs, links, population, means, rows, observables,
                                         block)(zu))
    log_w = logsumexp(true_terms, axis=0) - logsumexp(surrogate, axis=0)  # (n, m)
    rng = np.random.default_rng(seed)
    khat, ess, sd = np.empty(n), np.empty(n), np.empty(n)
    new_z, which = np.empty_like(z), np.empty((n, m), np.int64)
    index = np.asarray(population.get("index", np.arange(population["n"])))
    for i in range(n):
        finite = np.isfinite(log_w[i])
        if not finite.any():  # the true model fails everywhere: nothing to reweigh, said
            khat[i], ess[i], sd[i] = np.inf, 0.0, np.inf
            new_z[i], which[i] = z[i], np.searchsorted(index, post["population_sample"].sel(subject=subjects[i])
                                                       .values.ravel())
            continue
        sd[i] = float(log_w[i][finite].std())
        lw, khat[i] = az.psislw(np.where(finite, log_w[i], -np.inf))
        w = np.exp(lw - lw.max())
        w /= w.sum()
        ess[i] = 1.0 / np.sum(w**2)
        pick = np.minimum(np.searchsorted(np.cumsum(w), (rng.random() + np.arange(m)) / m), m - 1)
        new_z[i] = z[i, pick]
        t = true_terms[:, i, pick]  # (S, m): p(s | z, y) under the true model
        cdf = np.cumsum(np.exp(t - t.max(axis=0)), axis=0)
        which[i] = (cdf < rng.random(m)[None] * cdf[-1]).sum(axis=0)
    zt = new_z.transpose(1, 0, 2)[None]
    data = {"z": (("chain", "draw", "subject", "latent"), zt),
            "population_sample": (("chain", "draw", "subject"), index[which.T[None]].astype(np.int64))}
    for j, spec in enumerate(latent_specs):
        data[spec.name] = (("chain", "draw", "subject"), np.asarray(links[spec.name].link_inverse(zt[..., j])))
    coords = {"chain": [0], "draw": np.arange(m), "subject": subjects, "latent": [sp.name for sp in latent_specs]}
    failures = [subj for subj, k in zip(subjects, khat) if not k <= 0.7]
    diag = xr.Dataset({"pareto_k": ("subject", khat), "ess": ("subject", ess), "log_weight_sd": ("subject", sd)},
                      coords={"subject": subjects}, attrs={"failures": ", ".join(failures), "khat_max": 0.7})
    posterior = xr.Dataset(data, coords=coords, attrs={"inference_method": "importance, reweighted to the true model"})
    return az.InferenceData(posterior=posterior, true_model=diag)


def point_population(idata, latent_specs: Sequence, observables: dict) -> dict:
    """A one-draw population (the form of :func:`population_draws`) of a per-subject inverse problem with fixed
    population quantities (seed 000 §2.3): each latent's own prior in its link space (``N(mu, sigma)``, no
    covariates) as the regulariser R(θ), and the fit's posterior means of the learned noise sds and cut-points as
    θ_pop."""
    post = idata.posterior
    out: dict = {"n": 1, "index": np.array([-1]), "latent": {}, "observables": {}}
    for s in latent_specs:
        par = s.prior.parameters
        if "mu" not in par or "sigma" not in par:
            raise ValueError(f"{s.name}: a point population needs a prior with a link-space mu and sigma, got "
                             f"{s.prior.to_dict()}")
        out["latent"][s.name] = {"loc": np.array([float(par["mu"])]), "sd": np.array([float(par["sigma"])]),
                                 "beta": np.zeros((1, len(s.covariates or ())))}
    for o in observables:
        entry = {}
        for key, var in (("sigma", f"sigma_{o}"), ("cutpoints", f"cutpoints_{o}")):
            if var in post:
                entry[key] = post[var].mean(("chain", "draw")).values[None]
        out["observables"][o] = entry
    return out


def map_estimates(emulators, latent_specs: Sequence, links: dict, population: dict, rows: Measurements,
                  observables: dict, conditions: Conditions | None, fitted_subjects: Sequence[str], *,
                  starts: int = 2000, block: int = 500, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Each subject's maximum of the density of :func:`new_subject_model` (a MAP / penalised maximum-likelihood
    point; with :func:`point_population`, seed 000's per-patient inverse problem): the best of ``starts`` draws from
    the population (the density is multimodal: a single local search from the prior mean ends in whichever mode
    is nearest), then ``pm.find_MAP`` (L-BFGS-B on the compiled log density and gradient) from there. Returns the
    subjects and their latents ``(subjects, latents)`` on the parameter scale, in ``latent_specs``' order."""
    import pymc as pm
    from scipy.special import logsumexp

    order = [s.name for s in latent_specs]
    latent_specs = _checked_latents(emulators, latent_specs)
    subjects = rows.subjects
    _check_rows(emulators, rows)
    means = _population_means(population, latent_specs, subjects, conditions, fitted_subjects)
    sds = np.column_stack([population["latent"][s.name]["sd"] for s in latent_specs])
    n, L, S = len(subjects), len(latent_specs), population["n"]
    rng = np.random.default_rng(seed)
    m = -(-starts // block) * block
    s_idx = rng.integers(0, S, (n, m))
    z0 = means[s_idx, np.arange(n)[:, None]] + sds[s_idx] * rng.standard_normal((n, m, L))
    dens = logsumexp(_mixture_terms(emulators, latent_specs, links, population, means, rows, observables,
                                    block)(z0), axis=0)
    best = z0[np.arange(n), dens.argmax(axis=1)]
    model = new_subject_model(emulators, latent_specs, links, population, rows, observables, conditions,
                              fitted_subjects)
    start = means.mean(0)
    with model:
        point = pm.find_MAP(start={"z_offset": best - start}, progressbar=False)
    theta = np.column_stack([np.asarray(point[s.name]) for s in latent_specs])
    return subjects, theta[:, [[s.name for s in latent_specs].index(o) for o in order]]


def inverse_problem(cal, rows: Measurements | None = None, **settings) -> tuple[list[str], np.ndarray]:
    """Seed 000's per-patient limited inverse problem on a finished calibration ``cal``: each subject of ``rows``
    (default: the fitted rows) alone, its latents' priors as the regulariser and the fit's posterior-mean noise
    and cut-points fixed (:func:`point_population`), maximised by :func:`map_estimates` (``settings``: ``starts``,
    ``block``, ``seed``). The reference latents θ_ref ("pseudo-labels") the seed trains LightGBM on."""
    from .model import _prior_for

    if getattr(cal, "idata", None) is None:
        raise ValueError("inverse_problem needs a finished calibration (run() or load_finished() first)")
    cal.ensure_emulators()
    rows = rows if rows is not None else cal.data
    latent_specs = [s for s in cal.parameters if s.role == "latent"]
    observables = {o: s for o, s in cal.observables.items() if o in set(rows.observables)}
    reg, preset = cal.cfg["model"].get("registry_model"), cal.cfg["model"].get("preset")
    links = {s.name: _prior_for(s, reg, preset) for s in latent_specs}
    return map_estimates(cal.emulators, latent_specs, links, point_population(cal.idata, latent_specs, observables),
                         rows, observables, cal.tables[1], cal.data.subjects, **settings)


def subject_problem(cal, rows: Measurements, n_population_draws: int = 200) -> tuple[list, dict, dict, dict]:
    """What a new subject's posterior given the finished calibration ``cal`` is made of, for the subjects of
    ``rows``: the latent specs, their links, ``n_population_draws`` population draws (:func:`population_draws`, the
    fit's seed: the same draws every time) and the rows' observables with their specs."""
    latent_specs = [s for s in cal.parameters if s.role == "latent"]
    observables = {o: s for o, s in cal.observables.items() if o in set(rows.observables)}
    for o, s in observables.items():
        if s.family not in CONTINUOUS and np.any(rows.censoring[rows.observable == o] != "none"):
            raise ValueError(f"{rows.source}: censoring flags on {s.family} observable {o!r}")
    draws = population_draws(cal.idata, latent_specs, observables, n_population_draws,
                             seed=int(cal.sampler.get("seed", 0)))
    from .model import _prior_for

    reg, preset = cal.cfg["model"].get("registry_model"), cal.cfg["model"].get("preset")
    return latent_specs, {s.name: _prior_for(s, reg, preset) for s in latent_specs}, draws, observables


def personalise(cal, rows: Measurements, conditions: Conditions | None = None, *, method: str = "nuts",
                n_population_draws: int = 200, **sampler):
    """Posterior of the latents of the new subjects in ``rows`` given the finished calibration ``cal`` (its
    ``idata``, emulators and observation model). ``conditions``: the table holding the new subjects' covariates
    (default: the calibration's). ``method``/``sampler``: :func:`immunocal.calib.inference.sample` settings (default: the
    calibration's). Returns the InferenceData (posterior of ``z`` and of each latent, dims ``subject``)."""
    from .inference import one_blas_thread, sample

    if getattr(cal, "idata", None) is None:
        raise ValueError("personalise needs a finished calibration (run() or load_finished() first)")
    latent_specs = [s for s in cal.parameters if s.role == "latent"]
    if not latent_specs:
        raise ValueError(f"{cal.cfg['_path']}: personalisation needs latent parameters")
    unknown = sorted(set(rows.observables) - set(cal.observables))
    if unknown:
        raise ValueError(f"{rows.source}: observable(s) {unknown} were not fitted ({sorted(cal.observables)})")
    latent_specs, links, draws, observables = subject_problem(cal, rows, n_population_draws)
    if method == "importance":
        sampler.pop("progressbar", None)
        with one_blas_thread():  # small products and 6 × 6 covariances: threads only oversubscribe
            return importance_posterior(cal.emulators, latent_specs, links, draws, rows, observables,
                                        conditions or cal.tables[1], cal.data.subjects, **sampler)
    model = new_subject_model(cal.emulators, latent_specs, links, draws, rows, observables,
                              conditions or cal.tables[1], cal.data.subjects)
    settings = {**cal.sampler, "method": method, **sampler}
    return sample(model, posterior_predictive=False, **settings)


def category_probabilities(cal, idata, observable: str) -> tuple[list[str], np.ndarray]:
    """Posterior-predictive probability of each category of the ordinal ``observable`` for every subject of a
    personalised InferenceData (``method = "importance"``: each draw of the latents comes with the population sample
    it was drawn under, so the cut-points are the joint posterior's): ``(subjects, (subjects, K))``. The density is
    the fit's own (:func:`immunocal.calib.likelihoods.rows_logp_per_draw`, the emulator of each subject's condition)."""
    import pytensor
    import pytensor.tensor as pt

    spec = cal.observables.get(observable)
    if spec is None or not spec.family.startswith("ordinal"):
        raise ValueError(f"category_probabilities needs an ordinal observable of the fit; {observable!r} is "
                         f"{'not fitted' if spec is None else spec.family}")
    post = idata.posterior
    if "population_sample" not in post:
        raise ValueError("category_probabilities needs personalised draws paired with their population sample "
                         "([personalise] method = \"importance\")")
    cal.ensure_emulators()
    cuts = cal.idata.posterior[f"cutpoints_{observable}"].stack(sample=("chain", "draw")).transpose("sample", ...)
    cuts = cuts.values
    scales = None  # a learned probit scale: each draw's own
    if f"sigma_{observable}" in cal.idata.posterior:
        scales = cal.idata.posterior[f"sigma_{observable}"].stack(sample=("chain", "draw")).values
    meas, _ = cal.tables
    subjects = post.coords["subject"].values.tolist()
    K = cuts.shape[1] + 1
    out = np.empty((len(subjects), K))
    by_condition: dict[str, list[int]] = {}
    for i, s in enumerate(subjects):
        conds = sorted(set(meas.condition[meas.subject == s].tolist()))
        if len(conds) != 1:
            raise ValueError(f"subject {s!r}: one condition expected in the measurements, found {conds}")
        by_condition.setdefault(conds[0], []).append(i)
    for cond, members in by_condition.items():  # one compiled function per emulator, all its subjects at once
        em = cal.emulators[cond]
        theta = np.concatenate([np.column_stack([post[n].sel(subject=subjects[i]).values.ravel()
                                                 for n in em.space.names]) for i in members])
        which = np.concatenate([post["population_sample"].sel(subject=subjects[i]).values.ravel() for i in members])
        theta_in = pt.matrix("theta")  # an input, not a constant: PyTensor would fold a constant graph in Python
        mean, var = em.predict_pt(theta_in)
        j = list(em.observables).index(observable)
        mu, v = mean[:, j, 0], var[:, j, 0]
        paired = cuts[which]  # (subjects × draws, K-1)
        D = len(theta)
        # every draw under every category in one evaluation: rows = (category, subject and draw)
        ll = rows_logp_per_draw(spec, pt.tile(mu, K), pt.tile(v, K), np.repeat(np.arange(K, dtype=float), D),
                                np.full(K * D, "none"), np.full(K * D, np.nan), cutpoint_draws=np.tile(paired, (K, 1)),
                                sigma_draws=None if scales is None else np.tile(scales[which], K), paired=True)
        # (``.eval()`` of the all-constant graph constant-folded it element by element: 85 s for 7 subjects)
        prob = np.exp(np.asarray(pytensor.function([theta_in], ll)(theta)).reshape(K, len(members), -1))
        out[members] = prob.mean(axis=2).T
    return subjects, out
