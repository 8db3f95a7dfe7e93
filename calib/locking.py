"""One writer per folder: the lock a campaign runner or a calibration run holds on its folder while it writes.

``with folder_lock(folder, "campaign"):`` takes a POSIX record lock (``fcntl.lockf``) on ``folder/.lock`` without
waiting; a second process asking for it gets :class:`FolderBusy` naming the holder's pid (written into the file).
The kernel releases the lock when its holder exits — also after ``kill -9`` — so a stale lock file never blocks a
resume. Record locks belong to the process (worker processes do not inherit them) and nest within it: the lock is
released when the outermost ``with`` of the process ends. Readers (``campaign status``) take no lock and write
nothing."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"
_held: dict[str, list[int]] = {}  # resolved folder -> [fd, depth] of the locks this process holds
_guard = threading.Lock()


class FolderBusy(ValueError):
    """Another process holds the folder's lock (the message names it)."""


def holder(folder: str | Path) -> str | None:
    """The pid written by the folder's current lock holder, ``None`` when the folder is not locked."""
    path = Path(folder) / LOCK_NAME
    with _guard:
        if str(Path(folder).resolve()) in _held:  # (opening and closing the file here would drop our own lock)
            return str(os.getpid())
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a shared probe: fails while a writer holds it
        except OSError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        return None
    finally:
        os.close(fd)  # (closing also drops the probe's shared lock)


@contextmanager
def folder_lock(folder: str | Path, what: str = "folder"):
    """Hold ``folder``'s lock for the duration of the block (see module docstring); ``what`` names the folder's
    kind in the error."""
    folder = Path(folder)
    key = str(folder.resolve())
    with _guard:
        if key in _held:
            _held[key][1] += 1
            fd = None
        else:
            try:
                fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ValueError(f"{folder}: cannot write in this {what} ({exc.strerror or exc})") from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise FolderBusy(f"{folder}: this {what} is in use by process {pid} (another run or resume); wait "
                                 "for it to finish or stop it") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.ftruncate(entry[0], 0)
                os.close(entry[0])  # releases the record lock
