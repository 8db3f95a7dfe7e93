"""Treatment schedule of the radioimmunotherapy model: radiation fractions and drug injections, in days from day 0.

Day 0 is the end of the free-growth phase (the tumour reaches the preset's pre-treatment volume, seed §2.8).
Drug amounts are *multiples* of the registry doses ``ctla4_dose`` (i_c4) and ``pdl1_dose`` (i_p1), so the amount
per injection stays a (calibratable) parameter of the registry; a factor of 1 is the seed's injection.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from immunocal.priors.textio import read_input_text

__all__ = ["Schedule", "parse_days", "parse_rt"]

_MAX_DOSE_GY = 100.0


def _tuple(values, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of numbers, got {values!r}") from None
    return out


def _check_times(times: tuple[float, ...], what: str, t_end: float) -> None:
    for t in times:
        if not math.isfinite(t):
            raise ValueError(f"{what}: time {t} is not finite (NaN/inf)")
        if t < 0 or t > t_end:
            raise ValueError(f"{what}: time {t:g} d is outside the simulated horizon [0, {t_end:g}] d")
    for a, b in zip(times, times[1:]):
        if b == a:
            raise ValueError(
                f"{what}: duplicate time {a:g} d (give one entry per time; add the doses instead)"
            )
        if b < a:
            raise ValueError(f"{what}: times must be sorted increasingly, got {a:g} before {b:g}")


def _check_amounts(values: tuple[float, ...], what: str, upper: float | None = None) -> None:
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"{what}: value {v} is not finite (NaN/inf)")
        if v < 0:
            raise ValueError(f"{what}: value {v:g} is negative")
        if upper is not None and v > upper:
            raise ValueError(f"{what}: {v:g} exceeds the admissible maximum {upper:g}")


#: drugs of the RIT model by name in a conditions table -> the model's drug state (anti-PD-1 acts through the
#: anti-PD-L1 state p1: both block the PD-1/PD-L1 axis)
DRUG_STATES = {"anti_pd1": "pdl1", "anti_pdl1": "pdl1", "anti_ctla4": "ctla4"}
#: the conditions-table columns the RIT model reads or may carry
CONDITION_KEYS = frozenset({"condition", "description", "rt_days", "rt_doses_gy", "drug", "drug_days", "drug_doses",
                            *(f"{d}_days" for d in DRUG_STATES)})


@dataclass(frozen=True)
class Schedule:
    """Validated treatment schedule (immutable).

    Parameters
    ----------
    rt_days, rt_doses_gy : radiation fraction times [day] and doses [Gy] (same length).
    ctla4_days, pdl1_days : injection times [day] of anti-CTLA-4 and anti-PD-L1.
    ctla4_factors, pdl1_factors : amount per injection as a multiple of the registry dose (default 1 each).
    t_end : horizon [day]; every event must lie in ``[0, t_end]``.
    """

    rt_days: tuple[float, ...] = ()
    rt_doses_gy: tuple[float, ...] = ()
    ctla4_days: tuple[float, ...] = ()
    pdl1_days: tuple[float, ...] = ()
    t_end: float = 60.0
    ctla4_factors: tuple[float, ...] | None = None
    pdl1_factors: tuple[float, ...] | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self):
        t_end = float(self.t_end)
        if not math.isfinite(t_end) or t_end <= 0:
            raise ValueError(
                f"schedule horizon t_end must be a positive finite number of days, got {self.t_end!r}"
            )
        object.__setattr__(self, "t_end", t_end)
        for name in ("rt_days", "rt_doses_gy", "ctla4_days", "pdl1_days"):
            object.__setattr__(self, name, _tuple(getattr(self, name), name))
        for name, days in (("ctla4_factors", self.ctla4_days), ("pdl1_factors", self.pdl1_days)):
            raw = getattr(self, name)
            vals = (1.0,) * len(days) if raw is None else _tuple(raw, name)
            if len(vals) != len(days):
                raise ValueError(f"{name}: {len(vals)} values for {len(days)} injection days")
            _check_amounts(vals, name)
            object.__setattr__(self, name, vals)
        if len(self.rt_days) != len(self.rt_doses_gy):
            raise ValueError(
                f"radiation: {len(self.rt_days)} fraction times but {len(self.rt_doses_gy)} doses; give one dose per time"
            )
        _check_times(self.rt_days, "radiation", t_end)
        _check_amounts(self.rt_doses_gy, "radiation dose [Gy]", _MAX_DOSE_GY)
        _check_times(self.ctla4_days, "anti-CTLA-4", t_end)
        _check_times(self.pdl1_days, "anti-PD-L1", t_end)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_strings(
        cls,
        rt: str | None = None,
        ctla4: str | None = None,
        pdl1: str | None = None,
        t_end: float = 60.0,
        label: str = "",
    ) -> Schedule:
        """Build from CLI strings: ``rt="8x3@0,1,2"`` (also ``"20@0"``, ``"8x2@0,1+6@4"``), ``ctla4="2,5,8"``."""
        days, doses = parse_rt(rt) if rt else ((), ())
        return cls(
            rt_days=days,
            rt_doses_gy=doses,
            ctla4_days=parse_days(ctla4, "anti-CTLA-4") if ctla4 else (),
            pdl1_days=parse_days(pdl1, "anti-PD-L1") if pdl1 else (),
            t_end=t_end,
            label=label,
        )

    @classmethod
    def from_condition(cls, condition: dict | None, day_offset: float = 0.0, t_end: float = 60.0) -> Schedule:
        """The schedule of one conditions-table row (data days; model day 0 = data day ``day_offset``).

        Columns (:data:`CONDITION_KEYS`): ``rt_days`` + ``rt_doses_gy``; one drug as ``drug`` (``anti_pd1``,
        ``anti_pdl1`` or ``anti_ctla4``) + ``drug_days``, and/or any drugs by name as ``<drug>_days``
        (``anti_pd1_days``, ``anti_pdl1_days``, ``anti_ctla4_days``) — so a condition can carry several drugs
        (anti-PD-1 + anti-CTLA-4). ``drug_doses`` records the amount given; the model's dose per injection is the
        registry's. An unknown column is an error (a misspelled schedule column would silently drop a treatment).
        """
        condition = dict(condition or {})
        name = condition.get("condition", condition)
        unknown = sorted(set(condition) - CONDITION_KEYS)
        if unknown:
            raise ValueError(f"condition {name!r}: unknown column(s) {unknown} for the RIT model (a misspelled "
                             f"schedule column would silently drop that treatment); known: {sorted(CONDITION_KEYS)}")
        days = {"ctla4": [], "pdl1": []}
        drug = condition.get("drug", "")
        if drug:
            if drug not in DRUG_STATES:
                raise ValueError(f"condition {name!r}: unknown drug {drug!r} for the RIT model; known: "
                                 f"{sorted(DRUG_STATES)}")
            days[DRUG_STATES[drug]] += list(condition.get("drug_days", []))
        elif condition.get("drug_days"):
            raise ValueError(f"condition {name!r}: drug_days given without a drug")
        for d, state in DRUG_STATES.items():
            days[state] += list(condition.get(f"{d}_days", []))
        rt_days = [float(t) - day_offset for t in condition.get("rt_days", [])]
        shifted = {k: sorted(float(t) - day_offset for t in v) for k, v in days.items()}
        if any(t < 0 for t in rt_days + shifted["ctla4"] + shifted["pdl1"]):
            raise ValueError(f"condition {name!r}: an event lies before model day 0 (data day {day_offset}); "
                             "choose an earlier day_offset")
        return cls(rt_days=tuple(rt_days), rt_doses_gy=tuple(condition.get("rt_doses_gy", [])),
                   ctla4_days=tuple(shifted["ctla4"]), pdl1_days=tuple(shifted["pdl1"]), t_end=float(t_end),
                   label=str(condition.get("condition", "")))

    @classmethod
    def from_file(cls, path: str | Path) -> Schedule:
        """Read a TOML or JSON schedule file with keys ``rt_days``, ``rt_doses_gy``, ``ctla4_days``, ``pdl1_days``,
        optional ``ctla4_factors``, ``pdl1_factors``, ``t_end`` (days)."""
        path = Path(path)
        text = read_input_text(path, "schedule file")
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: malformed schedule file: {exc}") from None
        allowed = {
            "rt_days",
            "rt_doses_gy",
            "ctla4_days",
            "pdl1_days",
            "ctla4_factors",
            "pdl1_factors",
            "t_end",
            "label",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"{path}: unknown schedule keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return {
            "rt_days": list(self.rt_days),
            "rt_doses_gy": list(self.rt_doses_gy),
            "ctla4_days": list(self.ctla4_days),
            "pdl1_days": list(self.pdl1_days),
            "ctla4_factors": list(self.ctla4_factors),
            "pdl1_factors": list(self.pdl1_factors),
            "t_end": self.t_end,
            "label": self.label,
        }

    def with_horizon(self, t_end: float) -> Schedule:
        d = self.to_dict()
        d["t_end"] = t_end
        return Schedule(**d)

    # ------------------------------------------------------------------ grid
    def grid_indices(self, times: tuple[float, ...], dt: float, what: str) -> np.ndarray:
        """Event times as time-step indices; events must fall on the Euler grid (within 1e-6 d)."""
        idx = np.rint(np.asarray(times, dtype=np.float64) / dt).astype(np.int64)
        if len(times) and np.max(np.abs(idx * dt - np.asarray(times))) > 1e-6:
            bad = [t for t, i in zip(times, idx) if abs(i * dt - t) > 1e-6]
            raise ValueError(
                f"{what}: times {bad} d are not multiples of the time step dt = {dt:g} d; "
                "choose a dt that divides the event times"
            )
        if len(idx) > 1 and np.any(np.diff(idx) == 0):
            raise ValueError(f"{what}: two events fall on the same time step at dt = {dt:g} d; reduce dt")
        return idx

    @property
    def n_fractions(self) -> int:
        return len(self.rt_days)


_RT_GROUP = re.compile(r"^\s*([0-9.eE+-]+)\s*(?:[xX*]\s*(\d+))?\s*@\s*(.+)$")


def parse_days(text: str, what: str = "days") -> tuple[float, ...]:
    """``"2,5,8"`` -> (2.0, 5.0, 8.0); clear error for anything else."""
    try:
        return tuple(float(tok) for tok in text.split(",") if tok.strip() != "")
    except ValueError:
        raise ValueError(
            f"{what}: cannot read days from {text!r}; expected comma-separated numbers like '2,5,8'"
        ) from None


def parse_rt(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Radiation string ``DOSE[xN]@DAY,DAY,...`` with groups joined by ``+``; returns (days, doses) in the order
    written (the :class:`Schedule` then rejects unsorted or duplicate days).

    ``"8x3@0,1,2"`` -> three 8 Gy fractions at days 0, 1, 2; ``"20@0"`` -> one 20 Gy fraction at day 0.
    """
    days: list[float] = []
    doses: list[float] = []
    for group in text.split("+"):
        m = _RT_GROUP.match(group)
        if not m:
            raise ValueError(
                f"radiation: cannot parse {group!r}; expected DOSExN@DAYS, e.g. '8x3@0,1,2' or '20@0'"
            )
        try:
            dose = float(m.group(1))
        except ValueError:
            raise ValueError(f"radiation: bad dose {m.group(1)!r} in {group!r}") from None
        gdays = parse_days(m.group(3), "radiation")
        if m.group(2) is not None and int(m.group(2)) != len(gdays):
            raise ValueError(
                f"radiation: {group!r} announces {m.group(2)} fractions but lists {len(gdays)} days"
            )
        days += gdays
        doses += [dose] * len(gdays)
    return tuple(days), tuple(doses)
