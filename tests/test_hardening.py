"""No silent fallbacks: each reproducer of the hardening audit (issue "Hardening and ecosystem fit", deliverable 1)
as a test — invalid command-line values, conflicting options, campaign settings, incomplete campaigns, config
values outside their domain, and input files that are folders, Latin-1 or carry a UTF-8 BOM."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from immunocal.calib.cli.main import main
from immunocal.calib.config import ConfigError, load_config
from immunocal.calib.data import DataTableError, read_measurements

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "calib" / "data" / "toy_logistic"
RIT = "immunocal.forward.rit.simulator:RitSimulator"


def _argparse_error(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["simulate", "cart", "--n", "0"], "argument --n: must be an integer >= 1, got '0'"),
    (["simulate", "cart", "--dt", "0"], "argument --dt: must be a finite number > 0, got '0'"),
    (["simulate", "cart", "--dt", "nan"], "argument --dt: must be a finite number > 0, got 'nan'"),
    (["simulate", "cart", "--exp-substeps", "0"], "argument --exp-substeps: must be an integer >= 1"),
    (["simulate", "cart", "--output-every", "0"], "argument --output-every: must be an integer >= 1"),
    (["simulate", "cart", "--tb-fraction", "1.5"], "argument --tb-fraction: must be a number in [0, 1]"),
    (["campaign", "run", "--forward", "toy.logistic", "--out", "x", "--n", "-3"], "argument --n: must be an integer"),
    (["campaign", "run", "--forward", "toy.logistic", "--out", "x", "--chunk-size", "0"], "--chunk-size: must be"),
    (["calibrate", "c.toml", "--chains", "0"], "argument --chains: must be an integer >= 1"),
    (["surrogate", "fit", "camp", "--out", "s.npz", "--test-fraction", "1"], "--test-fraction: must be a number"),
])
def test_invalid_numbers_are_refused_by_name(argv, message, capsys):
    assert message in _argparse_error(argv, capsys)


def test_cart_preset_and_params_file_conflict(tmp_path, capsys):
    params = tmp_path / "p.toml"
    assert main(["params", "export", "--model", "cart", "--preset", "normalised", str(params)]) == 0
    capsys.readouterr()
    assert main(["simulate", "cart", "--preset", "paper", "--params", str(params), "--quiet"]) == 2
    assert "--params" in capsys.readouterr().err
    assert main(["simulate", "cart", "--params", str(tmp_path), "--quiet"]) == 2  # a folder as --params
    assert "is a folder, not a parameter file" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--preset", "nope"], "unknown preset 'nope' for model 'rit'"),
    (["--vary", "immune_kill_rate,tumour_alpha", "--fix", "tumour_proliferation_rate=nan"], "not a finite number"),
    (["--fix", "nosuch=1"], "'rit' has no parameter 'nosuch'"),
    (["--vary", "tumour_alpha", "--fix", "tumour_alpha=0.1"], "also varied"),
    (["--vary", "tumour_alpha", "--fix", "tumour_proliferation_rate=-1"], "tumour_proliferation_rate"),
])
def test_campaign_settings_are_checked_before_any_run(tmp_path, extra, message, capsys):
    out = tmp_path / "camp"
    assert main(["campaign", "run", "--forward", RIT, "--out", str(out), "--n", "4", "--workers", "0",
                 "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing ran, nothing was created


def test_toy_model_has_no_presets(tmp_path, capsys):
    assert main(["campaign", "run", "--forward", "toy.logistic", "--out", str(tmp_path / "c"), "--preset", "paper",
                 "--workers", "0", "--quiet"]) == 2
    assert "has no presets" in capsys.readouterr().err


def test_campaign_whose_runs_all_fail_exits_nonzero(tmp_path, capsys):
    # this proliferation rate with this kill rate never reaches the pre-treatment volume: every run fails
    out = tmp_path / "camp"
    argv = ["campaign", "run", "--forward", RIT, "--out", str(out), "--n", "4", "--workers", "0", "--quiet",
            "--vary", "tumour_alpha", "--fix", "tumour_proliferation_rate=0.0015", "--fix", "immune_kill_rate=0.27"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["failed"] == 4
    assert "all 4 finished runs" in captured.err and "--failures" in captured.err
    assert main(["campaign", "resume", str(out), "--workers", "0", "--quiet"]) == 1


def test_surrogate_fit_refuses_an_incomplete_campaign(tmp_path, capsys):
    camp = tmp_path / "camp"
    assert main(["campaign", "run", "--forward", "toy.logistic", "--out", str(camp), "--n", "32", "--workers", "0",
                 "--quiet", "--chunk-size", "8"]) == 0
    chunks = sorted((camp / "chunks").glob("*.npz"))
    assert len(chunks) == 4
    chunks[-1].unlink()  # as after a kill: one chunk pending
    capsys.readouterr()
    assert main(["surrogate", "fit", str(camp), "--out", str(tmp_path / "s.npz")]) == 2
    assert "8 of 32 runs are pending" in capsys.readouterr().err
    assert main(["surrogate", "fit", str(camp), "--out", str(tmp_path / "s.npz"), "--partial"]) == 0
    assert json.loads(capsys.readouterr().out)["pending_runs"] == 8


def _config(tmp_path, old, new) -> Path:
    shutil.copy(TOY / "measurements.csv", tmp_path / "measurements.csv")
    for extra in TOY.glob("*.csv"):
        shutil.copy(extra, tmp_path / extra.name)
    text = (TOY / "calibrate.toml").read_text()
    assert old in text
    cfg = tmp_path / "c.toml"
    cfg.write_text(text.replace(old, new, 1))
    return cfg


@pytest.mark.parametrize("old, new, message", [
    ("chains = 4", "chains = 0", "sampler.chains must be an integer >= 1, got 0"),
    ("target_accept = 0.99", "target_accept = 1.5", "sampler.target_accept must be a number in (0, 1)"),
    ("draws = 1000", "draws = \"1000\"", "sampler.draws must be an integer, got '1000'"),
    ("method = \"nuts\"", "method = \"nust\"", "sampler.method must be one of"),
    ("method = \"nuts\"", "method = \"nuts\"\ninit = \"adapt_dense\"", "sampler.init must be one of"),
    ("chains = 4", "chains = 4\ntop_up = -1", "sampler.top_up must be an integer >= 0, got -1"),
    ("[emulator]\n", "[design]\nchunk_size = -5\n[emulator]\n", "design.chunk_size must be an integer >= 1"),
    ("[emulator]\n", "[emulator]\ntest_fraction = nan\n", "emulator.test_fraction must be finite"),
    ("value = 50.0", "value = inf", "parameters.initial_volume.value must be finite"),
    ("role = ", "rol = ", "unknown key parameters."),
    ('conditions = "conditions.csv"', 'conditions = "conditions.csv"\ntime_window = [5.0, 2.0]',
     "data.time_window must be [first, last] with first < last"),
])
def test_config_values_outside_their_domain_are_named(tmp_path, old, new, message):
    cfg = _config(tmp_path, old, new)
    with pytest.raises(ConfigError, match="line") as exc:
        load_config(cfg)
    assert message in str(exc.value)


def test_input_files_bom_accepted_latin1_named(tmp_path):
    text = (TOY / "measurements.csv").read_text()
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    ref = read_measurements(TOY / "measurements.csv")
    got = read_measurements(bom)  # the BOM does not become part of the first column's name
    np.testing.assert_array_equal(got.value, ref.value)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.replace("\n", ",\n", 1).encode() + "# Prüfung\n".encode("latin-1"))
    with pytest.raises(DataTableError, match=r"not UTF-8 text \(byte 0xfc"):
        read_measurements(latin)
    with pytest.raises(DataTableError, match="is a folder"):
        read_measurements(tmp_path)
    cfg = tmp_path / "bom.toml"
    cfg.write_bytes(b"\xef\xbb\xbf" + (TOY / "calibrate.toml").read_bytes())
    shutil.copy(TOY / "measurements.csv", tmp_path / "measurements.csv")
    assert load_config(cfg)["model"]["forward"]


def test_fixed_value_outside_the_registry_range_is_named(tmp_path):
    from immunocal.calib.workflow import Calibration

    cfg = load_config(ROOT / "calib" / "datasets" / "morisada2018" / "moc1.toml")
    cfg["parameters"]["tumour_alpha"] = {"role": "fixed", "value": -0.3}
    cal = Calibration(cfg, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match=r"tumour_alpha.*\[parameters.tumour_alpha\] value"):
        cal.fixed  # noqa: B018


def test_a_dict_config_without_its_file_is_refused_before_any_work(tmp_path):
    """A config dict that did not come from load_config (a run's config_effective.json read back) has no file to
    resolve paths against or copy into the run: named at construction, not as a KeyError after sampling."""
    import json

    from immunocal.calib.config import public
    from immunocal.calib.workflow import Calibration

    cfg = load_config(TOY / "calibrate.toml")
    effective = json.loads(json.dumps(public(cfg), default=str))
    with pytest.raises(ValueError, match=r"dict needs its '_path'.*load_config"):
        Calibration(effective, tmp_path / "out", progress=False)
    effective["_path"] = cfg["_path"]  # its file named: relative paths resolve against that file's folder again
    cal = Calibration(effective, tmp_path / "out", progress=False)
    assert cal.cfg["_base"] == cfg["_base"] and len(cal.data) == len(Calibration(cfg, tmp_path / "o2").data)


def test_existing_outputs_are_not_replaced_without_force(tmp_path, capsys):
    target = tmp_path / "p.toml"
    assert main(["params", "export", "--model", "rit", "--preset", "dewan_table3", str(target)]) == 0
    assert main(["params", "export", "--model", "rit", "--preset", "dewan_table1", str(target)]) == 2
    assert f"FILE {target} exists; pass --force" in capsys.readouterr().err
    assert "dewan_table3" in target.read_text()  # untouched
    assert main(["params", "export", "--model", "rit", "--preset", "dewan_table1", str(target), "--force"]) == 0
    assert "dewan_table1" in target.read_text()
    csv = tmp_path / "rit.csv"
    csv.write_text("mine")
    assert main(["simulate", "rit", "--out", str(csv)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and csv.read_text() == "mine"
    plan = str(ROOT / "forward" / "dln" / "examples" / "abscopal_ctla4.toml")
    assert main(["simulate", "dln", "--plan", plan, "--out", str(csv)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and csv.read_text() == "mine"
    folder_csv = tmp_path / "x.csv"
    folder_csv.mkdir()
    assert main(["simulate", "rit", "--out", str(folder_csv)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "step_000000.csv").write_text("old")
    assert main(["simulate", "cart", "--csv-dir", str(tmp_path / "steps"), "--quiet"]) == 2
    assert "is not empty; pass --force" in capsys.readouterr().err
    sur = tmp_path / "s.npz"
    sur.write_text("mine")
    assert main(["surrogate", "fit", str(tmp_path / "nocamp"), "--out", str(sur)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and sur.read_text() == "mine"


def test_a_config_names_code_outside_the_toolkit_only_explicitly(tmp_path):
    from immunocal.calib.workflow import Calibration

    cfg = load_config(_config(tmp_path, 'forward = "toy.logistic"', 'forward = "json:loads"'))
    with pytest.raises(ValueError, match=r"outside the toolkit.*trusted_modules = \[\"json\"\]"):
        Calibration(cfg, tmp_path / "out", progress=False).forward  # noqa: B018
    cfg["model"]["trusted_modules"] = ["json"]  # allowed explicitly: then it is checked as a forward model
    with pytest.raises(ValueError, match="forward model .json:loads.: bad options"):
        Calibration(cfg, tmp_path / "out", progress=False).forward  # noqa: B018


def test_bench_nutpie_without_nutpie_is_a_named_error(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nutpie" else real(name, *a))
    assert main(["bench", "nutpie", "--models", "hier100"]) == 2
    assert "bench nutpie needs nutpie (pip install 'immunocal[nutpie]')" in capsys.readouterr().err


def test_data_time_window_keeps_only_its_rows_and_names_an_empty_one(tmp_path):
    from immunocal.calib.workflow import Calibration

    cfg = _config(tmp_path, 'conditions = "conditions.csv"', 'conditions = "conditions.csv"\ntime_window = [4.0, 10.0]')
    cal = Calibration(cfg, tmp_path / "out", progress=False)
    assert cal.data.time.min() >= 4.0 and cal.data.time.max() <= 10.0
    assert len(cal.data) < len(read_measurements(TOY / "measurements.csv"))
    empty = _config(tmp_path, 'conditions = "conditions.csv"', 'conditions = "conditions.csv"\ntime_window = [500, 600]')
    with pytest.raises(ValueError, match=r"time_window \[500, 600\] keeps no row"):
        Calibration(empty, tmp_path / "out2", progress=False).data
