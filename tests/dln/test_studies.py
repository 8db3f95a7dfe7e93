"""The DLN studies run (quick mode) and write the JSON keys of the issue's contracts."""

import json

import pytest

from immunocal.calib.cli.main import main


@pytest.mark.parametrize(
    "name, keys",
    [
        ("dln_trex1", {"primary_day30": {"8x3", "20x1"}, "distant_day30": {"8x3", "20x1"}}),
        ("dln_irradiation", {"distant_day30": {"tumour_rt", "tumour_and_dln_rt"}}),
        (
            "dln_exhaustion",
            {"volume_day30": {"control", "anti_cd8", "anti_pdl1", "bezafibrate", "bezafibrate_anti_pdl1"}},
        ),
        ("dln_abscopal_pd1", {"distant_day30": {"control", "anti_pd1", "rt", "rt_anti_pd1"}}),
    ],
)
def test_study_contract(tmp_path, name, keys):
    assert main(["study", name, "--out", str(tmp_path), "--quick"]) == 0
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["readout_day"] == 30
    for key, sub in keys.items():
        assert set(data[key]) >= sub
        assert all(isinstance(data[key][s], float) and data[key][s] > 0 for s in sub)
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_generalisation_quick(tmp_path):
    assert main(["study", "dln_generalisation", "--out", str(tmp_path), "--quick"]) == 0
    data = json.loads((tmp_path / "dln_generalisation.json").read_text())
    s = data["summary"]
    assert len(data["replicates"]) == 2
    # calibrating on monotherapies predicts the combinations better than the uncalibrated defaults
    assert s["test_rmse_log_calibrated_median"] < s["test_rmse_log_defaults_median"]
    assert s["train_rmse_log_median"] < 0.3  # data noise sd is 0.15 in log volume


def test_fractionation_quick(tmp_path):
    assert main(["study", "dln_fractionation", "--out", str(tmp_path), "--quick"]) == 0
    data = json.loads((tmp_path / "dln_fractionation.json").read_text())
    three = [r for r in data["schemes"] if r["fractions"] == 3]
    assert all(abs(r["dose_per_fraction_gy"] - 8.0) < 1e-9 for r in three)  # iso-BED reference scheme
