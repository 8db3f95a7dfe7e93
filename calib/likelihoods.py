"""Observation models as PyTensor log-likelihood expressions.

Every function returns the element-wise log-likelihood (a PyTensor vector); the model builder sums them into a
``pm.Potential`` (censored rows) or uses the matching observed distribution (uncensored rows, so posterior
predictive draws are available).

* ``gaussian`` / ``student_t`` — on log-volume (or any continuous observable) with scale
  ``s = sqrt(sigma² + emulator variance)``;
* censoring — ``left`` (below detection limit L): ``log P(Y ≤ L) = log Φ((L − μ)/s)``; ``right`` (censored at the
  endpoint value c): ``log P(Y > c) = log Φ(−(c − μ)/s)`` — computed with PyTensor's stable ``normal_lcdf``;
* ``ordinal`` — RECIST-like categories 0..K−1 from a latent score η with ordered cut-points (logistic or probit);
* ``bernoulli`` / ``binomial`` — response, tumour control counts, with logit-probability η.
"""

from __future__ import annotations

import numpy as np

FAMILIES = ("normal", "student_t", "ordinal_logistic", "ordinal_probit", "bernoulli", "binomial")


def total_sd(sigma, emulator_var):
    """Observation sd with the emulator's variance added: ``sqrt(sigma² + var_em)``."""
    import pytensor.tensor as pt

    return pt.sqrt(pt.square(sigma) + emulator_var)


def gaussian_logp(y, mu, sd):
    import pymc as pm

    return pm.logp(pm.Normal.dist(mu=mu, sigma=sd), y)


def student_t_logp(y, mu, sd, nu):
    import pymc as pm

    return pm.logp(pm.StudentT.dist(nu=nu, mu=mu, sigma=sd), y)


def censored_logp(y, mu, sd, side, family="normal", nu=None):
    """``side`` is a numpy array of 'left'/'right' (same length as y). Returns log P(Y ≤ y) or log P(Y > y)."""
    import pymc as pm
    import pytensor.tensor as pt

    sign = np.where(np.asarray(side) == "left", 1.0, -1.0)
    # P(Y > c) for a symmetric location-scale family = P(Y' ≤ −c) with Y' centred at −μ
    if family == "normal":
        dist = pm.Normal.dist(mu=sign * mu, sigma=sd)
    elif family == "student_t":
        dist = pm.StudentT.dist(nu=nu, mu=sign * mu, sigma=sd)
    else:
        raise ValueError(f"censoring is defined for 'normal' and 'student_t' observables, not {family!r}")
    return pm.logcdf(dist, pt.as_tensor_variable(sign * np.asarray(y, float)))


def ordinal_logp(k, eta, cutpoints, link="logistic"):
    import pymc as pm

    if link == "logistic":
        return pm.logp(pm.OrderedLogistic.dist(eta=eta, cutpoints=cutpoints), k)
    if link == "probit":
        return pm.logp(pm.OrderedProbit.dist(eta=eta, cutpoints=cutpoints, sigma=1.0), k)
    raise ValueError(f"ordinal link must be 'logistic' or 'probit', got {link!r}")


def bernoulli_logp(k, eta):
    import pymc as pm

    return pm.logp(pm.Bernoulli.dist(logit_p=eta), k)


def binomial_logp(k, n, eta):
    import pymc as pm

    return pm.logp(pm.Binomial.dist(n=n, logit_p=eta), k)
