"""PEtab v2 problems in and out: the project's measurement and conditions tables ↔ a PEtab v2 problem (measurement,
condition, experiment, observable and mapping tables and ``problem.yaml``), read and written with the ``petab``
library's own v2 classes (``pip install 'immunocal[petab]'``); v1 tables are :mod:`immunocal.calib.petab`.

PEtab v2 describes a time course as an *experiment*: periods starting at given times, each applying *conditions*
(sets of changes ``targetId := targetValue`` to model entities). That is what v1 could not say about our schedules
(its condition table had one row per condition, so dosing lists travelled as text). Mapping (ours → PEtab v2)::

    condition (arm) with its schedule  →  experiment <arm>: a period at t0 = min(0, first dose, first measurement)
                                          and one period per dosing day
      numeric scalar columns            →  condition <arm>_setup at t0: targetId = column, targetValue = value
      a dose of d on day t (rt, CAR-T,  →  condition at the period of day t: targetId = the dose column
      <p>_doses; a drug: its name)          (rt_doses_gy, cart_doses, <p>_doses; the drug's name, e.g. anti_pd1),
                                            targetValue = "<target> + d" (a bolus: the delivered amount jumps by d);
                                            at t0 the value is "d" (v2 allows only numbers in the first period)
      a day without dose (cart_days     →  targetId = the days column, targetValue "<target> + 1" (an event counter)
      without cart_doses)
    subject with covariates            →  experiment <arm>__<subject>: the arm's periods, and at t0 also condition
                                          <subject>_covariates (targetId = covariate, targetValue = value)
    measurement row                    →  observableId, experimentId, time, measurement, noiseParameters,
                                          replicateId (= subject), censoring (extension column: see below)
    observable                         →  observables.tsv: formula = the model output of the same name, normal noise
                                          (noise placeholder sigma_<id> when rows give a sigma; sd_<id> estimated)
    condition targets                  →  mapping.tsv: each target maps to the model entity of the same name (there
                                          is no SBML model: the entities are this project's simulator inputs)

Text (descriptions, drug names), the conditions header and the roles of targets, experiments and conditions travel
in ``problem.yaml`` under ``extensions: immunocal`` (PEtab v2's place for what the core format does not cover), so
ours → v2 → ours is exact (same content hashes, tested on every shipped data set). A v2 problem from elsewhere
(no such extension) imports by the generic rule: an experiment is a condition; numbers set in its first period are
scalar columns; a later change ``X + d`` is a dose d of ``X`` (columns ``X_days``, ``X_doses``); anything else —
a change that sets a value mid-course, pre-equilibration, observable parameters, several models — has no
counterpart in this project's tables and is refused by name. Every export is checked by petab's own v2 linter
(all checks that do not need a model file or a parameter table: this is a data export; the model and the priors
are the user's config) and an error there is an error here. As in v1, ids that are not PEtab ids are errors unless
``rename_ids`` (recorded in the extension and mapped back on import).
"""

from __future__ import annotations

import importlib.util
import math
import re
import warnings
from pathlib import Path

import numpy as np

from .data import (
    MEASUREMENT_REQUIRED,
    SCHEDULE_TEXT_COLUMNS,
    DataTableError,
    _read_rows,
    is_schedule_column,
    read_conditions,
    read_measurements,
)
from .petab import _Ids

YAML_FILE = "problem.yaml"
FILES = {"measurement": "measurements.tsv", "condition": "conditions.tsv", "experiment": "experiments.tsv",
         "observable": "observables.tsv", "mapping": "mapping.tsv"}
EXTENSION = "immunocal"
EXTENSION_VERSION = "1"
#: the (days, doses) column pairs of our conditions tables; other schedules are ``<p>_days`` / ``<p>_doses``
DOSE_PAIRS = {"rt_days": "rt_doses_gy", "drug_days": "drug_doses", "cart_days": "cart_doses"}
#: petab's v2 lint checks that need a model file or a parameter table (not part of a data export)
MODEL_CHECKS = ("CheckModel", "CheckProblemConfig")


def _petab_v2():
    if importlib.util.find_spec("petab") is None:
        raise DataTableError("PEtab v2 needs the petab library (pip install 'immunocal[petab]'); PEtab v1 tables "
                             "need nothing extra")
    from petab import v2

    return v2


def _days_columns(header: list[str]) -> list[tuple[str, str | None]]:
    """(days column, doses column or None) of every schedule in a conditions header."""
    pairs = []
    for c in header:
        if c.endswith("_days"):
            doses = DOSE_PAIRS.get(c, c[: -len("_days")] + "_doses")
            pairs.append((c, doses if doses in header else None))
    orphans = [c for c in header if is_schedule_column(c) and not c.endswith("_days")
               and c not in {d for _, d in pairs}]
    if orphans:
        raise DataTableError(f"conditions header: dose column(s) {orphans} without their days column")
    return pairs


def is_petab_v2(source: str | Path) -> bool:
    """Whether ``source`` names a PEtab v2 problem: a YAML file, or a folder holding :data:`YAML_FILE`, whose
    ``format_version`` is 2. A folder without one (or with a v1 problem file) holds v1 tables; a YAML file of
    another version is refused by name (for v1, give the folder or the measurement table)."""
    src = Path(source)
    yaml_file = src / YAML_FILE if src.is_dir() else src
    if yaml_file.suffix.lower() not in (".yaml", ".yml") or not yaml_file.is_file():
        return False
    match = re.search(r"^format_version:\s*['\"]?([0-9]+)", yaml_file.read_text(encoding="utf-8"), re.MULTILINE)
    version = match.group(1) if match else "(none)"
    if version == "2":
        return True
    if src.is_dir():
        return False
    raise DataTableError(f"{yaml_file}: format_version {version}: only PEtab v2 problem files are read; for PEtab "
                         "v1 give the folder (or file) of its measurement table")


def read_problem(yaml_file: str | Path):
    """petab's v2 ``Problem`` of a problem file. petab 0.8's table readers call ``DataFrame.set_index(...,
    inplace=True)``, deprecated from pandas 3.1 (a ``Pandas4Warning`` on every read, not about the data): that one
    warning, from petab's modules, is filtered here so commands stay quiet; any other warning still shows."""
    v2 = _petab_v2()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword", module=r"petab\.")
        return v2.Problem.from_yaml(yaml_file)


def lint(problem) -> list[str]:
    """petab's v2 lint messages of level error or worse, without the checks that need a model or parameter table."""
    from petab.v2.lint import ValidationIssueSeverity, default_validation_tasks

    tasks = [t for t in default_validation_tasks if type(t).__name__ not in MODEL_CHECKS]
    return [r.message for r in problem.validate(tasks) if r.level >= ValidationIssueSeverity.ERROR]


def export_petab_v2(measurements: str | Path, conditions: str | Path | None, out: str | Path,
                    rename_ids: bool = False) -> dict:
    """Write a PEtab v2 problem of our ``measurements`` (and ``conditions``) tables into the folder ``out``
    (module docstring); returns the files written and what PEtab-only tools cannot see."""
    v2 = _petab_v2()
    from petab.v2.core import Change, Condition, Experiment, ExperimentPeriod, Measurement, ProblemConfig

    ids = _Ids(rename_ids)
    meas = read_measurements(measurements)
    m_arm, m_subject = [str(x) for x in meas.condition], [str(x) for x in meas.subject]
    header, arm_rows, subject_rows = ["condition"], {}, {}
    if conditions is not None:
        read_conditions(conditions)  # validated first: errors name our file, line and column
        header, raw = _read_rows(conditions)
        col = {c: header.index(c) for c in header}
        for _, r in raw:
            if "subject" in col and r[col["subject"]]:
                subject_rows[r[col["subject"]]] = (r[col["condition"]], {c: r[col[c]] for c in header})
            else:
                arm_rows[r[col["condition"]]] = {c: r[col[c]] for c in header}
    pairs = _days_columns(header)
    problem = v2.Problem()
    ext = {"header": header, "arms": list(arm_rows), "subject_rows": {s: a for s, (a, _) in subject_rows.items()},
           "text": {}, "dose_targets": {}, "experiments": {}, "setup_conditions": {}, "covariate_conditions": {},
           "ids": {}}
    targets: set[str] = set()

    def pid(value: str, kind: str) -> str:
        return ids(value, kind, conditions or meas.source)

    # the events of each arm: {time: [(target, amount)]}
    arm_events: dict[str, dict[float, list[tuple[str, float]]]] = {}
    arm_setup: dict[str, dict[str, str]] = {}
    for arm, row in arm_rows.items():
        events: dict[float, list[tuple[str, float]]] = {}
        for days_col, doses_col in pairs:
            days = [float(x) for x in row[days_col].split(";") if x.strip()]
            doses = [float(x) for x in row[doses_col].split(";") if x.strip()] if doses_col else []
            if days_col == "drug_days" and days:
                target = pid(row.get("drug") or "drug", "target")
            else:
                target = pid(doses_col if doses else days_col, "target")
            if target in ext["dose_targets"] and ext["dose_targets"][target]["days"] != days_col:
                raise DataTableError(f"{conditions}: condition {arm!r}: the dose target {target!r} is used by two "
                                     "schedules")
            if days:
                ext["dose_targets"][target] = {"days": days_col, "doses": doses_col if doses else None}
            for k, t in enumerate(days):
                events.setdefault(t, []).append((target, doses[k] if doses else 1.0))
        arm_events[arm] = events
        arm_setup[arm] = {c: v for c, v in row.items() if c not in ("condition", "subject", "description", "drug")
                          and not is_schedule_column(c) and v != ""}
        text = {c: row[c] for c in header if c in SCHEDULE_TEXT_COLUMNS and c not in ("condition", "subject")
                and row[c] != ""}
        text.update({c: v for c, v in arm_setup[arm].items() if not _is_number(v)})
        arm_setup[arm] = {c: v for c, v in arm_setup[arm].items() if _is_number(v)}
        if text:
            ext["text"][arm] = text
    # conditions: setups, doses (shared between arms), covariates
    conditions_added: dict[str, str] = {}  # condition id -> what it is (for clash messages)

    def add_condition(cid: str, what: str, changes: dict[str, str]) -> str:
        if cid in conditions_added:
            raise DataTableError(f"PEtab v2 export: condition id {cid!r} of {what} clashes with "
                                 f"{conditions_added[cid]}; rename one")
        conditions_added[cid] = what
        problem.condition_tables[-1].conditions.append(
            Condition(id=cid, changes=[Change(target_id=t, target_value=v) for t, v in changes.items()]))
        targets.update(changes)
        return cid

    dose_ids: dict[tuple[str, float, bool], str] = {}

    def dose_condition(target: str, amount: float, first: bool) -> str:
        key = (target, amount, first)
        if key not in dose_ids:
            k = sum(1 for t, _, f in dose_ids if t == target and f == first) + 1
            value = repr(amount) if first else f"{target} + {amount!r}"
            dose_ids[key] = add_condition(f"{target}_{'set' if first else 'bolus'}{k}",
                                          f"a dose of {amount} to {target}", {target: value})
        return dose_ids[key]

    for arm in arm_rows:
        if arm_setup[arm]:
            cid = add_condition(f"{pid(arm, 'condition')}_setup", f"condition {arm!r}'s settings", arm_setup[arm])
            ext["setup_conditions"][cid] = arm
    covariate_ids = {}
    for subject, (arm, row) in subject_rows.items():
        covs = {c: v for c, v in row.items() if c not in ("condition", "subject") and not is_schedule_column(c)
                and c not in SCHEDULE_TEXT_COLUMNS and v != ""}
        if covs:
            cid = add_condition(f"{pid(subject, 'subject')}_covariates", f"subject {subject!r}'s covariates", covs)
            ext["covariate_conditions"][cid] = subject
            covariate_ids[subject] = cid
    # experiments: one per arm, one per (arm, subject with covariates)
    def experiment_key(i: int) -> tuple[str, str | None]:  # measurement row i -> (arm, subject with covariates)
        return m_arm[i], m_subject[i] if m_subject[i] in covariate_ids else None

    experiments: dict[tuple[str, str | None], str] = {}
    for i in range(len(meas)):
        experiments.setdefault(experiment_key(i), "")
    for arm in arm_rows:
        experiments.setdefault((arm, None), "")
    for subject in covariate_ids:  # a subject row without measurements keeps its experiment (and covariates)
        if not any(s == subject for _, s in experiments):
            experiments[(subject_rows[subject][0], subject)] = ""
    t_first = {}
    for i in range(len(meas)):
        key = experiment_key(i)
        t_first[key] = min(t_first.get(key, math.inf), float(meas.time[i]))
    taken_experiments: dict[str, tuple] = {}
    for (arm, subject) in experiments:
        eid = pid(arm, "condition") if subject is None else f"{pid(arm, 'condition')}__{pid(subject, 'subject')}"
        if eid in taken_experiments:
            raise DataTableError(f"PEtab v2 export: experiment id {eid!r} of {(arm, subject)} clashes with "
                                 f"{taken_experiments[eid]}; rename one")
        taken_experiments[eid] = (arm, subject)
        experiments[(arm, subject)] = eid
        ext["experiments"][eid] = {"condition": arm, "subject": subject}
        events = arm_events.get(arm, {})
        t0 = min([0.0, t_first.get((arm, subject), 0.0), *events])
        first = [c for c, a in ext["setup_conditions"].items() if a == arm]
        if subject is not None:
            first.append(covariate_ids[subject])
        periods = {t0: first}
        for t in sorted(events):
            seen = set()
            for target, amount in events[t]:
                if target in seen:
                    raise DataTableError(f"{conditions}: condition {arm!r} gives {target!r} twice on day {t}: a "
                                         "PEtab v2 period cannot change one target twice at one time")
                seen.add(target)
                periods.setdefault(t, []).append(dose_condition(target, amount, t == t0))
        problem.experiment_tables[-1].experiments.append(Experiment(
            id=eid, periods=[ExperimentPeriod(time=t, condition_ids=c) for t, c in sorted(periods.items())]))
    # observables and measurements
    obs = {str(o): pid(str(o), "observable") for o in meas.observables}
    given = {o: bool(np.isfinite(meas.sigma[meas.observable == o]).any()) for o in obs}
    for name, o in obs.items():
        if given[name]:
            problem.add_observable(o, o, f"sigma_{o}", noise_placeholders=[f"sigma_{o}"], noise_distribution="normal")
        else:
            problem.add_observable(o, o, f"sd_{o}", noise_distribution="normal")
    rows = problem.measurement_tables[-1].measurements
    for i in range(len(meas)):
        name = meas.observable[i]
        sigma = meas.sigma[i]
        noise = ([f"sd_{obs[name]}"] if math.isnan(sigma) else [repr(float(sigma))]) if given[name] else []
        rows.append(Measurement(observable_id=obs[name], experiment_id=experiments[experiment_key(i)], time=float(meas.time[i]),
                                measurement=float(meas.value[i]), noise_parameters=noise,
                                replicateId=m_subject[i], censoring=str(meas.censoring[i])))
    for t in sorted(targets):
        problem.add_mapping(t, t)
    for eid, e in ext["experiments"].items():
        desc = arm_rows.get(e["condition"], {}).get("description")
        if desc and e["subject"] is None:
            problem.add_mapping(eid, name=desc)
    ext["ids"] = {f"{k}:{new}": old for (k, old), new in ids.mapping.items()}
    problems = lint(problem)
    if problems:
        raise DataTableError("PEtab v2 export: petab's linter rejects the problem: " + "; ".join(problems))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, fname in FILES.items():
        getattr(problem, f"{kind}_tables")[-1].to_tsv(out / fname)
        files[kind] = str(out / fname)
    config = ProblemConfig(format_version="2.0.0", **{f"{k}_files": [f] for k, f in FILES.items()},
                           extensions={EXTENSION: {"version": EXTENSION_VERSION, "required": False, "config": ext}})
    config.to_yaml(out / YAML_FILE)
    files["problem"] = str(out / YAML_FILE)
    return {"files": files, "rows": len(meas), "censored_rows": int((meas.censoring != "none").sum()),
            "experiments": len(ext["experiments"]), "conditions": len(conditions_added),
            "dose_targets": sorted(ext["dose_targets"]), "subject_rows": len(subject_rows),
            **({"renamed_ids": {f"{k}:{old}": new for (k, old), new in ids.mapping.items()}} if ids.mapping else {})}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _float_of(expr, where: str) -> float:
    if not expr.is_number:
        raise DataTableError(f"{where}: {expr} is not a number")
    return float(expr)


def import_petab_v2(source: str | Path, out: str | Path) -> dict:
    """Our ``measurements.csv`` and ``conditions.csv`` in the folder ``out`` from a PEtab v2 problem (its YAML file,
    or a folder holding ``problem.yaml``); returns the files written and counts (module docstring)."""
    from .petab import write_table

    src = Path(source)
    yaml_file = src / YAML_FILE if src.is_dir() else src
    if not yaml_file.is_file():
        raise DataTableError(f"{src}: no PEtab v2 problem file ({YAML_FILE})")
    try:
        problem = read_problem(yaml_file)
    except Exception as err:  # the petab library's own message names what is wrong
        raise DataTableError(f"{yaml_file}: not a PEtab v2 problem petab can read: {err}") from err
    if len(problem.models) > 1:
        raise DataTableError(f"{yaml_file}: {len(problem.models)} models; this project's tables describe one")
    ext = (problem.config.extensions or {}).get(EXTENSION, {})
    ext = ext.get("config", {}) if isinstance(ext, dict) else ext.config
    back = {}
    for key, old in ext.get("ids", {}).items():
        kind, new = key.split(":", 1)
        back[(kind, new)] = old
    roles = ext.get("dose_targets", {})
    conditions = {c.id: c for c in problem.conditions}
    bolus_targets = {ch.target_id for c in problem.conditions for ch in c.changes
                     if _bolus(ch.target_value, ch.target_id) is not None}

    def role(target: str) -> tuple[str, str | None, str | None]:
        """(days column, doses column or None, drug name or None) of a dose target."""
        if target in roles:
            r = roles[target]
            drug = back.get(("target", target), target) if r["days"] == "drug_days" else None
            return r["days"], r["doses"], drug
        return f"{target}_days", f"{target}_doses", None

    schedules: dict[str, dict[str, list]] = {}  # arm -> {column: values}
    scalars: dict[str, dict[str, float]] = {}
    covariates: dict[str, dict[str, float]] = {}
    arm_of: dict[str, tuple[str, str | None]] = {}  # experiment -> (arm, subject)
    for exp in problem.experiments:
        info = ext.get("experiments", {}).get(exp.id, {"condition": exp.id, "subject": None})
        arm, subject = info["condition"], info["subject"]
        arm_of[exp.id] = (arm, subject)
        where = f"{yaml_file}: experiment {exp.id!r}"
        sched: dict[str, list] = {}
        setup: dict[str, float] = {}
        periods = exp.sorted_periods
        if exp.has_preequilibration:
            raise DataTableError(f"{where}: a pre-equilibration period has no counterpart in this project's tables")
        for n, period in enumerate(periods):
            for cid in period.condition_ids:
                if cid not in conditions:
                    raise DataTableError(f"{where}: condition {cid!r} is not in the condition table")
                is_covariates = cid in ext.get("covariate_conditions", {})
                for ch in conditions[cid].changes:
                    t, val, at = ch.target_id, ch.target_value, f"{where}, condition {cid!r}, target {ch.target_id!r}"
                    if is_covariates:
                        covariates.setdefault(ext["covariate_conditions"][cid], {})[t] = _float_of(val, at)
                    elif t in bolus_targets or t in roles:
                        amount = float(val) if val.is_number and n == 0 else _bolus(val, t)
                        if amount is None:
                            raise DataTableError(f"{at}: {val} at time {period.time} is neither a dose "
                                                 f"'{t} + d' nor a first-period value")
                        days, doses, drug = role(t)
                        sched.setdefault(days, []).append(period.time)
                        if doses:
                            sched.setdefault(doses, []).append(amount)
                        if drug:
                            sched["drug"] = drug
                    elif n == 0:
                        setup[t] = _float_of(val, at)
                    else:
                        raise DataTableError(f"{at}: sets {val} at time {period.time}, after the start: this "
                                             "project's conditions hold doses and settings, not mid-course changes")
        if arm in schedules and (schedules[arm], scalars[arm]) != (sched, setup):
            raise DataTableError(f"{where}: condition {arm!r} has two different schedules in this problem")
        schedules[arm], scalars[arm] = sched, setup
    # measurements
    rows = []
    for m in problem.measurements:
        where = f"{yaml_file}: measurement of {m.observable_id!r} in experiment {m.experiment_id!r} at {m.time}"
        if m.observable_parameters:
            raise DataTableError(f"{where}: observable parameters have no counterpart in this project's tables")
        if m.experiment_id not in arm_of:
            raise DataTableError(f"{where}: experiment {m.experiment_id!r} is not in the experiment table")
        arm, _ = arm_of[m.experiment_id]
        extra = m.model_extra or {}
        subject = arm if _blank(extra.get("replicateId")) else str(extra["replicateId"])
        sigma = ""
        if len(m.noise_parameters) == 1 and m.noise_parameters[0].is_number:
            sigma = repr(float(m.noise_parameters[0]))
        censoring = "" if _blank(extra.get("censoring")) or extra["censoring"] == "none" else str(extra["censoring"])
        rows.append([subject, arm,
                     back.get(("observable", m.observable_id), m.observable_id), repr(float(m.time)),
                     repr(float(m.measurement)), sigma, censoring])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "measurements.csv"
    write_table(mpath, [*MEASUREMENT_REQUIRED, "sigma", "censoring"], rows)
    read_measurements(mpath)
    # conditions: the exported header (ours) or the columns the problem implies (another tool's)
    header = ext.get("header") or ["condition", *sorted({c for s in schedules.values() for c in s}),
                                   *sorted({c for s in scalars.values() for c in s})]
    subject_rows = ext.get("subject_rows", {s: s for s in covariates})
    if "subject" not in header and covariates:
        header = [header[0], "subject", *header[1:]]
        header += sorted({c for cv in covariates.values() for c in cv} - set(header))
    table = []
    for arm in ext.get("arms", list(schedules)):
        values = {**{c: ";".join(repr(float(x)) if "dose" in c or c.endswith("_days") else str(x) for x in v)
                     if isinstance(v, list) else v for c, v in schedules.get(arm, {}).items()},
                  **{c: repr(v) for c, v in scalars.get(arm, {}).items()}, **ext.get("text", {}).get(arm, {})}
        table.append([arm if c == "condition" else values.get(c, "") for c in header])
    for subject, arm in subject_rows.items():
        cv = {c: repr(v) for c, v in covariates.get(subject, {}).items()}
        table.append([arm if c == "condition" else subject if c == "subject" else cv.get(c, "") for c in header])
    cpath = out / "conditions.csv"
    write_table(cpath, header, table)
    read_conditions(cpath)
    return {"files": {"measurements": str(mpath), "conditions": str(cpath)}, "rows": len(rows),
            "experiments": len(arm_of), "conditions": len(table) - len(subject_rows), "subject_rows": len(subject_rows),
            "extension": bool(ext)}


def _bolus(value, target: str) -> float | None:
    """d when ``value`` is the expression ``target + d`` (a dose: the target jumps by d), else None."""
    symbols = {str(s): s for s in value.free_symbols}
    if set(symbols) != {target}:
        return None
    rest = value - symbols[target]
    return float(rest) if rest.is_number else None


def _blank(value) -> bool:
    """An empty cell as pandas reads it (None, NaN or "")."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))
