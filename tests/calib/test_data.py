import math
from pathlib import Path

import numpy as np
import pytest

from immunocal.calib.data import DataTableError, read_conditions, read_measurements, wide_to_long

EXAMPLE = Path(__file__).resolve().parents[2] / "calib" / "data" / "toy_logistic"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_example_reads():
    m = read_measurements(EXAMPLE / "measurements.csv")
    assert m.subjects == [f"m{i}" for i in range(1, 7)]
    assert set(m.censoring) == {"none", "right"}
    assert np.all(np.isnan(m.sigma))
    c = read_conditions(EXAMPLE / "conditions.csv")
    assert c.covariate_matrix(["m1", "m6"], ["weight_g"]).tolist() == [[17.63], [17.35]]
    assert len(m.digest()) == 16


def test_tsv_with_sigma_and_censoring(tmp_path):
    p = _write(tmp_path, "m.tsv", "subject\tcondition\tobservable\ttime\tvalue\tsigma\tcensoring\n"
               "a\tRT\tlog_volume\t0\t3.5\t0.1\t\n# comment\n\na\tRT\tlog_volume\t7\t1.0\t0.2\tleft\n")
    m = read_measurements(p)
    assert m.censoring.tolist() == ["none", "left"]
    assert m.sigma.tolist() == [0.1, 0.2]


@pytest.mark.parametrize("body, match", [
    ("a,c,v,0,abc\n", r"m.csv, line 2, column 'value': 'abc' is not a number"),
    ("a,c,v,0,1\na,c,v,x,1\n", r"line 3, column 'time'"),
    ("a,c,v,0,1,,maybe\n", r"line 2, column 'censoring': 'maybe' is not a censoring flag"),
    ("a,c,v,0,1,-1,\n", r"line 2, column 'sigma': sigma must be > 0"),
    ("a,c,v,0,1\na,c,v,0,2\n", r"line 3: duplicate measurement .* \(first on line 2\)"),
    ("a,c,v,0\n", r"line 2: 4 fields, the header has"),
    (",c,v,0,1\n", r"line 2, column 'subject': empty value"),
    ("a,c,v,0,nan\n", r"line 2, column 'value': value 'nan' is not finite"),
])
def test_measurement_errors_name_file_line_column(tmp_path, body, match):
    header = "subject,condition,observable,time,value" + (",sigma,censoring" if body.splitlines()[0].count(",") >= 6 else "") + "\n"
    p = _write(tmp_path, "m.csv", header + body)
    with pytest.raises(DataTableError, match=match):
        read_measurements(p)


def test_measurement_header_errors(tmp_path):
    with pytest.raises(DataTableError, match=r"line 1: missing required column\(s\) \['value'\]"):
        read_measurements(_write(tmp_path, "a.csv", "subject,condition,observable,time\na,b,c,1\n"))
    with pytest.raises(DataTableError, match=r"line 1, column 'weight': unknown column"):
        read_measurements(_write(tmp_path, "b.csv", "subject,condition,observable,time,value,weight\na,b,c,1,1,2\n"))
    with pytest.raises(DataTableError, match=r"line 1: empty file"):
        read_measurements(_write(tmp_path, "c.csv", ""))
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_measurements(tmp_path / "none.csv")


def test_conditions_schedules_and_errors(tmp_path):
    p = _write(tmp_path, "c.csv", "condition,subject,rt_days,rt_doses_gy,drug,drug_days,cart_days,cart_doses,age\n"
               "RT3x8,,0;1;2,8;8;8,anti-CTLA-4,2;5;8,,,\nRT3x8,m1,,,,,,,12\nCART,,,,,,0;14,2.5;2.5,\n")
    c = read_conditions(p)
    assert c.schedules["RT3x8"]["rt_doses_gy"] == [8.0, 8.0, 8.0]
    assert c.schedules["RT3x8"]["drug"] == "anti-CTLA-4"
    assert c.schedules["CART"]["cart_days"] == [0.0, 14.0]
    assert c.covariates == {"m1": {"age": 12.0}}
    with pytest.raises(DataTableError, match=r"no covariate 'weight' for subject 'm1'"):
        c.covariate_matrix(["m1"], ["weight"])
    bad = _write(tmp_path, "d.csv", "condition,rt_days,rt_doses_gy\nA,0;1,8\n")
    with pytest.raises(DataTableError, match=r"d.csv, line 2, column 'rt_doses_gy': 1 doses for 2 days"):
        read_conditions(bad)
    bad = _write(tmp_path, "e.csv", "condition,rt_days\nA,2;1\n")
    with pytest.raises(DataTableError, match=r"line 2, column 'rt_days': days must be non-decreasing"):
        read_conditions(bad)
    bad = _write(tmp_path, "f.csv", "condition,cart_days,cart_doses\nA,1,-2\n")
    with pytest.raises(DataTableError, match=r"line 2, column 'cart_doses': doses must be >= 0"):
        read_conditions(bad)
    with pytest.raises(DataTableError, match=r"line 1: missing required column 'condition'"):
        read_conditions(_write(tmp_path, "g.csv", "x\n1\n"))


def test_wide_to_long(tmp_path):
    p = _write(tmp_path, "wide.csv", "day,M1,M2,M3\n0,30,32,\n3,60,0.5,40\n7,120,,80\n")
    m = wide_to_long(p, condition="RT", observable="volume_mm3", log=True, detection_limit=1.0,
                     out=tmp_path / "long.csv")
    assert len(m) == 7
    assert m.observable[0] == "log_volume_mm3"
    left = np.flatnonzero(m.censoring == "left")
    assert m.subject[left].tolist() == ["RT/M2"] and math.isclose(m.value[left][0], 0.0)
    assert math.isclose(m.value[0], math.log(30))
    back = read_measurements(tmp_path / "long.csv")
    np.testing.assert_allclose(back.value, m.value)
    assert back.censoring.tolist() == m.censoring.tolist()
    with pytest.raises(DataTableError, match=r"line 3, column 'M2': cannot take log of 0"):
        wide_to_long(_write(tmp_path, "w2.csv", "day,M1,M2\n0,1,1\n3,1,0\n"), condition="c", log=True)
    with pytest.raises(DataTableError, match=r"no time column 'day'"):
        wide_to_long(_write(tmp_path, "w3.csv", "t,M1\n0,1\n"), condition="c")


def test_wide_to_long_qualifies_ids_skips_summaries_and_censors_the_endpoint(tmp_path):
    """Per-group numbering, a mean/SD column and a humane endpoint, as spreadsheets of mouse studies have them."""
    p = _write(tmp_path, "w.csv", "day,1,2,Mean,SD\n0,30,32,31,1\n5,900,1600,1250,350\n8,1300,,1300,0\n")
    m = wide_to_long(p, condition="antiPD1", endpoint=1500.0)
    assert sorted(set(m.subject)) == ["antiPD1/1", "antiPD1/2"]  # summary columns skipped, ids qualified
    right = np.flatnonzero(m.censoring == "right")
    assert m.subject[right].tolist() == ["antiPD1/2"] and m.value[right].tolist() == [1500.0]
    assert wide_to_long(p, condition="x", subject_prefix="", endpoint=1500.0).subject[0] == "1"
    bad = _write(tmp_path, "b.csv", "day,1\n0,30\n5,1600\n8,1700\n")
    with pytest.raises(DataTableError, match=r"line 4, column '1': a value after the humane endpoint"):
        wide_to_long(bad, condition="c", endpoint=1500.0)


@pytest.mark.parametrize("name", ["dewan2009", "morisada2018"])
def test_bundled_datasets_validate(name):
    folder = Path(__file__).resolve().parents[2] / "calib" / "datasets" / name
    if not folder.exists():
        pytest.skip(f"dataset {name} not bundled")
    m = read_measurements(folder / "measurements.csv")
    c = read_conditions(folder / "conditions.csv")
    assert len(m) > 0 and set(m.condition) <= set(c.schedules)
