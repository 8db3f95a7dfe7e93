"""Real-data calibration of the radioimmunotherapy model (seed 002) through the calibration core.

This module is the glue between :mod:`forward.rit` and :mod:`calib`:

* :class:`RitForwardModel` — the RIT model as a :class:`calib.forward_api.ForwardModel`: a batch of values of a few
  calibrated parameters (the rest from a registry preset) and one condition (a row of a conditions table) →
  log tumour volume on a day grid. Data days count from inoculation; the model's day 0 is the day the tumour reaches
  its pre-treatment volume, placed at ``day_offset`` (an assumption stated per data set).
* :func:`morisada_setup` — the per-cell-line set-up for Morisada et al. 2018 (bundled data): which parameters are
  per-mouse latents, which are population parameters, their design ranges and priors.
* :func:`fit_hierarchical` — campaign → surrogate per condition → PyMC hierarchical model → NUTS, then posterior
  predictions for held-out arms (new mice drawn from the population), coverage and tumour-control fractions.

Assumptions (all configurable, all written into the result JSON):

* anti-PD-1 acts through the model's anti-PD-L1 route (p → p(1 + p1)): both block the same PD-1/PD-L1 axis; the
  dose per injection ``pdl1_dose`` is a population parameter.
* The pre-treatment volume of a cell line is the median volume on the first measurement day extrapolated back to
  ``day_offset`` with the median control growth between the first two measurement days.
* Observation model: Student-t (ν = 4) on log volume with a population noise sd; below-detection and right-censored
  rows enter through pm.Censored (the observation layer, calib.likelihoods).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from priors import Prior, registry

from .data import Conditions, Measurements, read_conditions, read_measurements
from .design import ParameterSpace

LOG_VOLUME = "log_volume"


def schedule_from_condition(condition: dict, day_offset: float, t_end: float):
    """A :class:`forward.rit.Schedule` (model days) from a conditions-table row (data days): the model's own
    mapping, :meth:`forward.rit.Schedule.from_condition` (several drugs per condition, unknown columns refused)."""
    from forward.rit import Schedule

    return Schedule.from_condition(condition, day_offset, t_end)


@dataclass
class RitForwardModel:
    """The RIT model as a calibration-core forward model (see :mod:`calib.forward_api`)."""

    preset: str = "dewan_table3"
    parameter_names: tuple[str, ...] = ("tumour_proliferation_rate", "immune_kill_rate", "tumour_alpha")
    data_days: tuple[float, float] = (7.0, 121.0)
    day_offset: float = 7.0
    pretreatment_volume_mm3: float | None = None
    design_bounds: dict = field(default_factory=dict)
    name: str = "rit"
    observables: tuple[str, ...] = (LOG_VOLUME,)

    def __post_init__(self):
        self.parameter_names = tuple(self.parameter_names)
        lo, hi = self.data_days
        if not lo >= self.day_offset:
            raise ValueError(f"data_days start {lo} is before day_offset {self.day_offset}")
        self.times = np.arange(lo, hi + 0.5, 1.0)  # data days, daily grid

    def space(self, preset: str | None = None) -> ParameterSpace:
        return ParameterSpace.from_registry("rit", self.parameter_names, preset or self.preset,
                                            bounds=self.design_bounds)

    def config(self):
        from forward.rit import RitConfig

        over = {} if self.pretreatment_volume_mm3 is None else {"pretreatment_volume_mm3": self.pretreatment_volume_mm3}
        return RitConfig.from_preset(self.preset, **over)

    def simulate(self, theta: np.ndarray, condition: dict | None = None) -> np.ndarray:
        from forward.rit import simulate_volumes_batch

        theta = np.atleast_2d(np.asarray(theta, float))
        t_model = self.times - self.day_offset
        schedule = schedule_from_condition(condition or {}, self.day_offset, t_end=float(t_model[-1]) + 1.0)
        vols, ok = simulate_volumes_batch(self.preset, self.parameter_names, theta, schedule, t_model,
                                          self.config())
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(np.maximum(vols, 1e-6))  # 1e-6 mm^3 floor: a controlled tumour has ~1 cell left
        out[~ok] = np.nan
        return out[:, None, :]


# ------------------------------------------------------------------------------------------------ Morisada set-up
FIT_ARMS = ("Control", "antiPD1", "8Gyx2", "2Gyx10")
HELDOUT_ARMS = ("antiPD1_8Gyx2", "antiPD1_2Gyx10")


@dataclass
class HierarchicalSetup:
    cell_line: str
    forward: RitForwardModel
    latent: tuple[str, ...]
    population: tuple[str, ...]
    priors: dict
    fit_conditions: tuple[str, ...]
    heldout_conditions: tuple[str, ...]
    detection_limit_mm3: float
    assumptions: dict


def _pretreatment_volume(meas: Measurements, cell_line: str, day_offset: float) -> tuple[float, float, float]:
    ctrl = meas.condition == f"{cell_line}_Control"
    ok = ctrl & (meas.censoring == "none")
    days = np.unique(meas.time[ok])
    d0, d1 = days[0], days[1]
    v0 = np.median(meas.value[ok & (meas.time == d0)])
    v1 = np.median(meas.value[ok & (meas.time == d1)])
    rate = math.log(v1 / v0) / (d1 - d0)
    return float(v0 * math.exp(-rate * (d0 - day_offset))), float(rate), float(d0)


def morisada_setup(cell_line: str = "MOC1", data_dir: Path | None = None, day_offset: float = 7.0) -> tuple:
    """Set-up, measurements (log volume) and conditions for one Morisada cell line."""
    from .datasets import dataset_dir

    if cell_line not in ("MOC1", "MC38"):
        raise ValueError(f"unknown Morisada cell line {cell_line!r}; choose MOC1 or MC38")
    folder = Path(data_dir) if data_dir else dataset_dir("morisada2018")
    meas = read_measurements(folder / "measurements.csv")
    conds = read_conditions(folder / "conditions.csv")
    keep = np.char.startswith(meas.condition.astype(str), f"{cell_line}_")
    meas = _subset(meas, keep)
    v_pre, rate, first_day = _pretreatment_volume(meas, cell_line, day_offset)
    last_day = float(meas.time.max())
    limit = float(np.min(meas.value[meas.censoring == "left"])) if np.any(meas.censoring == "left") else 10.0
    bounds = {"tumour_proliferation_rate": (0.02, 0.5), "immune_kill_rate": (0.5, 500.0),
              "tumour_alpha": (0.02, 0.35)}
    forward = RitForwardModel(preset="dewan_table3", data_days=(day_offset, last_day), day_offset=day_offset,
                              pretreatment_volume_mm3=v_pre, design_bounds=bounds)
    # priors on the design box (the surrogate is trustworthy only there): bounded logit-normal, wide
    table3 = registry().parameter_set("rit", "dewan_table3")
    centre = {"tumour_proliferation_rate": max(min(rate, 0.4), 0.03), "immune_kill_rate": table3["immune_kill_rate"],
              "tumour_alpha": 0.05}
    scale = {"tumour_proliferation_rate": "log", "immune_kill_rate": "log", "tumour_alpha": "log"}
    priors = {}
    for n, (a, b) in bounds.items():
        g = math.log if scale[n] == "log" else float
        u = (g(centre[n]) - g(a)) / (g(b) - g(a))
        priors[n] = Prior("BoundedLogitNormal", {"mu": float(math.log(u / (1 - u))), "sigma": 1.5,
                                                 "lower": a, "upper": b, "scale": scale[n]})
    setup = HierarchicalSetup(
        cell_line=cell_line, forward=forward,
        latent=("tumour_proliferation_rate", "immune_kill_rate"), population=("tumour_alpha",),
        priors=priors,
        fit_conditions=tuple(f"{cell_line}_{a}" for a in FIT_ARMS),
        heldout_conditions=tuple(f"{cell_line}_{a}" for a in HELDOUT_ARMS),
        detection_limit_mm3=limit,
        assumptions={
            "base_preset": "dewan_table3 (seed 002 Supp. Table 3: LQ + vascular damage); parameters not calibrated "
                           "keep those values",
            "anti_pd1": "modelled through the anti-PD-L1 route p -> p(1+p1) (same PD-1/PD-L1 axis) with the dose "
                        f"per injection fixed at the seed's Deng fit, i_p1 = {table3['pdl1_dose']:g}: in this model "
                        "anti-PD-1 acts only on RT-primed T cells, so the fit arms (no combination) cannot inform it",
            "day_offset": f"model day 0 = data day {day_offset:g} (first anti-PD-1 dose)",
            "pretreatment_volume_mm3": round(v_pre, 3),
            "pretreatment_volume_rule": f"median control volume on day {first_day:g} extrapolated back to day "
                                        f"{day_offset:g} with the median control growth rate {rate:.4f}/day",
            "schedules": "see calib/datasets/schedule_assumptions.toml",
            "design_bounds": {k: list(v) for k, v in bounds.items()},
        },
    )
    return setup, to_log_volume(meas), conds


def _subset(meas: Measurements, mask: np.ndarray) -> Measurements:
    return Measurements.from_arrays(meas.subject[mask], meas.condition[mask], meas.observable[mask],
                                    meas.time[mask], meas.value[mask], meas.sigma[mask], meas.censoring[mask],
                                    source=meas.source)


def to_log_volume(meas: Measurements) -> Measurements:
    """Volumes (mm³) → the ``log_volume`` observable the surrogates emit (censoring limits transformed too)."""
    if np.any(meas.value <= 0):
        raise ValueError(f"{meas.source}: volumes must be > 0 to take logs (zeros belong to censored rows)")
    return Measurements.from_arrays(meas.subject, meas.condition, np.full(len(meas), LOG_VOLUME),
                                    meas.time, np.log(meas.value), meas.sigma, meas.censoring, source=meas.source)


# ------------------------------------------------------------------------------------------------ the workflow
@dataclass
class FitSettings:
    n_design: int = 160
    draws: int = 1500
    tune: int = 1000
    chains: int = 2
    seed: int = 1
    workers: int = 0
    compile_mode: str | None = "NUMBA"  # PyTensor's Numba backend: ~3.6x faster NUTS without a linked BLAS
    target_accept: float = 0.9
    # active refinement (calib.surrogate.refine): rounds of a short pilot NUTS run on the current surrogates, then
    # ``refine_points`` new runs per condition where the pilot posterior puts mass, then a refit
    refine_rounds: int = 0
    refine_points: int = 48
    refine_draws: int = 300

    @classmethod
    def quick(cls) -> FitSettings:
        return cls(n_design=160, draws=400, tune=500, chains=2, target_accept=0.9)


def train_surrogates(forward_spec: str, forward: RitForwardModel, condition_names, conds: Conditions, out: Path,
                     settings: FitSettings, progress: bool = True) -> dict:
    """One campaign + PCA-GP surrogate per condition, cached in ``out/campaigns`` (a rerun resumes).

    ``forward_spec`` is the ``"module:factory"`` string campaign workers use to rebuild ``forward``.
    """
    from .campaign import Campaign
    from .design import design as make_design
    from .surrogate import fit_from_campaign

    space = forward.space()
    design = make_design(space, settings.n_design, method="sobol", seed=settings.seed)
    surrogates, reports, campaigns = {}, {}, {}
    for c in condition_names:
        # keyed by the design and the forward numerics, so a rerun with other settings (or after a change of the
        # RIT time integration) never resumes a campaign over another design or another scheme
        key = f"sobol{settings.n_design}-seed{settings.seed}-{forward.config().numerics_tag}"
        folder = Path(out) / "campaigns" / key / c
        camp = Campaign(folder) if (folder / "meta.json").exists() else Campaign.create(
            folder, forward_spec, design, condition=conds.schedules[c], space=space)
        camp.run(workers=settings.workers, progress=progress)
        sur, rep = fit_from_campaign(camp, test_fraction=0.2, seed=settings.seed)
        surrogates[c], reports[c], campaigns[c] = sur, rep, camp
    return {"surrogates": surrogates, "validation": reports, "campaigns": campaigns}


def refine_surrogates(trained: dict, posterior_theta: np.ndarray, settings: FitSettings, round_no: int,
                      progress: bool = True) -> dict:
    """One active-refinement round on every condition's campaign (resumable: the round is tagged in the campaign),
    then the surrogates are refitted on all runs. A surrogate trained on a wide design box is uncertain everywhere
    (its variance, added to the likelihood, widens the posterior); new runs where the posterior is shrink it there."""
    from .surrogate import refine

    for c, camp in trained["campaigns"].items():
        sur, _ = refine(camp, posterior_theta, settings.refine_points, workers=settings.workers, progress=progress,
                        tag=f"round{round_no}", seed=settings.seed)
        trained["surrogates"][c] = sur
    return trained


def refinement_rounds(trained: dict, settings: FitSettings, pilot, draws_of, progress: bool = True) -> float:
    """``settings.refine_rounds`` rounds of: ``pilot(draws)`` (a short fit on the current surrogates, an InferenceData),
    ``draws_of(idata)`` (its posterior as forward-model parameter rows), :func:`refine_surrogates`. Returns seconds."""
    t0 = time.perf_counter()
    for r in range(settings.refine_rounds):
        refine_surrogates(trained, draws_of(pilot(settings.refine_draws)), settings, r + 1, progress)
    return time.perf_counter() - t0


def posterior_check(surrogates: dict, forward, conds: Conditions, posterior_theta: np.ndarray, n: int = 40,
                    seed: int = 0) -> dict:
    """The surrogates against the true forward model at ``n`` posterior draws (where the calibration relied on them):
    RMSE, max |error| and the coverage of the emulator's own 90 % interval, per condition."""
    from .surrogate import validate

    rng = np.random.default_rng(seed)
    theta = posterior_theta[rng.choice(len(posterior_theta), size=min(n, len(posterior_theta)), replace=False)]
    out = {}
    for c, sur in surrogates.items():
        rep = validate(sur, theta, forward.simulate(theta, conds.schedules[c]))["observables"][LOG_VOLUME]
        out[c] = {k: rep[k] for k in ("rmse", "max_abs_error", "coverage_90")}
    worst = max(out, key=lambda c: out[c]["max_abs_error"])
    return {"n_draws": len(theta), "max_abs_error": out[worst]["max_abs_error"], "worst_condition": worst,
            "max_rmse": max(v["rmse"] for v in out.values()), "per_condition": out}


def validation_summary(reports: dict) -> dict:
    """Per-condition held-out surrogate accuracy (R², RMSE, max abs error, own-interval coverage)."""
    return {c: {"n_train": r["n_train"], "n_test": r["n_test"],
                **{k: v for k, v in r["observables"][LOG_VOLUME].items()
                   if k in ("r2", "rmse", "max_abs_error", "coverage_50", "coverage_90")}}
            for c, r in reports.items()}


def _register_forward(setup: HierarchicalSetup) -> str:
    """Campaign workers rebuild the forward model from a spec string: the factory of this cell line."""
    return f"morisada_{setup.cell_line.lower()}"


def morisada_moc1() -> RitForwardModel:
    return morisada_setup("MOC1")[0].forward


def morisada_mc38() -> RitForwardModel:
    return morisada_setup("MC38")[0].forward


def fit_hierarchical(setup: HierarchicalSetup, meas: Measurements, conds: Conditions, out: Path,
                     settings: FitSettings | None = None, progress: bool = True) -> dict:
    """Calibrate on the fit arms, predict the held-out arms; returns a JSON-able result and writes ``idata.nc``."""
    from .inference import sample
    from .model import ObservableSpec, ParameterSpec, build_model
    from .outputs import check_diagnostics, provenance, save_idata

    settings = settings or FitSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trained = train_surrogates(f"calib.rit_calibration:{_register_forward(setup)}", setup.forward,
                               setup.fit_conditions + setup.heldout_conditions, conds, out, settings, progress)
    t_sur = time.perf_counter() - t0
    fit_mask = np.isin(meas.condition, setup.fit_conditions)
    fit = _subset(meas, fit_mask)
    held = _subset(meas, np.isin(meas.condition, setup.heldout_conditions))
    specs = [ParameterSpec(n, role="latent", prior=setup.priors[n]) for n in setup.latent]
    specs += [ParameterSpec(n, role="population", prior=setup.priors[n]) for n in setup.population]
    obs = {LOG_VOLUME: ObservableSpec(family="student_t", nu=4.0,
                                      sigma=Prior("HalfNormal", {"sigma": 0.5}))}

    def build():
        ems = {c: trained["surrogates"][c] for c in setup.fit_conditions}
        return build_model(ems, specs, fit, obs, conds, model="rit", preset=setup.forward.preset)

    def run(draws, tune):
        return sample(build(), draws=draws, tune=tune, chains=settings.chains, seed=settings.seed,
                      posterior_predictive=False, compile_mode=settings.compile_mode,
                      target_accept=settings.target_accept)

    # pilot posterior -> new runs at its mice -> refit
    t_refine = refinement_rounds(trained, settings, lambda n: run(n, n), lambda i: mouse_parameters(setup, i), progress)
    t1 = time.perf_counter()
    idata = run(settings.draws, settings.tune)
    t_nuts = time.perf_counter() - t1
    diag = check_diagnostics(idata, rhat_max=1.01, ess_min=400, strict=False)
    sid = ";".join(f"{c}={s.surrogate_id}" for c, s in trained["surrogates"].items())
    attrs = provenance({"cell_line": setup.cell_line, "settings": settings.__dict__,
                        "assumptions": setup.assumptions}, meas.digest(), sid)
    save_idata(idata, out / "idata.nc", attrs)
    pred = predict_new_mice(setup, idata, trained["surrogates"], settings.seed)
    heldout = coverage_and_control(setup, held, pred)
    fitcov = coverage_and_control(setup, fit, pred)
    post = idata.posterior
    summary = {}
    for n in setup.population:
        v = post[n].values.ravel()
        summary[n] = {"mean": float(v.mean()), "sd": float(v.std()), "q05": float(np.quantile(v, 0.05)),
                      "q95": float(np.quantile(v, 0.95))}
    for n in setup.latent:
        v = post[n].values.reshape(-1, post[n].shape[-1])
        summary[n] = {"population_median": float(np.median(v)), "between_mouse_sd_link": float(
            post[f"{n}_sd"].values.mean())}
    return {
        "cell_line": setup.cell_line,
        "diagnostics": diag,
        "surrogate_validation": validation_summary(trained["validation"]),
        "posterior": summary,
        "heldout": heldout,
        "fit_arms": fitcov,
        "predictions": pred,
        "surrogate_at_posterior": posterior_check(trained["surrogates"], setup.forward, conds,
                                                  mouse_parameters(setup, idata), seed=settings.seed),
        "seconds": {"surrogates": round(t_sur, 1), "refinement": round(t_refine, 1), "nuts": round(t_nuts, 1)},
        "assumptions": setup.assumptions,
        "idata": str(out / "idata.nc"),
    }


def mouse_parameters(setup: HierarchicalSetup, idata) -> np.ndarray:
    """Posterior draws of every fitted mouse's parameter vector (forward-model order), ``(draws × mice, p)``."""
    post = idata.posterior
    n_mice = post[setup.latent[0]].shape[-1]
    cols = []
    for n in setup.forward.parameter_names:
        v = post[n].values
        cols.append((v if n in setup.latent else np.repeat(v[..., None], n_mice, axis=-1)).ravel())
    return np.column_stack(cols)


def predict_new_mice(setup: HierarchicalSetup, idata, surrogates: dict, seed: int, n_mice_per_draw: int = 4,
                     max_draws: int = 400) -> dict:
    """Posterior predictive of the log volume of a *new* mouse of each condition (population uncertainty +
    between-mouse variation + emulator variance + observation noise), on the surrogate's day grid."""
    rng = np.random.default_rng(seed)
    post = idata.posterior.stack(sample=("chain", "draw"))
    n_total = post.sizes["sample"]
    pick = rng.choice(n_total, size=min(max_draws, n_total), replace=False)
    cols = {}
    for n in setup.latent:
        loc = post[f"{n}_loc"].values[pick]
        sd = post[f"{n}_sd"].values[pick]
        z = loc[:, None] + sd[:, None] * rng.standard_normal((len(pick), n_mice_per_draw))
        cols[n] = setup.priors[n].link_inverse(z).ravel()
    for n in setup.population:
        cols[n] = np.repeat(post[n].values[pick], n_mice_per_draw)
    sigma = np.repeat(post["sigma_" + LOG_VOLUME].values[pick], n_mice_per_draw) \
        if "sigma_" + LOG_VOLUME in post else np.full(len(pick) * n_mice_per_draw, 0.3)
    names = list(setup.forward.parameter_names)
    theta = np.column_stack([cols[n] for n in names])
    out = {"times": setup.forward.times.tolist(), "conditions": {}}
    for c, sur in surrogates.items():
        mean, var = sur.predict(theta)
        mean, var = mean[:, 0, :], var[:, 0, :]
        noise = rng.standard_t(4.0, size=mean.shape) * sigma[:, None]
        draws = mean + rng.standard_normal(mean.shape) * np.sqrt(np.maximum(var, 0)) + noise
        out["conditions"][c] = {
            "q05": np.quantile(draws, 0.05, axis=0).tolist(), "q25": np.quantile(draws, 0.25, axis=0).tolist(),
            "q50": np.quantile(draws, 0.50, axis=0).tolist(), "q75": np.quantile(draws, 0.75, axis=0).tolist(),
            "q95": np.quantile(draws, 0.95, axis=0).tolist(),
            # tumour control: the new mouse's noise-free volume at the last day below the detection limit
            "control_fraction": float(np.mean(mean[:, -1] < math.log(setup.detection_limit_mm3))),
        }
    return out


def coverage_and_control(setup: HierarchicalSetup, meas: Measurements, pred: dict) -> dict:
    """Coverage of uncensored observations by the 50 %/90 % new-mouse predictive intervals, and observed vs
    predicted fraction of mice with tumour control (series ending below detection)."""
    times = np.asarray(pred["times"])
    res = {"per_condition": {}}
    inside50 = inside90 = total = 0
    for c in dict.fromkeys(meas.condition.tolist()):
        q = {k: np.asarray(v) for k, v in pred["conditions"][c].items() if k.startswith("q")}
        m = (meas.condition == c) & (meas.censoring == "none")
        t, y = meas.time[m], meas.value[m]
        lo90, hi90 = np.interp(t, times, q["q05"]), np.interp(t, times, q["q95"])
        lo50, hi50 = np.interp(t, times, q["q25"]), np.interp(t, times, q["q75"])
        in90 = int(np.sum((y >= lo90) & (y <= hi90)))
        in50 = int(np.sum((y >= lo50) & (y <= hi50)))
        mice = sorted(set(meas.subject[meas.condition == c].tolist()))
        controlled = 0
        for s in mice:
            rows = np.flatnonzero((meas.subject == s) & (meas.condition == c))
            last = rows[np.argmax(meas.time[rows])]
            controlled += meas.censoring[last] == "left"
        res["per_condition"][c] = {
            "n_obs": int(m.sum()), "coverage_50": in50 / max(int(m.sum()), 1),
            "coverage_90": in90 / max(int(m.sum()), 1),
            "observed_control_fraction": controlled / max(len(mice), 1), "n_mice": len(mice),
            "predicted_control_fraction": pred["conditions"][c]["control_fraction"],
        }
        inside50, inside90, total = inside50 + in50, inside90 + in90, total + int(m.sum())
    res["coverage_50"] = inside50 / max(total, 1)
    res["coverage_90"] = inside90 / max(total, 1)
    res["n_obs"] = total
    return res


def plot_fit(setup: HierarchicalSetup, meas: Measurements, pred: dict, conditions, path: Path, title: str) -> Path:
    """Data (per mouse) over the new-mouse predictive bands, one panel per condition."""
    import matplotlib.pyplot as plt

    conditions = list(conditions)
    fig, axes = plt.subplots(1, len(conditions), figsize=(3.3 * len(conditions), 3.0), sharey=True)
    axes = np.atleast_1d(axes)
    times = np.asarray(pred["times"])
    for ax, c in zip(axes, conditions):
        q = {k: np.exp(np.asarray(v)) for k, v in pred["conditions"][c].items() if k.startswith("q")}
        ax.fill_between(times, q["q05"], q["q95"], color="C0", alpha=0.2, label="90 % new mouse")
        ax.fill_between(times, q["q25"], q["q75"], color="C0", alpha=0.35, label="50 %")
        ax.plot(times, q["q50"], color="C0")
        for s in sorted(set(meas.subject[meas.condition == c].tolist())):
            r = (meas.subject == s) & (meas.condition == c)
            order = np.argsort(meas.time[r])
            t, v, cz = meas.time[r][order], np.exp(meas.value[r][order]), meas.censoring[r][order]
            ax.plot(t, v, color="k", lw=0.6, alpha=0.6)
            ax.scatter(t[cz == "left"], v[cz == "left"], marker="v", color="C3", s=10, zorder=3)
            ax.scatter(t[cz == "right"], v[cz == "right"], marker="^", color="C2", s=10, zorder=3)
        ax.set_yscale("log")
        ax.set_title(c.split("_", 1)[1], fontsize=9)
        ax.set_xlabel("day")
    axes[0].set_ylabel("tumour volume (mm³)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    from .outputs import save_figure

    return save_figure(fig, path.parent, path.name)
