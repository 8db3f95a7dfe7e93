"""Argument types of the command line: a value outside its domain is refused by ``argparse`` with the option's name
(``argument --n: must be an integer >= 1, got '0'``, exit status 2) before anything runs — never replaced by a
default or clamped (``--n 0`` once ran n = 32, ``--output-every 0`` became 1)."""

from __future__ import annotations

import argparse
import math


def _number(kind, text: str, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(int, text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(int, text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text, "a finite number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    return _number(float, text, "a finite number")


def nonnegative_float(text: str) -> float:
    value = _number(float, text, "a finite number >= 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(float, text, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def holdout_fraction(text: str) -> float:
    """A number in [0, 1): the share of runs held out (1 would leave nothing to train on)."""
    value = _number(float, text, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def output_file(path, force: bool, option: str = "--out"):
    """``path`` as a file this command may write, checked before any computation: not a folder, not an existing
    file unless ``force`` (``--force``), its folder creatable and writable. Returns the ``Path``."""
    import os
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not force:
        raise ValueError(f"{option} {path} exists; pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot create its folder ({exc.strerror or exc})") from None
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{option} {path}: its folder {path.parent} is not writable")
    return path


def output_folder(path, force: bool, option: str = "--out"):
    """``path`` as a folder this command fills with files: not a file, empty unless ``force``, creatable and
    writable (checked before any computation). Returns the ``Path``."""
    import os
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ValueError(f"{option} {path} is not empty; pass --force to write into it")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path}: not writable")
    return path
