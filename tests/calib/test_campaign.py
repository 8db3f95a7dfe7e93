import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calib.campaign import Campaign
from calib.design import design
from calib.toy import LinearModel

ROOT = Path(__file__).resolve().parents[2]


def _all_indices(folder: Path) -> list[int]:
    out = []
    for f in sorted((folder / "chunks").glob("chunk_*.npz")):
        with np.load(f) as z:
            out.extend(z["indices"].tolist())
    return out


def test_serial_run_records_failures_and_goes_on(tmp_path):
    X = design(LinearModel().space(), 20, seed=1)
    camp = Campaign.create(tmp_path / "c", "toy.linear", X, condition={"fail_above": {"level": 3.0}}, chunk_size=4)
    st = camp.run(workers=0, progress=False)
    n_bad = int((X[:, 0] > 3.0).sum())
    assert n_bad > 0
    assert st == {**st, "n_runs": 20, "finished": 20, "failed": n_bad, "succeeded": 20 - n_bad, "pending": 0}
    fails = camp.failures()
    assert {f["index"] for f in fails} == set(np.flatnonzero(X[:, 0] > 3.0).tolist())
    assert all("toy failure: level=" in f["error"] and f["parameters"]["level"] > 3 for f in fails)
    theta, Y = camp.training_data()
    np.testing.assert_allclose(Y[:, 0, :], theta[:, :1] + theta[:, 1:2] * LinearModel().times)
    assert json.loads((tmp_path / "c" / "index.json").read_text())["failed"] == n_bad
    assert camp.run(workers=0, progress=False)["finished"] == 20  # nothing left to do, nothing repeated
    with pytest.raises(ValueError, match="a campaign already exists here"):
        Campaign.create(tmp_path / "c", "toy.linear", X)


def test_create_errors(tmp_path):
    with pytest.raises(ValueError, match=r"design has 3 columns, the model 'toy.linear' takes 2"):
        Campaign.create(tmp_path / "a", "toy.linear", np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['nope'\]"):
        Campaign.create(tmp_path / "a", "toy.linear", np.zeros((2, 1)), parameter_names=["nope"])
    with pytest.raises(ValueError, match=r"parameter\(s\) \['slope'\] are neither in the design nor fixed"):
        Campaign.create(tmp_path / "a", "toy.linear", np.zeros((2, 1)), parameter_names=["level"])
    with pytest.raises(ValueError, match="unknown toy forward model 'toy.nope'"):
        Campaign.create(tmp_path / "a", "toy.nope", np.zeros((2, 1)))
    with pytest.raises(FileNotFoundError, match="not a campaign folder"):
        Campaign(tmp_path / "missing")


def test_subset_design_with_fixed_values_and_process_pool(tmp_path):
    X = np.linspace(-1, 1, 12)[:, None]
    camp = Campaign.create(tmp_path / "p", "toy.linear", X, parameter_names=["level"], fixed={"slope": 2.0},
                           chunk_size=3)
    camp.run(workers=2, progress=False)
    theta, Y = camp.training_data()
    np.testing.assert_allclose(Y[:, 0, 1], theta[:, 0] + 2.0)
    assert _all_indices(tmp_path / "p") == list(range(12)) or sorted(_all_indices(tmp_path / "p")) == list(range(12))


def test_sigkill_then_resume_completes_every_point_exactly_once(tmp_path):
    folder = tmp_path / "k"
    X = design(LinearModel().space(), 40, seed=2)
    Campaign.create(folder, "toy.linear", X, condition={"sleep": 0.15}, chunk_size=2)
    code = f"from calib.campaign import Campaign; Campaign({str(folder)!r}).run(workers=0, progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while len(list((folder / "chunks").glob("chunk_*.npz"))) < 3 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = sorted(_all_indices(folder))
    assert 0 < len(done_before) < 40, "the kill must land mid-campaign"
    camp = Campaign(folder)  # reopening cleans half-written temporaries
    assert camp.status()["pending"] == 40 - len(done_before)
    st = camp.run(workers=0, progress=False)
    idx = _all_indices(folder)
    assert sorted(idx) == list(range(40)) and len(idx) == len(set(idx)) == 40
    assert st["finished"] == 40 and st["failed"] == 0
    assert not list((folder / "chunks").glob("*.tmp*"))


def test_dask_scheduler(tmp_path):
    distributed = pytest.importorskip("distributed")
    X = design(LinearModel().space(), 8, seed=4)
    camp = Campaign.create(tmp_path / "d", "toy.linear", X, chunk_size=2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            st = camp.run(scheduler=client, progress=False)
    assert st["finished"] == 8 and sorted(_all_indices(tmp_path / "d")) == list(range(8))


def test_extend_keeps_finished_runs(tmp_path):
    X = design(LinearModel().space(), 5, seed=5)
    camp = Campaign.create(tmp_path / "e", "toy.linear", X, chunk_size=4)
    camp.run(workers=0, progress=False)
    new_idx = camp.extend(np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert new_idx.tolist() == [8, 9]
    camp.run(workers=0, progress=False)
    r = camp.load()
    assert r["indices"].tolist() == [0, 1, 2, 3, 4, 8, 9]
    np.testing.assert_allclose(r["theta"][-2:], [[0.1, 0.2], [0.3, 0.4]])
