"""PEtab (v1) tables in and out: the project's measurement and conditions tables ↔ PEtab's measurement and
condition tables, so data sets of the pyPESTO / AMICI / PEtab.jl world come in and ours go out.

Mapping (ours → PEtab; import is the inverse)::

    measurement table                      measurementData.tsv  (+ observables.tsv: output of the same name,
                                                               normal noise: noiseParameter1 or an estimated sd_<id>)
      subject                          →     replicateId (the series of one animal / patient)
      condition                        →     simulationConditionId
      observable, time, value          →     observableId, time, measurement
      sigma (empty: estimated)         →     noiseParameters (empty)
      censoring (left / right)         →     censoring            (an extension column: see below)
    conditions table, condition rows   →   experimentalCondition.tsv
      condition                        →     conditionId
      scalar columns                   →     the same columns
      ';'-separated schedule lists     →     the same columns, as text   (PEtab v1 has no dosing events)
    conditions table, subject rows     →   subjects.tsv (extension: subject, condition, covariates)

PEtab allows extra columns and files "that do not affect the optimisation problem as such"; these two do affect
ours, so the export says what a PEtab-only tool will miss: the number of censored rows (which such a tool would read
as exact values) and the schedule columns it cannot interpret. Import refuses what this project cannot represent
(``preequilibrationConditionId``, ``observableParameters``) by name; a ``noiseParameters`` entry that names a
parameter becomes an empty ``sigma`` (the config's ``[observables]`` noise prior applies) and is counted. Ids this
project writes must be PEtab ids (``[A-Za-z_][A-Za-z0-9_]*``) — never silently renamed: an invalid one is an error,
or with ``rename_ids`` (``--rename-ids``) a valid id recorded in ``immunocal_ids.tsv``, which the import maps back.
Round trip: ours → PEtab → ours gives tables with the same content hash (``Measurements.digest``,
``Conditions.digest``), tested on the shipped data sets.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from immunocal.priors.textio import write_table

from .data import (
    MEASUREMENT_REQUIRED,
    DataTableError,
    _read_rows,
    is_schedule_column,
    read_conditions,
    read_measurements,
)

MEASUREMENT_FILE = "measurementData.tsv"
CONDITION_FILE = "experimentalCondition.tsv"
SUBJECT_FILE = "subjects.tsv"
ID_FILE = "immunocal_ids.tsv"
OBSERVABLE_FILE = "observables.tsv"
PETAB_ID = re.compile(r"^[A-Za-z_]\w*$")
#: PEtab v1 measurement-table columns this project reads (the others are refused by name)
PETAB_MEASUREMENT_COLUMNS = ("observableId", "simulationConditionId", "time", "measurement", "noiseParameters",
                             "replicateId", "datasetId", "preequilibrationConditionId", "observableParameters",
                             "censoring")


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    return write_table(path, header, rows, delimiter="\t")


class _Ids:
    """Our ids → PEtab ids: unchanged when valid; otherwise an error, or — with ``rename`` — a valid id (invalid
    characters → ``_``, a leading ``_`` before a digit, a numeric suffix against clashes) recorded in the mapping
    table :data:`ID_FILE`, which the import reads back."""

    def __init__(self, rename: bool):
        self.rename = rename
        self.mapping: dict[tuple[str, str], str] = {}
        self.taken: dict[str, set[str]] = {}

    def __call__(self, value: str, what: str, source) -> str:
        value = str(value)
        if PETAB_ID.match(value):
            return value
        if (what, value) in self.mapping:
            return self.mapping[(what, value)]
        if not self.rename:
            raise DataTableError(f"{source}: {what} {value!r} is not a PEtab id ([A-Za-z_][A-Za-z0-9_]*); rename it "
                                 "in the table, or export with --rename-ids (the new ids are recorded in "
                                 f"{ID_FILE} and mapped back on import)")
        base = re.sub(r"\W", "_", value)
        base = base if PETAB_ID.match(base) else f"_{base}"
        new, k = base, 1
        while new in self.taken.setdefault(what, set()):
            k += 1
            new = f"{base}_{k}"
        self.taken[what].add(new)
        self.mapping[(what, value)] = new
        return new


def _number(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def export_petab(measurements: str | Path, conditions: str | Path | None, out: str | Path,
                 rename_ids: bool = False) -> dict:
    """Write the PEtab tables of our ``measurements`` (and ``conditions``) tables into the folder ``out``; returns
    the files written and what PEtab-only tools cannot see (module docstring). ``rename_ids``: give condition and
    observable names that are not PEtab ids valid ids, recorded in :data:`ID_FILE` (else they are errors)."""
    _petab_id = _Ids(rename_ids)
    meas = read_measurements(measurements)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    obs_ids = {o: _petab_id(o, "observable", meas.source) for o in meas.observables}
    # noise: an observable with a sigma on some row takes it as noiseParameter1 (rows without one name the estimated
    # parameter sd_<id>, which the import reads back as "estimated"); one without any sigma has noiseFormula sd_<id>
    given = {o: bool(np.isfinite(meas.sigma[meas.observable == o]).any()) for o in obs_ids}
    rows = []
    for i in range(len(meas)):
        o = obs_ids[meas.observable[i]]
        noise = _number(meas.sigma[i]) or (f"sd_{o}" if given[meas.observable[i]] else "")
        rows.append([o, _petab_id(meas.condition[i], "condition", meas.source), _number(meas.time[i]),
                     _number(meas.value[i]), noise, meas.subject[i], meas.censoring[i]])
    header = ["observableId", "simulationConditionId", "time", "measurement", "noiseParameters", "replicateId",
              "censoring"]
    files = {"measurements": str(_write_tsv(out / MEASUREMENT_FILE, header, rows))}
    # the observation model as far as the tables know it: the model output of the same name, normal noise
    files["observables"] = str(_write_tsv(
        out / OBSERVABLE_FILE, ["observableId", "observableFormula", "noiseFormula", "noiseDistribution"],
        [[o, o, f"noiseParameter1_{o}" if given[name] else f"sd_{o}", "normal"] for name, o in obs_ids.items()]))
    report = {"rows": len(meas), "censored_rows": int((meas.censoring != "none").sum())}
    if conditions is not None:
        read_conditions(conditions)  # validated first: errors name our file, line and column
        head, raw = _read_rows(conditions)
        col = {c: head.index(c) for c in head}
        others = [c for c in head if c not in ("condition", "subject")]
        cond_rows, subj_rows = [], []
        for _, r in raw:
            if "subject" in col and r[col["subject"]]:
                subj_rows.append([r[col["subject"]], _petab_id(r[col["condition"]], "condition", conditions),
                                  *(r[col[c]] for c in others)])
            else:
                cond_rows.append([_petab_id(r[col["condition"]], "condition", conditions),
                                  *(r[col[c]] for c in others)])
        files["conditions"] = str(_write_tsv(out / CONDITION_FILE, ["conditionId", *others], cond_rows))
        if subj_rows:
            files["subjects"] = str(_write_tsv(out / SUBJECT_FILE, ["subject", "condition", *others], subj_rows))
        report["schedule_columns_as_text"] = [c for c in others if is_schedule_column(c)]
        report["subject_rows"] = len(subj_rows)
    if _petab_id.mapping:
        files["ids"] = str(_write_tsv(out / ID_FILE, ["kind", "petabId", "id"],
                                      [[k, new, old] for (k, old), new in _petab_id.mapping.items()]))
        report["renamed_ids"] = {f"{k}:{old}": new for (k, old), new in _petab_id.mapping.items()}
    return {"files": files, **report}


def import_petab(folder_or_file: str | Path, out: str | Path) -> dict:
    """Our ``measurements.csv`` (and ``conditions.csv``) in the folder ``out`` from PEtab tables: a folder holding
    ``measurementData.tsv`` (and ``experimentalCondition.tsv``, ``subjects.tsv``) or one measurement table file.
    Returns the files written and counts of what was mapped (module docstring)."""
    src = Path(folder_or_file)
    mfile = src / MEASUREMENT_FILE if src.is_dir() else src
    head, raw = _read_rows(mfile)
    unknown = [c for c in head if c not in PETAB_MEASUREMENT_COLUMNS]
    if unknown:
        raise DataTableError(f"{mfile}, line 1, column '{unknown[0]}': not a PEtab measurement column this project "
                             f"reads ({list(PETAB_MEASUREMENT_COLUMNS)})")
    for need in ("observableId", "simulationConditionId", "time", "measurement"):
        if need not in head:
            raise DataTableError(f"{mfile}, line 1: missing PEtab column {need!r}")
    col = {c: head.index(c) for c in head}
    back: dict[tuple[str, str], str] = {}  # (kind, PEtab id) -> our id, from an export with renamed ids
    if src.is_dir() and (src / ID_FILE).exists():
        ihead, iraw = _read_rows(src / ID_FILE)
        back = {(r[ihead.index("kind")], r[ihead.index("petabId")]): r[ihead.index("id")] for _, r in iraw}

    def ours(kind: str, value: str) -> str:
        return back.get((kind, value), value)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, noise_ids, no_replicate = [], 0, 0
    for line, r in raw:
        for c in ("preequilibrationConditionId", "observableParameters"):
            if c in col and r[col[c]].strip():
                raise DataTableError(f"{mfile}, line {line}, column '{c}': {r[col[c]]!r} — pre-equilibration and "
                                     "observable parameters have no counterpart in this project's tables")
        sigma = r[col["noiseParameters"]].strip() if "noiseParameters" in col else ""
        try:
            sigma = "" if sigma == "" else repr(float(sigma))
        except ValueError:  # a parameter id: estimated, as an empty sigma is here
            noise_ids += 1
            sigma = ""
        subject = r[col["replicateId"]].strip() if "replicateId" in col else ""
        condition = ours("condition", r[col["simulationConditionId"]])
        if not subject:  # no replicate: one series per condition
            no_replicate += 1
            subject = condition
        censoring = r[col["censoring"]].strip() if "censoring" in col else ""
        rows.append([subject, condition, ours("observable", r[col["observableId"]]), r[col["time"]],
                     r[col["measurement"]], sigma, "" if censoring in ("", "none") else censoring])
    mpath = out / "measurements.csv"
    write_table(mpath, [*MEASUREMENT_REQUIRED, "sigma", "censoring"], rows)
    read_measurements(mpath)  # what was written is a valid table (errors name it)
    files = {"measurements": str(mpath)}
    cfile = src / CONDITION_FILE if src.is_dir() else None
    if cfile is not None and cfile.exists():
        chead, craw = _read_rows(cfile)
        if "conditionId" not in chead:
            raise DataTableError(f"{cfile}, line 1: missing PEtab column 'conditionId'")
        others = [c for c in chead if c not in ("conditionId", "conditionName")]
        table = [[ours("condition", r[chead.index("conditionId")]), "", *(r[chead.index(c)] for c in others)]
                 for _, r in craw]
        sfile = src / SUBJECT_FILE
        if sfile.exists():
            shead, sraw = _read_rows(sfile)
            extra = [c for c in shead if c not in ("subject", "condition") and c not in others]
            others += extra
            for row in table:
                row.extend("" for _ in extra)
            for _, r in sraw:
                table.append([ours("condition", r[shead.index("condition")]), r[shead.index("subject")],
                              *(r[shead.index(c)] if c in shead else "" for c in others)])
        cpath = out / "conditions.csv"
        header = ["condition", "subject", *others]
        if not any(row[1] for row in table):  # no subject rows: no subject column
            header.pop(1)
            table = [[row[0], *row[2:]] for row in table]
        write_table(cpath, header, table)
        read_conditions(cpath)
        files["conditions"] = str(cpath)
    return {"files": files, "rows": len(rows), "noise_parameter_ids": noise_ids,
            "rows_without_replicate": no_replicate}

