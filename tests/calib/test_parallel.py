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
