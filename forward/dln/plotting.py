"""Small matplotlib helpers for the DLN studies (imported lazily; the caller selects the backend)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .api import simulate_array
from .plan import TreatmentPlan


def trajectories(arms: Mapping[str, TreatmentPlan], prm: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """{arm: {target: volume (mm^3) per day}}."""
    out = {}
    for name, plan in arms.items():
        res = simulate_array(plan, prm)
        out[name] = {t: res.volume(t).tolist() for t in plan.network.targets}
    return out


def plot_arms(
    traj: Mapping[str, Mapping[str, list[float]]],
    targets: list[str],
    title: str,
    readout_day: int | None = None,
    ylabel: str = "tumour volume (mm$^3$)",
):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 3.8), squeeze=False)
    for ax, target in zip(axes[0], targets):
        for arm, per_target in traj.items():
            if target in per_target:
                ax.plot(np.arange(len(per_target[target])), per_target[target], label=arm)
        if readout_day is not None:
            ax.axvline(readout_day, color="0.6", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("day after inoculation")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {target}")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
