"""Output: the seed's CSV layout, ``.npz`` snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .grid import Grid
from .params import FIELDS

CSV_HEADER = "t,i,j,k,x,y,z,C,E,TA,TB,S,A,H"


def _fmt(values: np.ndarray, precision: int) -> np.ndarray:
    # C++ ostream with setprecision(p) in default float mode behaves like printf("%.{p}g")
    return np.char.mod(f"%.{precision}g", values)


def write_csv(path: str | Path, grid: Grid, U: np.ndarray, t: float, precision: int = 17) -> Path:
    """Write one state in the published program's layout (rows i fastest, then j, then k; missing axes as 0)."""
    nz, ny, nx = grid.array_shape
    dx, dy, dz = grid.spacing3
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    cols = [
        _fmt(np.full(i.size, float(t)), precision),
        i.astype(str), j.astype(str), k.astype(str),
        _fmt(i * dx, precision), _fmt(j * dy if grid.dim >= 2 else np.zeros(i.size), precision),
        _fmt(k * dz if grid.dim >= 3 else np.zeros(i.size), precision),
    ] + [_fmt(U[f].ravel(), precision) for f in range(7)]
    lines = cols[0]
    for c in cols[1:]:
        lines = np.char.add(np.char.add(lines, ","), c)
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w") as fh:
        fh.write(CSV_HEADER + "\n")
        fh.write("\n".join(lines.tolist()))
        fh.write("\n")
    tmp.replace(path)
    return path


def read_csv(path: str | Path, grid_shape: tuple[int, int, int] | None = None):
    """Read a seed-layout CSV; returns ``(t, U)`` with ``U[7, nz, ny, nx]`` (shape from the i, j, k columns)."""
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    i, j, k = (data[:, c].astype(int) for c in (1, 2, 3))
    nx, ny, nz = (i.max() + 1, j.max() + 1, k.max() + 1) if grid_shape is None else grid_shape
    U = np.zeros((7, nz, ny, nx))
    U[:, k, j, i] = data[:, 7:14].T
    return float(data[0, 0]), U


def save_snapshots(path: str | Path, grid: Grid, times, states, **meta) -> Path:
    """``.npz`` with ``times[n]``, ``fields[n, 7, nz, ny, nx]``, ``field_names``, grid shape/lengths and metadata."""
    path = Path(path)
    arr = np.stack([np.asarray(s) for s in states]) if len(states) else np.zeros((0, 7) + grid.array_shape)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, times=np.asarray(times, dtype=float), fields=arr, field_names=np.array(FIELDS),
                        grid_shape=np.array(grid.shape), grid_lengths=np.array(grid.lengths),
                        **{k: np.asarray(v) for k, v in meta.items()})
    tmp.replace(path)
    return path


def load_snapshots(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
