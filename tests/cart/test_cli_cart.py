"""CLI contracts: simulate cart (normal and --reference-args) and bench cart."""

import json

import numpy as np

from immunocal.calib.cli.main import main
from immunocal.forward.cart.io import read_csv


def test_simulate_reference_args_reproduces_published_csv(tmp_path, shared_dir, capsys):
    args = ("--nx=12 --ny=12 --nz=12 --Lx=1 --Ly=1 --Lz=1 --dt=0.01 --T=0.2 --output_every=5 --exp_substeps=2 "
            "--diff_iters=60 --diff_tol=1e-12 --tumor_radius=0.35 --tumor_value=1.0 --cart_layer=0.45 "
            "--cart_radius=0.3 --cart_value=0.5 --csv_precision=17 --threads=2")
    rc = main(["simulate", "cart", "--preset", "reference", "--reference-args", args, "--csv-dir", str(tmp_path),
               "--quiet"])
    assert rc == 0
    ref_dir = shared_dir / "data/cart_reference/cubic12_gamma_default"
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == sorted(p.name for p in ref_dir.glob("*.csv"))
    for name in names:
        _, U = read_csv(tmp_path / name)
        _, R = read_csv(ref_dir / name)
        rel = np.abs(U - R).max(axis=(1, 2, 3)) / np.abs(R).max(axis=(1, 2, 3)).clip(1e-300)
        assert rel.max() <= 1e-9
    out = json.loads(capsys.readouterr().out)
    assert out["steps_written"] == [0, 5, 10, 15, 20]


def test_simulate_normalised_writes_csv_and_snapshots(tmp_path, capsys):
    snap = tmp_path / "s.npz"
    rc = main(["simulate", "cart", "--preset", "normalised", "--dim", "2", "--n", "12", "--dt", "0.1", "--t-end",
               "1", "--csv-dir", str(tmp_path / "csv"), "--output-every", "5", "--snapshots", str(snap), "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["observables"]["burden_initial"] > 0
    assert sorted(p.name for p in (tmp_path / "csv").glob("*.csv")) == ["step_000000.csv", "step_000005.csv",
                                                                       "step_000010.csv"]
    with np.load(snap) as z:
        assert z["fields"].shape == (3, 7, 1, 12, 12)


def test_bench_prints_json(capsys):
    assert main(["bench", "cart", "--n", "8", "--steps", "2", "--solver", "jacobi"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 8 and out["solver"] == "jacobi" and out["s_per_step"] > 0 and out["threads"] >= 1


def test_cli_errors(capsys):
    assert main(["simulate", "cart", "--n", "-3", "--quiet"]) == 2
    assert "argument --n: must be an integer >= 1, got '-3'" in capsys.readouterr().err
    assert main(["simulate", "cart", "--dt", "-0.1", "--n", "5", "--quiet"]) == 2
    assert "argument --dt: must be a finite number > 0, got '-0.1'" in capsys.readouterr().err
    assert main(["simulate", "cart", "--n", "1", "--quiet"]) == 2  # a count >= 1 that is still too small
    assert "--n 1 is invalid: need at least 2 nodes" in capsys.readouterr().err
    assert main(["simulate", "cart", "--preset", "bogus", "--quiet"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["simulate", "cart", "--preset", "reference", "--reference-args=--nq=3"]) == 2
    assert "unknown reference argument '--nq'" in capsys.readouterr().err


def test_simulate_with_params_file(tmp_path, capsys):
    from immunocal.priors import registry

    path = registry().parameter_set("cart", "normalised").replace(exhaustion_rate=0.07).to_file(tmp_path / "p.toml")
    assert main(["simulate", "cart", "--params", str(path), "--dim", "1", "--n", "21", "--dt", "0.1", "--t-end", "2",
                 "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "normalised" and out["observables"]["c_max"] > 0
