"""Schedule parsing and validation: every bad schedule fails with a clear message."""

import json

import pytest

from immunocal.forward.rit import Schedule
from immunocal.forward.rit.schedule import parse_rt


def test_parse_rt_and_days():
    assert parse_rt("8x3@0,1,2") == ((0.0, 1.0, 2.0), (8.0, 8.0, 8.0))
    assert parse_rt("20@0") == ((0.0,), (20.0,))
    assert parse_rt("8x2@0,1+6@4") == ((0.0, 1.0, 4.0), (8.0, 8.0, 6.0))
    s = Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", pdl1="0,3", t_end=30)
    assert (
        s.ctla4_days == (2.0, 5.0, 8.0) and s.pdl1_days == (0.0, 3.0) and s.ctla4_factors == (1.0, 1.0, 1.0)
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rt_days=[0, 1], rt_doses_gy=[8, -2]), "negative"),
        (dict(rt_days=[1, 0], rt_doses_gy=[8, 8]), "sorted"),
        (dict(rt_days=[1, 1], rt_doses_gy=[8, 8]), "duplicate"),
        (dict(rt_days=[0, float("nan")], rt_doses_gy=[8, 8]), "not finite"),
        (dict(rt_days=[0], rt_doses_gy=[float("nan")]), "not finite"),
        (dict(rt_days=[0, 70], rt_doses_gy=[8, 8]), "outside the simulated horizon"),
        (dict(ctla4_days=[-1.0]), "outside the simulated horizon"),
        (dict(ctla4_days=[5, 2]), "sorted"),
        (dict(pdl1_days=[3, 3]), "duplicate"),
        (dict(rt_days=[0, 1], rt_doses_gy=[8]), "one dose per time"),
        (dict(rt_days=[0], rt_doses_gy=[150]), "exceeds the admissible maximum"),
        (dict(ctla4_days=[1, 2], ctla4_factors=[1.0]), "1 values for 2 injection days"),
        (dict(ctla4_days=[1], ctla4_factors=[-1.0]), "negative"),
        (dict(t_end=0.0), "horizon t_end must be a positive"),
        (dict(rt_days="abc", rt_doses_gy=[1]), "must be a list of numbers"),
    ],
)
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule(**kwargs)


@pytest.mark.parametrize(
    "text,match",
    [
        ("8x3@0,1", "announces 3 fractions but lists 2"),
        ("8y3@0", "cannot parse"),
        ("8x3@0,a,2", "cannot read days"),
        ("8x2@1,1", "duplicate"),
        ("8x3@0,2,1", "sorted"),
        ("6@4+8x2@0,1", "sorted"),
    ],
)
def test_bad_rt_strings(text, match):
    with pytest.raises(ValueError, match=match):
        Schedule.from_strings(rt=text)


def test_off_grid_times_rejected():
    s = Schedule(ctla4_days=[0.03])
    with pytest.raises(ValueError, match="not multiples of the time step"):
        s.grid_indices(s.ctla4_days, 0.05, "anti-CTLA-4")


def test_schedule_file_roundtrip_and_errors(tmp_path):
    s = Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=30)
    p = tmp_path / "s.json"
    p.write_text(json.dumps(s.to_dict()))
    assert Schedule.from_file(p) == s
    p.write_text(json.dumps({"rt_days": [0], "rt_dose": [8]}))
    with pytest.raises(ValueError, match="unknown schedule keys"):
        Schedule.from_file(p)
    p.write_text('{"rt_days": [0, 1], ')
    with pytest.raises(ValueError, match="malformed schedule file"):
        Schedule.from_file(p)
    t = tmp_path / "s.toml"
    t.write_text("rt_days = [0, 1]\nrt_doses_gy = [8, -8]\n")
    with pytest.raises(ValueError, match="s.toml: radiation dose .* negative"):
        Schedule.from_file(t)
    with pytest.raises(FileNotFoundError, match="no such schedule file"):
        Schedule.from_file(tmp_path / "missing.json")


def test_schedule_from_condition_several_drugs_and_named_errors():
    """A condition can carry two drugs (anti-PD-1 + anti-CTLA-4); the mapping lives with the model's schedule."""
    from immunocal.forward.rit.schedule import Schedule

    s = Schedule.from_condition({"condition": "combo", "rt_days": [10.0, 11.0], "rt_doses_gy": [8.0, 8.0],
                                 "anti_pd1_days": [10.0, 13.0], "anti_ctla4_days": [12.0]}, day_offset=7.0, t_end=30)
    assert s.rt_days == (3.0, 4.0) and s.pdl1_days == (3.0, 6.0) and s.ctla4_days == (5.0,)
    s = Schedule.from_condition({"drug": "anti_ctla4", "drug_days": [9.0], "anti_pd1_days": [8.0]}, 7.0, 20)
    assert s.ctla4_days == (2.0,) and s.pdl1_days == (1.0,)
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['anti_pd1_dayz'\]"):
        Schedule.from_condition({"anti_pd1_dayz": [8.0]}, 7.0, 20)
    with pytest.raises(ValueError, match="drug_days given without a drug"):
        Schedule.from_condition({"drug_days": [8.0]}, 7.0, 20)
    with pytest.raises(ValueError, match="before model day 0"):
        Schedule.from_condition({"anti_ctla4_days": [6.0]}, 7.0, 20)


def test_conditions_table_reads_per_drug_day_columns(tmp_path):
    from immunocal.calib.data import read_conditions
    from immunocal.forward.rit.schedule import Schedule

    p = tmp_path / "c.csv"
    p.write_text("condition,rt_days,rt_doses_gy,anti_pd1_days,anti_ctla4_days\ncombo,10;11,8;8,10;13,12\n")
    s = Schedule.from_condition({**read_conditions(p).schedules["combo"], "condition": "combo"}, 7.0, 30)
    assert s.pdl1_days == (3.0, 6.0) and s.ctla4_days == (5.0,)
