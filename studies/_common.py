"""Small helpers shared by the study scripts: atomic JSON output and figure saving."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(obj: Any):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(out: Path, name: str, result: dict) -> Path:
    """Write ``out/name.json`` atomically (non-finite floats become null)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    tmp.replace(path)
    return path


def save_figure(fig, out: Path, filename: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG (small: ~100 dpi) and close it."""
    import matplotlib.pyplot as plt

    path = Path(out) / filename
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def use_agg() -> None:
    """Headless plotting backend (studies run on CI and servers without a screen)."""
    import matplotlib

    matplotlib.use("Agg")
