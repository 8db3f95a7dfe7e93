"""studies/rit_morisada_potency (issue 14, deliverable 5): the config it builds from the shipped MOC1 config — the
anti-PD-1 dose calibrated on a log scale with its prior median at the preset, the two splits — resolves through the
workflow (fast); the study itself in quick mode (slow: two NUTS fits)."""

import json
import math

import numpy as np
import pytest

from immunocal.studies import rit_morisada_potency as study


@pytest.mark.parametrize("variant", list(study.VARIANTS))
def test_potency_configs_resolve(variant):
    from immunocal.calib.workflow import Calibration

    fit, held = study.VARIANTS[variant]
    cal = Calibration(study.config(fit, held, quick=True), "/nonexistent/never-written", progress=False)
    assert cal.conditions == (fit, held) and study.TARGET in held
    assert "pdl1_dose" in cal.free and cal.forward.parameter_names[-1] == "pdl1_dose"
    space = cal.space(cal.free)
    j = list(space.names).index("pdl1_dose")
    assert space.scales[j] == "log" and (space.lower[j], space.upper[j]) == study.DOSE_BOX
    prior = next(p.prior for p in cal.parameters if p.name == "pdl1_dose")
    assert math.isclose(float(prior.link_inverse(prior.parameters["mu"])), study.DOSE_PRESET, rel_tol=1e-9)  # median


@pytest.mark.slow
def test_potency_study_quick(tmp_path):
    from immunocal.calib.cli.main import main

    assert main(["study", "rit_morisada_potency", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "rit_morisada_potency.json").read_text())
    for v in res["variants"].values():
        t = v["target"]
        assert t["observed_control_fraction"] == pytest.approx(0.9) and 0.0 <= t["predicted_control_fraction"] <= 1.0
        assert np.isfinite(v["contraction"]["pdl1_dose"])
