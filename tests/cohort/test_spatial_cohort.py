"""The spatial virtual cohort (calib/cohort.py with ``CohortConfig.spatial()``): the boundary-layer infusion, the
kill-rate series, the cohort's resolution and its CLI."""

import json
from dataclasses import replace

import numpy as np
import pytest

from immunocal.calib.cohort import (
    CohortConfig,
    generate_cohort,
    layer_density,
    load_cohort,
    resolution_check,
    spatial_geometry,
)
from immunocal.forward.cart.grid import Grid
from immunocal.forward.cart.patient import simulate_patient
from immunocal.forward.cart.reference import reference_initial_state
from immunocal.forward.cart.scenarios import FocusGeometry, car_t_profile, focus_state, focus_volume
from immunocal.priors import registry


@pytest.mark.parametrize("dim", [2, 3])
def test_layer_dose_matches_the_homogeneous_dose_per_focus_volume(dim):
    """density × layer volume = dose × focus volume, on the grid itself."""
    geom = spatial_geometry()
    grid = Grid.cube(dim, 24)
    rho = layer_density(geom, dim, 24, 0.05)
    assert grid.integrate(car_t_profile(grid, geom, density=rho)) == pytest.approx(0.05 * focus_volume(grid, geom),
                                                                                   rel=1e-12)
    # the layer is the published program's initial CAR-T state (x ≤ layer, within the radius of the axis)
    ref = reference_initial_state(grid, 0.2, 1.0, geom.cart_layer, geom.layer_radius, rho)
    np.testing.assert_array_equal(car_t_profile(grid, geom, density=rho), ref[0])
    # the focus volume is the ball's (area in 2-D) to the grid's accuracy
    exact = np.pi * geom.tumour_radius**2 if dim == 2 else 4 / 3 * np.pi * geom.tumour_radius**3
    assert focus_volume(grid, geom) == pytest.approx(exact, rel=0.05)


def test_geometry_rejects_bad_values():
    with pytest.raises(ValueError, match="cart_source = 'blood'"):
        FocusGeometry(cart_source="blood")
    with pytest.raises(ValueError, match="layer_radius = 0"):
        FocusGeometry(layer_radius=0.0)


def test_spatial_kill_series_and_focus_units():
    """``kill`` is γ ∫ C T_A (at t = 0 after the day-0 infusion), and ``spatial_units='focus'`` divides every
    integral by the focus volume (A, H stay domain means)."""
    ps = registry().parameter_set("cart", "normalised")
    geom = FocusGeometry.from_preset().with_(cart_offset=-0.1)        # CAR-T ball overlapping the focus
    kw = dict(model="spatial", dim=2, n=24, dt=0.05, t_end=2.0, geometry=geom, dose=0.4, tumour0=0.6)
    a = simulate_patient(ps, **kw)
    b = simulate_patient(ps, spatial_units="focus", **kw)
    grid = Grid.cube(2, 24)
    g = geom.with_(tumour_density=0.6, cart_density=0.4)
    u0 = focus_state(grid, g)
    assert a.series["kill"][0] == pytest.approx(ps["tumour_kill_rate"] * grid.integrate(u0[0] * u0[2]), rel=1e-12)
    assert a.series["kill"][-1] > 0 and np.all(np.isfinite(a.series["kill"]))
    vol = focus_volume(grid, g)
    for k in ("C", "E", "TA", "TB", "burden", "kill"):
        np.testing.assert_allclose(b.series[k] * vol, a.series[k], rtol=1e-12)
    for k in ("A", "H"):
        np.testing.assert_array_equal(b.series[k], a.series[k])
    with pytest.raises(ValueError, match="spatial_units = 'cells'"):
        simulate_patient(ps, spatial_units="cells", **kw)


def test_homogeneous_kill_series_is_gamma_c_ta():
    ps = registry().parameter_set("cart", "normalised")
    r = simulate_patient(ps, t_end=10.0)
    np.testing.assert_allclose(r.series["kill"], ps["tumour_kill_rate"] * r.series["C"] * r.series["TA"])


def test_spatial_config_and_errors():
    cfg = CohortConfig.spatial()
    assert cfg.model == "spatial" and cfg.resolution == {"dim": 2, "n_grid": cfg.n_grid, "dt": cfg.dt,
                                                         "obs_step": cfg.obs_step}
    with pytest.raises(ValueError, match="model = 'pde'"):
        CohortConfig(model="pde")
    with pytest.raises(ValueError, match="dt = 0.1 is invalid"):
        CohortConfig.spatial(dt=0.1)
    with pytest.raises(ValueError, match="n_grid = 4"):
        CohortConfig.spatial(n_grid=4)


def test_spatial_cohort_uses_transport_not_the_infiltration_fraction():
    """θ_inf acts through D_C and χ0 in the spatial cohort (the same patient with θ_inf = 0 and 1 differs in its
    CAR-T kinetics), and the number of infused cells does not depend on it (the ODE's infiltration fraction)."""
    cfg = CohortConfig.spatial(n_grid=24)
    df = generate_cohort(2, np.random.default_rng(3), cfg=cfg)
    assert np.all(np.isfinite(df["c_max"])) and set(df["best_recist"]) <= {"PD", "SD", "PR", "CR"}
    from immunocal.calib.cohort import simulate_one

    nz = {"cmax": 0.0, "crs": 0.0, "markers": np.zeros(3), "scans": np.zeros(30)}
    th = dict(theta_inf=0.0, theta_exh=0.5, theta_cyt=0.7, theta_esc=0.2, theta_env=0.5, theta_init=0.4)
    lo = simulate_one(th, 3.75e8, nz, cfg)
    hi = simulate_one({**th, "theta_inf": 1.0}, 3.75e8, nz, cfg)
    assert hi["model_c_max"] != pytest.approx(lo["model_c_max"], rel=1e-3)
    import immunocal.forward.cart.patient as patient   # model_series imports it at call time: patched at its source

    doses = []

    original = patient.simulate_patient

    def spy(*a, **k):
        doses.append(k["dose"])
        return original(*a, **k)

    patient.simulate_patient = spy
    try:
        simulate_one(th, 3.75e8, nz, cfg)
        simulate_one({**th, "theta_inf": 1.0}, 3.75e8, nz, cfg)
        simulate_one(th, 3.75e8, nz, replace(cfg, model="homogeneous"))
        simulate_one({**th, "theta_inf": 1.0}, 3.75e8, nz, replace(cfg, model="homogeneous"))
    finally:
        patient.simulate_patient = original
    assert doses[0] == doses[1]                                 # spatial: the layer's density, whatever θ_inf
    assert doses[3] == pytest.approx(100 * doses[2])            # ODE: the infiltration fraction 0.01 → 1


@pytest.mark.slow
def test_spatial_default_resolution_is_converged():
    """The default 2-D grid and step against twice the nodes and half the step, on three patients: < 5 %, no
    RECIST/CRS flip (the study compares a whole ladder with a finer reference)."""
    res = resolution_check(3, np.random.default_rng(5), CohortConfig.spatial())
    assert res["fine"]["n_grid"] == 2 * res["coarse"]["n_grid"] and res["converged"], res


def test_cli_generates_a_spatial_cohort(tmp_path, capsys):
    from immunocal.calib.cli.main import main

    out = tmp_path / "spatial.csv"
    assert main(["cohort", "generate", "--model", "spatial", "--n", "2", "--n-grid", "24", "--seed", "4", "--out",
                 str(out)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["model"] == "spatial" and info["resolution"]["n_grid"] == 24 and info["n"] == 2
    assert "model=spatial" in out.read_text().splitlines()[0]
    assert len(load_cohort(out)) == 2
    assert main(["cohort", "generate", "--n", "2", "--dim", "3", "--out", str(tmp_path / "x.csv")]) == 2
    assert "do not apply to the homogeneous model" in capsys.readouterr().err


@pytest.mark.slow
def test_ct041_spatial_cohort_quick(tmp_path):
    from immunocal.studies import ct041_spatial_cohort

    res = ct041_spatial_cohort.run(tmp_path, quick=True)
    data = json.loads((tmp_path / "ct041_spatial_cohort.json").read_text())
    assert data["virtual"] is True and data["n"] == 40 and len(res["resolution"]["settings"]) == 2
    assert set(data["information"]["spatial"]) == set(ct041_spatial_cohort.OBSERVABLES)
    for name in ("ct041_spatial_cohort.png", "ct041_spatial_n40.csv"):
        assert (tmp_path / name).stat().st_size > 0


def _small_spatial():
    return CohortConfig.spatial(n_grid=16, t_end=56.0)


def test_campaign_resume_reruns_only_the_missing_chunks(tmp_path):
    """A generation killed before some chunks were written resumes from the finished ones: the same cohort, the
    finished chunk files untouched (nothing repeated), the missing ones written (nothing lost)."""
    import time

    import pandas as pd

    cfg = _small_spatial()
    ref = generate_cohort(6, np.random.default_rng(2), cfg=cfg)
    folder = tmp_path / "camp"
    first = generate_cohort(6, np.random.default_rng(2), cfg=cfg, campaign=folder, chunk_size=2)
    pd.testing.assert_frame_equal(first, ref, check_exact=False, rtol=1e-12)
    chunks = sorted((folder / "chunks").glob("chunk_*.npz"))
    assert len(chunks) == 3
    chunks[1].unlink()                                          # as if the runner died before writing it
    stamps = {p.name: p.stat().st_mtime_ns for p in chunks if p.exists()}
    time.sleep(0.05)
    again = generate_cohort(6, np.random.default_rng(2), cfg=cfg, campaign=folder, chunk_size=2)
    pd.testing.assert_frame_equal(again, ref, check_exact=False, rtol=1e-12)
    assert {p.name: p.stat().st_mtime_ns for p in chunks if p.name in stamps} == stamps
    assert chunks[1].exists()
    with pytest.raises(ValueError, match="campaign of other patients"):
        generate_cohort(5, np.random.default_rng(2), cfg=cfg, campaign=folder)
    with pytest.raises(ValueError, match="other forward settings"):
        generate_cohort(6, np.random.default_rng(2), cfg=replace(cfg, dt=0.025), campaign=folder)
    with pytest.raises(ValueError, match="give the campaign folder too"):
        generate_cohort(6, np.random.default_rng(2), cfg=cfg, scheduler="tcp://127.0.0.1:1")


def test_dask_cluster_losing_a_worker_mid_run_gives_the_same_cohort(tmp_path):
    """A LocalCluster (worker processes under nannies) whose worker is killed (SIGKILL) while the cohort's campaign
    runs on it: the scheduler re-runs the lost chunk elsewhere, the runner writes every chunk once, and the cohort is
    the in-process one."""
    import os
    import signal
    import threading
    import time

    import pandas as pd
    from distributed import Client, LocalCluster

    cfg = _small_spatial()
    ref = generate_cohort(8, np.random.default_rng(4), cfg=cfg)
    folder = tmp_path / "camp"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        killed = []

        def kill_a_worker_after_the_first_chunk():
            deadline = time.time() + 120
            while time.time() < deadline and not list((folder / "chunks").glob("chunk_*.npz")):
                time.sleep(0.05)
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(len(list((folder / "chunks").glob("chunk_*.npz"))))

        t = threading.Thread(target=kill_a_worker_after_the_first_chunk, daemon=True)
        t.start()
        df = generate_cohort(8, np.random.default_rng(4), cfg=cfg, campaign=folder, scheduler=client, chunk_size=1)
        t.join(5)
    assert killed and killed[0] < 8, "the worker must be killed during the run"
    pd.testing.assert_frame_equal(df, ref, check_exact=False, rtol=1e-12)
    assert len(list((folder / "chunks").glob("chunk_*.npz"))) == 8


def test_bench_spatial_reports_cost_and_dask_efficiency(capsys):
    from immunocal.calib.cli.main import main

    assert main(["bench", "cohort", "--model", "spatial", "--n-grid", "16", "--patients", "1", "--dask-patients",
                 "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["model"] == "spatial" and out["resolution"]["n_grid"] == 16 and out["patients_timed"] == 1
    assert out["seconds_per_virtual_patient"] > 0 and set(out["dask_seconds"]) == {"1_workers", "2_workers"}
    assert out["dask_parallel_efficiency_2_workers"] > 0


def test_spatial_personalisation_config_resolves_to_the_pde():
    """The bundled spatial config builds the workflow's simulator on the PDE at the cohort's grid, and its campaign
    key differs from the homogeneous config's (an ODE emulator is never reused for the PDE)."""
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir
    from immunocal.calib.forward_api import load_forward_model

    cfg = load_config(dataset_dir("ct041_virtual_spatial") / "personalise.toml")
    sim = load_forward_model(cfg["model"]["forward"], **cfg["model"]["options"])
    assert sim.cfg.model == "spatial" and sim.cfg.n_grid == CohortConfig.spatial().n_grid
    assert "spatial" in sim.numerics_tag
    ode = load_forward_model(load_config(dataset_dir("ct041_virtual") / "personalise.toml")["model"]["forward"])
    assert ode.numerics_tag != sim.numerics_tag
    with pytest.raises(ValueError, match="grid settings .* are the spatial model's"):
        load_forward_model(cfg["model"]["forward"], n_grid=32)


def test_stored_spatial_runs_name_the_solver_revision():
    """Runs of another revision of the PDE solver's arithmetic are never mixed with this one's: the campaign
    descriptor and the emulator's numerics tag carry the revision, and a descriptor of another revision is refused
    by name (the homogeneous model's keys do not carry it)."""
    from immunocal.calib.cohort import CohortForward, CohortSimulator
    from immunocal.forward.cart.model import SOLVER_REVISION

    opts = CohortForward.options(CohortConfig.spatial())
    assert opts["solver_revision"] == SOLVER_REVISION
    assert CohortForward(**opts).cfg.model == "spatial"
    with pytest.raises(ValueError, match="solver revision 1 cannot be continued"):
        CohortForward(**{**opts, "solver_revision": 1})
    assert f"solver=r{SOLVER_REVISION}" in CohortSimulator(model="spatial").numerics_tag
    assert "solver_revision" not in CohortForward.options(CohortConfig())
    assert "solver" not in CohortSimulator().numerics_tag


@pytest.mark.slow
def test_ct041_spatial_emulator_quick(tmp_path):
    """The PDE emulator study in quick mode (60 design runs per dose, short chains; ~10 min)."""
    from immunocal.studies import ct041_spatial_emulator

    res = ct041_spatial_emulator.run(tmp_path, quick=True)
    assert res["virtual"] is True and "spatial" in res["numerics"]
    assert set(res["recovery"]) == {f"theta_{k}" for k in ("inf", "exh", "cyt", "esc", "env", "init")}
    assert set(res["emulator_validation"]) == {"dose_2.5e8", "dose_3.75e8", "dose_5e8"}
    assert (tmp_path / "ct041_spatial_emulator.png").stat().st_size > 0


@pytest.mark.slow
def test_spatial_orr_dcr_tuned_over_1000_patients():
    """The spatial intercepts give ORR ≈ 0.49 and DCR ≈ 0.73 over 1,000 patients (the study's cohort; ~8 min)."""
    from immunocal.calib.cohort import summary

    s = summary(generate_cohort(1000, np.random.default_rng(2026), cfg=CohortConfig.spatial(), processes=2))
    assert abs(s["orr"] - 0.49) <= 0.05 and abs(s["dcr"] - 0.73) <= 0.05, s


def test_refined_resolution_of_either_model_is_a_valid_config():
    """The homogeneous reference resolution (1/16-day output) is not bound by the spatial step (the ct041_lgbm
    study's resolution check once failed on it); the spatial one doubles the nodes and halves the step."""
    from immunocal.calib.cohort import refined

    assert refined(CohortConfig()).resolution == {"rtol": 1e-9, "obs_step": 1 / 16}
    sp = refined(CohortConfig.spatial())
    assert (sp.n_grid, sp.dt) == (2 * CohortConfig.spatial().n_grid, CohortConfig.spatial().dt / 2)
    assert resolution_check(1, np.random.default_rng(0))["n"] == 1


def test_resolution_sample_as_a_campaign_resumes_and_equals_the_in_process_rows(tmp_path):
    """simulate_sample (the resolution studies' runs) as a campaign: the same rows as in-process (the T_max parts
    included), one chunk per patient, a lost chunk re-run alone on resume; each row carries its run's cost, and a
    campaign whose chunks predate the cost record is refused by name (not silently costed 0)."""
    import time

    from immunocal.calib.cohort import sample_patients, simulate_sample, t_max_parts

    cfg = _small_spatial()
    df = sample_patients(3, np.random.default_rng(5), cfg)
    ref = simulate_sample(df, cfg)
    folder = tmp_path / "ladder"
    rows = simulate_sample(df, cfg, campaign=folder)
    for a, b in zip(rows, ref):
        assert a["run_seconds"] > 0 and b["run_seconds"] > 0
        for k in ("model_first_peak_time", "model_window_end_margin", "model_t_peak", "model_best_response",
                  "model_c_max", "crs_score", "t_max"):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), k
        # the margin decides the daily T_max: > 0 exactly when it is the window's last day
        assert (a["model_window_end_margin"] > 0) == (a["t_max"] == cfg.kinetics_window)
    chunks = sorted((folder / "chunks").glob("chunk_*.npz"))
    assert len(chunks) == 3
    chunks[0].unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in chunks[1:]}
    time.sleep(0.05)
    again = simulate_sample(df, cfg, campaign=folder)
    assert [r["model_first_peak_time"] for r in again] == [r["model_first_peak_time"] for r in rows]
    assert {p.name: p.stat().st_mtime_ns for p in chunks[1:]} == stamps and chunks[0].exists()
    with np.load(chunks[1]) as z:  # a chunk written before runs recorded their cost
        old = {k: z[k] for k in z.files if k != "seconds"}
    with open(chunks[1], "wb") as fh:
        np.savez(fh, **old)
    with pytest.raises(ValueError, match="do not record their cost"):
        simulate_sample(df, cfg, campaign=folder)
    # the two T_max parts are those of the personalisation simulator (one function)
    from immunocal.calib.cohort import _model_run

    run = _model_run({k.removeprefix("true_"): float(df[k].iat[0]) for k in df.columns if k.startswith("true_")},
                     float(df["dose"].iat[0]), cfg, None, None, None)
    assert t_max_parts(run, cfg) == (ref[0]["model_first_peak_time"], ref[0]["model_window_end_margin"])


def test_spatial_personalisation_config_differs_from_the_homogeneous_only_in_its_model():
    """The two cohorts' personalisation configs are one likelihood, emulator variance, refinement and sampler: a
    lesson learned on one (fixed T_max rounding sd, variance at posterior draws, one refinement round, top-ups) is
    carried to the other, so the head-to-heads on the two cohorts differ only in the forward model."""
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir

    spatial = load_config(dataset_dir("ct041_virtual_spatial") / "personalise.toml")
    ode = load_config(dataset_dir("ct041_virtual") / "personalise.toml")
    for cfg in (spatial, ode):
        for key in ("model", "output", "data", "_base", "_path"):  # the last two: where the file was read from
            cfg.pop(key)
    assert spatial == ode
