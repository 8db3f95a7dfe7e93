"""The command line: help, params list/show/export, loading an exported file back, quickstart."""

import json
import subprocess
import sys

from immunocal.calib.cli.main import main
from immunocal.priors import ParameterSet


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_runs_as_console_script():
    res = subprocess.run([sys.executable, "-m", "immunocal.calib.cli.main", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "params" in res.stdout and "quickstart" in res.stdout


def test_params_list_rit_table3_has_every_parameter_with_unit_and_source(capsys):
    code, out, _ = run(capsys, "params", "list", "--model", "rit", "--preset", "dewan_table3")
    assert code == 0
    for name, unit in [("immune_kill_rate", "1/day"), ("antigen_release_rate", "1/day"),
                       ("t_cell_activation_rate", "1/day"), ("tumour_cell_volume", "mm^3")]:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert unit in line and "seed 002 Supp. Table" in line
    assert "24.9382" in out and "3.4596e+07" in out and "6.801e-12" in out


def test_params_show_by_name_and_symbol(capsys):
    code, out, _ = run(capsys, "params", "show", "chemokine_decay_rate")
    assert code == 0 and "paper" in out and "0.56" in out and "0.46" in out
    code, out, _ = run(capsys, "params", "show", "lambda_1")
    assert "tumour_proliferation_rate" in out and "0.1217" in out


def test_params_show_unknown_is_clear_error(capsys):
    code, _, err = run(capsys, "params", "show", "exhaustion_rat")
    assert code == 2 and "no parameter named 'exhaustion_rat'" in err and "exhaustion_rate" in err


def test_params_export_and_read_back(tmp_path, capsys):
    path = tmp_path / "cart_paper.toml"
    code, out, _ = run(capsys, "params", "export", "--model", "cart", "--preset", "paper", str(path))
    assert code == 0 and path.exists()
    ps = ParameterSet.from_file(path)
    assert ps["chemokine_decay_rate"] == 0.56 and ps.preset == "paper"


def test_params_export_unknown_preset(tmp_path, capsys):
    code, _, err = run(capsys, "params", "export", "--model", "cart", "--preset", "nope", str(tmp_path / "x.toml"))
    assert code == 2 and "unknown preset 'nope'" in err


def test_quickstart_writes_report(tmp_path, capsys):
    out_dir = tmp_path / "qs"
    code, out, _ = run(capsys, "quickstart", "--registry-only", "--out", str(out_dir))
    assert code == 0 and str(out_dir) in out
    report = json.loads((out_dir / "report.json").read_text())
    assert set(report["models"]) >= {"cart", "rit", "dln"}
    assert (out_dir / "params_rit_dewan_table3.toml").exists()


def test_study_unknown_name(tmp_path, capsys):
    code, _, err = run(capsys, "study", "no_such_study", "--out", str(tmp_path))
    assert code == 2 and "unknown study 'no_such_study'" in err


def test_study_scheduler_is_refused_where_a_study_cannot_distribute(tmp_path, capsys):
    code, _, err = run(capsys, "study", "rit_it_timing", "--out", str(tmp_path), "--scheduler", "tcp://nowhere:1")
    assert code == 2 and "does not distribute over Dask" in err


def test_study_processes_are_refused_where_a_study_cannot_use_them_or_invalid(tmp_path, capsys):
    code, _, err = run(capsys, "study", "rit_it_timing", "--out", str(tmp_path), "--processes", "2")
    assert code == 2 and "does not run its tasks in parallel processes" in err
    code, _, err = run(capsys, "study", "ct041_bayes_vs_lgbm", "--out", str(tmp_path), "--processes", "0")
    assert code == 2 and "--processes must be ≥ 1, got 0" in err
    code, _, err = run(capsys, "study", "ct041_bayes_vs_lgbm", "--out", str(tmp_path), "--processes", "2",
                       "--scheduler", "tcp://nowhere:1")
    assert code == 2 and "not both" in err
