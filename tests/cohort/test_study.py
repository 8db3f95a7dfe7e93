"""studies/ct041_lgbm in quick mode (slow: ~40 s)."""

import json

import pytest


@pytest.mark.slow
def test_ct041_lgbm_quick(tmp_path):
    from immunocal.studies import ct041_lgbm

    res = ct041_lgbm.run(tmp_path, quick=True)
    data = json.loads((tmp_path / "ct041_lgbm.json").read_text())
    assert data["virtual"] is True and res["resolution_check"]["converged"]
    assert set(data["table2"]) == set(ct041_lgbm.SEED_TABLE2)
    assert all(set(v) == {"virtual", "spatial", "seed000"} for v in data["table2"].values())
    assert data["spatial"]["cohort_config"]["model"] == "spatial"
    for name in ("table2_comparison.png", "fig5_per_fold_errors.png", "fig6_7_binary.png", "fig8_cliffs_delta.png",
                 "fig9_landscape.png", "ct041_virtual_n37.csv", "ct041_spatial_n37.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_headline_folds_use_the_shared_refined_emulators_and_do_not_refine_again(tmp_path):
    """The headline study refines its shared emulators once (the config's ``[refinement]``); each fold loads them
    (``[emulator] paths``) with no ``[refinement]`` of its own — a fold asked to refine loaded emulators would stop
    with "needs surrogates trained from a [design]" after its pilot was planned."""
    from immunocal.calib.workflow import Calibration
    from immunocal.studies.ct041_bayes_vs_lgbm import _base_config, _with_emulators

    base = _base_config(tmp_path, quick=False)
    assert base["refinement"] == {"rounds": 1, "points": 96, "draws": 300}  # the bundled config's
    assert base["emulator"]["variance"] == "posterior"  # measured at the refinement's pilot: the folds load it
    quick = _base_config(tmp_path, quick=True)
    assert quick["refinement"]["points"] < base["refinement"]["points"]
    paths = {"dose_5e8": str(tmp_path / "dose_5e8.npz")}
    fold = _with_emulators(base, paths)
    assert "refinement" not in fold and fold["emulator"]["paths"] == paths
    assert base["refinement"] and "paths" not in base["emulator"]  # the base is not changed
    assert fold["emulator"]["variance"] == base["emulator"]["variance"]
    # what the fold would hit with the base's [refinement] still in it
    cal = Calibration({**fold, "refinement": base["refinement"]}, tmp_path / "fold", progress=False)
    cal.campaigns = {}
    with pytest.raises(ValueError, match=r"\[refinement\] needs surrogates trained from a \[design\]"):
        cal.refine()
