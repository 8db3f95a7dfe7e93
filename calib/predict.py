"""Prediction of new subjects from a finished calibration: bands, coverage of the data, tumour-control fractions.

The draws themselves are PyMC's (``pm.sample_posterior_predictive(predictions=True)``, made by
:meth:`calib.workflow.Calibration.predict` on the true forward model); this module summarises and draws them.
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
    """The per-condition entries of ``conditions`` with their pooled coverage."""
    per = {c: summary["per_condition"][c] for c in conditions}
    n = sum(v["n_obs"] for v in per.values())
    return {"per_condition": per, "n_obs": n,
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
