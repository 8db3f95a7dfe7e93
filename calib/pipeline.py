"""Config-driven calibration (``immunocal calibrate CONFIG.toml``), posterior predictive checks and SBC.

The config and its loader: :mod:`immunocal.calib.config` (reference in docs/calib.md); the workflow it drives:
:class:`immunocal.calib.workflow.Calibration`. This module keeps the command-level entry points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import ConfigError, load_config
from .outputs import write_json
from .workflow import RUN_FILES, Calibration, check_surrogate_provenance, prepare_output_dir

__all__ = ["RUN_FILES", "Calibration", "ConfigError", "build_from_config", "calibrate", "check_surrogate_provenance",
           "load_config", "ppc", "predict", "prepare_output_dir", "sbc_from_config"]


def build_from_config(cfg: dict, data=None):
    """The PyMC model of a config's fitted data (emulators loaded, exact or trained): ``(model, data, conditions,
    emulators)``."""
    cal = Calibration(cfg, progress=False)
    if data is not None:
        cal.data = data
    ems = cal.train()
    return cal.model(), cal.data, cal.tables[1], ems


def calibrate(config_path: str | Path, out_dir: str | Path | None = None, surrogate: str | Path | None = None,
              force: bool = False, progress: bool = False, **sampler_overrides) -> dict:
    """Run the workflow of a config file (:meth:`immunocal.calib.workflow.Calibration.run`); returns the summary. The output
    folder is checked first (:func:`immunocal.calib.workflow.prepare_output_dir`; ``force`` replaces a previous run's files)."""
    return Calibration(config_path, out_dir, force=force, progress=progress, surrogate=surrogate,
                       sampler=sampler_overrides).run()


def load_run(run_dir: str | Path, cal: Calibration | None = None, progress: bool = False, what: str = "using"):
    """A finished run's ``(idata, cal)``: its InferenceData and the Calibration of its config (``cal``: one already
    built, which must be of the run's config). Refuses a folder without ``idata.nc``, a run of another config, and a
    run whose fitted data or schedules changed since (``fit_data_hash``)."""
    import arviz as az

    run_dir = Path(run_dir)
    if not (run_dir / "idata.nc").exists():
        raise FileNotFoundError(f"{run_dir}: no idata.nc (run 'immunocal calibrate' first)")
    idata = az.from_netcdf(run_dir / "idata.nc")
    attrs = idata.posterior.attrs
    if cal is None:
        cal = Calibration(attrs["config_path"], run_dir, progress=progress)
    else:
        from .config import public
        from .outputs import config_hash

        if attrs.get("config_hash") != config_hash(public(cal.cfg)):
            raise ValueError(f"{run_dir}: a run of another config (config hash {attrs.get('config_hash')} vs "
                             f"{config_hash(public(cal.cfg))} of {cal.cfg.get('_path')})")
    stored = str(attrs.get("fit_data_hash", ""))
    if stored != cal.fit_data_hash():
        raise ValueError(f"{run_dir}: the fitted data or their schedules changed since the run (hash "
                         f"{cal.fit_data_hash()} vs {stored or 'none recorded'}); rerun `immunocal calibrate` before "
                         f"{what} it")
    return idata, cal


def predict(run_dir: str | Path, conditions=None, out: str | Path | None = None, progress: bool = False) -> dict:
    """Predict ``conditions`` (default: the run's fitted and held-out ones) for new subjects from a finished run, by
    the true forward model at its posterior draws. Refuses if the fitted data or their schedules changed since the
    run. Writes ``predict_<name>.json`` (and ``.nc``) into the run folder (or ``out``)."""
    from .outputs import save_idata
    from .predict import restrict as _restrict

    run_dir = Path(run_dir)
    idata, cal = load_run(run_dir, progress=progress, what="predicting from")
    attrs = idata.posterior.attrs
    fit, held = cal.conditions
    conditions = list(conditions or fit + held)
    conds = cal.tables[1]
    unknown = [c for c in conditions if conds is None or c not in conds.schedules]
    if unknown:
        raise ValueError(f"condition(s) {unknown} have no row in the conditions table "
                         f"{conds.source if conds else '(none)'}")
    pred = cal.predict(idata, conditions)
    out = Path(out) if out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    tag = "all" if set(conditions) == set(fit + held) else "-".join(c.replace("/", "_") for c in conditions)[:80]
    save_idata(pred["idata"], out / f"predict_{tag}.nc", {k: v for k, v in attrs.items()})
    result = {"run": str(run_dir), "conditions": conditions, **_restrict(pred["summary"], conditions),
              "bands": {c: pred["summary"]["bands"][c] for c in conditions}}
    write_json(out / f"predict_{tag}.json", result)
    return result


def ppc(run_dir: str | Path, plot: bool = True) -> dict:
    """Posterior predictive bands over the data of a finished run (``RUN_DIR/idata.nc``); writes ``ppc.json`` and
    ``ppc.png``. The draws are PyMC's own posterior predictive of each observed variable (``y_*``, every row, the
    run's family — Student-t with its ν — and censoring), made by ``sample_posterior_predictive`` at sampling time."""
    from .diagnostics import ppc_bands

    run_dir = Path(run_dir)
    idata, cal = load_run(run_dir, what="checking the predictive of")
    data = cal.data
    result = {"run": str(run_dir), "observables": {}}
    for o in data.observables:
        rows = np.flatnonzero(data.observable == o)
        if "posterior_predictive" not in idata.groups() or f"y_{o}" not in idata.posterior_predictive:
            raise ValueError(f"{run_dir}: the run has no posterior predictive draws of {o!r} (y_{o})")
        pred = idata.posterior_predictive[f"y_{o}"].stack(s=("chain", "draw")).values.T
        y = data.value[rows]
        bands = ppc_bands(y, pred)
        unc = data.censoring[rows] == "none"
        bands["fraction_inside_90_uncensored"] = float(np.mean((y[unc] >= np.array(bands["lower_90"])[unc]) &
                                                               (y[unc] <= np.array(bands["upper_90"])[unc])))
        bands.update({"subject": data.subject[rows].tolist(), "time": data.time[rows].tolist(), "value": y.tolist(),
                      "censoring": data.censoring[rows].tolist()})
        result["observables"][o] = bands
    write_json(run_dir / "ppc.json", result)
    if plot and result["observables"]:
        _plot_ppc(result, run_dir / "ppc.png")
    return result


def _plot_ppc(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = list(result["observables"])
    fig, axes = plt.subplots(1, len(obs), figsize=(6.5 * len(obs), 4.5), squeeze=False)
    for ax, o in zip(axes[0], obs):
        b = result["observables"][o]
        subj = np.array(b["subject"])
        t = np.array(b["time"])
        for k, s in enumerate(list(dict.fromkeys(subj))[:8]):
            sel = subj == s
            order = np.argsort(t[sel])
            col = f"C{k}"
            ax.fill_between(t[sel][order], np.array(b["lower_90"])[sel][order], np.array(b["upper_90"])[sel][order],
                            color=col, alpha=0.2)
            ax.plot(t[sel][order], np.array(b["median"])[sel][order], color=col)
            cz = np.array(b["censoring"])[sel]
            for flag, marker in (("none", "o"), ("left", "v"), ("right", "^")):
                keep = cz == flag
                if keep.any():
                    ax.plot(t[sel][keep], np.array(b["value"])[sel][keep], marker, color=col, ms=4 if flag == "none"
                            else 7, ls="none", label=f"{flag}-censored" if flag != "none" and k == 0 else None)
        ax.set_xlabel("time")
        ax.set_ylabel(o)
        ax.set_title(f"{o}: 90 % PPC bands, {b['fraction_inside_90']:.0%} of data inside", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sbc_from_config(config_path: str | Path, n_replicates: int = 50, n_draws: int = 99, seed: int = 0,
                    out_dir: str | Path | None = None) -> dict:
    """SBC of the model described by a config: truths and data from the prior predictive (censored rows drawn
    censored at the data's bounds, as the observation model says), refits with the config's sampler (continuous
    observables), ranks + chi-square uniformity test per free variable, and Betancourt's z-scores
    ((posterior mean − truth) / posterior sd: mean and max |z|) and contraction beside them."""
    import pymc as pm

    from .diagnostics import sbc_rank, uniformity_test
    from .inference import sample

    cfg = load_config(config_path)
    model, _, _, _ = build_from_config(cfg)
    data_vars = [v.name for v in model.data_vars if v.name.startswith("data_")]
    obs_names = [f"y_{v[len('data_'):]}" for v in data_vars]
    if not data_vars:
        raise ValueError("SBC from a config needs continuous (normal/student_t) observables")
    free = [v.name for v in model.free_RVs if not v.name.endswith(("_eta", "_link"))]
    free += [n for n in model.calib_info.latent]
    with model:
        prior = pm.sample_prior_predictive(draws=n_replicates, random_seed=seed)
    s = {"method": "nuts", "draws": 500, "tune": 500, "chains": 2, "cores": 1, "seed": seed,
         **cfg.get("sampler", {}),
         **cfg.get("sbc", {}).get("sampler", {})}
    ranks: dict[str, list[int]] = {n: [] for n in free}
    zscores: dict[str, list[float]] = {n: [] for n in free}  # (posterior mean − truth) / posterior sd (Betancourt)
    post_var: dict[str, list[float]] = {n: [] for n in free}
    for i in range(n_replicates):
        with model:
            pm.set_data({dv: prior.prior_predictive[on].isel(chain=0, draw=i).values
                         for dv, on in zip(data_vars, obs_names)})
        idata = sample(model, **{**s, "seed": seed + i + 1}, posterior_predictive=False)
        for n in free:
            truth = np.atleast_1d(prior.prior[n].isel(chain=0, draw=i).values)
            d = idata.posterior[n].stack(s=("chain", "draw")).values
            d = d.reshape(-1, d.shape[-1]) if d.ndim > 1 else d[None, :]
            for j in range(len(truth)):
                dj = d[j][np.linspace(0, d.shape[1] - 1, n_draws).astype(int)]
                ranks[n].append(sbc_rank(truth[j], dj))
                sd = float(d[j].std(ddof=1))
                zscores[n].append(float((d[j].mean() - truth[j]) / sd) if sd > 0 else float("nan"))
                post_var[n].append(sd**2)
    # contraction: 1 − mean posterior variance / the prior variance of the truths (their spread over replicates)
    result = {n: {"ranks": r, **uniformity_test(np.array(r), n_draws),
                  "zscore_mean_abs": float(np.nanmean(np.abs(zscores[n]))),
                  "zscore_max_abs": float(np.nanmax(np.abs(zscores[n]))),
                  "contraction": float(1.0 - np.mean(post_var[n]) / np.var(
                      np.concatenate([np.atleast_1d(prior.prior[n].isel(chain=0, draw=i).values)
                                      for i in range(n_replicates)]), ddof=1))}
              for n, r in ranks.items()}
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(out_dir) / "sbc.json", result)
    return result
