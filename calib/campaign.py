"""Simulation campaigns: evaluate a forward model over a design, in parallel, checkpointed, resumable.

On-disk store (a folder)::

    meta.json            forward-model spec, condition, parameter names, chunk size, design size
    design.npy           the (n, p) design in parameter units
    chunks/chunk_000017.npz   runs [17·c, 18·c): indices, theta, outputs, ok, error messages
    index.json           summary of finished chunks (rebuilt from the chunk files on every open)

Every file is written to a temporary name and moved into place with :func:`os.replace`, so a kill (even ``-9``)
leaves either a complete chunk or none. A chunk is scheduled only if its file does not exist, so ``resume`` never
repeats a finished run and never loses one. A run that raises or returns non-finite values is recorded as failed
(parameters + error text) and the campaign goes on.

Parallelism (:func:`immunocal.calib.parallel.completed`): local processes by default (``workers``; ``0`` runs in-process),
or a Dask distributed scheduler when ``scheduler="tcp://host:port"`` (or a ``distributed.Client``) is given.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from .locking import folder_lock
from .parallel import completed

_MODEL_CACHE: dict[str, Any] = {}


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, data: dict) -> None:
    _atomic_write_bytes(path, lambda fh: fh.write((json.dumps(data, indent=1, default=str) + "\n").encode()))


def run_chunk(spec: str, condition: dict | None, indices: np.ndarray, theta_design: np.ndarray,
              names: list[str] | None = None, fixed: dict | None = None) -> dict:
    """Evaluate one chunk (worker side). Never raises for model failures: they are returned per run.
    ``theta_design`` holds the varied parameters ``names``; ``fixed`` gives the others. ``seconds``: the chunk's
    wall time on its worker, shared equally by its runs (what a run costs, whether or not the campaign resumed)."""
    from .forward_api import check_output, descriptor_key, full_vectors, load_forward_model

    start = time.perf_counter()

    key = descriptor_key(spec)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_forward_model(spec)
    model = _MODEL_CACHE[key]
    n = len(indices)
    theta = full_vectors(theta_design, names or model.parameter_names, model.parameter_names, fixed)
    shape = (n, len(model.observables), len(model.times))
    out = np.full(shape, np.nan)
    ok = np.zeros(n, bool)
    errors = [""] * n
    try:  # fast path: the whole batch at once
        y = check_output(model, model.simulate(theta, condition), n)
        out[:] = y
        ok[:] = np.all(np.isfinite(y.reshape(n, -1)), axis=1)
        for i in np.flatnonzero(~ok):
            errors[i] = "non-finite output"
    except Exception:  # noqa: BLE001 - isolate the failing runs one by one
        for i in range(n):
            try:
                y = check_output(model, model.simulate(theta[i:i + 1], condition), 1)
                out[i] = y[0]
                ok[i] = bool(np.all(np.isfinite(y)))
                if not ok[i]:
                    errors[i] = "non-finite output"
            except Exception as exc:  # noqa: BLE001 - recorded, campaign goes on
                errors[i] = f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3)
    return {"indices": np.asarray(indices), "theta": np.asarray(theta_design), "outputs": out, "ok": ok,
            "errors": np.asarray(errors, dtype=str), "seconds": np.full(n, (time.perf_counter() - start) / max(n, 1))}



def _run_chunk_task(task: tuple) -> dict:
    """:func:`run_chunk` of one ``(spec, condition, indices, theta_design, names, fixed)`` task."""
    return run_chunk(*task)

class Campaign:
    """A resumable simulation campaign stored in a folder (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "meta.json").exists():
            raise FileNotFoundError(f"{self.path}: not a campaign folder (no meta.json); create it with "
                                    f"'immunocal campaign run'")
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.design = np.load(self.path / "design.npy")
        # opening is read-only (``campaign status`` beside a live runner must not touch its files): the runner
        # clears half-written files under the folder's lock (:meth:`run`)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | Path, forward: str, design: np.ndarray, *, condition: dict | None = None,
               chunk_size: int = 8, parameter_names=None, fixed: dict | None = None, overwrite: bool = False,
               space=None) -> Campaign:
        """New campaign over ``design`` (columns ``parameter_names``, default: all model parameters); parameters not
        in the design take their value from ``fixed``. ``space`` (a ParameterSpace) is stored for surrogates."""
        from .forward_api import load_forward_model

        path = Path(path)
        model = load_forward_model(forward)
        names = list(parameter_names or model.parameter_names)
        design = np.atleast_2d(np.asarray(design, dtype=float))
        unknown = [n for n in names if n not in model.parameter_names]
        if unknown:
            raise ValueError(f"{forward!r} has no parameter(s) {unknown}; its parameters are "
                             f"{list(model.parameter_names)}")
        fixed = {k: float(v) for k, v in (fixed or {}).items()}
        missing = [n for n in model.parameter_names if n not in names and n not in fixed]
        if missing:
            raise ValueError(f"parameter(s) {missing} are neither in the design nor fixed")
        if space is None:
            space = model.space().subset(names)
        if list(space.names) != names:
            raise ValueError(f"space names {list(space.names)} differ from the design's {names}")
        if design.shape[1] != len(names):
            raise ValueError(f"design has {design.shape[1]} columns, the model {forward!r} takes {len(names)} "
                             f"parameters {names}")
        if not np.all(np.isfinite(design)):
            raise ValueError("design contains non-finite values")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        meta = {"forward": forward, "model_name": model.name, "condition": condition or {},
                "parameter_names": names, "fixed": fixed, "observables": list(model.observables),
                "times": list(map(float, model.times)), "chunk_size": int(chunk_size),
                "space": space.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime())}

        def write(folder: Path) -> None:
            (folder / "chunks").mkdir(parents=True, exist_ok=True)
            _atomic_write_bytes(folder / "design.npy", lambda fh: np.save(fh, design))
            _atomic_write_json(folder / "meta.json", meta)

        if (path / "meta.json").exists():
            if not overwrite:
                raise ValueError(f"{path}: a campaign already exists here; use 'resume' or choose another folder")
            with folder_lock(path, "campaign"):  # not while another process runs it
                for f in (path / "chunks").glob("chunk_*"):
                    f.unlink()
                write(path)
            return cls(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if (path / "meta.json").exists():  # another creator's campaign landed between the two checks
                raise ValueError(f"{path}: a campaign already exists here; use 'resume' or choose another folder")
            raise ValueError(f"{path}: exists and is not an empty folder nor a campaign; choose another folder")
        # a new campaign is assembled beside its place and moved there in one rename: two processes creating the
        # same folder cannot interleave (one design with the other's chunks); the second is refused
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating.", dir=path.parent))
        try:
            write(tmp)
            try:
                os.rename(tmp, path)  # atomic; replaces an empty folder, fails on a non-empty one
            except OSError:
                raise ValueError(f"{path}: another process created a campaign here at the same time; use "
                                 "'resume'") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(path)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def n(self) -> int:
        return len(self.design)

    @property
    def chunk_size(self) -> int:
        return int(self.meta["chunk_size"])

    def _chunk_path(self, k: int) -> Path:
        return self.path / "chunks" / f"chunk_{k:06d}.npz"

    def _chunk_ids(self) -> list[int]:
        return list(range((self.n + self.chunk_size - 1) // self.chunk_size))

    def done_chunks(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in (self.path / "chunks").glob("chunk_*.npz"))

    def pending_chunks(self) -> list[int]:
        done = set(self.done_chunks())
        return [k for k in self._chunk_ids() if k not in done]

    def _write_index(self) -> dict:
        st = self.status()
        _atomic_write_json(self.path / "index.json", st)
        return st

    def status(self) -> dict:
        """Counts of runs (the rows that pad a chunk boundary before appended points are not runs: they are never
        computed, or computed and dropped, see :meth:`extend`)."""
        done = self.done_chunks()
        padding = np.array(sorted(self.meta.get("padding", [])), dtype=int)
        n_done = n_failed = 0
        unreadable = []
        for k in done:
            try:
                with np.load(self._chunk_path(k)) as z:
                    real = ~np.isin(z["indices"], padding)
                    n_done += int(real.sum())
                    n_failed += int((~z["ok"][real]).sum())
            except Exception:  # noqa: BLE001 - reported; the next run moves it aside and re-runs it
                unreadable.append(self._chunk_path(k).name)
        n_runs = self.n - len(padding)
        st = {"folder": str(self.path), "forward": self.meta["forward"], "n_runs": n_runs,
              "finished": n_done, "succeeded": n_done - n_failed, "failed": n_failed,
              "pending": n_runs - n_done, "chunks_done": len(done) - len(unreadable),
              "chunks_total": len(self._chunk_ids())}
        if unreadable:
            st["unreadable_chunks"] = unreadable
        return st

    def extend(self, points: np.ndarray) -> np.ndarray:
        """Append design points (e.g. from active refinement); returns their indices. Existing runs are kept."""
        with folder_lock(self.path, "campaign"):
            return self._extend(points)

    def _extend(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(np.asarray(points, float))
        if points.shape[1] != self.design.shape[1]:
            raise ValueError(f"new points have {points.shape[1]} columns, expected {self.design.shape[1]}")
        # pad the last partial chunk? no: a finished chunk is immutable, so start new points on a chunk boundary
        start = len(self._chunk_ids()) * self.chunk_size
        pad = start - self.n
        if pad:
            points_all = np.vstack([self.design, np.repeat(self.design[-1:], pad, 0), points])
            self.meta.setdefault("padding", []).extend(range(self.n, start))
        else:
            points_all = np.vstack([self.design, points])
        _atomic_write_bytes(self.path / "design.npy", lambda fh: np.save(fh, points_all))
        self.save_meta()
        self.design = points_all
        return np.arange(start, start + len(points))

    def save_meta(self) -> None:
        """Write ``meta`` (e.g. after recording a refinement round) atomically, under the folder's lock."""
        with folder_lock(self.path, "campaign"):
            _atomic_write_json(self.path / "meta.json", self.meta)

    # ------------------------------------------------------------------ running
    def _store(self, k: int, res: dict) -> None:
        _atomic_write_bytes(self._chunk_path(k), lambda fh: np.savez(fh, **res))

    def run(self, workers: int | None = None, scheduler=None, progress: bool = True) -> dict:
        """Run every pending chunk (this is also ``resume``), holding the folder's lock (a second runner is refused
        with this one's pid). Returns :meth:`status`."""
        with folder_lock(self.path, "campaign"):
            self._clear_partial()
            return self._run(workers, scheduler, progress)

    def _clear_partial(self) -> None:
        """Under the lock: remove half-written files of a killed runner (their runs are simply pending) and move a
        chunk file that cannot be read (truncated, e.g. copied from a full disk) aside as ``*.corrupt`` — named in a
        warning, kept, and its runs re-run."""
        import warnings

        for tmp in [*(self.path / "chunks").glob("*.tmp*"), *self.path.glob("*.tmp*")]:
            tmp.unlink()
        for k in self.done_chunks():
            path = self._chunk_path(k)
            try:
                with np.load(path) as z:
                    n = len(z["indices"])
                    if any(len(z[key]) != n for key in ("theta", "outputs", "ok", "errors")):
                        raise ValueError("arrays of different lengths")
            except Exception as exc:  # noqa: BLE001 - any unreadable chunk is re-run, never trusted
                bad = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
                path.replace(bad)
                warnings.warn(f"{path}: unreadable chunk ({type(exc).__name__}: {exc}); kept as {bad.name}, its "
                              "runs are run again", stacklevel=3)

    def _run(self, workers, scheduler, progress) -> dict:
        from tqdm import tqdm

        pending = self.pending_chunks()
        cs = self.chunk_size
        jobs = {k: (np.arange(k * cs, min((k + 1) * cs, self.n)),) for k in pending}
        n_runs = sum(len(v[0]) for v in jobs.values())
        spec, cond = self.meta["forward"], self.meta["condition"] or None
        names, fixed = self.meta["parameter_names"], self.meta.get("fixed", {})
        bar = tqdm(total=n_runs, desc=f"campaign {self.path.name}", unit="run", disable=not progress)
        keys = list(jobs)
        tasks = [(spec, cond, jobs[k][0], self.design[jobs[k][0]], names, fixed) for k in keys]
        processes = 1 if workers == 0 or len(jobs) <= 1 else (workers or os.cpu_count() or 1)
        try:  # each chunk is stored the moment it arrives: a kill loses only the chunks still running
            for i, res in completed(_run_chunk_task, tasks, processes=processes, scheduler=scheduler):
                self._store(keys[i], res)
                bar.update(len(tasks[i][2]))
        finally:
            bar.close()
            st = self._write_index()
        return st

    # ------------------------------------------------------------------ results
    def load(self) -> dict:
        """All finished runs: ``indices, theta, outputs, ok, errors, seconds`` concatenated in index order
        (``seconds``, each run's share of its chunk's worker wall time, only when every chunk recorded it)."""
        parts = []
        for k in self.done_chunks():
            try:
                with np.load(self._chunk_path(k)) as z:
                    parts.append({key: z[key] for key in z.files})
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"{self._chunk_path(k)}: unreadable chunk ({type(exc).__name__}: {exc}); "
                                 f"`immunocal campaign resume {self.path}` re-runs it") from None
        if not parts:
            p = self.design.shape[1]
            return {"indices": np.zeros(0, int), "theta": np.zeros((0, p)), "outputs": np.zeros((0, 0, 0)),
                    "ok": np.zeros(0, bool), "errors": np.zeros(0, str)}
        keys = [key for key in parts[0] if all(key in d for d in parts)]  # chunks written before "seconds" lack it
        res = {key: np.concatenate([d[key] for d in parts]) for key in keys}
        order = np.argsort(res["indices"])
        res = {key: v[order] for key, v in res.items()}
        padding = set(self.meta.get("padding", []))
        if padding:
            keep = np.array([i not in padding for i in res["indices"]])
            res = {key: v[keep] for key, v in res.items()}
        return res

    def training_data(self, rounds=None) -> tuple[np.ndarray, np.ndarray]:
        """Successful runs as ``(theta, outputs)`` ready for a surrogate. With ``rounds`` (refinement-round tags),
        only the design's runs and those rounds' runs — so a surrogate never depends on rounds recorded by another
        run with other settings (``None``: every run)."""
        r = self.load()
        keep = r["ok"]
        if rounds is not None:
            recorded = self.meta.get("refinement_rounds", {})
            unknown = sorted(set(rounds) - set(recorded))
            if unknown:
                raise ValueError(f"{self.path}: no refinement round(s) {unknown} recorded (has {sorted(recorded)})")
            excluded = {i for tag, idx in recorded.items() if tag not in rounds for i in idx}
            keep = keep & np.array([int(i) not in excluded for i in r["indices"]], dtype=bool)
        return r["theta"][keep], r["outputs"][keep]

    def failures(self) -> list[dict]:
        r = self.load()
        names = self.meta["parameter_names"]
        return [{"index": int(i), "parameters": dict(zip(names, map(float, th))), "error": str(e)}
                for i, th, ok, e in zip(r["indices"], r["theta"], r["ok"], r["errors"]) if not ok]
