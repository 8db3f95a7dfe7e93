"""Helpers of the study scripts: the JSON and figure helpers live in :mod:`immunocal.calib.outputs` (one implementation for
the commands and the studies); a study writes ``OUT/<name>.json``."""

from __future__ import annotations

import copy
from pathlib import Path

from immunocal.calib.outputs import save_figure, use_agg
from immunocal.calib.outputs import write_json as _write_json

__all__ = ["restart_at", "save_figure", "smc_check", "smc_on_true_model", "use_agg", "write_json"]

#: particles of the gradient-free reference (SMC on the true model); ``--quick`` runs use 500
SMC_PARTICLES = 2000


def write_json(out: Path, name: str, result: dict) -> Path:
    """Write ``out/name.json`` atomically (non-finite floats become null)."""
    return _write_json(Path(out) / f"{name}.json", result)


def smc_on_true_model(cfg: dict, quick: bool = False) -> dict:
    """``cfg`` as the gradient-free reference of its calibration: the black-box true model, SMC
    (:data:`SMC_PARTICLES` particles, one run), no held-out arms and no prediction — the fitted posterior only."""
    cfg = copy.deepcopy(cfg)
    cfg["emulator"] = {"kind": "blackbox"}
    cfg["sampler"] = {"method": "smc", "draws": 500 if quick else SMC_PARTICLES, "chains": 1, "seed": 1}
    cfg["conditions"]["heldout"] = []
    cfg["predict"]["draws"] = 0
    return cfg


def smc_check(cal, folder: Path, quick: bool = False, names=None) -> dict:
    """A finished calibration ``cal`` (exact-route NUTS) once more by SMC on the true model, and its posterior beside
    SMC's: per parameter |Δmean| / sd_SMC and the sd ratio (:func:`immunocal.calib.diagnostics.posterior_agreement`;
    ``names``: the parameters compared, default the calibrated ones). When they disagree, :func:`restart_at` says
    which one missed. A rerun reuses a finished SMC run."""
    import numpy as np

    from immunocal.calib.diagnostics import log_likelihood_shift, posterior_agreement
    from immunocal.calib.workflow import Calibration

    cfg = smc_on_true_model(cal.cfg, quick)
    smc = Calibration(cfg, folder, force=True)
    summary = smc.load_finished() or smc.run()
    stats = smc.idata.sample_stats
    names = list(names) if names is not None else cal.free
    result = {"wall_clock_s": summary["seconds"], "particles": cfg["sampler"]["draws"],
              "nuts_vs_smc": posterior_agreement(cal.idata.posterior, smc.idata.posterior, names),
              # the total log-likelihood of SMC's particles against NUTS's draws, and SMC's tempering stages with the
              # acceptance rate of its Metropolis moves at each: what says which sampler missed, when they disagree
              "log_likelihood_smc_vs_nuts": log_likelihood_shift(smc.idata, cal.idata),
              "smc_stages": int(stats.sizes["draw"]),
              "smc_accept_rate": [round(float(v), 4) for v in np.ravel(stats["accept_rate"].values)]}
    if not result["nuts_vs_smc"]["all_pass"]:
        result["nuts_from_smc_particles"] = restart_at(cal, smc.idata, names)
    return result


#: the restart check: chains, tuning steps and draws of NUTS started at a reference sample's draws
RESTART = {"chains": 2, "tune": 300, "draws": 300, "seed": 3}


def restart_at(cal, reference, names=None) -> dict:
    """When two samplers disagree, which one missed? NUTS on ``cal``'s model (its exact gradients) started at
    :data:`RESTART` ``chains`` of ``reference``'s draws, spread over the sample — no jitter, no Laplace start, a
    diagonal mass matrix adapted from there — and where the chains go: their total log-likelihood and posterior
    against ``cal``'s NUTS run and against the reference. Chains that leave the reference's region for NUTS's say the
    reference sampler did not reach the posterior there (not a second mode NUTS missed)."""
    import numpy as np
    import pymc as pm

    from immunocal.calib.diagnostics import log_likelihood_shift, posterior_agreement

    cal.ensure_emulators()
    model = cal.model()
    draws = reference.posterior.stack(sample=("chain", "draw"))
    picks = np.linspace(0, draws.sizes["sample"] - 1, RESTART["chains"] + 2).astype(int)[1:-1]
    starts = [{v.name: draws[v.name].isel(sample=int(i)).values for v in model.free_RVs} for i in picks]
    mode = cal.cfg["sampler"].get("compile_mode")
    with model:
        run = pm.sample(draws=RESTART["draws"], tune=RESTART["tune"], chains=RESTART["chains"], cores=1,
                        initvals=starts, init="adapt_diag", random_seed=RESTART["seed"], progressbar=False,
                        compute_convergence_checks=False, compile_kwargs={"mode": mode} if mode else None,
                        idata_kwargs={"log_likelihood": True})
    names = list(names) if names is not None else cal.free

    def mean_diffs(other):  # per parameter the largest |Δmean| / sd of ``other``
        rows = posterior_agreement(run.posterior, other.posterior, names)["parameters"]
        return {n: row["mean_diff_in_sd"] for n, row in rows.items()}

    return {**RESTART, "started_at_reference_draws": [int(i) for i in picks],
            "log_likelihood_vs_nuts": log_likelihood_shift(run, cal.idata),
            "log_likelihood_vs_reference": log_likelihood_shift(run, reference),
            "mean_diff_in_sd_vs_nuts": mean_diffs(cal.idata), "mean_diff_in_sd_vs_reference": mean_diffs(reference)}
