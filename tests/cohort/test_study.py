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
