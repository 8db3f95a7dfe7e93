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


def test_dewan_abscopal_finding_reads_the_data_and_the_model():
    """The probabilities of Dewan's claim over posterior draws (here: the registry preset, twice) and the observed
    group means beside them, read back from the bundled tables (log volumes in the workflow) in mm³."""
    import numpy as np

    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.workflow import Calibration
    from immunocal.forward.dln.api import default_parameters
    from immunocal.studies.dln_dewan_abscopal import CONFIG, finding

    cal = Calibration(dataset_dir("dewan2009") / CONFIG, None)
    ps = default_parameters()
    draws = np.array([[ps[n] for n in cal.forward.parameter_names]] * 2)
    f = finding(cal, draws)
    fitted = f["folder 2 (fitted)"]
    assert fitted["observed_mm3"]["tsa_fig2_8Gyx3+9H10"] == pytest.approx(139.655, rel=1e-4)
    assert fitted["observed_mm3"]["tsa_fig2_0Gy+PBS"] == pytest.approx(496.552, rel=1e-4)
    # the preset carries the seed's Trex1 mechanism: fractionated RT + anti-CTLA-4 beats one 20 Gy dose
    assert fitted["P(tsa_fig2_8Gyx3+9H10 < tsa_fig2_20Gyx1+9H10)"] == 1.0
    assert fitted["observed tsa_fig2_8Gyx3+9H10 < tsa_fig2_20Gyx1+9H10"] is True
    repeat = f["folder 4 (repeat, held out)"]
    assert repeat["observed_mm3"]["tsa_fig4_8Gyx3+9H10"] == pytest.approx(90.2655, rel=1e-4)
    assert set(repeat["posterior_median_mm3"]) == {"tsa_fig4_8Gyx3+9H10", "tsa_fig4_6Gyx5+9H10", "tsa_fig4_0Gy+PBS"}


def test_generalisation_smc_agreement_uses_the_shared_comparison():
    """The NUTS-vs-SMC block of dln_generalisation is ``posterior_agreement`` (one comparison for every study): a
    posterior shifted by 0.5 sd with the same spread reads 0.5 sd off and sd ratio 1, beside the SMC run's summary."""
    from types import SimpleNamespace

    import numpy as np
    import xarray as xr

    from immunocal.studies.dln_generalisation import _agreement

    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 4000))
    z = (z - z.mean()) / z.std()
    post = lambda shift: SimpleNamespace(posterior=xr.Dataset({"a": (("chain", "draw"), 2.0 + shift + z),
                                                                "b": (("chain", "draw"), 5.0 * z)}))
    nuts = SimpleNamespace(idata=post(0.5), free=["a", "b"])
    smc = SimpleNamespace(idata=post(0.0))
    summary = {"diagnostics": {"ok": True}, "seconds": {"total": 1.0},
               "prediction": {"heldout": {"coverage_90": 0.9, "per_condition": {}}}}
    res = _agreement(nuts, smc, summary)
    assert res["max_abs_mean_difference_over_sd"] == pytest.approx(0.5)
    assert res["sd_ratio_range"] == pytest.approx([1.0, 1.0])
    assert res["agreement_with_nuts"]["parameters"]["b"]["pass"] and not res["agreement_with_nuts"]["all_pass"]
    assert res["prediction_heldout"] == {"coverage_90": 0.9}
