"""calib.parallel.map_tasks: the same results in task order serially, over local processes and on a Dask cluster;
a failing task raises its own error, naming its position."""

import pytest

from calib.parallel import map_tasks


def _square(x):
    return x * x


def _fail_on_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def test_serial_processes_and_dask_agree_in_order():
    from distributed import Client, LocalCluster

    tasks = list(range(12))
    want = [x * x for x in tasks]
    assert map_tasks(_square, tasks) == want
    assert map_tasks(_square, tasks, processes=2) == want
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert map_tasks(_square, tasks, scheduler=client) == want


def test_a_failing_task_raises_its_own_error_with_its_position():
    with pytest.raises(ValueError, match="three is not allowed") as info:
        map_tasks(_fail_on_three, [1, 2, 3, 4])
    assert any("task 2" in n for n in info.value.__notes__)
    with pytest.raises(ValueError, match="three is not allowed"):
        map_tasks(_fail_on_three, [1, 2, 3, 4], processes=2)
