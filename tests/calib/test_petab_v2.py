"""PEtab v2 problems in and out (calib/petab_v2.py), checked with the petab library itself (a test extra): every
shipped data set goes ours → v2 → ours with identical tables, the written problem is what petab reads (experiments,
periods, dose changes) and passes its linter, a problem built with petab's own API (no immunocal extension) imports
by the generic rule, and what our tables cannot represent is refused by name."""

import json
from pathlib import Path

import pytest
from petab import v2
from petab.v2.core import Measurement

from immunocal.calib.cli.main import main
from immunocal.calib.data import DataTableError, read_conditions, read_measurements
from immunocal.calib.petab_v2 import export_petab_v2, import_petab_v2, is_petab_v2, lint, read_problem

DATASETS = Path(__file__).resolve().parents[2] / "calib" / "datasets"


@pytest.mark.parametrize("name", ["morisada2018", "ct041_virtual", "dewan2009", "conte2025"])
def test_round_trip_keeps_every_row_value_schedule_and_covariate(tmp_path, name):
    meas, cond = DATASETS / name / "measurements.csv", DATASETS / name / "conditions.csv"
    if name in ("ct041_virtual", "dewan2009"):  # 'dose_2.5e8', 'tsa_fig2_0Gy+PBS' are not PEtab ids
        with pytest.raises(DataTableError, match="is not a PEtab id"):
            export_petab_v2(meas, cond, tmp_path / "refused")
    rep = export_petab_v2(meas, cond, tmp_path / "petab", rename_ids=True)
    m0, c0 = read_measurements(meas), read_conditions(cond)
    assert rep["rows"] == len(m0) and rep["censored_rows"] == int((m0.censoring != "none").sum())
    # petab reads what was written, and its linter finds nothing beyond the model / parameter files a data export
    # does not carry
    problem = read_problem(tmp_path / "petab" / "problem.yaml")
    assert lint(problem) == []
    full = {r.message for r in problem.validate() if r.level >= 30}
    assert full <= {"Model is missing.", "Missing files: parameters"}
    assert len(problem.measurements) == len(m0) and len(problem.experiments) == rep["experiments"]
    back = import_petab_v2(tmp_path / "petab", tmp_path / "ours")
    m1, c1 = read_measurements(back["files"]["measurements"]), read_conditions(back["files"]["conditions"])
    assert m1.digest() == m0.digest()
    assert (c1.schedules, c1.covariates) == (c0.schedules, c0.covariates)
    assert c1.digest() == c0.digest()


def test_schedules_become_periods_with_dose_changes(tmp_path):
    """Morisada MOC1 anti-PD-1 + 8 Gy x 2: one period per dosing day, each applying a bolus of the right amount."""
    d = DATASETS / "morisada2018"
    export_petab_v2(d / "measurements.csv", d / "conditions.csv", tmp_path)
    problem = read_problem(tmp_path / "problem.yaml")
    sched = read_conditions(d / "conditions.csv").schedules["MOC1_antiPD1_8Gyx2"]
    exp = next(e for e in problem.experiments if e.id == "MOC1_antiPD1_8Gyx2")
    changes = {c.id: c.changes for c in problem.conditions}
    got: dict[str, list] = {}
    for period in exp.sorted_periods:
        for cid in period.condition_ids:
            for ch in changes[cid]:
                got.setdefault(ch.target_id, []).append((period.time, str(ch.target_value)))
    assert got["rt_doses_gy"] == [(t, f"rt_doses_gy + {d!r}") for t, d in zip(sched["rt_days"], sched["rt_doses_gy"])]
    assert got[sched["drug"]] == [(t, f"{sched['drug']} + {d!r}")
                                  for t, d in zip(sched["drug_days"], sched["drug_doses"])]
    assert exp.sorted_periods[0].time == 0.0


def test_a_problem_built_with_petab_imports_by_the_generic_rule(tmp_path):
    p = v2.Problem()
    p.add_condition("setup_hi", k_in=2.5)
    p.add_condition("dose_a", drug_a="drug_a + 3")
    p.add_condition("dose_a0", drug_a=3)
    p.add_experiment("arm_hi", 0, ["setup_hi", "dose_a0"], 2, "dose_a", 4, "dose_a")
    p.add_experiment("arm_lo", -1, [], 1, "dose_a")
    p.add_observable("y", "y_out", "sigma_y", noise_placeholders=["sigma_y"])
    table = p.measurement_tables[-1].measurements
    table.append(Measurement(observable_id="y", experiment_id="arm_hi", time=1.0, measurement=2.0,
                             noise_parameters=["0.5"], replicateId="mouse_1"))
    table.append(Measurement(observable_id="y", experiment_id="arm_lo", time=3.0, measurement=4.0,
                             noise_parameters=["sd_y"]))
    for kind in ("condition", "experiment", "observable", "measurement"):
        getattr(p, f"{kind}_tables")[-1].to_tsv(tmp_path / f"{kind}s.tsv")
    v2.ProblemConfig(**{f"{k}_files": [f"{k}s.tsv"] for k in ("condition", "experiment", "observable",
                                                             "measurement")}).to_yaml(tmp_path / "p.yaml")
    assert is_petab_v2(tmp_path / "p.yaml") and not is_petab_v2(tmp_path)  # the folder holds no problem.yaml
    rep = import_petab_v2(tmp_path / "p.yaml", tmp_path / "ours")
    assert (rep["rows"], rep["experiments"], rep["extension"]) == (2, 2, False)
    c = read_conditions(rep["files"]["conditions"])
    assert c.schedules["arm_hi"] == {"drug_a_days": [0.0, 2.0, 4.0], "drug_a_doses": [3.0, 3.0, 3.0], "k_in": 2.5}
    assert c.schedules["arm_lo"] == {"drug_a_days": [1.0], "drug_a_doses": [3.0]}
    m = read_measurements(rep["files"]["measurements"])
    assert m.subject.tolist() == ["mouse_1", "arm_lo"] and m.condition.tolist() == ["arm_hi", "arm_lo"]
    assert m.sigma[0] == 0.5 and m.sigma[1] != m.sigma[1]  # a noise parameter id: estimated (NaN)


def _write(tmp_path, problem: v2.Problem) -> Path:
    for kind in ("condition", "experiment", "observable", "measurement"):
        getattr(problem, f"{kind}_tables")[-1].to_tsv(tmp_path / f"{kind}s.tsv")
    v2.ProblemConfig(**{f"{k}_files": [f"{k}s.tsv"] for k in ("condition", "experiment", "observable",
                                                             "measurement")}).to_yaml(tmp_path / "problem.yaml")
    return tmp_path


@pytest.mark.parametrize("case", ["mid_course_setting", "preequilibration", "observable_parameters"])
def test_what_our_tables_cannot_represent_is_refused_by_name(tmp_path, case):
    p = v2.Problem()
    p.add_condition("c0", k_in=1.0)
    p.add_condition("c1", k_in=2.0)
    p.add_observable("y", "y_out" if case != "observable_parameters" else "scale_y * y_out", 1.0,
                     observable_placeholders=["scale_y"] if case == "observable_parameters" else None)
    if case == "preequilibration":
        p.add_experiment("e1", float("-inf"), "c0", 0, "c1")
    elif case == "mid_course_setting":
        p.add_experiment("e1", 0, "c0", 5, "c1")
    else:
        p.add_experiment("e1", 0, "c0")
    p.add_measurement("y", experiment_id="e1", time=6.0, measurement=1.0,
                      observable_parameters=[2.0] if case == "observable_parameters" else None)
    folder = _write(tmp_path, p)
    expect = {"mid_course_setting": r"experiment 'e1', condition 'c1', target 'k_in'.*after the start",
              "preequilibration": "pre-equilibration", "observable_parameters": "observable parameters"}[case]
    with pytest.raises(DataTableError, match=expect):
        import_petab_v2(folder, tmp_path / "ours")


def test_export_refuses_one_target_twice_in_a_period_and_needs_petab(tmp_path, monkeypatch):
    meas = tmp_path / "m.csv"
    meas.write_text("subject,condition,observable,time,value\nm1,twice,volume,0,10\n")
    cond = tmp_path / "c.csv"
    cond.write_text("condition,rt_days,rt_doses_gy\ntwice,3;3,2;2\n")
    with pytest.raises(DataTableError, match=r"condition 'twice' gives 'rt_doses_gy' twice on day 3\.0"):
        export_petab_v2(meas, cond, tmp_path / "p")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "petab" else real(name, *a))
    with pytest.raises(DataTableError, match=r"pip install 'immunocal\[petab\]'"):
        export_petab_v2(meas, None, tmp_path / "q")


def test_a_v1_problem_file_is_refused_and_a_v1_folder_goes_the_v1_way(tmp_path):
    (tmp_path / "problem.yaml").write_text("format_version: 1\nproblems: []\n")
    assert not is_petab_v2(tmp_path)
    with pytest.raises(DataTableError, match="format_version 1: only PEtab v2 problem files"):
        is_petab_v2(tmp_path / "problem.yaml")


def test_cli_export_v2_then_import_detects_the_version(tmp_path, capsys):
    d = DATASETS / "conte2025"
    assert main(["data", "export-petab", str(d / "measurements.csv"), "--conditions", str(d / "conditions.csv"),
                 "--out", str(tmp_path / "p"), "--petab-version", "2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["files"]["problem"].endswith("problem.yaml") and rep["dose_targets"] == ["cart_days"]
    assert main(["data", "import-petab", str(tmp_path / "p"), "--out", str(tmp_path / "o")]) == 0
    back = json.loads(capsys.readouterr().out)
    assert back["extension"] is True and back["rows"] == len(read_measurements(d / "measurements.csv"))
    assert read_conditions(back["files"]["conditions"]).digest() == read_conditions(d / "conditions.csv").digest()
