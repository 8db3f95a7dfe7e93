"""Bad input fails with clear errors; guards; simulate_patient API; observables; snapshots."""

import numpy as np
import pytest

from immunocal.forward.cart import Grid, Infusion, InstabilityError, StepSettings, simulate, simulate_patient
from immunocal.forward.cart.io import load_snapshots, save_snapshots
from immunocal.forward.cart.model import CarTSolver
from immunocal.forward.cart.observables import car_t_kinetics, pfs_time, recist_category
from immunocal.priors import ParameterError, registry


@pytest.fixture(scope="module")
def ps():
    return registry().parameter_set("cart", "normalised")


def test_bad_grid():
    with pytest.raises(ValueError, match="grid size nx = -4 is invalid"):
        Grid.cube(3, -4)
    with pytest.raises(ValueError, match="dimension must be 1, 2 or 3"):
        Grid.cube(4, 10)
    with pytest.raises(ValueError, match="domain length Lx = 0.0 is invalid"):
        Grid((5,), (0.0,))


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan")])
def test_bad_dt(dt):
    with pytest.raises(ValueError, match="time step dt = .* is invalid"):
        StepSettings(dt=dt)


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown diffusion solver 'sor'"):
        StepSettings(dt=0.1, solver="sor")
    with pytest.raises(ValueError, match="exp_substeps = 0 is invalid"):
        StepSettings(dt=0.1, exp_substeps=0)


def test_unknown_preset_and_nan_parameter(ps):
    with pytest.raises(ParameterError, match="preset"):
        registry().parameter_set("cart", "nonexistent")
    with pytest.raises(ParameterError, match="not finite"):
        ps.replace(exhaustion_rate=float("nan"))
    with pytest.raises(ValueError, match="34 finite values"):
        CarTSolver(Grid.cube(1, 5), np.full(34, np.nan), StepSettings(dt=0.1))


def test_bad_state_and_infusion(ps):
    g = Grid.cube(1, 5)
    with pytest.raises(ValueError, match=r"state has shape \(7, 1, 1, 4\)"):
        simulate(g, ps, np.zeros((7, 1, 1, 4)), 1.0, 0.1)
    U = g.zeros()
    U[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="initial state must be finite"):
        simulate(g, ps, U, 1.0, 0.1)
    with pytest.raises(ValueError, match="infusion time -1"):
        Infusion(-1.0, 0.1)
    with pytest.raises(ValueError, match=r"infusion profile at t = 0.5 has shape \(3,\)"):
        simulate(g, ps, g.zeros(), 1.0, 0.1, infusions=[Infusion(0.5, np.ones(3))])


def test_instability_guard_names_field_time_and_substeps(ps):
    """The dimensional paper values on contact: the explicit step explodes; the guard raises, never clamps."""
    paper = registry().parameter_set("cart", "paper")
    g = Grid.cube(1, 11)
    U = g.zeros()
    U[0] = 1e7
    U[2] = 2.4e7
    with pytest.raises(InstabilityError, match=r"field (C|TA) .* at t ≈ 0 .*increase exp_substeps \(currently 1, "
                                               r"try ≥ 4\)"):
        simulate(g, paper, U, 0.1, 0.01)


def test_infusion_adds_instantaneously(ps):
    g = Grid.cube(1, 9)
    U = g.zeros()
    res = simulate(g, ps, U, 1.0, 0.1, infusions=[Infusion(0.5, 0.2)])
    c = res.mean("C")
    i = int(np.argmin(np.abs(res.times - 0.5)))
    assert c[i - 1] == 0.0 and c[i] == pytest.approx(0.2, rel=1e-12)


def test_snapshots_roundtrip(tmp_path, ps):
    g = Grid.cube(2, 8)
    U = g.zeros()
    U[2] = 0.5
    res = simulate(g, ps, U, 1.0, 0.1, snapshot_times=[0.0, 0.5, 1.0])
    path = save_snapshots(tmp_path / "s.npz", g, list(res.snapshots), list(res.snapshots.values()), preset="x")
    z = load_snapshots(path)
    assert z["fields"].shape == (3, 7, 1, 8, 8)
    np.testing.assert_array_equal(z["times"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(z["fields"][-1], res.final)


def test_simulate_patient_homogeneous_and_spatial():
    r = simulate_patient({"exhaustion_rate": 0.06}, t_end=60.0)
    o = r.observables
    assert o.c_max > 0.05 and 0 < o.t_max < 20 and o.recist in {"CR", "PR", "SD", "PD"}
    assert r.series["burden"].shape == (61,)
    rs = simulate_patient(model="spatial", dim=1, n=33, t_end=10.0, dt=0.05, dose=0.5)
    assert rs.observables.infiltration_depth is not None and rs.observables.burden_final > 0
    with pytest.raises(ValueError, match="unknown model 'pde'"):
        simulate_patient(model="pde")
    with pytest.raises(ValueError, match="tb_fraction = 2"):
        simulate_patient(tb_fraction=2)
    with pytest.raises(ParameterError, match="exhaustion_rat"):
        simulate_patient({"exhaustion_rat": 0.1})


def test_observables_definitions():
    t = np.arange(0.0, 100.0)
    b = np.r_[np.linspace(1.0, 0.2, 20), np.linspace(0.2, 1.0, 80)]  # nadir 0.2 at day 19
    assert recist_category(b, t) == "PR"  # diameter 0.585 of baseline: −41 %
    pfs, ev = pfs_time(t, b)
    nadir_d = np.cbrt(0.2)
    i = 19 + int(np.argmax(np.cbrt(b[19:]) / nadir_d >= 1.2))  # first time 20 % above the nadir
    assert ev and pfs == t[i]
    assert recist_category(np.linspace(1.0, 3.0, 50)) == "PD"
    assert recist_category(np.full(50, 1.0)) == "SD"
    assert recist_category(np.r_[1.0, 1e-6, 1e-7], detection_limit=1e-3) == "CR"
    k = car_t_kinetics(t, np.exp(-((t - 10) ** 2) / 20))
    assert k.t_max == 10 and k.c_max == 1.0
    with pytest.raises(ValueError, match="positive baseline"):
        recist_category(np.zeros(5))
