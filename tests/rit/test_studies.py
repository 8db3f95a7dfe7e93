"""Contracts of the study outputs other tools rely on (quick mode)."""

import json

from immunocal.calib.cli.main import main


def test_rit_it_timing_contract(tmp_path):
    assert main(["study", "rit_it_timing", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "rit_it_timing.json").read_text())
    keys = {"0,3,6", "2,5,8", "4,6,9"} | {f"start_{d}" for d in range(8)}
    assert set(res["tcp"]) == keys and all(0.0 <= p <= 1.0 for p in res["tcp"].values())
    assert res["n_sims"] == 50
    assert (tmp_path / "rit_it_timing.png").stat().st_size > 0


def test_rit_fractionation_contract(tmp_path):
    assert main(["study", "rit_fractionation", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "rit_fractionation.json").read_text())
    for key in ("tcp_with_ctla4", "tcp_rt_only", "doses_gy"):
        assert set(res[key]) == {"1", "2", "3", "5", "10"}
    assert abs(res["doses_gy"]["1"] - 16.25) < 0.01 and abs(res["doses_gy"]["10"] - 3.30) < 0.01
