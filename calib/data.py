"""PEtab-style data tables: long measurement table and conditions table, with validation errors that name the file,
the line and the column.

Measurement table (CSV or TSV; one row per observation)::

    subject,condition,observable,time,value[,sigma][,censoring]

``censoring`` is empty/``none`` (observed), ``left`` (below the detection limit: ``value`` is the limit) or ``right``
(right-censored at the endpoint, e.g. euthanasia: the true value is above ``value``).

Conditions table (one row per condition; extra columns are free-form)::

    condition[,subject][,rt_days][,rt_doses_gy][,drug][,drug_days][,cart_days][,cart_doses][,<covariate>...]

List-valued schedule columns hold ``;``-separated numbers (``0;1;2``). Rows with a ``subject`` give that subject's
covariates (numeric columns other than the schedule columns).
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from immunocal.priors.textio import read_input_text

MEASUREMENT_REQUIRED = ("subject", "condition", "observable", "time", "value")
MEASUREMENT_OPTIONAL = ("sigma", "censoring")
CENSORING = {"": "none", "none": "none", "left": "left", "below_detection": "left", "lloq": "left",
             "right": "right", "endpoint": "right", "euthanasia": "right"}
SCHEDULE_LIST_COLUMNS = ("rt_days", "rt_doses_gy", "drug_days", "drug_doses", "cart_days", "cart_doses")
SCHEDULE_TEXT_COLUMNS = ("condition", "subject", "drug", "description")


def is_schedule_column(column: str) -> bool:
    """A dosing-schedule column of a conditions table: a known list column or any ``*_days`` / ``*_doses`` /
    ``*_doses_gy`` (';'-separated numbers)."""
    return column in SCHEDULE_LIST_COLUMNS or column.endswith(("_days", "_doses", "_doses_gy"))


class DataTableError(ValueError):
    """A malformed data table; the message names file, line and column."""


def _where(path, line, column=None) -> str:
    return f"{path}, line {line}" + (f", column '{column}'" if column else "")


def _read_rows(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    path = Path(path)
    text = read_input_text(path, "data file", DataTableError)
    delim = "\t" if path.suffix.lower() in (".tsv", ".tab") or ("\t" in text.splitlines()[0] if text else False) \
        else ","
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataTableError(f"{_where(path, 1)}: empty file (expected a header line)")
    reader = csv.reader(lines, delimiter=delim)
    header = [h.strip() for h in next(reader)]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataTableError(f"{_where(path, 1)}: duplicate column names {dup}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) != len(header):
            raise DataTableError(f"{_where(path, lineno)}: {len(row)} fields, the header has {len(header)}")
        rows.append((lineno, [c.strip() for c in row]))
    return header, rows


def _float(text: str, path, line, column, allow_empty=False) -> float:
    if text == "" and allow_empty:
        return math.nan
    try:
        x = float(text)
    except ValueError:
        raise DataTableError(f"{_where(path, line, column)}: {text!r} is not a number") from None
    if not math.isfinite(x):
        raise DataTableError(f"{_where(path, line, column)}: value {text!r} is not finite")
    return x


@dataclass
class Measurements:
    """Validated long measurement table (columns as numpy arrays, one entry per row)."""

    subject: np.ndarray
    condition: np.ndarray
    observable: np.ndarray
    time: np.ndarray
    value: np.ndarray
    sigma: np.ndarray  # NaN where not given
    censoring: np.ndarray  # 'none' | 'left' | 'right'
    source: str = "<memory>"

    def __post_init__(self):
        n = len(self.value)
        for f in ("subject", "condition", "observable", "time", "sigma", "censoring"):
            if len(getattr(self, f)) != n:
                raise DataTableError(f"{self.source}: column '{f}' has {len(getattr(self, f))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.value)

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(self.subject.tolist()))

    @property
    def observables(self) -> list[str]:
        return list(dict.fromkeys(self.observable.tolist()))

    @classmethod
    def from_arrays(cls, subject, condition, observable, time, value, sigma=None, censoring=None,
                    source="<memory>") -> Measurements:
        n = len(value)
        return cls(np.asarray(subject, dtype=str), np.asarray(condition, dtype=str),
                   np.asarray(observable, dtype=str), np.asarray(time, float), np.asarray(value, float),
                   np.full(n, np.nan) if sigma is None else np.asarray(sigma, float),
                   np.full(n, "none", dtype=object).astype(str) if censoring is None else np.asarray(censoring, str),
                   source)

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(list(MEASUREMENT_REQUIRED) + ["sigma", "censoring"])
            for i in range(len(self)):
                w.writerow([self.subject[i], self.condition[i], self.observable[i], repr(float(self.time[i])),
                            repr(float(self.value[i])), "" if np.isnan(self.sigma[i]) else repr(float(self.sigma[i])),
                            "" if self.censoring[i] == "none" else self.censoring[i]])
        tmp.replace(path)
        return path

    def digest(self) -> str:
        h = hashlib.sha256()
        for a in (self.subject, self.condition, self.observable, self.censoring):
            h.update("\x1f".join(a.tolist()).encode())
        for a in (self.time, self.value, self.sigma):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        return h.hexdigest()[:16]


def read_measurements(path: str | Path) -> Measurements:
    """Read and validate a measurement table (CSV/TSV). Errors name file, line and column."""
    path = Path(path)
    header, rows = _read_rows(path)
    missing = [c for c in MEASUREMENT_REQUIRED if c not in header]
    if missing:
        raise DataTableError(f"{_where(path, 1)}: missing required column(s) {missing}; the header is {header}")
    unknown = [c for c in header if c not in MEASUREMENT_REQUIRED + MEASUREMENT_OPTIONAL]
    if unknown:
        raise DataTableError(f"{_where(path, 1, unknown[0])}: unknown column; allowed columns are "
                             f"{list(MEASUREMENT_REQUIRED + MEASUREMENT_OPTIONAL)}")
    if not rows:
        raise DataTableError(f"{_where(path, 2)}: no data rows")
    col = {c: header.index(c) for c in header}
    out = {c: [] for c in MEASUREMENT_REQUIRED + MEASUREMENT_OPTIONAL}
    seen: dict[tuple, int] = {}
    for line, r in rows:
        for c in ("subject", "condition", "observable"):
            if not r[col[c]]:
                raise DataTableError(f"{_where(path, line, c)}: empty value")
        t = _float(r[col["time"]], path, line, "time")
        v = _float(r[col["value"]], path, line, "value")
        s = _float(r[col["sigma"]], path, line, "sigma", allow_empty=True) if "sigma" in col else math.nan
        if not math.isnan(s) and s <= 0:
            raise DataTableError(f"{_where(path, line, 'sigma')}: sigma must be > 0, got {s}")
        cz = r[col["censoring"]].lower() if "censoring" in col else ""
        if cz not in CENSORING:
            raise DataTableError(f"{_where(path, line, 'censoring')}: {cz!r} is not a censoring flag; use one of "
                                 f"'', 'none', 'left' (below detection), 'right' (censored at endpoint)")
        key = (r[col["subject"]], r[col["condition"]], r[col["observable"]], t)
        if key in seen:
            raise DataTableError(f"{_where(path, line)}: duplicate measurement of subject {key[0]!r}, condition "
                                 f"{key[1]!r}, observable {key[2]!r} at time {t} (first on line {seen[key]})")
        seen[key] = line
        for c in ("subject", "condition", "observable"):
            out[c].append(r[col[c]])
        out["time"].append(t)
        out["value"].append(v)
        out["sigma"].append(s)
        out["censoring"].append(CENSORING[cz])
    return Measurements.from_arrays(out["subject"], out["condition"], out["observable"], out["time"], out["value"],
                                    out["sigma"], out["censoring"], source=str(path))


@dataclass
class Conditions:
    """Conditions table: per-condition schedules and per-subject covariates."""

    schedules: dict[str, dict] = field(default_factory=dict)
    covariates: dict[str, dict[str, float]] = field(default_factory=dict)  # subject -> {name: value}
    source: str = "<memory>"

    def covariate_matrix(self, subjects: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """``(len(subjects), len(names))`` covariates; raises naming the subject/covariate that is missing."""
        X = np.empty((len(subjects), len(names)))
        for i, s in enumerate(subjects):
            for j, n in enumerate(names):
                try:
                    X[i, j] = self.covariates[s][n]
                except KeyError:
                    raise DataTableError(f"{self.source}: no covariate '{n}' for subject '{s}'") from None
        return X

    def digest(self) -> str:
        import json

        return hashlib.sha256(json.dumps([self.schedules, self.covariates], sort_keys=True,
                                         default=str).encode()).hexdigest()[:16]


def read_conditions(path: str | Path) -> Conditions:
    """Read and validate a conditions table. Errors name file, line and column."""
    path = Path(path)
    header, rows = _read_rows(path)
    if "condition" not in header:
        raise DataTableError(f"{_where(path, 1)}: missing required column 'condition'; the header is {header}")
    col = {c: header.index(c) for c in header}
    cond = Conditions(source=str(path))
    for line, r in rows:
        name = r[col["condition"]]
        if not name:
            raise DataTableError(f"{_where(path, line, 'condition')}: empty value")
        subject = r[col["subject"]] if "subject" in col else ""
        sched: dict = {}
        covs: dict[str, float] = {}
        for c in header:
            text = r[col[c]]
            if c in ("condition", "subject"):
                continue
            if subject:  # a subject row: its non-schedule columns are that subject's covariates
                if not is_schedule_column(c) and c not in SCHEDULE_TEXT_COLUMNS and text != "":
                    covs[c] = _float(text, path, line, c)
                continue
            if is_schedule_column(c):
                vals = [_float(x.strip(), path, line, c) for x in text.split(";") if x.strip()] if text else []
                if c.endswith("days") and any(b < a for a, b in zip(vals, vals[1:])):
                    raise DataTableError(f"{_where(path, line, c)}: days must be non-decreasing, got {text!r}")
                if "dose" in c and any(v < 0 for v in vals):
                    raise DataTableError(f"{_where(path, line, c)}: doses must be >= 0, got {text!r}")
                sched[c] = vals
            elif c in SCHEDULE_TEXT_COLUMNS:
                sched[c] = text
            elif text != "":
                try:
                    sched[c] = float(text)
                except ValueError:
                    sched[c] = text
        for a, b in (("rt_days", "rt_doses_gy"), ("drug_days", "drug_doses"), ("cart_days", "cart_doses")):
            if a in sched and b in sched and sched[b] and len(sched[a]) != len(sched[b]):
                raise DataTableError(f"{_where(path, line, b)}: {len(sched[b])} doses for {len(sched[a])} days")
        if subject:
            cond.covariates.setdefault(subject, {}).update(covs)
            cond.schedules.setdefault(name, {})
        else:
            if cond.schedules.get(name):
                raise DataTableError(f"{_where(path, line, 'condition')}: condition {name!r} is defined twice")
            cond.schedules[name] = sched
    return cond


#: column headers of group summaries in wide tables (never an animal): matched case-insensitively
SUMMARY_COLUMNS = ("mean", "average", "avg", "median", "sd", "std", "stdev", "sem", "se", "n", "count")


def wide_to_long(path: str | Path, *, condition: str, observable: str = "volume_mm3", time_column: str = "day",
                 log: bool = False, detection_limit: float | None = None, endpoint: float | None = None,
                 subject_prefix: str | None = None, out: str | Path | None = None) -> Measurements:
    """Convert a wide "one column per animal" table to a :class:`Measurements` table.

    The wide file has a time column (``time_column``) and one column per animal; empty cells are skipped (animal
    not measured / dead). Subject ids are qualified by the group, ``<subject_prefix><header>`` with the default
    prefix ``"<condition>/"`` (per-group numbering "1", "2", … would otherwise merge animals of different groups;
    pass ``subject_prefix=""`` for ids that are already unique). Group-summary columns (mean, SD, SEM, n, …:
    :data:`SUMMARY_COLUMNS`) are skipped. ``log=True`` stores ``log(value)`` under observable ``log_<observable>``.
    Values at or below ``detection_limit`` become left-censored rows at the limit; with ``endpoint`` (the humane
    endpoint volume), a value at or above it becomes a right-censored row at the endpoint and the animal's later
    cells must be empty (it was euthanised). Writes ``out`` (CSV) when given.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    if time_column not in header:
        raise DataTableError(f"{_where(path, 1)}: no time column {time_column!r}; the header is {header}")
    tj = header.index(time_column)
    summary = {h for h in header if h.strip().lower() in SUMMARY_COLUMNS}
    subjects = [h for h in header if h != time_column and h not in summary]
    if not subjects:
        raise DataTableError(f"{_where(path, 1)}: no animal columns besides {time_column!r}"
                             + (f" and the summary columns {sorted(summary)}" if summary else ""))
    if detection_limit is not None and endpoint is not None and endpoint <= detection_limit:
        raise DataTableError(f"{path}: endpoint {endpoint} must exceed the detection limit {detection_limit}")
    prefix = f"{condition}/" if subject_prefix is None else subject_prefix
    ended: dict[str, int] = {}
    cols = {c: [] for c in ("subject", "condition", "observable", "time", "value", "censoring")}
    obs = f"log_{observable}" if log else observable
    for line, r in rows:
        t = _float(r[tj], path, line, time_column)
        for j, h in enumerate(header):
            if j == tj or h in summary or r[j] == "":
                continue
            if h in ended:
                raise DataTableError(f"{_where(path, line, h)}: a value after the humane endpoint was reached "
                                     f"(line {ended[h]})")
            v = _float(r[j], path, line, h)
            cz = "none"
            if detection_limit is not None and v <= detection_limit:
                v, cz = detection_limit, "left"
            elif endpoint is not None and v >= endpoint:
                v, cz = endpoint, "right"
                ended[h] = line
            if log:
                if v <= 0:
                    raise DataTableError(f"{_where(path, line, h)}: cannot take log of {v} (set detection_limit)")
                v = math.log(v)
            cols["subject"].append(prefix + h)
            cols["condition"].append(condition)
            cols["observable"].append(obs)
            cols["time"].append(t)
            cols["value"].append(v)
            cols["censoring"].append(cz)
    m = Measurements.from_arrays(cols["subject"], cols["condition"], cols["observable"], cols["time"],
                                 cols["value"], censoring=cols["censoring"], source=str(path))
    if out is not None:
        m.to_csv(out)
    return m
