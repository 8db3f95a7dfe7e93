"""Run outputs: InferenceData to netCDF with provenance, convergence diagnostics enforced by thresholds, and the one
atomic JSON writer and figure helpers every command and study uses.

Thresholds (defaults, documented in docs/calib.md): R-hat ≤ 1.01, bulk and tail ESS ≥ 400, zero divergent
transitions. Violations are returned in the report and announced loudly (a ``ConvergenceWarning`` and a banner on
stderr); :func:`check_diagnostics` with ``strict=True`` raises instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np


def jsonable(obj):
    """``obj`` with numpy scalars/arrays as Python values and non-finite floats as ``None`` (valid JSON)."""
    import math

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as JSON atomically (temp file + rename; non-finite floats become null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def use_agg() -> None:
    """Headless plotting backend (runs on CI and servers without a screen)."""
    import matplotlib

    matplotlib.use("Agg")


def save_figure(fig, out: str | Path, filename: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG (small: ~100 dpi) and close it."""
    import matplotlib.pyplot as plt

    path = Path(out) / filename
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


RHAT_MAX = 1.01
ESS_MIN = 400


class ConvergenceWarning(UserWarning):
    pass


#: settings that say where the work runs, not what it computes — left out of :func:`config_hash`, so a finished run
#: is recognised whichever way it is resumed: ``[sampler] cores`` (chains in parallel processes or one after another
#: give the same draws, tested) and ``[design] workers`` (campaign chunks are the same runs wherever they run)
EXECUTION_ONLY = (("sampler", "cores"), ("design", "workers"))


def config_hash(config: dict) -> str:
    """A short hash of a config (or of any JSON-able record), without its :data:`EXECUTION_ONLY` settings."""
    drop = {t: k for t, k in EXECUTION_ONLY if isinstance(config.get(t), dict) and k in config[t]}
    if drop:
        config = {**config, **{t: {kk: v for kk, v in config[t].items() if kk != k} for t, k in drop.items()}}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(config: dict | None = None, data_hash: str = "", surrogate_id: str = "") -> dict:
    import arviz
    import pymc

    from . import __version__

    return {"immunocal_version": __version__, "pymc_version": pymc.__version__, "arviz_version": arviz.__version__,
            "config_hash": config_hash(config or {}), "data_hash": data_hash, "surrogate_id": surrogate_id,
            "config_json": json.dumps(config or {}, sort_keys=True, default=str)}


def save_idata(idata, path: str | Path, attrs: dict | None = None) -> Path:
    """Write ``idata`` to netCDF atomically, with ``attrs`` stamped on every group."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for g in idata.groups():
        ds = getattr(idata, g)
        ds.attrs.update({k: str(v) for k, v in (attrs or {}).items()})
        for name in [v for v in ds.data_vars if ds[v].dtype == object]:
            # ragged per-chain records (SMC's per-stage statistics) cannot go to netCDF as numbers: JSON text. A NaN
            # in them (kept as JSON's NaN) set NumPy's invalid-value flag in the object loop, which printed a
            # RuntimeWarning after every SMC run without anything being wrong
            with np.errstate(invalid="ignore"):
                ds[name] = ds[name].copy(data=np.vectorize(lambda x: json.dumps(np.asarray(x).tolist()),
                                                           otypes=[str])(ds[name].values))
    tmp = path.with_name(path.name + ".tmp.nc")
    try:
        idata.to_netcdf(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
    return path


def check_diagnostics(idata, var_names=None, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN,
                      max_divergences: int = 0, strict: bool = False, loud: bool = True) -> dict:
    """R-hat, bulk/tail ESS and divergences against thresholds. Returns a JSON-able report."""
    import arviz as az

    post = idata.posterior
    if var_names is None:  # sampled quantities (not predictions, not constants such as role-"observed" inputs)
        var_names = [v for v in post.data_vars if not v.startswith(("mu_", "sd_"))
                     and bool((post[v].max(("chain", "draw")) > post[v].min(("chain", "draw"))).any())]
    summ = az.summary(idata, var_names=var_names, kind="diagnostics")
    rhat = summ["r_hat"].to_numpy(dtype=float)
    ess_b = summ["ess_bulk"].to_numpy(dtype=float)
    ess_t = summ["ess_tail"].to_numpy(dtype=float)
    div = int(idata.sample_stats["diverging"].sum()) if "sample_stats" in idata.groups() and \
        "diverging" in idata.sample_stats else 0
    n_chains = post.sizes.get("chain", 1)
    rep = {"rhat_max": float(np.nanmax(rhat)) if n_chains > 1 else None, "ess_bulk_min": float(np.nanmin(ess_b)),
           "ess_tail_min": float(np.nanmin(ess_t)), "divergences": div,
           "thresholds": {"rhat_max": rhat_max, "ess_min": ess_min, "max_divergences": max_divergences},
           "violations": []}
    if n_chains > 1 and rep["rhat_max"] > rhat_max:
        worst = summ.index[int(np.nanargmax(rhat))]
        rep["violations"].append(f"R-hat {rep['rhat_max']:.4f} > {rhat_max} (worst: {worst})")
    for label, arr in (("bulk", ess_b), ("tail", ess_t)):
        if np.nanmin(arr) < ess_min:
            worst = summ.index[int(np.nanargmin(arr))]
            rep["violations"].append(f"{label} ESS {np.nanmin(arr):.0f} < {ess_min} (worst: {worst})")
    if div > max_divergences:
        rep["violations"].append(f"{div} divergent transitions (allowed {max_divergences})")
    rep["ok"] = not rep["violations"]
    if rep["violations"]:
        msg = "CONVERGENCE CHECK FAILED: " + "; ".join(rep["violations"])
        if strict:
            raise RuntimeError(msg)
        if loud:
            print("\n" + "!" * 78 + f"\n!! {msg}\n!! Do not trust these posteriors: run longer, reparametrise or "
                  "raise target_accept.\n" + "!" * 78, file=sys.stderr)
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    return rep
