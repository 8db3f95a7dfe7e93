"""Compartment network (targets, DLNs, target->DLN map) and validated treatment plans for the DLN model.

Plan files (TOML or JSON) have this layout (see ``forward/dln/examples/abscopal_ctla4.toml``)::

    days = 40                                  # horizon: simulated days 0..days-1, output days 0..days

    [network]
    targets = ["primary", "distant"]
    dlns = ["dln_primary", "dln_distant"]
    drains_to = { primary = ["dln_primary"], distant = ["dln_distant"] }
    initial_cells = { distant = 5e5 }          # optional per-target initial tumour cells (else the registry's)
    inoculation_delay_days = { distant = 2 }   # optional: a target inoculated d days after day 0 (see Network)
    volume_per_cell = { distant = 2e-6 }       # optional per-target k_i in mm^3/cell (else the registry's)

    [[radiation]]                              # one table per (compartment, dose) group
    target = "primary"                         # or: dln = "dln_primary"
    days = [10, 11, 12]
    dose_gy = 8.0

    [[drug]]
    name = "anti_ctla4"                        # anti_pd1 (alias anti_pdl1), anti_ctla4, bezafibrate, anti_cd8
    days = [10, 13, 16]
    dose = 1.0                                 # optional, in standard doses (default 1)

Doses on the same day to the same compartment add up. Day d acts in the step d -> d+1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DRUG_NAMES: tuple[str, ...] = ("anti_pd1", "anti_ctla4", "bezafibrate", "anti_cd8")
DRUG_ALIASES: dict[str, str] = {
    "anti_pdl1": "anti_pd1",
    "anti_pd_1": "anti_pd1",
    "anti_pd_l1": "anti_pd1",
    "anti_ctla_4": "anti_ctla4",
}


class PlanError(ValueError):
    """A network or treatment plan is malformed (unknown name, negative dose, day outside the horizon...)."""


def canonical_drug(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = DRUG_ALIASES.get(key, key)
    if key not in DRUG_NAMES:
        raise PlanError(
            f"unknown drug '{name}'; known drugs: {list(DRUG_NAMES)} (alias anti_pdl1 -> anti_pd1)"
        )
    return key


@dataclass(frozen=True)
class Network:
    """Targets (tumours), DLNs and which DLNs each target drains to (at least one each).

    Every DLN must drain at least one target (eq 6 averages antigen over the I_m targets of DLN m).
    """

    targets: tuple[str, ...]
    dlns: tuple[str, ...]
    drains_to: Mapping[str, tuple[str, ...]]
    initial_cells: Mapping[str, float] = field(default_factory=dict)
    volume_per_cell: Mapping[str, float] = field(default_factory=dict)
    #: target -> days after day 0 at which it was inoculated (bilateral experiments inoculate the second flank
    #: later): the map starts every target on day 0, a late one with n_0 (1 + C_0)^-d cells — its unchecked growth
    #: run backwards; exact without immune kill (the day-0 CTLs act on it from day 0: ~5 % smaller after 2 days)
    inoculation_delay_days: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "dlns", tuple(self.dlns))
        if not self.targets:
            raise PlanError("network needs at least one target")
        if not self.dlns:
            raise PlanError("network needs at least one DLN")
        for kind, names in (("target", self.targets), ("DLN", self.dlns)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise PlanError(f"duplicate {kind} names {dup}")
        both = sorted(set(self.targets) & set(self.dlns))
        if both:
            raise PlanError(f"names used for both a target and a DLN: {both}")
        drains = {}
        for t, ms in dict(self.drains_to).items():
            if t not in self.targets:
                raise PlanError(f"drains_to names unknown target '{t}'; targets: {list(self.targets)}")
            ms = (ms,) if isinstance(ms, str) else tuple(ms)
            for m in ms:
                if m not in self.dlns:
                    raise PlanError(f"target '{t}' drains to unknown DLN '{m}'; DLNs: {list(self.dlns)}")
            drains[t] = ms
        for t in self.targets:
            if not drains.get(t):
                raise PlanError(f"target '{t}' drains to no DLN; every target needs at least one")
        for m in self.dlns:
            if not any(m in ms for ms in drains.values()):
                raise PlanError(f"DLN '{m}' drains no target; remove it or map a target to it")
        object.__setattr__(self, "drains_to", drains)
        for key in ("initial_cells", "volume_per_cell"):
            checked = {}
            for t, v in dict(getattr(self, key)).items():
                if t not in self.targets:
                    raise PlanError(f"{key} names unknown target '{t}'; targets: {list(self.targets)}")
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise PlanError(f"{key} of '{t}' must be a number, got {v!r}") from None
                if not math.isfinite(v) or v <= 0:
                    raise PlanError(f"{key} of '{t}' must be a positive finite number, got {v}")
                checked[t] = v
            object.__setattr__(self, key, checked)
        delays = {}
        for t, v in dict(self.inoculation_delay_days).items():
            if t not in self.targets:
                raise PlanError(f"inoculation_delay_days names unknown target '{t}'; targets: {list(self.targets)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise PlanError(f"inoculation_delay_days of '{t}' must be a number >= 0, got {v!r}")
            delays[t] = float(v)
        object.__setattr__(self, "inoculation_delay_days", delays)

    @property
    def drain_matrix(self) -> np.ndarray:
        """(I, M) float matrix with 1 where target i drains to DLN m."""
        a = np.zeros((len(self.targets), len(self.dlns)))
        for i, t in enumerate(self.targets):
            for m in self.drains_to[t]:
                a[i, self.dlns.index(m)] = 1.0
        return a

    def delays(self) -> np.ndarray:
        """(I,) inoculation delay of each target in days (0 unless given)."""
        return np.array([self.inoculation_delay_days.get(t, 0.0) for t in self.targets], dtype=float)

    def initial_tumour(self, default: float, growth: float = 0.0) -> np.ndarray:
        """Day-0 tumour cells of each target: the override or ``default``, times (1 + ``growth``)^-delay."""
        n0 = np.array([self.initial_cells.get(t, default) for t in self.targets], dtype=float)
        return n0 * (1.0 + growth) ** -self.delays()

    def volume_coefficients(self, default: float) -> np.ndarray:
        """k_i (mm^3 per cell) of each target: the plan's override, else ``default`` (the registry's)."""
        return np.array([self.volume_per_cell.get(t, default) for t in self.targets], dtype=float)


def _check_day(day: Any, days: int, what: str) -> int:
    if isinstance(day, bool) or not float(day).is_integer():
        raise PlanError(f"{what}: day {day!r} is not a whole day")
    d = int(day)
    if not 0 <= d < days:
        raise PlanError(f"{what}: day {d} is outside the horizon [0, {days - 1}] (days = {days})")
    return d


def _check_amount(x: Any, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise PlanError(f"{what}: {x!r} is not a number") from None
    if not math.isfinite(v):
        raise PlanError(f"{what}: {v} is not finite")
    if v < 0:
        raise PlanError(f"{what}: negative dose {v:g}")
    return v


@dataclass(frozen=True)
class TreatmentPlan:
    """Per-day radiation doses (Gy) to each target and DLN, and drug doses (standard doses) over ``days`` days.

    Build with :meth:`build` (validates names, days and doses) or :func:`load_plan`.
    """

    network: Network
    days: int
    target_dose: np.ndarray  # (days, I) Gy
    dln_dose: np.ndarray  # (days, M) Gy
    drug_dose: np.ndarray  # (days, 4) in the order of DRUG_NAMES

    @classmethod
    def build(
        cls,
        network: Network,
        days: int,
        radiation: Iterable[Mapping[str, Any]] = (),
        drugs: Iterable[Mapping[str, Any]] = (),
    ) -> TreatmentPlan:
        """``radiation``: dicts {target|dln, days, dose_gy}; ``drugs``: dicts {name, days, dose=1}."""
        if isinstance(days, bool) or not float(days).is_integer() or int(days) < 1:
            raise PlanError(f"days must be a positive whole number, got {days!r}")
        days = int(days)
        td = np.zeros((days, len(network.targets)))
        dd = np.zeros((days, len(network.dlns)))
        gd = np.zeros((days, len(DRUG_NAMES)))
        for k, r in enumerate(radiation):
            r = dict(r)
            unknown = set(r) - {"target", "dln", "days", "dose_gy"}
            if unknown:
                raise PlanError(
                    f"radiation #{k + 1}: unknown keys {sorted(unknown)} (target|dln, days, dose_gy)"
                )
            if ("target" in r) == ("dln" in r):
                raise PlanError(f"radiation #{k + 1}: give exactly one of 'target' or 'dln'")
            if "dose_gy" not in r or "days" not in r:
                raise PlanError(f"radiation #{k + 1}: needs 'days' and 'dose_gy'")
            dose = _check_amount(r["dose_gy"], f"radiation #{k + 1}")
            if "target" in r:
                if r["target"] not in network.targets:
                    raise PlanError(
                        f"radiation #{k + 1}: unknown target '{r['target']}'; "
                        f"targets: {list(network.targets)}"
                    )
                arr, col = td, network.targets.index(r["target"])
            else:
                if r["dln"] not in network.dlns:
                    raise PlanError(
                        f"radiation #{k + 1}: unknown DLN '{r['dln']}'; DLNs: {list(network.dlns)}"
                    )
                arr, col = dd, network.dlns.index(r["dln"])
            for day in _as_days(r["days"], f"radiation #{k + 1}"):
                arr[_check_day(day, days, f"radiation #{k + 1}"), col] += dose
        for k, g in enumerate(drugs):
            g = dict(g)
            unknown = set(g) - {"name", "days", "dose"}
            if unknown:
                raise PlanError(f"drug #{k + 1}: unknown keys {sorted(unknown)} (name, days, dose)")
            if "name" not in g or "days" not in g:
                raise PlanError(f"drug #{k + 1}: needs 'name' and 'days'")
            col = DRUG_NAMES.index(canonical_drug(g["name"]))
            amount = _check_amount(g.get("dose", 1.0), f"drug '{g['name']}'")
            for day in _as_days(g["days"], f"drug '{g['name']}'"):
                gd[_check_day(day, days, f"drug '{g['name']}'"), col] += amount
        return cls(network, days, td, dd, gd)

    @classmethod
    def from_condition(cls, condition: Mapping[str, Any] | None, network: Network, days: int) -> TreatmentPlan:
        """The plan of one conditions-table row (days from inoculation = model days).

        Columns: ``rt_days`` + ``rt_doses_gy`` (the first target, the primary tumour), ``dln_rt_days`` +
        ``dln_rt_doses_gy`` (the first DLN the primary drains to), any drug by name as ``<drug>_days`` (optionally
        ``<drug>_doses``, standard doses; default 1 per day) — several drugs per condition — or one drug in the
        generic columns of the data tables, ``drug`` (its name) + ``drug_days`` (+ ``drug_doses``) — and
        ``condition``, ``description``. An unknown column is an error (a misspelled one would silently drop a
        treatment)."""
        condition = dict(condition or {})
        name = condition.get("condition", "")
        if "drug" in condition or "drug_days" in condition or "drug_doses" in condition:
            drug = condition.pop("drug", None)
            ddays, ddoses = condition.pop("drug_days", None) or [], condition.pop("drug_doses", None) or []
            if ddays or ddoses:
                if not drug:
                    raise PlanError(f"condition {name!r}: drug_days without a drug name (column 'drug')")
                key = canonical_drug(drug)
                if f"{key}_days" in condition:
                    raise PlanError(f"condition {name!r}: {key} given both as 'drug' and as '{key}_days'")
                condition[f"{key}_days"] = list(ddays)
                if ddoses:
                    condition[f"{key}_doses"] = list(ddoses)
        drugs = [*DRUG_NAMES, *DRUG_ALIASES]
        known = {"condition", "description", "rt_days", "rt_doses_gy", "dln_rt_days", "dln_rt_doses_gy",
                 *(f"{d}_days" for d in drugs), *(f"{d}_doses" for d in drugs)}
        unknown = sorted(set(condition) - known)
        if unknown:
            raise PlanError(f"condition {name!r}: unknown column(s) {unknown} for the DLN model (a misspelled schedule "
                            f"column would silently drop that treatment); known: {sorted(known)}")
        radiation = []
        primary = network.targets[0]
        for key, where in (("rt", {"target": primary}), ("dln_rt", {"dln": network.drains_to[primary][0]})):
            rdays, doses = list(condition.get(f"{key}_days", [])), list(condition.get(f"{key}_doses_gy", []))
            if len(rdays) != len(doses):
                raise PlanError(f"condition {name!r}: {len(doses)} {key}_doses_gy for {len(rdays)} {key}_days")
            radiation += [{**where, "days": [d], "dose_gy": g} for d, g in zip(rdays, doses)]
        given = []
        for d in drugs:
            ddays = list(condition.get(f"{d}_days", []))
            doses = list(condition.get(f"{d}_doses", [])) or [1.0] * len(ddays)
            if len(doses) != len(ddays):
                raise PlanError(f"condition {name!r}: {len(doses)} {d}_doses for {len(ddays)} {d}_days")
            given += [{"name": d, "days": [day], "dose": amount} for day, amount in zip(ddays, doses)]
        return cls.build(network, days, radiation, given)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (for study outputs)."""
        out: dict[str, Any] = {"days": self.days, "radiation": [], "drugs": {}}
        for kind, names, arr in (
            ("target", self.network.targets, self.target_dose),
            ("dln", self.network.dlns, self.dln_dose),
        ):
            for j, name in enumerate(names):
                days = [int(d) for d in np.nonzero(arr[:, j])[0]]
                if days:
                    out["radiation"].append(
                        {kind: name, "days": days, "dose_gy": [float(arr[d, j]) for d in days]}
                    )
        for j, name in enumerate(DRUG_NAMES):
            days = [int(d) for d in np.nonzero(self.drug_dose[:, j])[0]]
            if days:
                out["drugs"][name] = days
        return out


def _as_days(raw: Any, what: str) -> list:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return [raw]
    if isinstance(raw, (list, tuple)):
        seen = set()
        for d in raw:
            if d in seen:
                raise PlanError(
                    f"{what}: day {d!r} listed twice (give one entry per day; separate entries add up)"
                )
            seen.add(d)
        return list(raw)
    raise PlanError(f"{what}: 'days' must be a day or a list of days, got {raw!r}")


def plan_from_dict(data: Mapping[str, Any], where: str = "plan") -> TreatmentPlan:
    unknown = set(data) - {"days", "network", "radiation", "drug"}
    if unknown:
        raise PlanError(f"{where}: unknown top-level keys {sorted(unknown)} (days, network, radiation, drug)")
    for key in ("days", "network"):
        if key not in data:
            raise PlanError(f"{where}: missing '{key}'")
    net = dict(data["network"])
    unknown = set(net) - {"targets", "dlns", "drains_to", "initial_cells", "volume_per_cell",
                          "inoculation_delay_days"}
    if unknown:
        raise PlanError(f"{where}: unknown network keys {sorted(unknown)}")
    for key in ("targets", "dlns", "drains_to"):
        if key not in net:
            raise PlanError(f"{where}: network needs '{key}'")
    network = Network(
        tuple(net["targets"]),
        tuple(net["dlns"]),
        dict(net["drains_to"]),
        dict(net.get("initial_cells", {})),
        dict(net.get("volume_per_cell", {})),
        dict(net.get("inoculation_delay_days", {})),
    )
    try:
        return TreatmentPlan.build(network, data["days"], data.get("radiation", []), data.get("drug", []))
    except PlanError as exc:
        raise PlanError(f"{where}: {exc}") from None


def load_plan(path: str | Path) -> TreatmentPlan:
    """Read a TOML (``.toml``) or JSON (``.json``) plan file; errors name the file."""
    from immunocal.priors.registry import read_structured_file

    data, _ = read_structured_file(path, PlanError, what="plan file")
    return plan_from_dict(data, where=str(path))
