"""Convert the raw data in ``shared/data/`` into the bundled measurement/condition tables.

Run ``python -m immunocal.calib.datasets.convert --shared ../shared`` from the repository root; it rewrites
``calib/datasets/{dewan2009,morisada2018,conte2025}/{measurements,conditions}.csv`` deterministically, reading every
assumption from ``schedule_assumptions.toml`` beside this file.

Conte 2025 (per well): the raw Cell Index is the measurement (observable ``cell_index``; its conversion to cells,
CI = 1.946e-4·cells + 0.1602 from the source, belongs to the observation model, not the table); hours → days; one
subject per well (``<condition>/well<k>``); a number with a trailing period in the raw files is a typo, corrected as
listed in ``schedule_assumptions.toml``.

Morisada (per mouse): the artificial day-0 zeros are dropped; volumes cm³ → mm³; a 0 after growth (complete
regression) becomes a below-detection row (``censoring = left``, value = detection limit); a series that ends before
the last measurement day of its group (humane endpoint) gets one right-censored row at the group's next measurement
day whose value is the last measured volume (the tumour was at least that large).

Dewan (group means): the digitised days are rounded to the measurement days; ``A_Left`` is the irradiated primary
(observable ``tumour_volume_mm3``), ``A_Right`` the non-irradiated secondary (``secondary_tumour_volume_mm3``);
``3/B_Left`` Y values are paired with the days of ``3/B_Right`` (its own X columns are mis-digitised). Each arm is
one "subject" (``<condition>:mean``) because only group means were digitised. A mean below the detection limit
(including the small negative digitised values) becomes a below-detection row (``censoring = left``, value = limit).
"""

from __future__ import annotations

import argparse
import csv
import tomllib
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEASUREMENT_HEADER = ["subject", "condition", "observable", "time", "value", "censoring"]
CONDITION_HEADER = ["condition", "rt_days", "rt_doses_gy", "drug", "drug_days", "drug_doses", "description"]


def load_assumptions(path: Path | None = None) -> dict:
    return tomllib.loads((path or HERE / "schedule_assumptions.toml").read_text())


def _join(values) -> str:
    return ";".join(f"{v:g}" for v in values)


# ---------------------------------------------------------------------------------------------------- Morisada
def morisada_conditions(a: dict) -> list[dict]:
    rows = []
    for line in ("MOC1", "MC38"):
        for treatment in ("Control", "antiPD1", "8Gyx2", "2Gyx10", "antiPD1_8Gyx2", "antiPD1_2Gyx10"):
            rt_days, dose = [], 0.0
            if "8Gyx2" in treatment:
                rt_days, dose = a["hypo_days"], a["hypo_dose_gy"]
            elif "2Gyx10" in treatment:
                rt_days, dose = a["daily_days"], a["daily_dose_gy"]
            pd1 = "antiPD1" in treatment
            rows.append({
                "condition": f"{line}_{treatment}",
                "rt_days": _join(rt_days),
                "rt_doses_gy": _join([dose] * len(rt_days)),
                "drug": "anti_pd1" if pd1 else "",
                "drug_days": _join(a["pd1_days"]) if pd1 else "",
                "drug_doses": _join([a["pd1_dose_ug"]] * len(a["pd1_days"])) if pd1 else "",
                "description": f"{line} {treatment} (schedule assumed: see schedule_assumptions.toml)",
            })
    return rows


def morisada_measurements(raw_csv: Path, a: dict) -> list[dict]:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    condition_of: dict[str, str] = {}
    group_days: dict[str, set[float]] = defaultdict(set)
    with open(raw_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            day, volume = float(row["day"]), float(row["tumour_volume"])
            condition = f"{row['cell_line']}_{row['treatment']}"
            condition_of[row["mouse_id"]] = condition
            if day == 0.0:  # third-party padding, not a measurement (data README)
                continue
            series[row["mouse_id"]].append((day, volume))
            group_days[condition].add(day)
    scale, limit = a["volume_scale_to_mm3"], a["detection_limit_mm3"]
    out = []
    for mouse in sorted(series, key=lambda m: (condition_of[m], int(m.rsplit("_", 1)[1]))):
        points = sorted(series[mouse])
        condition = condition_of[mouse]
        for day, volume in points:
            if volume > 0:
                out.append({"subject": mouse, "condition": condition, "observable": "tumour_volume_mm3",
                            "time": f"{day:g}", "value": f"{volume * scale:.6g}", "censoring": ""})
            else:
                out.append({"subject": mouse, "condition": condition, "observable": "tumour_volume_mm3",
                            "time": f"{day:g}", "value": f"{limit:g}", "censoring": "left"})
        last_day, last_volume = points[-1]
        later = sorted(d for d in group_days[condition] if d > last_day)
        if later and last_volume > 0:  # removed at the humane endpoint before the group's follow-up ended
            out.append({"subject": mouse, "condition": condition, "observable": "tumour_volume_mm3",
                        "time": f"{later[0]:g}", "value": f"{last_volume * scale:.6g}", "censoring": "right"})
    return out


# ---------------------------------------------------------------------------------------------------- Dewan
# Folder -> (file, observable) and the schedule of every arm label found in the CSV headers (data README).
_ANTI_CTLA4 = "anti_ctla4"
_DEWAN_ARMS = {
    "2": {  # TSA, Fig 2 (fit): RT days 12.., 9H10 on 14, 17, 20
        "0Gy+PBS": ([], 0, []), "0Gy+9H10": ([], 0, [14, 17, 20]),
        "20Gyx1+PBS": ([12], 20, []), "20Gyx1+9H10": ([12], 20, [14, 17, 20]),
        "8Gyx3+PBS": ([12, 13, 14], 8, []), "8Gyx3+9H10": ([12, 13, 14], 8, [14, 17, 20]),
        "6Gyx5+PBS": ([12, 13, 14, 15, 16], 6, []), "6Gyx5+9H10": ([12, 13, 14, 15, 16], 6, [14, 17, 20]),
    },
    "3A": {  # TSA, Fig 3A: IR = 20 Gy x 1 on day 12
        "PBS": ([], 0, []), "9H10(12-15-18)": ([], 0, [12, 15, 18]), "IR+PBS": ([12], 20, []),
        "IR+9H10(12-15-18)": ([12], 20, [12, 15, 18]), "IR+9H10(14-17-20)": ([12], 20, [14, 17, 20]),
    },
    "3B": {  # TSA, Fig 3B: IR = 8 Gy x 3 on days 12-14
        "PBS": ([], 0, []), "IR+PBS": ([12, 13, 14], 8, []),
        "IR+9H10(12-15-18)": ([12, 13, 14], 8, [12, 15, 18]), "IR+9H10(14-17-20)": ([12, 13, 14], 8, [14, 17, 20]),
        "IR+9H10(16-18-21)": ([12, 13, 14], 8, [16, 18, 21]),
    },
    "4": {  # TSA, folder 4: a repeat of three folder-2 arms (held out); schedules as folder 2 (ASSUMED)
        "0Gy+PBS": ([], 0, []), "8Gyx3+9H10": ([12, 13, 14], 8, [14, 17, 20]),
        "6Gyx5+9H10": ([12, 13, 14, 15, 16], 6, [14, 17, 20]),
    },
    "6": {  # MCA38, Fig 6: as 2 without the 6 Gy x 5 arms
        "0Gy+PBS": ([], 0, []), "0Gy+9H10": ([], 0, [14, 17, 20]),
        "20Gyx1+PBS": ([12], 20, []), "20Gyx1+9H10": ([12], 20, [14, 17, 20]),
        "8Gyx3+PBS": ([12, 13, 14], 8, []), "8Gyx3+9H10": ([12, 13, 14], 8, [14, 17, 20]),
    },
}
_DEWAN_FILES = {  # (folder key, file, observable, file whose days to use)
    "2": [("2/A_Left.csv", "tumour_volume_mm3", None), ("2/A_Right.csv", "secondary_tumour_volume_mm3", None)],
    "3A": [("3/A_Left.csv", "tumour_volume_mm3", None), ("3/A_Right.csv", "secondary_tumour_volume_mm3", None)],
    "3B": [("3/B_Left.csv", "tumour_volume_mm3", "3/B_Right.csv"),
           ("3/B_Right.csv", "secondary_tumour_volume_mm3", None)],
    "4": [("4/A_Left.csv", "tumour_volume_mm3", None), ("4/A_Right.csv", "secondary_tumour_volume_mm3", None)],
    "6": [("6/A_Left.csv", "tumour_volume_mm3", None), ("6/A_Right.csv", "secondary_tumour_volume_mm3", None)],
}
_PREFIX = {"2": "tsa_fig2", "3A": "tsa_fig3a", "3B": "tsa_fig3b", "4": "tsa_fig4", "6": "mca38_fig6"}


def _arm_label(raw: str) -> str:
    label = raw.strip()
    if label.startswith("PBSPBS"):  # header typo in 3/A_Left.csv
        label = label[3:]
    return label.removesuffix("X")


def _read_pairs(path: Path) -> list[tuple[str, list[float], list[float]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if body and [c.strip() for c in body[0][:2]] == ["X", "Y"]:  # folder 4: labels over pairs, then an X,Y row
        header, body = [f"{header[j]}X" if j % 2 == 0 else "" for j in range(len(header))], body[1:]
    arms = []
    for j in range(0, len(header), 2):
        xs = [float(r[j]) for r in body if r[j].strip()]
        ys = [float(r[j + 1]) for r in body if r[j + 1].strip()]
        arms.append((_arm_label(header[j]), xs, ys))
    return arms


def dewan_tables(raw_dir: Path, a: dict) -> tuple[list[dict], list[dict]]:
    days, limit = a["measurement_days"], a["detection_limit_mm3"]
    measurements, conditions = [], []
    for key, files in _DEWAN_FILES.items():
        arms = _DEWAN_ARMS[key]
        for rel, observable, day_source in files:
            pairs = _read_pairs(raw_dir / rel)
            if day_source is not None:
                day_map = {label: xs for label, xs, _ in _read_pairs(raw_dir / day_source)}
            for label, xs, ys in pairs:
                if label not in arms:
                    raise ValueError(f"{raw_dir / rel}: arm '{label}' has no documented schedule")
                if day_source is not None:
                    xs = day_map[label]
                if len(xs) != len(ys):
                    raise ValueError(f"{raw_dir / rel}: arm '{label}' has {len(xs)} days and {len(ys)} volumes")
                condition = f"{_PREFIX[key]}_{label}"
                for x, y in zip(xs, ys):
                    day = min(days, key=lambda d: abs(d - x))
                    if abs(day - x) > 1.0:
                        raise ValueError(f"{raw_dir / rel}: arm '{label}' day {x:.2f} is not near {days}")
                    below = y < limit
                    measurements.append({"subject": f"{condition}:mean", "condition": condition,
                                         "observable": observable, "time": f"{day:g}",
                                         "value": f"{limit:g}" if below else f"{y:.6g}",
                                         "censoring": "left" if below else ""})
        for label, (rt_days, dose, drug_days) in arms.items():
            conditions.append({
                "condition": f"{_PREFIX[key]}_{label}", "rt_days": _join(rt_days),
                "rt_doses_gy": _join([dose] * len(rt_days)), "drug": _ANTI_CTLA4 if drug_days else "",
                "drug_days": _join(drug_days), "drug_doses": _join([1.0] * len(drug_days)),
                "description": f"Dewan 2009 folder {key[0]} {label}; day 0 = primary inoculation",
            })
    return measurements, conditions


# ---------------------------------------------------------------------------------------------------- Conte 2025
CONTE_HEADER = ["subject", "condition", "observable", "time", "value"]
CONTE_CONDITION_HEADER = ["condition", "cart_days", "effector_target_ratio", "description"]
#: condition -> (data-file infix, time file, effector:target ratio)
CONTE_ARMS = {"PBT030_tumour_only": ("", "Tpoint_Tonly.txt", 0.0),
              "PBT030_ET_1to10": ("_carT10", "Time_carT10.txt", 1 / 10),
              "PBT030_ET_1to25": ("_carT25", "Time_carT25.txt", 1 / 25),
              "PBT030_ET_1to50": ("_carT50", "Time_carT50.txt", 1 / 50)}


def _conte_values(path: Path, a: dict) -> list[float]:
    """The numbers of one raw column file (CRLF lines); a known typo (``a["typos"]``: a trailing period) is
    corrected, anything else unreadable is an error naming the file and line."""
    out = []
    for i, tok in enumerate(path.read_text(encoding="utf-8").split(), 1):
        tok = a.get("typos", {}).get(f"{path.name}:{i}", tok)
        try:
            out.append(float(tok))
        except ValueError:
            raise ValueError(f"{path}, line {i}: {tok!r} is not a number") from None
    return out


def conte_tables(raw_dir: Path, a: dict) -> tuple[list[dict], list[dict]]:
    """Cell Index per well over time (hours → days) for tumour alone and the three CAR-T effector:target ratios;
    the oncolytic-virus arms are not bundled (the CAR-T model has no virus). CAR-T cells are taken to be added at
    the first data time (``a["cart_added_at"] = "first_time"``, UNCERTAIN)."""
    meas, conds = [], []
    for cond, (infix, time_file, ratio) in CONTE_ARMS.items():
        hours = _conte_values(raw_dir / time_file, a)
        for well in (1, 2, 3):
            values = _conte_values(raw_dir / f"PBT030{infix}_Y{well}.txt", a)
            if len(values) != len(hours):
                raise ValueError(f"{raw_dir}: PBT030{infix}_Y{well}.txt has {len(values)} values for "
                                 f"{len(hours)} times in {time_file}")
            meas += [{"subject": f"{cond}/well{well}", "condition": cond, "observable": "cell_index",
                      "time": repr(h / 24.0), "value": f"{v:g}"} for h, v in zip(hours, values)]
        conds.append({"condition": cond, "cart_days": repr(hours[0] / 24.0) if ratio else "",
                      "effector_target_ratio": f"{ratio:g}",
                      "description": f"PBT030 glioblastoma cells{'' if not ratio else f' + IL13Ra2 CAR-T, E:T 1:{round(1 / ratio)}'}"
                                     " (Conte et al. 2025; xCELLigence Cell Index, 3 wells)"})
    return meas, conds


# ---------------------------------------------------------------------------------------------------- writing
def _write(path: Path, header: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def convert(shared: Path, out: Path = HERE) -> dict[str, int]:
    """Regenerate both bundled data sets from ``shared/data``; returns row counts."""
    a = load_assumptions()
    data = Path(shared) / "data"
    mor_m = morisada_measurements(data / "morisada2018" / "tumour_volume_per_mouse.csv", a["morisada2018"])
    _write(out / "morisada2018" / "measurements.csv", MEASUREMENT_HEADER, mor_m)
    _write(out / "morisada2018" / "conditions.csv", CONDITION_HEADER, morisada_conditions(a["morisada2018"]))
    dew_m, dew_c = dewan_tables(data / "dewan2009", a["dewan2009"])
    _write(out / "dewan2009" / "measurements.csv", MEASUREMENT_HEADER, dew_m)
    _write(out / "dewan2009" / "conditions.csv", CONDITION_HEADER, dew_c)
    con_m, con_c = conte_tables(data / "conte2025_cart_invitro", a["conte2025"])
    _write(out / "conte2025" / "measurements.csv", CONTE_HEADER, con_m)
    _write(out / "conte2025" / "conditions.csv", CONTE_CONDITION_HEADER, con_c)
    return {"morisada2018": len(mor_m), "dewan2009": len(dew_m), "conte2025": len(con_m)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared", help="the project's shared/ folder (default ../shared)")
    args = parser.parse_args(argv)
    counts = convert(Path(args.shared))
    print(", ".join(f"{k}: {v} measurement rows" for k, v in counts.items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
