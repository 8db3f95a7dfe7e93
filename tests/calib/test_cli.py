import json
import shutil
from pathlib import Path

import pytest

from immunocal.calib.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "calib" / "data" / "toy_logistic"


def test_campaign_run_status_resume_and_surrogate_fit_validate(tmp_path, capsys):
    camp = tmp_path / "camp"
    assert main(["campaign", "run", "--forward", "toy.logistic", "--out", str(camp), "--n", "48",
                 "--vary", "growth_rate,carrying_capacity", "--fix", "initial_volume=50", "--workers", "0",
                 "--quiet", "--chunk-size", "16"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["finished"] == 48 and st["failed"] == 0
    assert main(["campaign", "status", str(camp), "--failures"]) == 0
    assert json.loads(capsys.readouterr().out)["failures"] == []
    assert main(["campaign", "resume", str(camp), "--workers", "0", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["finished"] == 48
    sur = tmp_path / "s.npz"
    assert main(["surrogate", "fit", str(camp), "--out", str(sur), "--test-fraction", "0.25"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_train"] == 36 and rep["observables"]["log_volume"]["r2"] > 0.99
    assert (tmp_path / "s.npz.validation.json").exists()
    assert main(["surrogate", "validate", str(sur), str(camp)]) == 0
    assert json.loads(capsys.readouterr().out)["n_test"] == 48


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["campaign", "status", str(tmp_path / "nope")]) == 2
    assert "not a campaign folder" in capsys.readouterr().err
    assert main(["campaign", "run", "--forward", "toy.logistic", "--out", str(tmp_path / "c"), "--vary", "zzz"]) == 2
    assert "has no parameter(s) ['zzz']" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nforward='toy.logistic'\n[data]\nmeasurements='m.csv'\n[parameters]\n[samplr]\n")
    assert main(["calibrate", str(bad)]) == 2
    assert "unknown section(s) ['samplr']" in capsys.readouterr().err
    assert main(["campaign", "run", "--forward", "toy.linear", "--out", str(tmp_path / "c2"), "--conditions-table",
                 str(EXAMPLE / "conditions.csv"), "--condition-id", "treated", "--workers", "0"]) == 2
    assert "no condition 'treated'" in capsys.readouterr().err
    assert main(["ppc", str(tmp_path)]) == 2
    assert "no idata.nc" in capsys.readouterr().err


@pytest.mark.slow
def test_example_config_runs_as_written(tmp_path, capsys):
    """The docs/calib.md example: exact closed-form emulator on the shipped data."""
    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    assert main(["calibrate", str(tmp_path / "calibrate.toml"), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["diagnostics"]["ok"]
    assert 1300 < summary["posterior"]["carrying_capacity"]["mean"] < 1700  # data generated with K = 1500
    assert main(["ppc", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "ppc.png").exists()


def test_calibrate_output_folder_is_checked_before_any_computation(tmp_path, capsys):
    from immunocal.calib.pipeline import RUN_FILES, prepare_output_dir

    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    assert main(["calibrate", str(tmp_path / "calibrate.toml"), "--out", str(run)]) == 2
    assert "is not empty (summary.json); pass --force" in capsys.readouterr().err
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not from a calibration run \(notes.txt\)"):
        prepare_output_dir(run, RUN_FILES, force=True)
    assert (run / "notes.txt").exists() and (run / "summary.json").exists()  # nothing deleted
    (run / "notes.txt").unlink()
    prepare_output_dir(run, RUN_FILES, force=True)  # a previous run's files only: removed
    assert [p.name for p in run.iterdir()] == [".lock"]  # (the folder's lock file stays: immunocal.calib.locking)
    with pytest.raises(ValueError, match="exists and is not a folder"):
        prepare_output_dir(tmp_path / "calibrate.toml", RUN_FILES)


@pytest.mark.slow
def test_ppc_refuses_data_changed_since_the_run(tmp_path, capsys):
    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    assert main(["calibrate", str(tmp_path / "calibrate.toml"), "--out", str(tmp_path / "run"), "--draws", "100",
                 "--tune", "100", "--chains", "2"]) in (0, 3)
    capsys.readouterr()
    m = tmp_path / "measurements.csv"
    m.write_text(m.read_text().replace("m6,control,log_volume,20,7.088191", "m6,control,log_volume,20,7.088192"))
    assert main(["ppc", str(tmp_path / "run")]) == 2
    assert "the fitted data or their schedules changed since the run" in capsys.readouterr().err


@pytest.mark.parametrize("edit,message", [
    (("role = \"latent\"", "rol = \"latent\""), r"line 17: unknown key parameters.growth_rate.rol"),
    (("draws = 1000", "draw = 1000"), r"line \d+: unknown key sampler.draw; allowed"),
    (("[observables.log_volume]", "[observables.log_volum]"), r"\[observables.log_volum\] names no observable"),
    (("kind = \"exact\"", "kind = \"exact\"\npth = \"x.npz\""), r"unknown key emulator.pth"),
])
def test_config_typos_are_named_errors(tmp_path, capsys, edit, message):
    """A typo never silently changes the model (before: a misspelled observable section changed the noise prior)."""
    import re

    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    cfg = tmp_path / "calibrate.toml"
    text = cfg.read_text()
    assert edit[0] in text
    cfg.write_text(text.replace(edit[0], edit[1], 1))
    assert main(["calibrate", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "run" / "idata.nc").exists()
