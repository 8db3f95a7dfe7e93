"""Bundled data sets: regenerated from the raw files, row counts per arm, units and censoring flags."""

import csv
from collections import Counter

import pytest

from immunocal.calib.datasets import dataset_dir
from immunocal.calib.datasets.convert import convert


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory, shared_dir):
    out = tmp_path_factory.mktemp("datasets")
    convert(shared_dir, out)
    return out


@pytest.mark.parametrize("name", ["morisada2018", "dewan2009", "conte2025"])
def test_bundled_tables_are_reproducible(regenerated, name):
    for table in ("measurements.csv", "conditions.csv"):
        assert (regenerated / name / table).read_text() == (dataset_dir(name) / table).read_text()


def test_morisada_rows_units_and_censoring(shared_dir):
    raw = _rows(shared_dir / "data/morisada2018/tumour_volume_per_mouse.csv")
    rows = _rows(dataset_dir("morisada2018") / "measurements.csv")
    # every raw row except the day-0 padding appears once; right-censored rows are the only additions
    raw_kept = [r for r in raw if float(r["day"]) > 0]
    observed_or_left = [r for r in rows if r["censoring"] != "right"]
    assert len(observed_or_left) == len(raw_kept) == len(raw) - 120  # one day-0 padding row per mouse
    per_arm_raw = Counter(f"{r['cell_line']}_{r['treatment']}" for r in raw_kept)
    per_arm = Counter(r["condition"] for r in observed_or_left)
    assert per_arm == per_arm_raw and len(per_arm) == 12
    assert {r["subject"] for r in rows} == {r["mouse_id"] for r in raw}
    # units: cm^3 -> mm^3
    first = next(r for r in raw if r["mouse_id"] == "MOC1_Control_1" and float(r["day"]) == 10.0)
    mine = next(r for r in rows if r["subject"] == "MOC1_Control_1" and r["time"] == "10")
    assert float(mine["value"]) == pytest.approx(1000 * float(first["tumour_volume"]))
    # regressions to 0 are below-detection rows at the limit; 9/10 MOC1 anti-PD-1 + 8 Gy x 2 mice regress
    zero_raw = [r for r in raw_kept if float(r["tumour_volume"]) == 0.0]
    left = [r for r in rows if r["censoring"] == "left"]
    assert len(left) == len(zero_raw) > 0 and all(float(r["value"]) == 10.0 for r in left)
    arm = [r for r in rows if r["condition"] == "MOC1_antiPD1_8Gyx2"]
    last = {}
    for r in sorted(arm, key=lambda r: float(r["time"])):
        last[r["subject"]] = r["censoring"]
    assert sum(c == "left" for c in last.values()) == 9  # durable complete regressions (one mouse relapsed)
    # right-censoring: one row per mouse at most, after its last observation
    right = [r for r in rows if r["censoring"] == "right"]
    assert len({r["subject"] for r in right}) == len(right) > 0
    for r in right:
        last = max(float(x["time"]) for x in observed_or_left if x["subject"] == r["subject"])
        assert float(r["time"]) > last


def test_morisada_conditions():
    cond = {r["condition"]: r for r in _rows(dataset_dir("morisada2018") / "conditions.csv")}
    assert len(cond) == 12
    assert cond["MOC1_8Gyx2"]["rt_days"] == "10;11" and cond["MOC1_8Gyx2"]["rt_doses_gy"] == "8;8"
    assert cond["MC38_2Gyx10"]["rt_days"].count(";") == 9
    assert cond["MOC1_antiPD1"]["drug"] == "anti_pd1" and cond["MOC1_Control"]["drug"] == ""


def test_dewan_rows_and_days(shared_dir):
    rows = _rows(dataset_dir("dewan2009") / "measurements.csv")
    per_cond = Counter((r["condition"], r["observable"]) for r in rows)
    assert per_cond[("tsa_fig2_8Gyx3+9H10", "tumour_volume_mm3")] == 5
    fig2 = {c for c, o in per_cond if c.startswith("tsa_fig2_")}
    assert len(fig2) == 8  # the eight arms the seed fits
    assert {r["time"] for r in rows} == {"12", "17", "22", "27", "32"}
    raw = _rows(shared_dir / "data/dewan2009/2/A_Left.csv")
    untreated = next(r for r in rows if r["condition"] == "tsa_fig2_0Gy+PBS" and r["time"] == "32"
                     and r["observable"] == "tumour_volume_mm3")
    assert float(untreated["value"]) == pytest.approx(float(raw[-1]["0Gy+PBSY"]), rel=1e-5)
    # means below the detection limit (5 mm^3) are left-censored there; every other row is the digitised value
    left = [(r["condition"], r["time"]) for r in rows if r["censoring"] == "left"]
    assert ("tsa_fig2_8Gyx3+9H10", "32") in left and float(raw[-1]["8Gyx3+9H10Y"]) < 5.0
    assert all(float(r["value"]) == 5.0 for r in rows if r["censoring"] == "left")
    assert all(float(r["value"]) >= 5.0 and r["censoring"] == "" for r in rows if r["censoring"] != "left")
    cond = {r["condition"]: r for r in _rows(dataset_dir("dewan2009") / "conditions.csv")}
    assert cond["tsa_fig3b_IR+9H10(16-18-21)"]["rt_days"] == "12;13;14"
    assert cond["tsa_fig3b_IR+9H10(16-18-21)"]["drug_days"] == "16;18;21"
    assert cond["tsa_fig3a_IR+PBS"]["rt_doses_gy"] == "20"


def test_virtual_ct041_tables_are_the_generators(tmp_path):
    """The bundled virtual tables are write_tables of the seed-1, N = 37 cohort (as PROVENANCE.md says)."""
    import numpy as np

    from immunocal.calib.cohort import generate_cohort, write_tables

    write_tables(generate_cohort(37, np.random.default_rng(1)), tmp_path)
    for table in ("measurements.csv", "conditions.csv"):
        assert (tmp_path / table).read_text() == (dataset_dir("ct041_virtual") / table).read_text()


@pytest.mark.slow
def test_virtual_spatial_ct041_tables_are_the_generators(tmp_path):
    """The bundled spatial virtual tables are write_tables of the seed-1, N = 37 spatial cohort (~40 s)."""
    import numpy as np

    from immunocal.calib.cohort import CohortConfig, generate_cohort, write_tables

    write_tables(generate_cohort(37, np.random.default_rng(1), cfg=CohortConfig.spatial(), processes=2), tmp_path)
    for table in ("measurements.csv", "conditions.csv"):
        assert (tmp_path / table).read_text() == (dataset_dir("ct041_virtual_spatial") / table).read_text()


def test_conte_wells_times_and_values_match_the_raw_files(shared_dir):
    raw = shared_dir / "data" / "conte2025_cart_invitro"
    rows = _rows(dataset_dir("conte2025") / "measurements.csv")
    per_well = Counter(r["subject"] for r in rows)
    assert len(per_well) == 12 and {r["condition"] for r in rows} == {
        "PBT030_tumour_only", "PBT030_ET_1to10", "PBT030_ET_1to25", "PBT030_ET_1to50"}
    for subject, file, times in (("PBT030_tumour_only/well2", "PBT030_Y2.txt", "Tpoint_Tonly.txt"),
                                 ("PBT030_ET_1to25/well1", "PBT030_carT25_Y1.txt", "Time_carT25.txt"),
                                 ("PBT030_ET_1to50/well3", "PBT030_carT50_Y3.txt", "Time_carT50.txt")):
        values = (raw / file).read_text().split()
        hours = (raw / times).read_text().split()
        mine = [r for r in rows if r["subject"] == subject]
        assert per_well[subject] == len(values) == len(hours)
        for k in (0, 100, len(values) - 1):  # first, middle and last value of the raw column
            assert float(mine[k]["value"]) == float(values[k])
            assert float(mine[k]["time"]) * 24 == pytest.approx(float(hours[k]), rel=1e-12)
    last = [r for r in rows if r["subject"] == "PBT030_ET_1to10/well3"][-1]
    assert (raw / "PBT030_carT10_Y3.txt").read_text().split()[-1] == "0.1111." and last["value"] == "0.1111"
    cond = {r["condition"]: r for r in _rows(dataset_dir("conte2025") / "conditions.csv")}
    assert float(cond["PBT030_ET_1to25"]["effector_target_ratio"]) == 0.04
    assert float(cond["PBT030_ET_1to10"]["cart_days"]) * 24 == pytest.approx(2.5013)


def test_dewan_folder4_repeat_and_secondary_tumours(shared_dir):
    """Folder 4 (two header rows: arm labels, then X,Y) and the secondary (abscopal) tumours read back exactly."""
    rows = _rows(dataset_dir("dewan2009") / "measurements.csv")

    def value(cond, obs, day):
        return float(next(r["value"] for r in rows if r["condition"] == cond and r["observable"] == obs
                          and r["time"] == day))

    raw4 = list(csv.reader(open(shared_dir / "data/dewan2009/4/A_Right.csv", newline="")))
    assert raw4[0][0] == "0Gy+PBS" and raw4[1][:2] == ["X", "Y"]
    assert value("tsa_fig4_0Gy+PBS", "secondary_tumour_volume_mm3", "32") == pytest.approx(float(raw4[-1][1]),
                                                                                           rel=1e-5)
    assert value("tsa_fig4_8Gyx3+9H10", "secondary_tumour_volume_mm3", "22") == pytest.approx(42.4779, rel=1e-5)
    raw4l = list(csv.reader(open(shared_dir / "data/dewan2009/4/A_Left.csv", newline="")))
    # the 8 Gy x 3 + 9H10 primary on day 32 (2.25 mm^3) is below the 5 mm^3 detection limit: censored there
    assert float(raw4l[-1][3]) < 5.0
    last = next(r for r in rows if r["condition"] == "tsa_fig4_8Gyx3+9H10" and r["time"] == "32"
                and r["observable"] == "tumour_volume_mm3")
    assert last["censoring"] == "left" and float(last["value"]) == 5.0
    raw2 = _rows(shared_dir / "data/dewan2009/2/A_Right.csv")
    assert value("tsa_fig2_20Gyx1+9H10", "secondary_tumour_volume_mm3", "32") == pytest.approx(
        float(raw2[-1]["20Gyx1+9H10Y"]), rel=1e-5)
    per = Counter((r["condition"], r["observable"]) for r in rows if r["condition"].startswith("tsa_fig4_"))
    assert set(per.values()) == {5} and len(per) == 6
    cond = {r["condition"]: r for r in _rows(dataset_dir("dewan2009") / "conditions.csv")}
    assert cond["tsa_fig4_6Gyx5+9H10"]["rt_days"] == "12;13;14;15;16"
    assert cond["tsa_fig4_6Gyx5+9H10"]["drug_days"] == "14;17;20"
