"""Posteriors of new subjects given a fitted population: personalisation without refitting the population.

A finished calibration with latent parameters (:class:`calib.workflow.Calibration`) has a posterior over its
population quantities φ — each latent's location, spread and covariate effects, the learned noise sds and ordinal
cut-points. A new subject (a test patient) with covariates x and observations y then has the posterior

    p(z | y, x, D) ∝ ∫ p(y | θ(z), φ) N(z; loc + β·x̃, sd²) p(φ | D) dφ
                   ≈ (1/S) Σ_s p(y | θ(z), φ_s) N(z; loc_s + β_s·x̃, sd_s²)

in the latents' link space z (θ = link⁻¹(z)), with φ_s S posterior draws of the fit and x̃ the covariates scaled as
the fitted subjects' were (:func:`calib.model.standardised_covariates`). The mixture over draws is exact for the
draws (no Gaussian approximation of the population posterior) and smooth in z, so NUTS, Pathfinder and ADVI all
apply. The population is not updated by the new subject (the fit's data D only: "learned on the training folds").
Several new subjects go into one model as independent blocks (their posteriors factorise).

The observation densities per draw are :func:`calib.likelihoods.rows_logp_per_draw` (the same families and
censoring as the fit); the emulators are the fit's own (:func:`calib.model.emulate_rows`).
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
    ``cutpoints`` ``(S, K−1)`` where the fit learned them."""
    post = idata.posterior
    flat = {v: post[v].stack(sample=("chain", "draw")).transpose("sample", ...).values for v in post.data_vars}
    total = next(iter(flat.values())).shape[0]
    idx = np.unique(np.linspace(0, total - 1, min(n, total)).astype(int))
    out: dict = {"n": len(idx), "latent": {}, "observables": {}}
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


def new_subject_model(emulators, latent_specs: Sequence, links: dict, draws: dict, rows: Measurements,
                      observables: dict, conditions: Conditions | None, fitted_subjects: Sequence[str]):
    """The PyMC model of new subjects' latents given population ``draws`` (module docstring); ``links``: each
    latent's prior (its link). ``rows``: the new
    subjects' data; ``conditions``: a table with their covariates; ``fitted_subjects``: the subjects the population
    was fitted to (covariate scaling). The emulators' inputs must be exactly the latents (other inputs fixed inside
    the emulator or the simulator)."""
    import pymc as pm
    import pytensor.tensor as pt

    names = list(next(iter(emulators.values())).space.names)
    if sorted(names) != sorted(s.name for s in latent_specs):
        raise ValueError(f"personalisation needs emulators over the latent parameters "
                         f"{sorted(s.name for s in latent_specs)} only; they also take "
                         f"{[n for n in names if n not in {s.name for s in latent_specs}]} (population-level inputs: "
                         "fix them, or make them latent)")
    latent_specs = sorted(latent_specs, key=lambda s: names.index(s.name))  # the emulators' input order
    latents = names
    subjects = rows.subjects
    units = list(dict.fromkeys(zip(rows.subject.tolist(), rows.condition.tolist())))
    if len(units) != len(subjects):
        raise ValueError(f"{rows.source}: a new subject appears under several conditions")
    missing = sorted(set(rows.condition.tolist()) - set(emulators))
    if missing:
        raise ValueError(f"{rows.source}: no emulator for condition(s) {missing}: the fit covered "
                         f"{sorted(emulators)}")
    s_index = {s: i for i, s in enumerate(subjects)}
    S = draws["n"]
    means = []  # (S, subjects) per latent: the population location of each new subject under each draw
    for spec in latent_specs:
        d = draws["latent"][spec.name]
        mean = np.repeat(d["loc"][:, None], len(subjects), axis=1)
        if spec.covariates:
            mean = mean + d["beta"] @ standardised_covariates(conditions, subjects, spec.covariates,
                                                              reference=fitted_subjects).T
        means.append(mean)
    start = np.column_stack([mean.mean(0) for mean in means])  # the population mean: the chains' start
    with pm.Model(coords={"subject": subjects, "latent": latents}) as m:
        # z = start + offset with a flat offset: the chains start at the population mean (an initval would stop
        # PyMC's Numba compile mode); the density is written on the offset's value variable (pm.logp of
        # distributions whose parameters depend on a model RV would clone it), the latents are recorded from the RV
        offset = pm.Flat("z_offset", dims=("subject", "latent"))
        z_rv = pm.Deterministic("z", start + offset, dims=("subject", "latent"))
        z = start + m.rvs_to_values[offset]
        lp = pt.zeros((S, len(subjects)))
        cols = []
        for j, spec in enumerate(latent_specs):
            mean, sd = means[j], draws["latent"][spec.name]["sd"][:, None]
            lp = lp + (-0.5 * pt.square((z[:, j][None, :] - mean) / sd) - np.log(sd) - 0.5 * np.log(2 * np.pi))
            cols.append(links[spec.name].link_inverse(z[:, j]))
            pm.Deterministic(spec.name, links[spec.name].link_inverse(z_rv[:, j]), dims="subject")
        theta_units = pt.stack(cols, axis=1)[np.array([s_index[s] for s, _ in units])]
        mu_all, var_all = emulate_rows(emulators, units, theta_units, rows)
        row_subject = np.array([s_index[s] for s in rows.subject])
        for o, spec in observables.items():
            r = np.flatnonzero(rows.observable == o)
            if len(r) == 0:
                continue
            d = draws["observables"].get(o, {})
            ll = rows_logp_per_draw(spec, mu_all[r], var_all[r], rows.value[r], rows.censoring[r], rows.sigma[r],
                                    d.get("sigma"), d.get("cutpoints"))
            onehot = np.zeros((len(r), len(subjects)))
            onehot[np.arange(len(r)), row_subject[r]] = 1.0
            lp = lp + pt.dot(ll, onehot)
        pm.Potential("population_mixture", pt.sum(pm.math.logsumexp(lp, axis=0)) - len(subjects) * np.log(S))
    return m


def personalise(cal, rows: Measurements, conditions: Conditions | None = None, *, method: str = "nuts",
                n_population_draws: int = 200, **sampler):
    """Posterior of the latents of the new subjects in ``rows`` given the finished calibration ``cal`` (its
    ``idata``, emulators and observation model). ``conditions``: the table holding the new subjects' covariates
    (default: the calibration's). ``method``/``sampler``: :func:`calib.inference.sample` settings (default: the
    calibration's). Returns the InferenceData (posterior of ``z`` and of each latent, dims ``subject``)."""
    from .inference import sample

    if getattr(cal, "idata", None) is None:
        raise ValueError("personalise needs a finished calibration (run() or load_finished() first)")
    latent_specs = [s for s in cal.parameters if s.role == "latent"]
    if not latent_specs:
        raise ValueError(f"{cal.cfg['_path']}: personalisation needs latent parameters")
    unknown = sorted(set(rows.observables) - set(cal.observables))
    if unknown:
        raise ValueError(f"{rows.source}: observable(s) {unknown} were not fitted ({sorted(cal.observables)})")
    observables = {o: s for o, s in cal.observables.items() if o in set(rows.observables)}
    for o, s in observables.items():
        if s.family not in CONTINUOUS and np.any(rows.censoring[rows.observable == o] != "none"):
            raise ValueError(f"{rows.source}: censoring flags on {s.family} observable {o!r}")
    draws = population_draws(cal.idata, latent_specs, observables, n_population_draws,
                             seed=int(cal.sampler.get("seed", 0)))
    from .model import _prior_for

    reg, preset = cal.cfg["model"].get("registry_model"), cal.cfg["model"].get("preset")
    links = {s.name: _prior_for(s, reg, preset) for s in latent_specs}
    model = new_subject_model(cal.emulators, latent_specs, links, draws, rows, observables,
                              conditions or cal.tables[1], cal.data.subjects)
    settings = {**cal.sampler, "method": method, **sampler}
    return sample(model, posterior_predictive=False, **settings)
