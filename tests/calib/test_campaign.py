import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from immunocal.calib.campaign import Campaign
from immunocal.calib.design import design
from immunocal.calib.toy import LinearModel

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
    code = f"from immunocal.calib.campaign import Campaign; Campaign({str(folder)!r}).run(workers=0, progress=False)"
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
    camp = Campaign(folder)  # opening is read-only; the run clears the half-written temporaries
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


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (as a live runner would) until killed."""
    code = (f"import time; from immunocal.calib.locking import folder_lock\nwith folder_lock({str(folder)!r}):\n"
            "    print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_runner_is_refused_with_the_holders_pid_and_a_kill_frees_the_lock(tmp_path):
    from immunocal.calib.locking import FolderBusy, holder

    X = design(LinearModel().space(), 8, seed=6)
    camp = Campaign.create(tmp_path / "l", "toy.linear", X, chunk_size=4)
    proc = _hold_lock(camp.path)
    try:
        assert holder(camp.path) == str(proc.pid)
        with pytest.raises(FolderBusy, match=f"in use by process {proc.pid}"):
            camp.run(workers=0, progress=False)
        with pytest.raises(FolderBusy):
            camp.extend(np.array([[0.1, 0.2]]))
        assert camp.status()["pending"] == 8  # a reader is never refused
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the kernel drops the lock of a killed holder
        proc.wait(10)
    assert holder(camp.path) is None
    assert camp.run(workers=0, progress=False)["finished"] == 8


def test_status_is_read_only_beside_a_live_writer(tmp_path):
    X = design(LinearModel().space(), 8, seed=7)
    camp = Campaign.create(tmp_path / "s", "toy.linear", X, chunk_size=4)
    live = camp.path / "chunks" / "chunk_000000.npz.tmp4242"  # the running writer's file, half written
    live.write_bytes(b"partial")
    before = sorted(p.name for p in camp.path.rglob("*"))
    again = Campaign(camp.path)
    assert again.status()["pending"] == 8
    assert sorted(p.name for p in camp.path.rglob("*")) == before and live.exists()


def test_concurrent_creation_of_one_folder_gives_one_campaign(tmp_path):
    """Two creators raced to a folder holding one's design and the other's chunks; now one wins whole, the rest
    are refused by name."""
    import threading

    folder = tmp_path / "race"
    designs = [np.full((4, 2), float(i)) for i in range(8)]
    outcome: dict[int, str] = {}

    def create(i: int) -> None:
        try:
            Campaign.create(folder, "toy.linear", designs[i], chunk_size=2)
            outcome[i] = "created"
        except ValueError as exc:
            outcome[i] = str(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcome.items() if o == "created"]
    assert len(winners) == 1, outcome
    assert all("already exists" in o or "at the same time" in o for i, o in outcome.items() if i not in winners)
    np.testing.assert_array_equal(Campaign(folder).design, designs[winners[0]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race"]  # no temporary folder left behind


def test_truncated_chunk_is_named_kept_and_rerun(tmp_path):
    X = design(LinearModel().space(), 8, seed=8)
    camp = Campaign.create(tmp_path / "t", "toy.linear", X, chunk_size=4)
    camp.run(workers=0, progress=False)
    chunk = camp.path / "chunks" / "chunk_000001.npz"
    chunk.write_bytes(chunk.read_bytes()[:100])
    st = camp.status()
    assert st["unreadable_chunks"] == ["chunk_000001.npz"] and st["pending"] == 4
    with pytest.raises(ValueError, match="unreadable chunk"):
        camp.training_data()
    with pytest.warns(UserWarning, match="chunk_000001.npz: unreadable chunk"):
        st = camp.run(workers=0, progress=False)
    assert st["finished"] == 8 and "unreadable_chunks" not in st
    assert len(list((camp.path / "chunks").glob("chunk_000001.npz.corrupt-*"))) == 1  # kept, not deleted
    assert sorted(_all_indices(camp.path)) == list(range(8))


def test_calibration_into_a_folder_in_use_is_refused(tmp_path):
    from immunocal.calib.locking import FolderBusy
    from immunocal.calib.workflow import Calibration

    out = tmp_path / "run"
    out.mkdir()
    proc = _hold_lock(out)
    try:
        cal = Calibration(ROOT / "calib" / "data" / "toy_logistic" / "calibrate.toml", out, progress=False)
        with pytest.raises(FolderBusy, match=f"output folder is in use by process {proc.pid}"):
            cal.run()
    finally:
        proc.kill()
        proc.wait(10)


def test_worker_processes_exit_after_their_runner_is_killed(tmp_path):
    """joblib's loky workers outlived a ``kill -9`` of the campaign runner (still running 40 s later, holding the
    shell's pipeline open); now they follow it within seconds, and the campaign resumes to completion."""
    folder = tmp_path / "pool"
    X = design(LinearModel().space(), 24, seed=9)
    Campaign.create(folder, "toy.linear", X, condition={"sleep": 0.5}, chunk_size=2)
    code = f"from immunocal.calib.campaign import Campaign; Campaign({str(folder)!r}).run(workers=2, progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                            stderr=subprocess.DEVNULL)

    def descendants(pid: int) -> list[int]:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
        return [d for k in map(int, kids) for d in (k, *descendants(k))]

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    try:
        deadline = time.time() + 60
        while len(list((folder / "chunks").glob("chunk_*.npz"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        workers = descendants(proc.pid)
        assert workers, "the runner must have worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 15
        while any(map(running, workers)) and time.time() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if running(w)], "worker processes outlived their runner"
    finally:
        for w in descendants(proc.pid):
            os.kill(w, signal.SIGKILL)
    st = Campaign(folder).run(workers=0, progress=False)
    assert st["finished"] == 24 and sorted(_all_indices(folder)) == list(range(24))
