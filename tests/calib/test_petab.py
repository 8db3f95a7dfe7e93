"""PEtab v1 tables in and out (calib/petab.py): round trips keep every row and value (content hashes equal),
PEtab-only constructs are refused by name, and what PEtab tools cannot see is reported. (The exported Morisada
tables also pass petab 0.8.2's own ``check_measurement_df`` / ``check_condition_df``; petab is not a dependency.)"""

import json
from pathlib import Path

import pytest

from immunocal.calib.cli.main import main
from immunocal.calib.data import DataTableError, read_conditions, read_measurements
from immunocal.calib.petab import export_petab, import_petab

DATASETS = Path(__file__).resolve().parents[2] / "calib" / "datasets"


@pytest.mark.parametrize("name", ["morisada2018", "ct041_virtual", "dewan2009", "conte2025"])
def test_round_trip_keeps_every_row_and_value(tmp_path, name):
    meas, cond = DATASETS / name / "measurements.csv", DATASETS / name / "conditions.csv"
    if name in ("ct041_virtual", "dewan2009"):  # ids such as 'dose_2.5e8', 'tsa_fig2_0Gy+PBS' are not PEtab ids
        with pytest.raises(DataTableError, match="is not a PEtab id"):
            export_petab(meas, cond, tmp_path / "refused")
    rep = export_petab(meas, cond, tmp_path / "petab", rename_ids=True)
    assert bool(rep.get("renamed_ids")) == (name in ("ct041_virtual", "dewan2009"))
    m0 = read_measurements(meas)
    assert rep["rows"] == len(m0) and rep["censored_rows"] == int((m0.censoring != "none").sum())
    back = import_petab(tmp_path / "petab", tmp_path / "ours")
    m1 = read_measurements(back["files"]["measurements"])
    assert m1.digest() == m0.digest()
    c0, c1 = read_conditions(cond), read_conditions(back["files"]["conditions"])
    assert (c1.schedules, c1.covariates) == (c0.schedules, c0.covariates)


def test_import_maps_noise_ids_and_missing_replicates_and_refuses_what_has_no_counterpart(tmp_path):
    src = tmp_path / "m.tsv"
    src.write_text("observableId\tsimulationConditionId\ttime\tmeasurement\tnoiseParameters\n"
                   "obs_a\tc1\t0\t1.5\tsd_obs_a\n"
                   "obs_a\tc1\t1\t2.5\t0.2\n")
    rep = import_petab(src, tmp_path / "out")
    assert (rep["rows"], rep["noise_parameter_ids"], rep["rows_without_replicate"]) == (2, 1, 2)
    m = read_measurements(rep["files"]["measurements"])
    assert m.subject.tolist() == ["c1", "c1"] and m.sigma[1] == 0.2 and m.sigma[0] != m.sigma[0]  # NaN: estimated
    for column, value in (("preequilibrationConditionId", "steady"), ("observableParameters", "scale_a")):
        bad = tmp_path / f"{column}.tsv"
        bad.write_text(f"observableId\tsimulationConditionId\ttime\tmeasurement\t{column}\nobs_a\tc1\t0\t1.5\t{value}\n")
        with pytest.raises(DataTableError, match=f"line 2, column '{column}'"):
            import_petab(bad, tmp_path / "x")
    odd = tmp_path / "odd.tsv"
    odd.write_text("observableId\tsimulationConditionId\ttime\tmeasurement\tweird\nobs_a\tc1\t0\t1.5\t1\n")
    with pytest.raises(DataTableError, match="column 'weird'"):
        import_petab(odd, tmp_path / "y")


def test_export_never_renames_an_id(tmp_path):
    meas = tmp_path / "m.csv"
    meas.write_text("subject,condition,observable,time,value\nm1,antiPD1/8Gy,volume,0,10\n")
    with pytest.raises(DataTableError, match=r"condition 'antiPD1/8Gy' is not a PEtab id.*--rename-ids"):
        export_petab(meas, None, tmp_path / "p")
    rep = export_petab(meas, None, tmp_path / "p", rename_ids=True)
    assert rep["renamed_ids"] == {"condition:antiPD1/8Gy": "antiPD1_8Gy"}
    assert read_measurements(import_petab(tmp_path / "p", tmp_path / "o")["files"]["measurements"]).condition[0] \
        == "antiPD1/8Gy"


def test_cli_export_then_import(tmp_path, capsys):
    d = DATASETS / "dewan2009"
    assert main(["data", "export-petab", str(d / "measurements.csv"), "--conditions", str(d / "conditions.csv"),
                 "--out", str(tmp_path / "p"), "--rename-ids"]) == 0
    assert json.loads(capsys.readouterr().out)["files"]["conditions"].endswith("experimentalCondition.tsv")
    assert main(["data", "import-petab", str(tmp_path / "p"), "--out", str(tmp_path / "o")]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == len(read_measurements(d / "measurements.csv"))
    assert main(["data", "import-petab", str(tmp_path / "p"), "--out", str(tmp_path / "o")]) == 2  # not empty
    assert "not empty; pass --force" in capsys.readouterr().err
