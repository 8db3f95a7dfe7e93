"""Generate the synthetic per-mouse example (known truth): ``python calib/data/rit_two_drugs/generate.py``.

The RIT model (seed 002, preset ``dewan_table3``; model day 0 = data day 7) with per-mouse volumes on day 7
(randomisation: log-normal around 50 mm³), proliferation and immune-kill rates, a shared radiosensitivity, log-normal
measurement noise, a 10 mm³ detection limit and a 1500 mm³ humane endpoint. Measurements start on day 4, before
day 0 (the untreated growth the model has before its day 0). Five groups of six mice numbered 1–6 in every group (as lab sheets are): Control, RT
(8 Gy × 2), RT + anti-PD-1, RT + anti-CTLA-4 and RT + anti-PD-1 + anti-CTLA-4 (two drugs; the held-out arm of the
example config). Writes ``wide/<group>.csv`` (one column per mouse) and ``conditions.csv``; the long table
``measurements.csv`` is made from the wide ones by ``immunocal data wide-to-long`` (README, "Calibrating your own
data").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from immunocal.forward.rit.simulator import RitSimulator

HERE = Path(__file__).parent
DAYS = np.arange(4, 41, 3)
RT = {"rt_days": [10.0, 11.0], "rt_doses_gy": [8.0, 8.0]}
DRUG_DAYS = [10.0, 13.0, 16.0]
GROUPS = {"Control": {}, "RT": RT, "RT_antiPD1": {**RT, "anti_pd1_days": DRUG_DAYS},
          "RT_antiCTLA4": {**RT, "anti_ctla4_days": DRUG_DAYS},
          "RT_antiPD1_antiCTLA4": {**RT, "anti_pd1_days": DRUG_DAYS, "anti_ctla4_days": DRUG_DAYS}}
TRUTH = {"pretreatment_volume_mm3": (50.0, 0.3, 25.0, 100.0),  # median, log-sd, clipped to [25, 100] mm³
         "tumour_proliferation_rate": (0.14, 0.15), "immune_kill_rate": (6.0, 0.4), "tumour_alpha": 0.05,
         "noise_sd_log": 0.15, "detection_limit_mm3": 10.0, "endpoint_mm3": 1500.0, "mice_per_group": 6}


def main(seed: int = 20261129) -> None:
    rng = np.random.default_rng(seed)
    names = ("tumour_proliferation_rate", "immune_kill_rate", "tumour_alpha", "pretreatment_volume_mm3")
    fm = RitSimulator(parameter_names=names, data_days=(4.0, 40.0), day_offset=7.0)
    n = TRUTH["mice_per_group"]
    (HERE / "wide").mkdir(exist_ok=True)
    for group, cond in GROUPS.items():
        lam = TRUTH["tumour_proliferation_rate"][0] * np.exp(TRUTH["tumour_proliferation_rate"][1] *
                                                             rng.standard_normal(n))
        kill = TRUTH["immune_kill_rate"][0] * np.exp(TRUTH["immune_kill_rate"][1] * rng.standard_normal(n))
        m, sd, lo, hi = TRUTH["pretreatment_volume_mm3"]
        v0 = np.clip(m * np.exp(sd * rng.standard_normal(n)), lo, hi)
        theta = np.column_stack([lam, kill, np.full(n, TRUTH["tumour_alpha"]), v0])
        logv = fm.simulate(theta, cond)[:, 0, :][:, np.searchsorted(fm.times, DAYS)]
        vol = np.exp(logv + TRUTH["noise_sd_log"] * rng.standard_normal(logv.shape))
        lines = ["day," + ",".join(str(k + 1) for k in range(n))]
        ended = np.zeros(n, bool)
        for j, d in enumerate(DAYS):
            cells = []
            for k in range(n):
                if ended[k]:
                    cells.append("")  # euthanised at the humane endpoint: no later measurement
                    continue
                v = max(vol[k, j], 0.0)
                cells.append("0" if v < TRUTH["detection_limit_mm3"] else f"{v:.1f}")
                ended[k] = v >= TRUTH["endpoint_mm3"]
            lines.append(f"{d}," + ",".join(cells))
        (HERE / "wide" / f"{group}.csv").write_text("\n".join(lines) + "\n")
    rows = ["condition,rt_days,rt_doses_gy,anti_pd1_days,anti_ctla4_days,description"]
    for group, c in GROUPS.items():
        rows.append(",".join([group, ";".join(f"{d:g}" for d in c.get("rt_days", [])),
                              ";".join(f"{d:g}" for d in c.get("rt_doses_gy", [])),
                              ";".join(f"{d:g}" for d in c.get("anti_pd1_days", [])),
                              ";".join(f"{d:g}" for d in c.get("anti_ctla4_days", [])),
                              f"synthetic {group} (calib/data/rit_two_drugs/generate.py)"]))
    (HERE / "conditions.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
