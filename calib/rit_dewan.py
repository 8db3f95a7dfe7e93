"""Bayesian counterpart of seed 002's fit to Dewan et al. 2009 (TSA primary tumours, group means).

Two model variants, as in the seed: ``lq_vascular`` (Supp. Table 3: LQ + vascular damage above 15 Gy) and
``modified_lq`` (Supp. Table 1, Dewan column: β → β0(1 + c√d)). Each calibrates the seed's most influential fitted
parameters (seed Table 1's sensitivity ranking: proliferation, radiosensitivity, immune kill; plus antigen release and
the anti-CTLA-4 dose) on all eight arms of ``dewan2009`` folder 2 at once through one PCA-GP surrogate per arm; the
others keep their table values. Then the folder-3 arms (IT timing, not used in the fit) are predicted.

Time: data day 0 = primary inoculation, RT starts on day 12 at about 32 mm³ (the seed's pre-treatment volume), so
model day 0 = data day 12. Observation model: Student-t (ν = 4) on log group-mean volume with a common noise sd
(the digitised means carry no error bars).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from priors import Prior, registry

from .rit_calibration import (
    LOG_VOLUME,
    FitSettings,
    RitForwardModel,
    _subset,
    posterior_check,
    refinement_rounds,
    to_log_volume,
    train_surrogates,
    validation_summary,
)

DAY_OFFSET = 12.0
FIT_PREFIX = "tsa_fig2_"
HELDOUT_PREFIXES = ("tsa_fig3a_", "tsa_fig3b_")

# design boxes: Table 4 bounds narrowed around the seed's fits (a GP is only trusted inside its box)
_BOXES = {
    "lq_vascular": {"tumour_proliferation_rate": (0.08, 0.25), "tumour_alpha": (0.02, 0.35),
                    "tumour_beta": (0.001, 0.05), "immune_kill_rate": (5.0, 120.0),
                    "antigen_release_rate": (3.4596e6, 3.4596e8), "ctla4_dose": (0.75, 75.0)},
    "modified_lq": {"tumour_proliferation_rate": (0.08, 0.25), "tumour_alpha": (0.02, 0.35),
                    "tumour_beta": (0.001, 0.05), "beta_dose_modulation": (-0.2236, 0.5),
                    "immune_kill_rate": (5.0, 120.0), "antigen_release_rate": (26.72, 2672.0),
                    "ctla4_dose": (0.5, 50.0)},
    "restricted": {"tumour_proliferation_rate": (0.08, 0.25), "tumour_alpha": (0.02, 0.35),
                   "immune_kill_rate": (5.0, 120.0)},
}
_PRESET = {"lq_vascular": "dewan_table3", "modified_lq": "dewan_table1", "restricted": "dewan_table3"}


def dewan_forward(variant: str = "lq_vascular") -> RitForwardModel:
    if variant not in _BOXES:
        raise ValueError(f"unknown Dewan model variant {variant!r}; choose one of {sorted(_BOXES)}")
    box = _BOXES[variant]
    return RitForwardModel(preset=_PRESET[variant], parameter_names=tuple(box), data_days=(DAY_OFFSET, 33.0),
                           day_offset=DAY_OFFSET, design_bounds=box)


# zero-argument factories for campaign workers
def dewan_lq_vascular() -> RitForwardModel:
    return dewan_forward("lq_vascular")


def dewan_modified_lq() -> RitForwardModel:
    return dewan_forward("modified_lq")


def dewan_restricted() -> RitForwardModel:
    return dewan_forward("restricted")


def priors_for(variant: str, sigma: float = 1.5) -> dict[str, Prior]:
    """Bounded logit-normal priors on the design box, centred on the seed's best fit of the variant's table."""
    ps = registry().parameter_set("rit", _PRESET[variant])
    out = {}
    for n, (a, b) in _BOXES[variant].items():
        rec = registry().record("rit", n)
        scale = "log" if (rec.scale == "log" or n in ("antigen_release_rate", "ctla4_dose")) and a > 0 else "linear"
        g = math.log if scale == "log" else float
        u = (g(ps[n]) - g(a)) / (g(b) - g(a))
        u = min(max(u, 0.02), 0.98)  # Table 3 sits on its Table 4 lower bound for alpha_C: centre just inside
        out[n] = Prior("BoundedLogitNormal", {"mu": math.log(u / (1 - u)), "sigma": sigma, "lower": a, "upper": b,
                                              "scale": scale})
    return out


def load_dewan(observable: str = "tumour_volume_mm3"):
    from .data import read_conditions, read_measurements
    from .datasets import dataset_dir

    folder = dataset_dir("dewan2009")
    meas = read_measurements(folder / "measurements.csv")
    conds = read_conditions(folder / "conditions.csv")
    keep = meas.observable == observable
    meas = to_log_volume(_subset(meas, keep))
    fit = _subset(meas, np.char.startswith(meas.condition.astype(str), FIT_PREFIX))
    held = _subset(meas, np.array([c.startswith(HELDOUT_PREFIXES) for c in meas.condition]))
    return fit, held, conds


@dataclass
class DewanFit:
    variant: str
    idata: object
    surrogates: dict
    validation: dict
    seconds: dict


def fit_variant(variant: str, out: Path, settings: FitSettings, method: str = "nuts", progress: bool = False,
                blackbox: bool = False, heldout: bool = True) -> DewanFit:
    """Calibrate one variant on the folder-2 arms. ``blackbox=True`` replaces the surrogates by the true forward
    model behind a gradient-free Op (use with ``method='smc'``) — the surrogate-route validation. ``heldout=False``
    skips the surrogates of the folder-3 arms (nothing is predicted).

    Checkpoint: the finished fit (posterior netCDF, surrogates, summary) is stored under ``out/variant/<method>``
    with the settings it was made with; a rerun with the same settings loads it instead of sampling again (the
    campaigns resume too, so a killed run loses at most the step it was in)."""
    import json

    import pymc as pm

    from .inference import sample
    from .model import ObservableSpec, ParameterSpec, build_model
    from .outputs import save_idata
    from .surrogate import BlackBoxEmulator, GPSurrogate

    fit, held, conds = load_dewan()
    fwd = dewan_forward(variant)
    fit_conds = list(dict.fromkeys(fit.condition.tolist()))
    held_conds = list(dict.fromkeys(held.condition.tolist())) if heldout else []
    tag = f"{method}_blackbox" if blackbox else method
    ckpt = Path(out) / variant / tag
    key = json.dumps({"settings": settings.__dict__, "heldout": heldout, "numerics": fwd.config().numerics_tag},
                     sort_keys=True)
    if (ckpt / "fit.json").exists():
        saved = json.loads((ckpt / "fit.json").read_text())
        if saved["key"] == key:
            import arviz as az

            surrogates = {c: GPSurrogate.load(ckpt / "surrogates" / f"{c}.npz") for c in saved["surrogates"]}
            return DewanFit(variant, az.from_netcdf(ckpt / "idata.nc").load(), surrogates, saved["validation"],
                            saved["seconds"])
    t0 = time.perf_counter()
    trained = {"surrogates": {}, "validation": {}, "campaigns": {}} if blackbox else \
        train_surrogates(f"calib.rit_dewan:dewan_{variant}", fwd, fit_conds + held_conds, conds, Path(out) / variant,
                         settings, progress)
    t_sur = time.perf_counter() - t0
    priors = priors_for(variant)
    specs = [ParameterSpec(n, role="population", prior=priors[n]) for n in fwd.parameter_names]
    obs = {LOG_VOLUME: ObservableSpec(family="student_t", nu=4.0, sigma=Prior("HalfNormal", {"sigma": 0.5}))}

    def build():
        ems = ({c: BlackBoxEmulator(fwd, conds.schedules[c]) for c in fit_conds} if blackbox
               else {c: trained["surrogates"][c] for c in fit_conds})
        return build_model(ems, specs, fit, obs, conds, model="rit", preset=fwd.preset)

    def run(model, draws, tune):
        return sample(model, method=method, draws=draws, tune=tune, chains=settings.chains, seed=settings.seed,
                      posterior_predictive=False, target_accept=settings.target_accept,
                      compile_mode=settings.compile_mode if method == "nuts" else None)

    t_refine = 0.0 if blackbox else refinement_rounds(   # pilot posterior -> new runs there -> refit
        trained, settings, lambda n: run(build(), n, n), lambda i: posterior_matrix(i, fwd.parameter_names), progress)
    model = build()
    t1 = time.perf_counter()
    idata = run(model, settings.draws, settings.tune)
    if method == "nuts":
        with model:
            pm.compute_log_likelihood(idata, progressbar=False)
    t_fit = time.perf_counter() - t1
    validation = {"held_out_design_points": validation_summary(trained["validation"])}
    if not blackbox:
        validation["at_posterior"] = posterior_check({c: trained["surrogates"][c] for c in fit_conds}, fwd, conds,
                                                     posterior_matrix(idata, fwd.parameter_names), seed=settings.seed)
    seconds = {"surrogates": round(t_sur, 1), "refinement": round(t_refine, 1), method: round(t_fit, 1)}
    (ckpt / "surrogates").mkdir(parents=True, exist_ok=True)
    for c, sur in trained["surrogates"].items():
        sur.save(ckpt / "surrogates" / f"{c}.npz")
    save_idata(idata, ckpt / "idata.nc")
    tmp = ckpt / "fit.json.tmp"                     # written last: its presence means the checkpoint is complete
    tmp.write_text(json.dumps({"key": key, "surrogates": list(trained["surrogates"]), "validation": validation,
                               "seconds": seconds}, default=float))
    tmp.replace(ckpt / "fit.json")
    return DewanFit(variant, idata, trained["surrogates"], validation, seconds)


def posterior_matrix(idata, names) -> np.ndarray:
    """Posterior draws of ``names`` as an ``(n_draws, p)`` matrix (chains stacked)."""
    post = idata.posterior
    return np.column_stack([post[n].values.ravel() for n in names])


def predictive_bands(fit: DewanFit, conditions, seed: int = 0, max_draws: int = 400) -> dict:
    """Posterior predictive (parameter uncertainty + emulator variance + observation noise) per condition."""
    rng = np.random.default_rng(seed)
    names = list(dewan_forward(fit.variant).parameter_names)
    draws = posterior_matrix(fit.idata, names + ["sigma_" + LOG_VOLUME])
    pick = rng.choice(len(draws), size=min(max_draws, len(draws)), replace=False)
    theta, sigma = draws[pick, :-1], draws[pick, -1]
    bands = {}
    for c in conditions:
        mean, var = fit.surrogates[c].predict(theta)
        draws = mean[:, 0, :] + rng.standard_normal(mean[:, 0, :].shape) * np.sqrt(np.maximum(var[:, 0, :], 0)) \
            + rng.standard_t(4.0, size=mean[:, 0, :].shape) * sigma[:, None]
        bands[c] = {q: np.quantile(draws, float(q[1:]) / 100, axis=0) for q in ("q05", "q25", "q50", "q75", "q95")}
    return bands


def coverage(meas, bands: dict, times: np.ndarray) -> dict:
    inside90 = inside50 = 0
    per = {}
    for c in dict.fromkeys(meas.condition.tolist()):
        m = meas.condition == c
        t, y = meas.time[m], meas.value[m]
        b = {k: np.interp(t, times, v) for k, v in bands[c].items()}
        i90 = int(np.sum((y >= b["q05"]) & (y <= b["q95"])))
        i50 = int(np.sum((y >= b["q25"]) & (y <= b["q75"])))
        per[c] = {"n": int(m.sum()), "coverage_90": i90 / int(m.sum()), "coverage_50": i50 / int(m.sum())}
        inside90, inside50 = inside90 + i90, inside50 + i50
    n = len(meas)
    return {"coverage_90": inside90 / n, "coverage_50": inside50 / n, "n": n, "per_condition": per}


def contraction(fit: DewanFit) -> dict:
    """Posterior contraction 1 − var_post/var_prior per parameter, in the prior's link space (identifiability)."""
    priors = priors_for(fit.variant)
    rng = np.random.default_rng(0)
    out = {}
    for n, prior in priors.items():
        g = prior._g
        prior_draws = g(prior.sample(rng, 20000))
        post_draws = g(fit.idata.posterior[n].values.ravel())
        out[n] = float(1.0 - post_draws.var() / prior_draws.var())
    return out


def information_criteria(fit: DewanFit, n_data: int) -> dict:
    """LOO (ArviZ, PSIS) and AICc (seed eq 27) at the best posterior draw's log-likelihood."""
    import arviz as az

    from forward.rit.analysis import aicc

    ll = fit.idata.log_likelihood
    total = sum(ll[v].sum(dim=[d for d in ll[v].dims if d not in ("chain", "draw")]) for v in ll.data_vars)
    k = len(dewan_forward(fit.variant).parameter_names) + 1  # + observation noise
    best = float(total.max())
    loo = az.loo(fit.idata, var_name=list(ll.data_vars)[0])
    return {"loo_elpd": float(loo.elpd_loo), "loo_se": float(loo.se), "p_loo": float(loo.p_loo),
            "pareto_k_max": float(np.max(loo.pareto_k.values)), "aicc": aicc(best, k, n_data), "k": k,
            "max_log_likelihood": best}
