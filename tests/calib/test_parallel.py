"""immunocal.calib.parallel.map_tasks: the same results in task order serially, over local processes and on a Dask cluster;
a failing task raises its own error, naming its position. (Task functions come from the standard library: worker
processes import them by module name, and a test module is not importable there.)"""

import math
import operator

import pytest

from immunocal.calib.parallel import map_tasks


def test_serial_processes_and_dask_agree_in_order():
    from distributed import Client, LocalCluster

    tasks = list(range(-6, 6))
    want = [-x for x in tasks]
    assert map_tasks(operator.neg, tasks) == want
    assert map_tasks(operator.neg, tasks, processes=2) == want
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert map_tasks(operator.neg, tasks, scheduler=client) == want


def test_a_failing_task_raises_its_own_error_with_its_position():
    with pytest.raises(ValueError, match="math domain error") as info:
        map_tasks(math.sqrt, [1.0, 4.0, -1.0, 9.0])
    assert any("task 2" in n for n in info.value.__notes__)
    with pytest.raises(ValueError, match="math domain error"):
        map_tasks(math.sqrt, [1.0, 4.0, -1.0, 9.0], processes=2)


def test_local_workers_start_after_the_parent_has_written_arviz_daily_stamp(tmp_path):
    """ArviZ writes a once-a-day stamp on first import through a fixed tmp name; two workers importing it together
    race on it. map_tasks over processes imports it in the parent first: on a fresh cache the stamp exists with
    today's date once a two-process map has run (the workers themselves never import arviz here)."""
    import datetime
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = ("import operator, sys; from immunocal.calib.parallel import map_tasks; "
            "assert 'arviz' not in sys.modules; "
            "assert map_tasks(operator.neg, [1, 2, 3], processes=2) == [-1, -2, -3]")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    stamp = tmp_path / "arviz" / "daily_warning"
    assert stamp.read_text().strip() == datetime.date.today().isoformat()
