"""Readable pure-numpy reference of the model (slow): the equations as written, for consistency tests of the kernel.

Independent of :mod:`.kernels` in the parts that are easy to get wrong: the history is a list of (absolute time,
value) pairs read by bisection + linear interpolation at ``t - tau`` (no ring buffer, no index arithmetic, no re-sampling at day 0),
and the right-hand side is one dictionary of named terms (:func:`evolution_rate`).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from .model import RitConfig, _as_parameter_set
from .radiobiology import log_survival
from .schedule import Schedule


def omega(tbar: float, td1: float, td2: float) -> float:
    return 0.0 if tbar <= td1 else 1.0 if tbar > td2 else (tbar - td1) / (td2 - td1)


def evolution_rate(s: dict, p, R_delayed: float, J_delayed: float, f: float) -> dict:
    """Right-hand side of eqs (4)-(23) at one time: ``s`` holds C, Cd (list), A, Th, Tha, Thb, Ta, c4, p1, t, t_rt."""
    ctot = s["C"] + sum(s["Cd"])
    x = s["Ta"] / ctot if ctot > 0 else 0.0
    xq = x ** p["immune_kill_exponent"] if x > 0 else 0.0
    kill = p["immune_kill_rate"] * (1 + s["p1"]) * xq / (p["immune_kill_half_saturation"] + xq)
    a = p["t_cell_activation_rate"]
    b = (p["activation_inactivation_ratio"] - 1) * a / (1 + s["c4"])
    om = [omega(s["t"] - ti, p["mitotic_delay_start"], p["mitotic_delay_end"]) for ti in s["t_rt"]]
    return {
        "C": p["tumour_proliferation_rate"] * s["C"] * (1 - p["proliferation_saturation"] * ctot)
        - kill * s["C"],
        "Cd": [-p["doomed_clearance_rate"] * o * cd - kill * cd for o, cd in zip(om, s["Cd"])],
        "A": R_delayed - p["antigen_elimination_rate"] * s["A"] - (a + b) * s["A"] * s["Th"],
        "Th": -(a + b) * s["A"] * s["Th"] + p["naive_t_cell_production"],
        "Tha": a * s["A"] * s["Th"],
        "Thb": b * s["A"] * s["Th"],
        "Ta": J_delayed * f
        - p["t_cell_tumour_death_rate"] * s["Ta"] * ctot
        - p["t_cell_elimination_rate"] * s["Ta"],
        "c4": -p["ctla4_elimination_rate"] * s["c4"],
        "p1": -p["pdl1_elimination_rate"] * s["p1"],
    }


def _sources(s, p):
    om = [omega(s["t"] - ti, p["mitotic_delay_start"], p["mitotic_delay_end"]) for ti in s["t_rt"]]
    R = p["antigen_production_rate"] * (s["C"] + sum(s["Cd"])) + p["antigen_release_rate"] * p[
        "doomed_clearance_rate"
    ] * sum(o * c for o, c in zip(om, s["Cd"]))
    return R, p["t_cell_activation_rate"] * s["A"] * s["Th"]


def simulate_reference(params, schedule: Schedule, config: RitConfig | None = None) -> dict[str, np.ndarray]:
    """Reference run of the seed's explicit Euler step (``config.scheme`` must be ``"explicit"``, one substep);
    returns arrays over t = j dt. The default exponential scheme is checked against converged runs instead."""
    p = _as_parameter_set(params)
    config = config or RitConfig.from_preset(p.preset, scheme="explicit", on_negative="clip")
    if config.scheme != "explicit" or config.substeps != 1:
        raise ValueError("the numpy reference implements the seed's explicit Euler only (scheme='explicit', substeps=1)")
    dt = config.dt
    s = {
        "C": p["initial_tumour_cells"],
        "Cd": [],
        "A": 0.0,
        "Th": p["initial_naive_t_cells"],
        "Tha": 0.0,
        "Thb": 0.0,
        "Ta": 0.0,
        "c4": 0.0,
        "p1": 0.0,
        "t": 0.0,
        "t_rt": [],
    }
    R0 = p["antigen_production_rate"] * s["C"]
    hist_t, hist_R, hist_J = [], [], []

    def volume(st):
        return (st["C"] + sum(st["Cd"])) * p["tumour_cell_volume"] + st["Ta"] * p["t_cell_volume"]

    def interp(tq, values, left):
        """Linear interpolation in the (absolute time, value) history; ``left`` before its start."""
        i = bisect.bisect_right(hist_t, tq)
        if i == 0:
            return left
        if i == len(hist_t):
            return values[-1]
        t0, t1 = hist_t[i - 1], hist_t[i]
        w = (tq - t0) / (t1 - t0)
        return (1 - w) * values[i - 1] + w * values[i]

    def delayed(t):
        return (
            interp(t - p["antigen_activation_delay"], hist_R, R0),
            interp(t - p["infiltration_delay"], hist_J, 0.0),
        )

    def euler(st, d, h):
        new = dict(st)
        for k in ("C", "A", "Tha", "Thb", "Ta", "c4", "p1"):
            new[k] = st[k] + h * d[k]
        new["Cd"] = [c + h * dc for c, dc in zip(st["Cd"], d["Cd"])]
        new["Th"] = min(st["Th"] + h * d["Th"], p["initial_naive_t_cells"])
        for k in ("C", "A", "Th", "Ta"):
            new[k] = max(new[k], 0.0)
        new["Cd"] = [max(c, 0.0) for c in new["Cd"]]
        new["t"] = st["t"] + h
        return new

    # free growth (absolute time from C(0), explicit Euler in both schemes); the last step is shortened to land on the pre-treatment volume
    while True:
        R, J = _sources(s, p)
        hist_t.append(s["t"]), hist_R.append(R), hist_J.append(J)
        d = evolution_rate(s, p, *delayed(s["t"]), 1.0)
        trial = euler(s, d, dt)
        if volume(trial) >= config.pretreatment_volume_mm3:
            theta = (config.pretreatment_volume_mm3 - volume(s)) / (volume(trial) - volume(s))
            s = euler(s, d, theta * dt)
            break
        s = trial
    day0 = s["t"]
    rt = {round(t / dt): dose for t, dose in zip(schedule.rt_days, schedule.rt_doses_gy)}
    c4 = {round(t / dt): f * p["ctla4_dose"] for t, f in zip(schedule.ctla4_days, schedule.ctla4_factors)}
    p1 = {round(t / dt): f * p["pdl1_dose"] for t, f in zip(schedule.pdl1_days, schedule.pdl1_factors)}
    opts_sf = dict(
        alpha=p["tumour_alpha"], beta=p["tumour_beta"], c=p["beta_dose_modulation"], x=p["lql_transition"]
    )
    n = int(round(schedule.t_end / dt))
    out = {k: np.zeros(n + 1) for k in ("C", "C_doomed", "A_hat", "T_hat", "T_a", "c4", "p1", "volume_mm3")}
    t_vasc = None
    for j in range(n + 1):
        t_rel = j * dt
        s["t"] = t_rel  # times of the omega ramp and f are relative to day 0
        if j in rt:
            dose = rt[j]
            sf = math.exp(log_survival(dose, config.survival, **opts_sf))
            s["Cd"] = s["Cd"] + [(1 - sf) * s["C"]]
            s["t_rt"] = s["t_rt"] + [t_rel]
            s["C"] *= sf
            s["Ta"] *= math.exp(-p["t_cell_alpha"] * dose - p["t_cell_beta"] * dose**2)
            if config.vascular_damage and dose > p["vascular_damage_threshold"]:
                t_vasc = t_rel
        s["c4"] += c4.get(j, 0.0)
        s["p1"] += p1.get(j, 0.0)
        R, J = _sources(s, p)
        hist_t.append(day0 + t_rel), hist_R.append(R), hist_J.append(J)
        f = 1.0 if t_vasc is None else min(p["vascular_recovery_rate"] * (t_rel - t_vasc), 1.0)
        for k, v in (
            ("C", s["C"]),
            ("C_doomed", sum(s["Cd"])),
            ("A_hat", s["A"]),
            ("T_hat", s["Th"]),
            ("T_a", s["Ta"]),
            ("c4", s["c4"]),
            ("p1", s["p1"]),
            ("volume_mm3", volume(s)),
        ):
            out[k][j] = v
        if j == n:
            break
        Rd, Jd = delayed(day0 + t_rel)
        d = evolution_rate(s, p, Rd, Jd, f)
        s = euler(s, d, dt)
    out["day"] = np.arange(n + 1) * dt
    return out
