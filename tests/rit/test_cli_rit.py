"""CLI: simulate / tcp / bench rit, and clear errors (exit code 2) for bad input."""

import json

import numpy as np
import pytest

from immunocal.calib.cli.main import main


def test_simulate_writes_every_state(tmp_path, capsys):
    out = tmp_path / "sim.csv"
    assert (
        main(
            [
                "simulate",
                "rit",
                "--preset",
                "dewan_table3",
                "--rt",
                "8x3@0,1,2",
                "--ctla4",
                "2,5,8",
                "--t-end",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    header = out.read_text().splitlines()[0].split(",")
    assert header[:3] == ["day", "C", "C_doomed"] and "T_a" in header and header[-1] == "C_doomed_3"
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data.shape == (401, len(header))
    assert data[0, header.index("volume_mm3")] == np.float64(32.0)


def test_simulate_with_params_and_schedule_files(tmp_path):
    pfile = tmp_path / "p.toml"
    assert main(["params", "export", "--model", "rit", "--preset", "deng_table1", str(pfile)]) == 0
    sfile = tmp_path / "s.json"
    sfile.write_text(
        json.dumps({"rt_days": [0], "rt_doses_gy": [12], "pdl1_days": [0, 3, 6, 9], "t_end": 21})
    )
    out = tmp_path / "deng.csv"
    assert main(["simulate", "rit", "--params", str(pfile), "--schedule", str(sfile), "--out", str(out)]) == 0
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data[0, 10] == np.float64(120.0)


def test_tcp_prints_json(capsys):
    assert main(["tcp", "rit", "--rt", "8x3@0,1,2", "--ctla4", "2,5,8", "--n-sims", "20", "--seed", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_sims"] == 20 and 0 <= res["tcp"] <= 1 and res["ci95"][0] <= res["tcp"] <= res["ci95"][1]


def test_bench_prints_contract_keys(capsys):
    assert main(["bench", "rit", "--repeats", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert isinstance(res["single_sim_s"], float) and isinstance(res["tcp200_s"], float)
    assert "gradient" not in res  # only with --gradient (a cold compile of the tangent kernel takes ≈ 80 s)


@pytest.mark.slow
def test_bench_gradient_keys(capsys):
    assert main(["bench", "rit", "--repeats", "2", "--gradient", "--complex-step"]) == 0
    g = json.loads(capsys.readouterr().out)["gradient"]
    assert g["tangent_over_values"] > 1.0 and g["complex_step_over_values"] > 1.0


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    out = str(tmp_path / "x.csv")
    cases = [
        (["simulate", "rit", "--rt", "8x3@0,2,1", "--out", out], "sorted"),
        (["simulate", "rit", "--rt=-8@0", "--out", out], "negative"),
        (["simulate", "rit", "--ctla4", "2,5,80", "--out", out], "outside the simulated horizon"),
        (["simulate", "rit", "--preset", "table9", "--out", out], "unknown preset"),
        (["simulate", "rit", "--dt", "0.3", "--ctla4", "2", "--out", out], "not multiples of the time step"),
        (
            ["simulate", "rit", "--schedule", str(tmp_path / "none.json"), "--out", out],
            "no such schedule file",
        ),
        (["tcp", "rit", "--n-sims", "0"], "argument --n-sims: must be an integer >= 1, got '0'"),
        (["simulate", "rit", "--scheme", "explicit", "--rt", "8x3@0,1,2", "--out", out], "reduce dt"),
    ]
    for argv, match in cases:
        assert main(argv) == 2, argv
        assert match in capsys.readouterr().err, argv
