"""`immunocal simulate dln` / `immunocal bench dln` (plugin calib/cli/dln.py)."""

import csv
import json

from immunocal.calib.cli.main import main

EXAMPLE = "forward/dln/examples/abscopal_ctla4.toml"


def test_simulate_writes_long_csv(tmp_path, capsys):
    out = tmp_path / "traj.csv"
    assert main(["simulate", "dln", "--plan", EXAMPLE, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[0] == {
        "day": "0",
        "kind": "target",
        "compartment": "primary",
        "variable": "tumour_cells",
        "value": "1000000.0",
    }
    kinds = {(r["kind"], r["compartment"]) for r in rows}
    assert kinds == {
        ("target", "primary"),
        ("target", "distant"),
        ("dln", "dln_primary"),
        ("dln", "dln_distant"),
    }
    assert max(int(r["day"]) for r in rows) == 40
    assert "final volumes" in capsys.readouterr().out


def test_simulate_with_params_file(tmp_path):
    from immunocal.forward.dln import default_parameters

    pfile = default_parameters().replace(ctl_cytotoxicity=0.0).to_file(tmp_path / "p.toml")
    out = tmp_path / "t.csv"
    assert main(["simulate", "dln", "--plan", EXAMPLE, "--params", str(pfile), "--out", str(out)]) == 0


def test_simulate_bad_plan_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'days = 10\n[network]\ntargets = ["t"]\ndlns = ["d"]\ndrains_to = { t = ["d"] }\n'
        '[[drug]]\nname = "anti_pd1"\ndays = [10]\n'
    )
    assert main(["simulate", "dln", "--plan", str(bad), "--out", str(tmp_path / "x.csv")]) == 2
    assert "day 10 is outside the horizon [0, 9]" in capsys.readouterr().err


def test_bench_prints_contract_keys(capsys):
    assert main(["bench", "dln", "--n", "64", "--repeats", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"single_sim_s", "batch10k_s"} <= set(data)
    assert data["n_batch"] == 64 and data["days"] == 60 and data["targets"] == 2 and data["dlns"] == 1
