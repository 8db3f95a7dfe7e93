"""The observation layer: one place where a data row's likelihood is defined, on PyMC's own distributions.

:class:`ObservableSpec` (family, noise prior, ν, link, cut-points, trials) is what a config's
``[observables.NAME]`` section describes; :func:`observe` turns it, the emulator mean ``mu`` and variance
``var`` of the rows and the data into the model's observed variable ``y_NAME`` (dims ``obs_NAME``, one entry
per data row):

* ``normal`` / ``student_t`` (ν from the spec, the same ν everywhere) — scale ``s = sqrt(sigma² + var)``;
  censored rows through ``pm.Censored``: a ``left`` row (value = detection limit L) contributes
  ``log P(Y ≤ L)``, a ``right`` row (value = endpoint c) ``log P(Y ≥ c)``, an uncensored row the density — so
  ``log_likelihood``, LOO, SBC and posterior-predictive draws (censored at the same bounds) include every row;
* ``ordinal_logistic`` / ``ordinal_probit`` — RECIST-like categories 0..K−1 from a latent score with ordered
  cut-points; ``bernoulli`` / ``binomial`` — logit-probability. Emulator uncertainty on the logit scale enters
  by the probit approximation ``E[σ(η)] ≈ σ(η / sqrt(1 + π v / 8))``. ``ordinal_probit`` takes a noise scale of
  the score (``sigma``: a prior, learned as ``sigma_NAME``, or a number; default 1 — a score already in noise
  units): P(y ≤ k) = Φ((c_k − μ) / sqrt(sigma² + v)), exact for a Gaussian emulator error v.

Serially correlated residuals (``normal`` only, uncensored rows): ``correlation_time = τ`` (a prior, learned as
``tau_NAME``, or a number; in the data's time unit) makes the standardised residuals z = (y − μ) / s of one series
(the rows of one subject under one condition, in time order) an Ornstein–Uhlenbeck process, corr(z_i, z_j) =
exp(−|t_i − t_j| / τ) — the model for a densely sampled signal (a Cell Index every 15 min) whose misfit persists
for hours, where independent noise would count every row as new information. The density is exact and Markov:
z_i | z_{i−1} ~ N(φ_i z_{i−1}, 1 − φ_i²), φ_i = exp(−Δt_i / τ), on a ``pm.CustomDist`` whose predictive draws
are joint trajectories (so the stationary sd is s; pointwise predictive bands are N(μ, s)). Predictions of new
subjects (``bounds`` given) are pointwise marginals and never condition on the held-out rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from immunocal.priors import Prior

CONTINUOUS = ("normal", "student_t")
FAMILIES = (*CONTINUOUS, "ordinal_logistic", "ordinal_probit", "bernoulli", "binomial")
CENSORING = ("none", "left", "right")


@dataclass
class ObservableSpec:
    family: str = "normal"
    sigma: Prior | float | None = None
    nu: float = 4.0
    link: str | None = None  # ordinal families: implied by the family name (ordinal_probit -> "probit")
    cutpoints: Sequence[float] | None = None
    n_trials: int | None = None
    correlation_time: Prior | float | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown observation family {self.family!r}; choose one of {list(FAMILIES)}")
        if isinstance(self.sigma, Mapping):
            self.sigma = Prior.from_dict(dict(self.sigma))
        if self.family.startswith("ordinal_"):
            implied = self.family.split("_", 1)[1]
            if self.link not in (None, implied):
                raise ValueError(f"observation family {self.family!r} has the {implied} link; got link = "
                                 f"{self.link!r} (use family 'ordinal_{self.link}')")
            self.link = implied
        elif self.link is not None:
            raise ValueError(f"'link' applies to the ordinal families only, not to {self.family!r}")
        if self.sigma is not None and self.family in ("ordinal_logistic", "bernoulli", "binomial"):
            raise ValueError(f"'sigma' (a noise scale) applies to the continuous families and ordinal_probit, not to "
                             f"{self.family!r}")
        if isinstance(self.correlation_time, Mapping):
            self.correlation_time = Prior.from_dict(dict(self.correlation_time))
        if self.correlation_time is not None:
            if self.family != "normal":
                raise ValueError(f"'correlation_time' (serially correlated residuals) applies to the normal family "
                                 f"only, not to {self.family!r}")
            if not isinstance(self.correlation_time, Prior) and not (np.isfinite(self.correlation_time)
                                                                     and self.correlation_time > 0):
                raise ValueError(f"correlation_time must be a prior or a number > 0, got {self.correlation_time!r}")
        if self.family == "student_t" and not (np.isfinite(self.nu) and self.nu > 0):
            raise ValueError(f"student_t observable needs nu > 0, got {self.nu!r}")


def censoring_bounds(y: np.ndarray, censoring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pm.Censored`` bounds per row: the value itself on the censored side, ±inf elsewhere."""
    censoring = np.asarray(censoring)
    bad = sorted(set(censoring.tolist()) - set(CENSORING))
    if bad:
        raise ValueError(f"unknown censoring flag(s) {bad}; allowed: {list(CENSORING)}")
    y = np.asarray(y, float)
    return np.where(censoring == "left", y, -np.inf), np.where(censoring == "right", y, np.inf)


def continuous_dist(spec: ObservableSpec, mu, sd):
    """The uncensored observation distribution of a continuous family (``pm.<Dist>.dist``)."""
    import pymc as pm

    if spec.family == "normal":
        return pm.Normal.dist(mu=mu, sigma=sd)
    if spec.family == "student_t":
        return pm.StudentT.dist(nu=spec.nu, mu=mu, sigma=sd)
    raise ValueError(f"{spec.family!r} is not a continuous family ({list(CONTINUOUS)})")


def _noise_sd(name: str, spec: ObservableSpec, sig_data: np.ndarray):
    """Observation sd: per-row ``sigma`` from the data where given, else the spec's prior / constant."""
    import pymc as pm
    import pytensor.tensor as pt

    if np.all(np.isfinite(sig_data)):
        return pt.as_tensor_variable(sig_data)
    if isinstance(spec.sigma, Prior):
        s_par = spec.sigma.create_variable(f"sigma_{name}")
    elif spec.sigma is None:
        s_par = pm.HalfNormal(f"sigma_{name}", sigma=0.5)
    else:
        s_par = pt.as_tensor_variable(float(spec.sigma))
    return pt.where(np.isfinite(sig_data), np.nan_to_num(sig_data, nan=1.0), s_par)


def residual_series(series: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped into series (equal ``series`` keys) in time order: per row the index of the series' previous row
    (itself for a first row), the time since it (inf for a first row) and the row's position in its series. Two rows
    of one series at one time are an error (their residuals would be one value)."""
    series = np.asarray(series)
    time = np.asarray(time, float)
    n = len(time)
    prev = np.arange(n)
    dt = np.full(n, np.inf)
    rank = np.zeros(n, dtype=np.int64)
    order = np.lexsort((time, series))
    for a, b in zip(order[:-1], order[1:]):
        if series[a] == series[b]:
            if time[b] == time[a]:
                raise ValueError(f"serially correlated residuals: series {series[a]!r} has two rows at time "
                                 f"{time[a]!r}")
            prev[b], dt[b], rank[b] = a, time[b] - time[a], rank[a] + 1
    return prev, dt, rank


def _ou_logp(value, mu, s, tau, dt, prev):
    """Row-wise log density of Ornstein–Uhlenbeck residuals (module docstring); the sum is the exact joint density."""
    import pytensor.tensor as pt

    z = (value - mu) / s
    first = pt.isinf(dt)  # a series' first row: φ = 0 (written so that d/dτ stays finite, never 0·inf)
    phi = pt.where(first, 0.0, pt.exp(-pt.where(first, 1.0, dt) / tau))
    v = 1.0 - pt.square(phi)
    r = z - phi * z[prev]
    return -0.5 * pt.square(r) / v - 0.5 * pt.log(v) - pt.log(s) - 0.5 * np.log(2.0 * np.pi)


def _ou_random(mu, s, tau, dt, prev, rank, rng=None, size=None):
    """Joint draws of the series (each starts stationary, then z_i = φ_i z_prev + sqrt(1 − φ_i²) ε_i)."""
    mu, s = np.asarray(mu, float), np.asarray(s, float)
    shape = tuple(size) if size is not None else np.broadcast(mu, s).shape
    eps = rng.standard_normal(shape)
    phi = np.exp(-np.asarray(dt, float) / np.asarray(tau, float))
    prev, rank = np.asarray(prev), np.asarray(rank)
    z = np.empty(shape)
    for k in range(int(rank.max()) + 1 if rank.size else 0):
        r = np.flatnonzero(rank == k)
        z[..., r] = eps[..., r] if k == 0 else (phi[r] * z[..., prev[r]] + np.sqrt(1.0 - phi[r] ** 2) * eps[..., r])
    return mu + s * z


def observe(name: str, spec: ObservableSpec, mu, var, y: np.ndarray, censoring: np.ndarray,
            sigma_data: np.ndarray, dims: str, source: str = "data", store_sd: bool = False,
            bounds: tuple[float, float] | None = None, series: tuple[np.ndarray, np.ndarray] | None = None):
    """Create the observed variable ``y_<name>`` of the current model for these rows (module docstring).
    ``bounds = (lower, upper)`` censors every row at the same limits instead of the data's flags (predictions of new
    subjects: below the detection limit / above the humane endpoint, as measured). ``series = (keys, times)`` of the
    rows: needed by an observable with ``correlation_time``."""
    import pymc as pm
    import pytensor.tensor as pt

    y = np.asarray(y, float)
    censoring = np.asarray(censoring)
    if spec.family in CONTINUOUS:
        sd = pt.sqrt(pt.square(_noise_sd(name, spec, np.asarray(sigma_data, float))) + var)
        if store_sd:
            pm.Deterministic(f"sd_{name}", sd, dims=dims)
        if spec.correlation_time is not None and bounds is None:
            if np.any(censoring != "none"):
                raise ValueError(f"{source}: observable {name!r} has serially correlated residuals "
                                 "(correlation_time), which take uncensored rows only; it has censored rows")
            if series is None:
                raise ValueError(f"observable {name!r}: correlation_time needs the rows' series (subject, time)")
            prev, dt, rank = residual_series(*series)
            tau = (spec.correlation_time.create_variable(f"tau_{name}") if isinstance(spec.correlation_time, Prior)
                   else pt.as_tensor_variable(float(spec.correlation_time)))
            yd = pm.Data(f"data_{name}", y, dims=dims)
            return pm.CustomDist(f"y_{name}", mu, sd, tau, dt, prev, rank, logp=lambda v, m, s_, t, d, p, _r:
                                 _ou_logp(v, m, s_, t, d, p), random=_ou_random, observed=yd, dims=dims)
        if bounds is None:
            lower, upper = censoring_bounds(y, censoring)
        else:
            lower, upper = np.full(len(y), float(bounds[0])), np.full(len(y), float(bounds[1]))
        yd = pm.Data(f"data_{name}", y, dims=dims)
        return pm.Censored(f"y_{name}", continuous_dist(spec, mu, sd), lower=lower, upper=upper, observed=yd,
                           dims=dims)
    if np.any(censoring != "none"):
        raise ValueError(f"{source}: censoring flags on {spec.family} observable {name!r}")
    eta = mu / pt.sqrt(1.0 + np.pi * var / 8.0)
    yk = np.round(y).astype("int64")
    probit_sd = None
    if spec.family == "ordinal_probit":  # exact: Φ((c − μ) / sqrt(s² + v))
        s = 1.0 if spec.sigma is None else _noise_sd(name, spec, np.full(len(y), np.nan))
        probit_sd, eta = pt.sqrt(pt.square(s) + var), mu
    if np.any(np.abs(y - yk) > 1e-9) or np.any(yk < 0):
        raise ValueError(f"{source}: {spec.family} observable {name!r} needs non-negative integer values")
    if spec.family == "bernoulli":
        if np.any(yk > 1):
            raise ValueError(f"{source}: bernoulli observable {name!r} needs 0/1 values")
        return pm.Bernoulli(f"y_{name}", logit_p=eta, observed=yk, dims=dims)
    if spec.family == "binomial":
        if spec.n_trials is None:
            raise ValueError(f"binomial observable {name!r} needs n_trials")
        return pm.Binomial(f"y_{name}", n=int(spec.n_trials), logit_p=eta, observed=yk, dims=dims)
    if spec.cutpoints is None:
        raise ValueError(f"ordinal observable {name!r} needs initial cutpoints (K-1 increasing)")
    c0 = np.asarray(spec.cutpoints, float)
    if np.any(np.diff(c0) <= 0):
        raise ValueError(f"ordinal observable {name!r}: cutpoints must increase, got {list(c0)}")
    import pymc.distributions.transforms as tr

    # no initval: the support point (mu = c0, increasing) is already ordered, and an initval stops PyMC from
    # converting the model (compute_log_likelihood, freeze_dims_and_data)
    cuts = pm.Normal(f"cutpoints_{name}", mu=c0, sigma=1.0, shape=len(c0), transform=tr.ordered)
    if spec.link == "logistic":
        return pm.OrderedLogistic(f"y_{name}", eta=eta, cutpoints=cuts, observed=yk, dims=dims)
    if spec.link == "probit":
        return pm.OrderedProbit(f"y_{name}", eta=eta, cutpoints=cuts, sigma=probit_sd, observed=yk, dims=dims)
    raise ValueError(f"ordinal link must be 'logistic' or 'probit', got {spec.link!r}")


def rows_logp_per_draw(spec: ObservableSpec, mu, var, y: np.ndarray, censoring: np.ndarray, sigma_data: np.ndarray,
                       sigma_draws: np.ndarray | None = None, cutpoint_draws: np.ndarray | None = None,
                       paired: bool = False):
    """Log-likelihood of each data row under each of S draws of the observation model's population parameters
    (PyTensor ``(S, rows)``): the same densities as :func:`observe` (censored rows through ``pm.Censored``), with the
    noise sd of rows without a ``sigma`` value taken from ``sigma_draws`` ``(S,)`` and ordinal cut-points from
    ``cutpoint_draws`` ``(S, K−1)`` (and a learned ``ordinal_probit`` scale from ``sigma_draws``). ``mu``/``var``:
    emulator mean and variance of the rows. Used where a fitted
    population is the prior of new subjects (:mod:`immunocal.calib.personalise`). ``paired``: ordinal rows each with their own
    cut-points (``cutpoint_draws`` ``(rows, K−1)``; result ``(1, rows)``) — posterior-predictive draws."""
    # The density is derived on stand-ins for mu and var, then grafted onto them: PyMC's logprob rewrites walk
    # every ancestor of the variables they are given, and mu/var are usually a whole emulator graph (measured on
    # a headline fold's test patient: 46 s of a 95 s personalisation spent rewriting the emulator graph, 8 times)
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace

    mu, var = pt.as_tensor_variable(mu), pt.as_tensor_variable(var)
    mu_in, var_in = mu.type("mu"), var.type("var")
    out = _rows_logp_per_draw(spec, mu_in, var_in, y, censoring, sigma_data, sigma_draws, cutpoint_draws, paired)
    return graph_replace(out, {mu_in: mu, var_in: var}, strict=False)


def _rows_logp_per_draw(spec, mu, var, y, censoring, sigma_data, sigma_draws, cutpoint_draws, paired):
    """:func:`rows_logp_per_draw` on ``mu``/``var`` without ancestors."""
    import pymc as pm
    import pytensor.tensor as pt

    y = np.asarray(y, float)
    censoring = np.asarray(censoring)
    sig_data = np.asarray(sigma_data, float)
    if spec.correlation_time is not None:
        raise ValueError("per-draw row densities (personalisation) do not support serially correlated residuals "
                         "(correlation_time)")
    if spec.family in CONTINUOUS:
        if np.all(np.isfinite(sig_data)):
            sig = pt.as_tensor_variable(sig_data)[None, :]
        elif sigma_draws is not None:
            sig = pt.where(np.isfinite(sig_data)[None, :], np.nan_to_num(sig_data, nan=1.0)[None, :],
                           pt.as_tensor_variable(np.asarray(sigma_draws, float))[:, None])
        elif spec.sigma is not None and not isinstance(spec.sigma, Prior):
            sig = pt.as_tensor_variable(np.where(np.isfinite(sig_data), sig_data, float(spec.sigma)))[None, :]
        else:
            raise ValueError("rows without a sigma value need draws of the fitted noise sd")
        sd = pt.sqrt(pt.square(sig) + var[None, :])
        dist = continuous_dist(spec, mu[None, :], sd)
        if np.any(censoring != "none"):  # pm.Censored's logprob derivation is ≈ 13× a plain density's (measured)
            lower, upper = censoring_bounds(y, censoring)
            dist = pm.Censored.dist(dist, lower=lower[None, :], upper=upper[None, :])
        return pm.logp(dist, np.broadcast_to(y, (1, len(y))))
    if np.any(censoring != "none"):
        raise ValueError(f"censoring flags on a {spec.family} observable")
    eta = (mu / pt.sqrt(1.0 + np.pi * var / 8.0))[None, :]
    yk = np.round(y).astype("int64")
    scale = None
    if spec.family == "ordinal_probit":  # exact: Φ((c − μ) / sqrt(s² + v)) with s per draw when learned
        if spec.sigma is None:
            s2 = pt.as_tensor_variable(np.ones((1, 1)))
        elif isinstance(spec.sigma, Prior):
            if sigma_draws is None:
                raise ValueError("an ordinal_probit observable with a learned scale needs draws of it")
            s2 = pt.as_tensor_variable(np.square(np.asarray(sigma_draws, float)))
            s2 = s2[None, :] if paired else s2[:, None]
        else:
            s2 = pt.as_tensor_variable(np.full((1, 1), float(spec.sigma) ** 2))
        scale, eta = pt.sqrt(s2 + var[None, :]), mu[None, :]
    if spec.family in ("bernoulli", "binomial"):
        n = 1 if spec.family == "bernoulli" else int(spec.n_trials)
        return pm.logp(pm.Binomial.dist(n=n, logit_p=eta), yk[None, :])
    if cutpoint_draws is None:
        raise ValueError("an ordinal observable needs draws of the fitted cut-points")
    cuts = np.asarray(cutpoint_draws, float)
    if paired and cuts.shape[0] != len(y):
        raise ValueError(f"paired cut-points: {cuts.shape[0]} rows of cut-points for {len(y)} data rows")
    cuts = pt.as_tensor_variable(cuts)[None, :, :] if paired else pt.as_tensor_variable(cuts)[:, None, :]
    x = cuts - eta[:, :, None] if scale is None else (cuts - eta[:, :, None]) / scale[:, :, None]
    cdf = 0.5 * pt.erfc(-x / np.sqrt(2.0)) if spec.link == "probit" else pt.sigmoid(x)
    S = cdf.shape[0]
    ones, zeros = pt.ones((S, len(y), 1)), pt.zeros((S, len(y), 1))
    upper_cdf = pt.concatenate([cdf, ones], axis=2)
    lower_cdf = pt.concatenate([zeros, cdf], axis=2)
    K = int(np.asarray(cutpoint_draws).shape[1]) + 1
    onehot = np.zeros((len(y), K))
    onehot[np.arange(len(y)), yk] = 1.0
    p = pt.sum((upper_cdf - lower_cdf) * onehot[None, :, :], axis=2)
    return pt.log(pt.maximum(p, 1e-300))
