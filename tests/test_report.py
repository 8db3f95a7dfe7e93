"""README results section regenerated from study JSON."""

import json

import pytest

from calib.report import END, START, update_readme


def test_report_writes_numbers_between_markers(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "rit_fractionation.json").write_text(json.dumps(
        {"doses_gy": [16.25, 10.49], "tcp_with_ctla4": {"1": 0.01, "2": 0.895}, "tcp_rt_only": {"1": 0.0}}))
    (results / "rit_fractionation.png").write_bytes(b"\x89PNG fake")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n{START}\nold\n{END}\n\ntail\n")
    update_readme(results, readme, tmp_path / "docs" / "figures")
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x") and text.rstrip().endswith("tail")
    assert "1: 0.01, 2: 0.895" in text and "Not run for this report" in text
    assert "![rit_fractionation](docs/figures/rit_fractionation.png)" in text
    assert (tmp_path / "docs/figures/rit_fractionation.png").exists()


def test_report_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="missing the markers"):
        update_readme(tmp_path, readme, tmp_path / "f")
