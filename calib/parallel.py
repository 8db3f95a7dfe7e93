"""One way to run independent tasks: serially, over local processes, or on a Dask cluster.

``map_tasks(fn, tasks)`` returns ``[fn(t) for t in tasks]`` in task order, with a progress bar; ``processes > 1``
runs them over that many local worker processes (joblib's loky: functions and arguments travel by cloudpickle), and
``scheduler`` (a ``distributed.Client`` or a scheduler address such as ``tcp://host:8786``) submits each task to a
Dask cluster — work that outgrows one machine (the workers must import this package and see the same files).
Used by the simulation campaigns (:func:`completed`: each chunk stored as it arrives), the LightGBM baseline's
folds, the virtual cohort's patients and the personalisation study's folds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence


def completed(fn: Callable, tasks: Sequence, *, processes: int = 1, scheduler=None) -> Iterator[tuple[int, object]]:
    """Yield ``(position, fn(task))`` as the tasks finish — serially (in order), over ``processes`` local
    processes (joblib, completion order) or on the Dask ``scheduler`` — for callers that keep each result as it
    arrives (the campaigns store every chunk at once). A task's exception is raised with a note naming its
    position."""
    tasks = list(tasks)
    if scheduler is not None or (processes > 1 and len(tasks) > 1):
        settle_import_stamps()
    if scheduler is not None:
        yield from _dask(fn, tasks, scheduler)
    elif processes <= 1 or len(tasks) <= 1:
        for i, t in enumerate(tasks):
            yield i, _call(fn, i, t)
    else:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=processes, return_as="generator_unordered")
        parent = os.getpid()
        yield from par(delayed(_indexed)(fn, i, t, parent) for i, t in enumerate(tasks))


def map_tasks(fn: Callable, tasks: Sequence, *, processes: int = 1, scheduler=None, progress: bool = False,
              desc: str = "", unit: str = "task") -> list:
    """``[fn(t) for t in tasks]`` (in order) — serially, over ``processes`` local processes, or on the Dask
    ``scheduler`` (:func:`completed`), with a progress bar."""
    from tqdm.auto import tqdm

    tasks = list(tasks)
    out: list = [None] * len(tasks)
    with tqdm(total=len(tasks), desc=desc, disable=not progress, unit=unit) as bar:
        for i, res in completed(fn, tasks, processes=processes, scheduler=scheduler):
            out[i] = res
            bar.update(1)
    return out


def settle_import_stamps() -> None:
    """Import, in this process, the libraries that write a file on their first import of the day, so that worker
    processes started next find it written. ArviZ (0.23) writes a daily stamp through a fixed temporary name and a
    rename; two workers importing it together on a fresh machine race on that name and one fails with
    ``FileNotFoundError: .../arviz/daily_warning.tmp`` (seen 2026-12-03: the headline study's two fold processes,
    on a new machine's first run of the day)."""
    try:
        import arviz  # noqa: F401
    except ImportError:  # pragma: no cover - arviz is a core dependency
        pass


def _call(fn, i, task):
    try:
        return fn(task)
    except Exception as err:  # the task's own error, with its position
        err.add_note(f"in task {i} of immunocal.calib.parallel")
        raise


def _indexed(fn, i, task, parent=None):
    if parent is not None:
        _exit_with(parent)
    return i, _call(fn, i, task)


_WATCHED: set[int] = set()


def _exit_with(parent: int) -> None:
    """In a worker process: end it when ``parent`` (the process that submitted the task) is gone. joblib's loky
    workers outlive a ``kill -9`` of their parent — measured: four processes, still running tasks 40 s later,
    holding the terminal's pipeline open — so each worker watches its parent once a second (a daemon thread,
    started by the worker's first task) and exits when it has been re-parented."""
    if parent in _WATCHED or os.getpid() == parent:
        return
    _WATCHED.add(parent)

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(70)  # EX_SOFTWARE: the parent died; the task's result has nowhere to go

    if os.getppid() == parent:
        threading.Thread(target=watch, name="calib-parent-watch", daemon=True).start()


def _dask(fn, tasks: list, scheduler) -> Iterator[tuple[int, object]]:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover
        raise ValueError("a Dask scheduler was given but 'distributed' is not installed: "
                         "pip install 'immunocal[dask]'") from None
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = {client.submit(_call, fn, i, t, pure=False): i for i, t in enumerate(tasks)}
        for f in as_completed(list(futures)):
            yield futures[f], f.result()
    finally:
        if not isinstance(scheduler, Client):
            client.close()
