"""One way to run independent tasks: serially, over local processes, or on a Dask cluster.

``map_tasks(fn, tasks)`` returns ``[fn(t) for t in tasks]`` in task order, with a progress bar; ``processes > 1``
runs them over that many local worker processes (joblib's loky: functions and arguments travel by cloudpickle), and
``scheduler`` (a ``distributed.Client`` or a scheduler address such as ``tcp://host:8786``) submits each task to a
Dask cluster — work that outgrows one machine (the workers must import this package and see the same files).
Used by the LightGBM baseline's folds, the virtual cohort's patients and the personalisation study's folds; the
simulation campaigns submit their chunks to Dask themselves (they store each chunk as it arrives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def map_tasks(fn: Callable, tasks: Sequence, *, processes: int = 1, scheduler=None, progress: bool = False,
              desc: str = "", unit: str = "task") -> list:
    """``[fn(t) for t in tasks]`` (in order) — serially, over ``processes`` local processes, or on the Dask
    ``scheduler``. A task's exception is raised here (its own type, with a note naming the task's position)."""
    from tqdm.auto import tqdm

    tasks = list(tasks)
    bar = {"total": len(tasks), "desc": desc, "disable": not progress, "unit": unit}
    if scheduler is not None:
        return _dask(fn, tasks, scheduler, bar)
    if processes <= 1 or len(tasks) <= 1:
        return [_call(fn, i, t) for i, t in enumerate(tqdm(tasks, **bar))]
    from joblib import Parallel, delayed

    par = Parallel(n_jobs=processes, return_as="generator")
    return list(tqdm(par(delayed(_call)(fn, i, t) for i, t in enumerate(tasks)), **bar))


def _call(fn, i, task):
    try:
        return fn(task)
    except Exception as err:  # the task's own error, with its position
        err.add_note(f"in task {i} of calib.parallel.map_tasks")
        raise


def _dask(fn, tasks: list, scheduler, bar: dict) -> list:
    from tqdm.auto import tqdm

    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover
        raise ValueError("a Dask scheduler was given but 'distributed' is not installed: "
                         "pip install 'immunocal[dask]'") from None
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(_call, fn, i, t, pure=False): i for i, t in enumerate(tasks)}
        out: list = [None] * len(tasks)
        with tqdm(**bar) as progress:
            for f in as_completed(list(futures)):
                out[futures[f]] = f.result()
                progress.update(1)
        return out
    finally:
        if not isinstance(scheduler, Client):
            client.close()
