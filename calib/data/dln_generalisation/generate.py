"""Generate the DLN generalisation data set (known truth): ``python calib/data/dln_generalisation/generate.py``.

Seed 003's protocol (Results, Fig 2) on simulated data, as in :mod:`immunocal.forward.dln.generalisation`: the truth is the
registry's default set with its free immune parameters (``FREE``) perturbed log-normally (sd 0.3; survival fractions
capped at 0.999); one noisy log-volume series (sd 0.15) of the primary and the distant tumour per arm on days
10, 12, …, 30. Volumes below 0.5 mm³ are written as left-censored rows at 0.5 mm³ (the seed floors them). Arms:
control, anti-PD-1, anti-CTLA-4, tumour RT (8 Gy × 3) — fitted — and tumour RT + anti-PD-1, tumour RT + anti-CTLA-4
— held out. ``truth.json`` keeps the generating values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from immunocal.forward.dln.api import default_parameters
from immunocal.forward.dln.generalisation import FREE, OBS_DAYS
from immunocal.forward.dln.simulator import DlnSimulator

HERE = Path(__file__).parent
RT = {"rt_days": [10, 11, 12], "rt_doses_gy": [8.0, 8.0, 8.0]}
AB = [10, 13, 16]
ARMS = {"control": {}, "anti_pd1": {"anti_pd1_days": AB}, "anti_ctla4": {"anti_ctla4_days": AB}, "tumour_rt": RT,
        "tumour_rt+anti_pd1": {**RT, "anti_pd1_days": AB}, "tumour_rt+anti_ctla4": {**RT, "anti_ctla4_days": AB}}
DETECTION_MM3 = 0.5


def main(seed: int = 2026, perturb_sd: float = 0.3, noise_sd: float = 0.15) -> None:
    rng = np.random.default_rng(seed)
    ps = default_parameters()
    truth = {n: ps[n] * math.exp(perturb_sd * rng.standard_normal()) for n in FREE}
    for n in ("exhaustion_survival", "pd1_survival_control"):
        truth[n] = min(truth[n], 0.999)
    fm = DlnSimulator(parameter_names=FREE, days=(10.0, 30.0))
    theta = np.array([[truth[n] for n in FREE]])
    rows = ["subject,condition,observable,time,value,censoring"]
    for arm, cond in ARMS.items():
        y = fm.simulate(theta, cond)[0][:, np.searchsorted(fm.times, OBS_DAYS)]
        y = y + noise_sd * rng.standard_normal(y.shape)
        for k, target in enumerate(("primary", "distant")):
            for d, v in zip(OBS_DAYS, np.exp(y[k])):
                cz = "left" if v < DETECTION_MM3 else ""
                rows.append(f"{arm}/mean,{arm},volume_{target}_mm3,{d},{max(v, DETECTION_MM3):.6g},{cz}")
    (HERE / "measurements.csv").write_text("\n".join(rows) + "\n")
    lines = ["condition,rt_days,rt_doses_gy,anti_pd1_days,anti_ctla4_days"]
    for arm, c in ARMS.items():
        lines.append(",".join([arm] + [";".join(f"{x:g}" for x in c.get(k, [])) for k in
                                       ("rt_days", "rt_doses_gy", "anti_pd1_days", "anti_ctla4_days")]))
    (HERE / "conditions.csv").write_text("\n".join(lines) + "\n")
    (HERE / "truth.json").write_text(json.dumps({"seed": seed, "perturb_sd": perturb_sd, "noise_sd": noise_sd,
                                                 "truth": truth}, indent=1) + "\n")


if __name__ == "__main__":
    main()
