"""PyMC model builder: emulator(s) + population/latent parameter specs + priors + data tables -> ``pm.Model``.

Parameter roles
---------------
``population``  one value shared by all subjects, prior from the registry
                (``registry().record(model, name).prior(preset)``) or a :class:`priors.Prior` given in the spec;
``latent``      one value per subject, hierarchical and non-centred in the prior's *link space*:
                ``z_s = loc + Σ_k β_k x_sk + sd · η_s``, ``η_s ~ N(0, 1)``, ``θ_s = link⁻¹(z_s)``, with
                ``loc ~ N(prior.mu, prior.sigma)`` and the link read off the prior: identity (``Normal``), log
                (``LogNormal``) or the seed-000 bounded logit (``BoundedLogitNormal``); ``sd`` is a number (fixed) or
                a prior (default ``HalfNormal(0.5)``); covariates ``x`` are standardised subject covariates from the
                conditions table, ``β_k ~ N(0, coef_sd)``. ``parametrization = "centred"`` samples ``z_s`` itself
                (``{name}_link ~ N(loc + Σ β x, sd)``) instead of ``η_s`` — better when every subject's data pin its
                value down (a well's 280-point Cell Index curve), where the non-centred form correlates η with sd;
``fixed``       a constant (``value``; default: the registry preset value);
``observed``    one *known* value per subject, taken from the data (e.g. each animal's initial volume = its first
                measurement): ``values = {subject: value}``; or ``{subject: [candidates]}`` — then the value is drawn
                uniformly from the candidates (``{name}_pick``, a categorical: new subjects of a prediction take
                observed values of real subjects).

Observations: each data row ``(subject, condition, observable, time)`` is mapped to the emulator of its condition,
evaluated at the subject's parameter vector, and linearly interpolated in time on the emulator's grid; the rows of
an observable then become one observed variable through :func:`immunocal.calib.likelihoods.observe` (the emulator variance
is added to the observation variance; censored rows via ``pm.Censored``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from immunocal.priors import Prior

from .data import Conditions, Measurements
from .likelihoods import ObservableSpec, observe

ROLES = ("population", "latent", "fixed", "observed")
PARAMETRIZATIONS = ("non_centred", "centred")


def subject_variable(spec) -> str:
    """The per-subject random variable of a latent parameter: ``{name}_eta`` (non-centred, standard normal) or
    ``{name}_link`` (centred, the value in link space) — what a prediction redraws for new subjects."""
    return f"{spec.name}_link" if getattr(spec, "parametrization", "non_centred") == "centred" else f"{spec.name}_eta"


@dataclass
class ParameterSpec:
    name: str
    role: str = "population"
    prior: Prior | None = None
    value: float | None = None
    sd: Prior | float | None = None
    covariates: tuple[str, ...] = ()
    coef_sd: float = 1.0
    values: Mapping[str, object] | None = None  # role "observed": subject -> value (or candidate values)
    parametrization: str = "non_centred"  # latent only: or "centred" (module docstring)

    def __post_init__(self):
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parameter '{self.name}': parametrization must be one of {list(PARAMETRIZATIONS)}, got "
                             f"{self.parametrization!r}")
        if self.parametrization != "non_centred" and self.role != "latent":
            raise ValueError(f"parameter '{self.name}': parametrization applies to latent parameters only (role "
                             f"{self.role!r})")
        if self.role not in ROLES:
            raise ValueError(f"parameter '{self.name}': role must be one of {', '.join(map(repr, ROLES))}, "
                             f"got {self.role!r}")
        if (self.role == "observed") != (self.values is not None):
            raise ValueError(f"parameter '{self.name}': per-subject values go with role 'observed' (and it needs "
                             "them)")
        if self.role == "fixed" and self.value is None:
            pass  # filled from the registry by the builder
        if isinstance(self.prior, Mapping):
            self.prior = Prior.from_dict(dict(self.prior))
        if isinstance(self.sd, Mapping):
            self.sd = Prior.from_dict(dict(self.sd))
        self.covariates = tuple(self.covariates)


@dataclass
class ModelInfo:
    """What the builder did (attached to the model as ``model.calib_info``)."""

    subjects: list[str]
    units: list[tuple[str, str]]
    parameter_names: list[str]
    latent: list[str]
    population: list[str]
    fixed: dict[str, float]
    observed: list[str] = field(default_factory=list)
    rows: dict[str, np.ndarray] = field(default_factory=dict)  # observable -> data row indices
    surrogate_ids: dict[str, str] = field(default_factory=dict)


def _prior_for(spec: ParameterSpec, model: str | None, preset: str | None) -> Prior:
    if spec.prior is not None:
        return spec.prior
    if model is None:
        raise ValueError(f"parameter '{spec.name}': no prior given and no registry model to take it from")
    from immunocal.priors import registry

    return registry().record(model, spec.name).prior(preset or "default")


def _observed_column(name: str, values: Mapping, subjects: Sequence[str]):
    """The per-subject column of an ``observed`` parameter: constants, or a uniform pick among each subject's
    candidate values (a ``{name}_pick`` categorical over the pooled candidates)."""
    import pymc as pm
    import pytensor.tensor as pt

    missing = [s for s in subjects if s not in values]
    if missing:
        raise ValueError(f"parameter '{name}' (role 'observed') has no value for subject(s) {missing[:5]}")
    cand = [np.atleast_1d(np.asarray(values[s], float)) for s in subjects]
    bad = [s for s, c in zip(subjects, cand) if c.size == 0 or not np.all(np.isfinite(c))]
    if bad:
        raise ValueError(f"parameter '{name}' (role 'observed'): subject {bad[0]!r} has no finite value")
    if all(c.size == 1 for c in cand):
        return pt.as_tensor_variable(np.array([c[0] for c in cand]))
    pool = np.unique(np.concatenate(cand))
    p = np.zeros((len(subjects), len(pool)))
    for i, c in enumerate(cand):
        idx = np.searchsorted(pool, c)
        np.add.at(p[i], idx, 1.0 / len(c))
    pick = pm.Categorical(f"{name}_pick", p=p, dims="subject")
    return pt.as_tensor_variable(pool)[pick]


def standardised_covariates(conditions: Conditions, subjects: Sequence[str], names: Sequence[str],
                            reference: Sequence[str] | None = None) -> np.ndarray:
    """``(len(subjects), len(names))`` covariates centred and scaled by the mean and sd over the ``reference``
    subjects (default: the subjects themselves) — the design of a latent's covariate regression; new subjects are
    scaled as the fitted ones were."""
    X = conditions.covariate_matrix(subjects, names)
    R = X if reference is None else conditions.covariate_matrix(reference, names)
    sd = R.std(0)
    return (X - R.mean(0)) / np.where(sd > 0, sd, 1.0)


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^0-9A-Za-z_]", "_", str(name))


def emulate_rows(emulators: Mapping, units: Sequence[tuple[str, str]], theta_units, data: Measurements,
                 info: ModelInfo | None = None):
    """Emulator mean and variance at every data row (PyTensor vectors, one entry per row of ``data``): each
    condition's emulator evaluated on its (subject, condition) units (rows of ``theta_units``, emulator-input order),
    linearly interpolated in time on the emulator's grid. Emulators of surrogate kinds get a soft wall at the edge of
    their training box (a ``pm.Potential`` in the current model). Records surrogate ids in ``info``."""
    import pymc as pm
    import pytensor.tensor as pt

    flat_mean, flat_var, offset = [], [], 0
    unit_pos: dict[tuple[str, str], tuple[int, str]] = {}
    cond_offsets = {}
    for c in dict.fromkeys(cd for _, cd in units):
        idx = [i for i, u in enumerate(units) if u[1] == c]
        em = emulators[c]
        if getattr(em, "accepts_until", False):  # each unit simulated only up to its own last data day
            last = {}
            for subj, cond, t in zip(data.subject, data.condition, data.time):
                if cond == c:
                    last[subj] = max(last.get(subj, -np.inf), float(t))
            mean, var = em.predict_pt(theta_units[idx], until=[last[units[i][0]] for i in idx])
        else:
            mean, var = em.predict_pt(theta_units[idx])
        if getattr(em, "family", "") not in ("exact", "blackbox"):
            # keep the posterior inside the emulator's training box: far outside, a GP reverts to its mean with
            # a large variance, a flat likelihood region that traps chains (seen on the toy example: one of 4
            # chains at growth_rate ≈ 100 with training range [0.05, 1]); a smooth quadratic wall of width 1 %
            u = em.space.to_unit_pt(theta_units[idx])
            excess = pt.maximum(u - 1.0, 0.0) + pt.maximum(-u, 0.0)
            pm.Potential(f"emulator_domain_{_safe(c)}", -0.5 * pt.sum(pt.square(excess / 0.01)))
        width = len(em.observables) * len(em.times)
        flat_mean.append(mean.reshape((len(idx), width)).flatten())
        flat_var.append(var.reshape((len(idx), width)).flatten())
        cond_offsets[c] = offset
        for p, i in enumerate(idx):
            unit_pos[units[i]] = (p, c)
        offset += len(idx) * width
        if info is not None:
            info.surrogate_ids[c] = getattr(em, "surrogate_id", type(em).__name__)
    flat_mean = pt.concatenate(flat_mean)
    flat_var = pt.concatenate(flat_var)

    lo_idx = np.empty(len(data), int)
    hi_idx = np.empty(len(data), int)
    w = np.empty(len(data))
    for r in range(len(data)):
        p, c = unit_pos[(data.subject[r], data.condition[r])]
        em = emulators[c]
        if data.observable[r] not in em.observables:
            raise ValueError(f"{data.source}, data row {r + 1}: observable {str(data.observable[r])!r} is not an "
                             f"output of the emulator for condition {c!r} ({list(em.observables)})")
        o = em.observables.index(data.observable[r])
        t, grid = data.time[r], em.times
        if t < grid[0] - 1e-9 or t > grid[-1] + 1e-9:
            raise ValueError(f"{data.source}, data row {r + 1}: time {t} is outside the emulator's time grid "
                             f"[{grid[0]}, {grid[-1]}]")
        k = int(np.clip(np.searchsorted(grid, t, side="right") - 1, 0, len(grid) - 2)) if len(grid) > 1 else 0
        frac = 0.0 if len(grid) == 1 else float(np.clip((t - grid[k]) / (grid[k + 1] - grid[k]), 0, 1))
        base = cond_offsets[c] + p * len(em.observables) * len(grid) + o * len(grid)
        lo_idx[r], hi_idx[r], w[r] = base + k, base + min(k + 1, len(grid) - 1), frac
    mu_all = flat_mean[lo_idx] * (1 - w) + flat_mean[hi_idx] * w
    var_all = flat_var[lo_idx] * (1 - w) + flat_var[hi_idx] * w
    return mu_all, var_all


def build_model(emulators, parameters: Sequence[ParameterSpec], data: Measurements,
                observables: Mapping[str, ObservableSpec] | None = None, conditions: Conditions | None = None,
                *, model: str | None = None, preset: str | None = None, store_predictions: bool = True,
                shared_subjects: bool = False, censor_bounds: Mapping[str, tuple[float, float]] | None = None):
    """Build the calibration ``pm.Model``.

    ``emulators``: one emulator (used for every condition) or ``{condition: emulator}``; an emulator has
    ``space.names`` (its parameter order), ``observables``, ``times`` and ``predict_pt(theta) -> (mean, var)``.
    A subject id that occurs under several conditions is one subject (one set of latent values) only with
    ``shared_subjects=True`` (the same animal really measured under several conditions); otherwise it is an error —
    per-group numbering ("1", "2", … in every arm) would silently merge different animals.
    ``censor_bounds = {observable: (lower, upper)}`` censors all rows of an observable at fixed limits (predictive
    models of new subjects; see :func:`immunocal.calib.likelihoods.observe`).
    """
    import pymc as pm
    import pytensor.tensor as pt

    if not isinstance(emulators, Mapping):
        emulators = {c: emulators for c in dict.fromkeys(data.condition.tolist())}
    observables = {k: (v if isinstance(v, ObservableSpec) else ObservableSpec(**v))
                   for k, v in (observables or {}).items()}
    specs = {s.name: s for s in parameters}
    missing_cond = sorted(set(data.condition.tolist()) - set(emulators))
    if missing_cond:
        raise ValueError(f"{data.source}: no emulator for condition(s) {missing_cond}")
    names = list(next(iter(emulators.values())).space.names)
    for c, em in emulators.items():
        if list(em.space.names) != names:
            raise ValueError(f"emulator of condition {c!r} takes parameters {list(em.space.names)}, expected {names}")
    for n in list(specs):  # a fixed value already baked into a surrogate (campaign's fixed parameters) is fine
        baked = {c: getattr(em, "fixed_", None) or {} for c, em in emulators.items()}
        if n not in names and specs[n].role == "fixed" and all(n in b for b in baked.values()):
            for c, b in baked.items():
                if specs[n].value is not None and not np.isclose(b[n], specs[n].value, rtol=1e-12):
                    raise ValueError(f"parameter '{n}' is fixed at {specs[n].value} but the surrogate of condition "
                                     f"{c!r} was trained with {n} = {b[n]}")
            del specs[n]
    unknown = sorted(set(specs) - set(names))
    if unknown:
        raise ValueError(f"parameter spec(s) {unknown} are not inputs of the emulator; inputs are {names}")
    fixed: dict[str, float] = {}
    for n in names:
        s = specs.get(n)
        if s is None or s.role == "fixed":
            if s is not None and s.value is not None:
                fixed[n] = float(s.value)
            elif model is not None:
                from immunocal.priors import registry

                fixed[n] = registry().parameter_set(model, preset or "default")[n]
            else:
                raise ValueError(f"parameter '{n}' has no spec and no registry model to take a fixed value from; "
                                 f"give it a role (population/latent) or a fixed value")
    for o in data.observables:
        observables.setdefault(o, ObservableSpec())

    subjects = data.subjects
    s_index = {s: i for i, s in enumerate(subjects)}
    units = list(dict.fromkeys(zip(data.subject.tolist(), data.condition.tolist())))
    if not shared_subjects:
        seen: dict[str, str] = {}
        for subj, cond in units:
            if subj in seen:
                raise ValueError(f"{data.source}: subject {subj!r} appears under conditions {seen[subj]!r} and "
                                 f"{cond!r}; ids numbered per group would merge different animals — qualify them "
                                 f"(e.g. '{cond}/{subj}') or, if it is the same subject, set [data] shared_subjects = "
                                 "true")
            seen[subj] = cond
    latent = [n for n in names if n in specs and specs[n].role == "latent"]
    population = [n for n in names if n in specs and specs[n].role == "population"]
    observed = [n for n in names if n in specs and specs[n].role == "observed"]
    info = ModelInfo(subjects, units, names, latent, population, fixed, observed)
    coords = {"subject": subjects, "obs_id": np.arange(len(data))}

    with pm.Model(coords=coords) as m:
        cols = {}
        for n in population:
            cols[n] = _prior_for(specs[n], model, preset).create_variable(n)
        for n in latent:
            s = specs[n]
            prior = _prior_for(s, model, preset)
            if prior.distribution not in ("Normal", "LogNormal", "BoundedLogitNormal"):
                raise ValueError(f"latent parameters need a Normal, LogNormal or BoundedLogitNormal prior (a link space "
                                 f"for the hierarchy), got {prior.distribution} for '{n}'")
            loc = pm.Normal(f"{n}_loc", mu=prior.parameters["mu"], sigma=prior.parameters["sigma"])
            if s.sd is None:
                sd = pm.HalfNormal(f"{n}_sd", sigma=0.5)
            elif isinstance(s.sd, Prior):
                sd = s.sd.create_variable(f"{n}_sd")
            else:
                sd = pt.as_tensor_variable(float(s.sd))
            centre = loc
            if s.covariates:
                if conditions is None:
                    raise ValueError(f"parameter '{n}' has covariates {list(s.covariates)} but no conditions table")
                Xs = standardised_covariates(conditions, subjects, s.covariates)
                m.add_coord(f"{n}_covariate", list(s.covariates))
                beta = pm.Normal(f"{n}_beta", 0.0, s.coef_sd, dims=f"{n}_covariate")
                centre = loc + pt.dot(Xs, beta)
            if s.parametrization == "centred":
                z = pm.Normal(subject_variable(s), mu=centre, sigma=sd, dims="subject")
            else:
                z = centre + sd * pm.Normal(subject_variable(s), 0.0, 1.0, dims="subject")
            cols[n] = pm.Deterministic(n, prior.link_inverse(z), dims="subject")
        for n in observed:
            cols[n] = pm.Deterministic(n, _observed_column(n, specs[n].values, subjects), dims="subject")

        # parameter matrix per (subject, condition) unit
        u_subj = np.array([s_index[s] for s, _ in units])
        theta_cols = []
        for n in names:
            if n in fixed:
                theta_cols.append(pt.fill(pt.zeros(len(units)), fixed[n]))
            elif n in latent or n in observed:
                theta_cols.append(cols[n][u_subj])
            else:
                theta_cols.append(pt.fill(pt.zeros(len(units)), cols[n]))
        theta_units = pt.stack(theta_cols, axis=1)

        mu_all, var_all = emulate_rows(emulators, units, theta_units, data, info)

        for oname, ospec in observables.items():
            rows = np.flatnonzero(data.observable == oname)
            if len(rows) == 0:
                continue
            info.rows[oname] = rows
            mu, var = mu_all[rows], var_all[rows]
            y = data.value[rows]
            cz = data.censoring[rows]
            dims_name = f"obs_{oname}"
            m.add_coord(dims_name, rows)
            if store_predictions:
                pm.Deterministic(f"mu_{oname}", mu, dims=dims_name)
            series = None if ospec.correlation_time is None else (  # one series per (subject, condition)
                np.char.add(np.char.add(data.subject[rows].astype(str), "\x1f"), data.condition[rows].astype(str)),
                data.time[rows])
            observe(oname, ospec, mu, var, y, cz, data.sigma[rows], dims_name, source=str(data.source),
                    store_sd=store_predictions, bounds=(censor_bounds or {}).get(oname), series=series)
    m.calib_info = info
    return m
