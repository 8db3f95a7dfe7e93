"""Prediction of new subjects from a finished calibration: bands, coverage of the data, tumour-control fractions.

The draws themselves are PyMC's (``pm.sample_posterior_predictive(predictions=True)``, made by
:meth:`immunocal.calib.workflow.Calibration.predict` on the true forward model); this module summarises and draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Measurements


def thin(idata, n: int):
    """At most ``n`` posterior draws in total, evenly spaced in every chain."""
    post = idata.posterior
    per_chain = max(1, n // post.sizes["chain"])
    idx = np.unique(np.linspace(0, post.sizes["draw"] - 1, min(per_chain, post.sizes["draw"])).astype(int))
    import arviz as az

    return az.InferenceData(posterior=post.isel(draw=idx))  # other groups (SMC stages) have other "draw" sizes


def restrict(summary: dict, conditions) -> dict:
    """The per-condition entries of ``conditions`` with their pooled coverage (and what drives each prediction)."""
    per = {c: summary["per_condition"][c] for c in conditions}
    n = sum(v["n_obs"] for v in per.values())
    ident = summary.get("identifiability", {})
    return {"per_condition": per, "n_obs": n,
            "identifiability": {c: ident[c] for c in conditions if c in ident},
            "coverage_50": sum(v["coverage_50"] * v["n_obs"] for v in per.values()) / n if n else None,
            "coverage_90": sum(v["coverage_90"] * v["n_obs"] for v in per.values()) / n if n else None}


def predictive_summary(pred, rows: Measurements, meas: Measurements, conditions, limits: dict) -> dict:
    """Bands (5/25/50/75/95 %) per condition, observable and day; coverage of the data's uncensored rows by the
    50 %/90 % intervals; observed vs predicted fraction of subjects with tumour control (the last value at the
    detection limit: a subject whose last row is left-censored / a new subject whose draw on the condition's last
    data day is at the lower censoring bound; ``noise_free``: its forward-model value is below the limit)."""
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    stacked = {o: (pred.predictions[f"y_{o}"].stack(s=("chain", "draw")).values,  # (rows of o, samples), once
                   pred.predictions[f"mu_{o}"].stack(s=("chain", "draw")).values) for o in rows.observables}
    out = {"bands": {}, "per_condition": {}}
    for c in conditions:
        out["bands"][c] = {}
        entry = {"n_obs": 0, "inside_50": 0, "inside_90": 0}
        for o in rows.observables:
            y, mu = stacked[o]
            sel = rows.condition[rows.observable == o] == c
            t_all, y_c, mu_c = rows.time[rows.observable == o][sel], y[sel], mu[sel]
            days = np.unique(t_all)
            # quantiles of the pooled new-subject draws of each day, computed once (bands and coverage)
            qd = np.array([np.quantile(y_c[t_all == d].ravel(), levels) for d in days])  # (days, levels)
            out["bands"][c][o] = {"time": days.tolist(),
                                  **{f"q{int(k * 100):02d}": qd[:, j].tolist() for j, k in enumerate(levels)}}
            data = (meas.condition == c) & (meas.observable == o)
            unc = data & (meas.censoring == "none")
            if unc.any():
                q = qd[np.searchsorted(days, meas.time[unc])]
                v = meas.value[unc]
                entry["n_obs"] += int(unc.sum())
                entry["inside_50"] += int(np.sum((q[:, 1] <= v) & (v <= q[:, 3])))
                entry["inside_90"] += int(np.sum((q[:, 0] <= v) & (v <= q[:, 4])))
            lower = limits.get(o, (-np.inf, np.inf))[0]
            if np.isfinite(lower) and o == rows.observables[0]:
                last = days.max() if not data.any() else meas.time[data].max()
                at_last = t_all == last
                entry["predicted_control_fraction"] = float(np.mean(y_c[at_last] <= lower + 1e-9))
                entry["predicted_control_fraction_noise_free"] = float(np.mean(mu_c[at_last] < lower))
                subj = list(dict.fromkeys(meas.subject[data].tolist()))
                ended = 0
                for s in subj:
                    r = np.flatnonzero(data & (meas.subject == s))
                    ended += meas.censoring[r[np.argmax(meas.time[r])]] == "left"
                entry["observed_control_fraction"] = ended / len(subj) if subj else None
                entry["n_subjects"] = len(subj)
        n = entry.pop("n_obs")
        i50, i90 = entry.pop("inside_50"), entry.pop("inside_90")
        out["per_condition"][c] = {"n_obs": n, "coverage_50": i50 / n if n else None,
                                   "coverage_90": i90 / n if n else None, **entry}
    return out



#: a parameter the fit leaves near its prior (contraction below this) ...
PRIOR_DRIVEN_CONTRACTION = 0.5
#: ... that explains at least this share of a prediction's spread over posterior draws makes the prediction prior-driven
PRIOR_DRIVEN_SHARE = 0.2


def first_order_share(x: np.ndarray, y: np.ndarray, bins: int = 10) -> float | None:
    """Share of ``var(y)`` explained by ``x`` alone, ``var(E[y | x]) / var(y)``, by quantile bins of ``x`` (the
    first-order Sobol index of the posterior draws; positive bias ~ (bins - 1) / len(x)). None when y is constant."""
    vy = float(np.var(y))
    if not vy > 0 or np.ptp(x) == 0:
        return None
    edges = np.quantile(x, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    means = np.array([y[idx == b].mean() if np.any(idx == b) else np.nan for b in range(bins)])
    counts = np.array([np.sum(idx == b) for b in range(bins)])
    ok = counts > 0
    return float(min(np.sum(counts[ok] * (means[ok] - y.mean()) ** 2) / counts.sum() / vy, 1.0))


def prediction_identifiability(thinned, pred, rows: Measurements, conditions, contraction: dict,
                               link: dict | None = None) -> dict:
    """Which fitted parameters drive each condition's prediction, beside how much the fit informed them.

    Per condition and observable, the prediction is the new subjects' mean forward-model value (``mu``) on the
    condition's last day, one value per posterior draw; each parameter of ``contraction`` (population parameters and
    latent locations, in their prior's link space ``link[name]``) gets its first-order share of that prediction's
    spread (:func:`first_order_share`). A parameter with contraction < :data:`PRIOR_DRIVEN_CONTRACTION` and share
    >= :data:`PRIOR_DRIVEN_SHARE` makes the prediction **prior-driven**: what it says about that condition comes from
    the prior, not from the fitted arms."""
    link = link or {}
    post = thinned.posterior
    out = {}
    for c in conditions:
        per_obs = {}
        for o in rows.observables:
            sel = np.flatnonzero(rows.observable == o)
            mine = sel[rows.condition[sel] == c]
            if not len(mine):
                continue
            last = mine[rows.time[mine] == rows.time[mine].max()]
            mu = pred.predictions[f"mu_{o}"].values  # (chain, draw, rows of o)
            pos = np.searchsorted(sel, last)
            y = mu[..., pos].mean(axis=-1).ravel()
            params = {}
            for n, k in contraction.items():
                if n not in post:
                    continue
                x = np.asarray(link.get(n, lambda v: v)(post[n].values.ravel()), float)
                share = first_order_share(x, y)
                params[n] = {"contraction": float(k), "first_order_share": share,
                             "prior_driven": bool(share is not None and k < PRIOR_DRIVEN_CONTRACTION
                                                  and share >= PRIOR_DRIVEN_SHARE)}
            driven = sorted(n for n, r in params.items() if r["prior_driven"])
            per_obs[o] = {"day": float(rows.time[last][0]), "prediction_sd": float(np.std(y)),
                          "parameters": params, "prior_driven": bool(driven), "prior_driven_by": driven}
        out[c] = per_obs
    return out


def plot_predictions(pred: dict, meas: Measurements, observables, conditions, out: Path, filename: str,
                     title: str) -> Path:
    """Data (per subject) over the new-subject predictive bands: one panel per condition and observable."""
    from .outputs import save_figure, use_agg

    use_agg()
    import matplotlib.pyplot as plt

    bands = pred["summary"]["bands"]
    obs = list(observables)
    fig, axes = plt.subplots(len(obs), len(conditions), figsize=(3.3 * len(conditions), 3.0 * len(obs)),
                             squeeze=False, sharey="row")
    for i, o in enumerate(obs):
        for ax, c in zip(axes[i], conditions):
            b = bands[c][o]
            t = np.asarray(b["time"])
            ax.fill_between(t, b["q05"], b["q95"], color="C0", alpha=0.2, label="90 % new subject")
            ax.fill_between(t, b["q25"], b["q75"], color="C0", alpha=0.35, label="50 %")
            ax.plot(t, b["q50"], color="C0")
            sel = (meas.condition == c) & (meas.observable == o)
            for s in dict.fromkeys(meas.subject[sel].tolist()):
                r = sel & (meas.subject == s)
                order = np.argsort(meas.time[r])
                tt, v, cz = meas.time[r][order], meas.value[r][order], meas.censoring[r][order]
                ax.plot(tt, v, color="k", lw=0.6, alpha=0.6)
                ax.scatter(tt[cz == "left"], v[cz == "left"], marker="v", color="C3", s=10, zorder=3)
                ax.scatter(tt[cz == "right"], v[cz == "right"], marker="^", color="C2", s=10, zorder=3)
            ax.set_title(c, fontsize=8)
            ax.set_xlabel("time")
        axes[i][0].set_ylabel(o)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out, filename)
