"""studies/identifiability in quick mode (no profiles, small Sobol samples): every shipped calibration gets its report,
the CAR-T latent x observable table holds the model's facts, and `immunocal report` renders it."""

import json

from immunocal.calib.cli.main import main
from immunocal.calib.report import render


def test_identifiability_study_quick(tmp_path, capsys):
    assert main(["study", "identifiability", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "identifiability.json").read_text())
    assert set(res["cases"]) == {"rit_morisada_moc1", "rit_dewan_lq_vascular", "dln_generalisation",
                                 "cart_ct041_latents"}
    for case in res["cases"].values():
        assert (tmp_path / "identifiability" / case["report"].split("/identifiability/")[1]).exists()
    moc1 = res["cases"]["rit_morisada_moc1"]["parameters"]
    # the growth rate drives every arm; radiosensitivity acts only through the two RT arms
    assert moc1["tumour_proliferation_rate"]["sobol_total_max_over_conditions"] > 0.5
    assert moc1["tumour_alpha"]["sobol_total_max_over_conditions"] < moc1["immune_kill_rate"][
        "sobol_total_max_over_conditions"]
    cart = res["cases"]["cart_ct041_latents"]["cart_table"]["rows"]
    # baseline burden is set by the initial burden latent alone; the microenvironment latent barely reaches any output
    assert cart["theta_init"]["most_informative"] == "log_baseline_burden" and \
        cart["theta_init"]["sobol_total"]["log_baseline_burden"] > 0.8
    assert cart["theta_env"]["sobol_total_max"] < 0.5 and cart["theta_env"]["r2_seed000"] == 0.831
    scr = res["cases"]["dln_generalisation"]["screening"]
    assert scr["parameters"] == 74 and set(scr["not_screened"]) == {"ctl_tme_proliferation", "dln_recovery_rate"}
    text = render(tmp_path, tmp_path / "figs", tmp_path)
    assert "| latent | log_baseline_burden |" in text and "Morris screening of 74 parameters" in text
    assert (tmp_path / "figs" / "identifiability_cart.png").exists()
