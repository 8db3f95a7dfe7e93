"""Helpers of the study scripts: the JSON and figure helpers live in :mod:`immunocal.calib.outputs` (one implementation for
the commands and the studies); a study writes ``OUT/<name>.json``."""

from __future__ import annotations

from pathlib import Path

from immunocal.calib.outputs import save_figure, use_agg
from immunocal.calib.outputs import write_json as _write_json

__all__ = ["save_figure", "use_agg", "write_json"]


def write_json(out: Path, name: str, result: dict) -> Path:
    """Write ``out/name.json`` atomically (non-finite floats become null)."""
    return _write_json(Path(out) / f"{name}.json", result)
