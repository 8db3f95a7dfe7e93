"""Compiled kernel vs numpy reference, and reference compatibility with the published C++ solver's output."""

from pathlib import Path

import numpy as np
import pytest

from immunocal.forward.cart.grid import Grid
from immunocal.forward.cart.io import read_csv, write_csv
from immunocal.forward.cart.model import reaction_rhs_numba, reaction_rhs_numpy
from immunocal.forward.cart.params import param_array
from immunocal.forward.cart.reference import parse_reference_args, run_reference
from immunocal.priors import registry

CUBIC = ("--nx=12 --ny=12 --nz=12 --Lx=1 --Ly=1 --Lz=1 --dt=0.01 --T=0.2 --output_every=5 --exp_substeps=2 "
         "--diff_iters=60 --diff_tol=1e-12 --tumor_radius=0.35 --tumor_value=1.0 --cart_layer=0.45 --cart_radius=0.3 "
         "--cart_value=0.5 --csv_precision=17")
ANISO = ("--nx=14 --ny=10 --nz=7 --Lx=1.2 --Ly=1.0 --Lz=0.8 --dt=0.01 --T=0.255 --output_every=10 --exp_substeps=3 "
         "--diff_iters=400 --diff_tol=0 --tumor_radius=0.35 --tumor_value=20 --cart_layer=0.45 --cart_radius=0.3 "
         "--cart_value=2 --gamma=1.0 --csv_precision=17")


@pytest.mark.parametrize("preset", ["normalised", "paper"])
@pytest.mark.parametrize("shape,lengths", [((17,), (1.0,)), ((9, 6), (1.0, 0.7)), ((7, 5, 4), (1.2, 1.0, 0.8))])
def test_numba_rhs_matches_numpy(rng, preset, shape, lengths):
    grid = Grid(shape, lengths)
    p = param_array(registry().parameter_set("cart", preset))
    scale = 1.0 if preset == "normalised" else 1e7
    U = rng.random((7,) + grid.array_shape) * scale
    a, b = reaction_rhs_numba(U, p, grid), reaction_rhs_numpy(U, p, grid)
    err = np.abs(a - b).max(axis=(1, 2, 3)) / np.abs(b).max(axis=(1, 2, 3))
    assert err.max() < 1e-12


def _compare(folder: Path, saved, states):
    files = sorted(folder.glob("step_*.csv"))
    assert [int(f.stem[5:]) for f in files] == saved
    worst = 0.0
    for f, U in zip(files, states):
        _, R = read_csv(f)
        err = np.abs(U - R).max(axis=(1, 2, 3)) / np.maximum(np.abs(R).max(axis=(1, 2, 3)), 1e-300)
        worst = max(worst, err.max())
    return worst


def test_reference_jacobi_matches_published_cubic12(shared_dir):
    saved, states = run_reference(CUBIC, solver="jacobi")
    assert saved == [0, 5, 10, 15, 20]
    assert _compare(shared_dir / "data/cart_reference/cubic12_gamma_default", saved, states) <= 1e-9


def test_reference_exact_matches_published_aniso_converged(shared_dir):
    saved, states = run_reference(ANISO, solver="exact")
    assert saved == [0, 10, 20, 26]  # ceil(0.255/0.01) = 26 steps, t_end = 0.26
    assert _compare(shared_dir / "data/cart_reference/aniso14x10x7_gamma1_converged", saved, states) <= 1e-9


def test_reference_csv_layout_is_byte_identical_at_step0(shared_dir, tmp_path):
    args = parse_reference_args(ANISO)
    run_reference(args, csv_dir=tmp_path, solver="exact")
    ref = (shared_dir / "data/cart_reference/aniso14x10x7_gamma1_converged/step_000000.csv").read_text()
    assert (tmp_path / "step_000000.csv").read_text() == ref
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [f"step_{n:06d}.csv" for n in (0, 10, 20, 26)]


def test_csv_roundtrip(tmp_path, rng):
    grid = Grid((5, 4), (1.0, 2.0))
    U = rng.random((7,) + grid.array_shape)
    write_csv(tmp_path / "a.csv", grid, U, 0.5)
    t, V = read_csv(tmp_path / "a.csv")
    assert t == 0.5 and np.array_equal(U, V)


def test_reference_args_errors():
    with pytest.raises(ValueError, match="unknown reference argument '--nq'"):
        parse_reference_args("--nq=3")
    with pytest.raises(ValueError, match="--nx=1 is invalid"):
        parse_reference_args("--nx=1")
    with pytest.raises(ValueError, match="failed to parse reference argument --dt=abc"):
        parse_reference_args("--dt=abc")
