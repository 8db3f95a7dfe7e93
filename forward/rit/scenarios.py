"""Named treatment arms and schedule families of seed 002 (§2.8, §3.3, §3.4), in days from day 0.

Day 0 is the pre-treatment volume (Dewan: inoculation day 12, 32 mm^3; Deng: day 14, 120 mm^3).
"""

from __future__ import annotations

from .radiobiology import iso_bed_schedule
from .schedule import Schedule

__all__ = ["IT_EXPERIMENTAL", "deng_arms", "dewan_arms", "fractionation_schedules", "it_timing_schedules"]

#: the three anti-CTLA-4 schedules of Dewan et al. with 8 Gy x 3 (inoculation days 12-15-18, 14-17-20, 16-18-21)
IT_EXPERIMENTAL = ("0,3,6", "2,5,8", "4,6,9")


def dewan_arms(t_end: float = 30.0) -> dict[str, Schedule]:
    """The ten Dewan et al. arms of seed §2.8 (i-x). Arm x is listed in the seed text as days 16, 18, 20 but as
    (4, 6, 9) in Fig 6 and in the digitised Dewan data (16-18-21): (4, 6, 9) is used."""
    arms = {
        "no_treatment": (None, None),
        "20Gy": ("20@0", None),
        "8Gyx3": ("8x3@0,1,2", None),
        "6Gyx5": ("6x5@0,1,2,3,4", None),
        "ctla4": (None, "2,5,8"),
        "20Gy+ctla4": ("20@0", "2,5,8"),
        "6Gyx5+ctla4": ("6x5@0,1,2,3,4", "2,5,8"),
        "8Gyx3+ctla4": ("8x3@0,1,2", "2,5,8"),
        "8Gyx3+ctla4(0,3,6)": ("8x3@0,1,2", "0,3,6"),
        "8Gyx3+ctla4(4,6,9)": ("8x3@0,1,2", "4,6,9"),
    }
    return {k: Schedule.from_strings(rt=rt, ctla4=c4, t_end=t_end, label=k) for k, (rt, c4) in arms.items()}


def deng_arms(t_end: float = 21.0) -> dict[str, Schedule]:
    """The four Deng et al. arms (TUBO): none, 12 Gy, anti-PD-L1 at inoculation days 14, 17, 20, 23, both."""
    arms = {
        "no_treatment": (None, None),
        "12Gy": ("12@0", None),
        "pdl1": (None, "0,3,6,9"),
        "12Gy+pdl1": ("12@0", "0,3,6,9"),
    }
    return {k: Schedule.from_strings(rt=rt, pdl1=p1, t_end=t_end, label=k) for k, (rt, p1) in arms.items()}


def it_timing_schedules(t_end: float = 60.0) -> dict[str, Schedule]:
    """Seed §3.3 / Fig 6: 8 Gy x 3 at days 0, 1, 2 with anti-CTLA-4 (three doses) either on the experimental
    schedules (keys ``"0,3,6"``, ``"2,5,8"``, ``"4,6,9"``) or on three consecutive days starting on day d = 0..7
    (keys ``"start_d"``; the seed: "starting from day 0 to day 7 and ending from day 2 to day 9")."""
    out = {k: Schedule.from_strings(rt="8x3@0,1,2", ctla4=k, t_end=t_end, label=k) for k in IT_EXPERIMENTAL}
    for d in range(8):
        out[f"start_{d}"] = Schedule.from_strings(
            rt="8x3@0,1,2", ctla4=f"{d},{d + 1},{d + 2}", t_end=t_end, label=f"start_{d}"
        )
    return out


def fractionation_schedules(
    alpha_beta: float = 9.29, fractions=(1, 2, 3, 5, 10), ctla4: str | None = "2,5,8", t_end: float = 60.0
) -> tuple[dict[int, float], dict[int, Schedule]]:
    """Seed §3.4 / Fig 7: iso-BED schedules (reference 8 Gy x 3), one fraction a day from day 0."""
    doses = iso_bed_schedule(fractions, alpha_beta)
    scheds = {}
    for n, d in doses.items():
        scheds[n] = Schedule(
            rt_days=tuple(float(i) for i in range(n)),
            rt_doses_gy=(d,) * n,
            ctla4_days=Schedule.from_strings(ctla4=ctla4).ctla4_days if ctla4 else (),
            t_end=t_end,
            label=f"{d:.2f}Gy x {n}" + (" + ctla4" if ctla4 else ""),
        )
    return doses, scheds
