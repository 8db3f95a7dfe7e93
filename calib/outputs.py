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


def divergence_locations(idata, var_names=None, top: int = 5) -> dict:
    """Where the divergent transitions happened, from each divergent draw's place in every posterior scalar's own
    marginal (``var_names``: default all): its tail probability min(p, 1 − p), p the draw's mid-rank percentile
    among all draws. ``consistent``: the ``top`` scalars ranked by the median of it over the divergent draws — one
    in the far tail at every divergence (a hierarchical sd at a funnel's neck, a latent at its link's edge, where
    an emulator turns steep) comes first, one the divergences do not single out sits near 0.5; ``deepest``: per
    variable (its name without coordinates), at how many divergent draws one of its scalars was the deepest in its
    tail of all — divergences of different subjects each time show there. Entries name the ``variable``
    (``name[coords]``), the ``side`` (``"low"``/``"high"``) and the tail probability."""
    post = idata.posterior
    div = idata.sample_stats["diverging"].values.astype(bool).reshape(-1)  # chain-major, as the values below
    out: dict = {"divergent_draws": int(div.sum()), "consistent": [], "deepest": {}}
    if not div.any():
        return out
    labels, sides, tails = [], [], []
    for name in var_names or list(post.data_vars):
        da = post[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        x = da.transpose("chain", "draw", *extra).values.reshape(div.size, -1)
        if x.shape[1] == 0:
            continue
        ranked = np.sort(x, axis=0)
        at = x[div]
        p = np.empty_like(at, dtype=float)
        for j in range(x.shape[1]):
            p[:, j] = (np.searchsorted(ranked[:, j], at[:, j], "left")
                       + np.searchsorted(ranked[:, j], at[:, j], "right")) / (2.0 * div.size)
        tails.append(np.minimum(p, 1.0 - p))
        sides.append(p > 0.5)
        labels += [(name, "") for _ in range(x.shape[1])] if not extra else [
            (name, "[" + ",".join(str(c) for c in idx) + "]")
            for idx in np.array(np.meshgrid(*[da[d].values for d in extra], indexing="ij")).reshape(len(extra), -1).T]
    tail, high = np.concatenate(tails, axis=1), np.concatenate(sides, axis=1)  # (divergent draws, scalars)
    median = np.median(tail, axis=0)
    for j in np.argsort(median, kind="stable")[:top]:
        out["consistent"].append({"variable": "".join(labels[j]), "side": "high" if high[:, j].mean() > 0.5 else "low",
                                  "median_tail_probability": float(median[j])})
    for d, j in enumerate(np.argmin(tail, axis=1)):
        entry = out["deepest"].setdefault(labels[j][0], {"draws": 0, "examples": []})
        entry["draws"] += 1
        if len(entry["examples"]) < 3:
            entry["examples"].append({"variable": "".join(labels[j]), "side": "high" if high[d, j] else "low",
                                      "tail_probability": float(tail[d, j])})
    out["deepest"] = dict(sorted(out["deepest"].items(), key=lambda kv: -kv[1]["draws"]))
    return out


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
    where = ""
    if div > max_divergences:
        rep["violations"].append(f"{div} divergent transitions (allowed {max_divergences})")
        # where they happened, among the parameters and their transforms (not the observation-level y_… outputs)
        rep["divergence_locations"] = divergence_locations(idata, [v for v in var_names if not v.startswith("y_")])
        where = "\n!! the quantity deepest in its tail at each divergent draw: " + ", ".join(
            f"{name} {e['draws']}× (e.g. {e['examples'][0]['variable']} {e['examples'][0]['side']}, "
            f"tail probability {e['examples'][0]['tail_probability']:.2g})"
            for name, e in rep["divergence_locations"]["deepest"].items())
    rep["ok"] = not rep["violations"]
    if rep["violations"]:
        msg = "CONVERGENCE CHECK FAILED: " + "; ".join(rep["violations"])
        if strict:
            raise RuntimeError(msg)
        if loud:
            print("\n" + "!" * 78 + f"\n!! {msg}{where}\n!! Do not trust these posteriors: run longer, reparametrise "
                  "or raise target_accept.\n" + "!" * 78, file=sys.stderr)
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    return rep
