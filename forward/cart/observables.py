"""Observables G(U) of CAR-T simulations (SPEC §3): burden, antigen-negative fraction, CAR-T kinetics, infiltration
depth, RECIST-like category, PFS-like time. Functions take plain arrays so they serve the spatial model
(integrals from :class:`~forward.cart.model.SimulationResult`) and the homogeneous ODE alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .grid import Grid

#: RECIST 1.1-like thresholds on the longest diameter (diameter ∝ volume^{1/3}).
PR_THRESHOLD = -0.30
PD_THRESHOLD = 0.20


def burden(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Tumour burden T_A + T_B (integrals or densities)."""
    return np.asarray(ta) + np.asarray(tb)


def antigen_negative_fraction(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """T_B/(T_A + T_B), 0 where there is no tumour."""
    ta, tb = np.asarray(ta, dtype=float), np.asarray(tb, dtype=float)
    n = ta + tb
    return np.divide(tb, n, out=np.zeros_like(n), where=n > 0)


@dataclass(frozen=True)
class CarTKinetics:
    """Peripheral-like summaries of total CAR-T (C + E) over time."""

    c_max: float           # maximum of C + E
    t_max: float           # time of the maximum
    persistence: float     # last time C + E ≥ persistence_fraction × c_max (≥ t_max)
    auc: float             # ∫ (C + E) dt (trapezoid)
    final: float


def car_t_kinetics(t: np.ndarray, total: np.ndarray, persistence_fraction: float = 0.1) -> CarTKinetics:
    t, total = np.asarray(t, dtype=float), np.asarray(total, dtype=float)
    if t.shape != total.shape or t.size == 0:
        raise ValueError("car_t_kinetics needs time and C+E arrays of the same non-zero length")
    i = int(np.argmax(total))
    above = np.flatnonzero(total >= persistence_fraction * total[i])
    return CarTKinetics(float(total[i]), float(t[i]), float(t[above[-1]]), float(np.trapezoid(total, t)),
                        float(total[-1]))


def infiltration_depth(grid: Grid, c: np.ndarray, tumour: np.ndarray, threshold: float = 0.5) -> float:
    """C-weighted mean distance into the tumour: tumour region = nodes with ``tumour ≥ threshold·max(tumour)``;
    depth of a node = Euclidean distance to the nearest node outside the region; the result is
    Σ C·depth / Σ C over the region (0 if there is no C inside)."""
    from scipy.ndimage import distance_transform_edt

    tumour = np.asarray(tumour)
    if tumour.max() <= 0:
        return 0.0
    mask = tumour >= threshold * tumour.max()
    sampling = tuple(grid.spacing3[::-1])  # storage axes (z, y, x)
    depth = distance_transform_edt(mask, sampling=sampling)
    w = np.where(mask, c, 0.0)
    tot = w.sum()
    return float((w * depth).sum() / tot) if tot > 0 else 0.0


def diameter_ratio(burden_t: np.ndarray) -> np.ndarray:
    """Longest-diameter ratio to baseline, (V/V0)^{1/3}."""
    b = np.asarray(burden_t, dtype=float)
    return np.cbrt(np.maximum(b, 0.0) / b[0])


def recist_category(burden_t: np.ndarray, t: np.ndarray | None = None, detection_limit: float = 0.0,
                    sd_min_days: float = 42.0) -> str:
    """Best overall response from a burden time series (diameter ∝ burden^{1/3}; RECIST 1.1-like):
    ``CR`` burden below ``detection_limit`` at some time and at the end; ``PR`` diameter ≤ −30 % from baseline at
    some time; ``SD`` otherwise, provided no progression (diameter ≥ +20 % above its running nadir) occurred before
    ``sd_min_days`` (times default to 0, 1, 2, … days); ``PD`` otherwise."""
    b = np.asarray(burden_t, dtype=float)
    if b.size < 2 or not b[0] > 0:
        raise ValueError("recist_category needs a burden time series with a positive baseline")
    t = np.arange(b.size, dtype=float) if t is None else np.asarray(t, dtype=float)
    if detection_limit > 0 and b[-1] < detection_limit and b.min() < detection_limit:
        return "CR"
    d = diameter_ratio(b)
    if d.min() - 1.0 <= PR_THRESHOLD:
        return "PR"
    nadir = np.minimum.accumulate(d)
    hit = np.flatnonzero(d / nadir - 1.0 >= PD_THRESHOLD)
    if hit.size and t[hit[0]] - t[0] < sd_min_days:
        return "PD"
    return "SD"


def pfs_time(t: np.ndarray, burden_t: np.ndarray) -> tuple[float, bool]:
    """PFS-like time: first time the diameter is ≥ 20 % above its running nadir. Returns ``(time, event)``;
    ``event`` is False (censored at the last time) if progression never occurs."""
    t = np.asarray(t, dtype=float)
    d = diameter_ratio(burden_t)
    nadir = np.minimum.accumulate(d)
    hit = np.flatnonzero(d / nadir - 1.0 >= PD_THRESHOLD)
    if hit.size:
        return float(t[hit[0]]), True
    return float(t[-1]), False


@dataclass(frozen=True)
class Observables:
    """Summary of one simulated patient (see :func:`summarise`)."""

    burden_initial: float
    burden_nadir: float
    burden_final: float
    nadir_time: float
    best_response: float           # min diameter change from baseline (fraction)
    recist: str
    pfs: float
    progressed: bool
    antigen_negative_fraction_final: float
    c_max: float
    t_max: float
    persistence: float
    car_t_auc: float
    car_t_final: float
    exhausted_fraction_final: float
    mean_suppressor: float
    mean_hypoxia: float
    infiltration_depth: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def summarise(t, C, E, TA, TB, A=None, H=None, detection_limit: float = 0.0, persistence_fraction: float = 0.1,
              infiltration: float | None = None) -> Observables:
    """Observables from time series of totals (or homogeneous densities) of the seven fields."""
    t = np.asarray(t, dtype=float)
    C, E, TA, TB = (np.asarray(x, dtype=float) for x in (C, E, TA, TB))
    b = burden(TA, TB)
    kin = car_t_kinetics(t, C + E, persistence_fraction)
    pfs, ev = pfs_time(t, b)
    i = int(np.argmin(b))
    tot = C[-1] + E[-1]
    return Observables(
        burden_initial=float(b[0]), burden_nadir=float(b[i]), burden_final=float(b[-1]), nadir_time=float(t[i]),
        best_response=float(diameter_ratio(b).min() - 1.0), recist=recist_category(b, t, detection_limit), pfs=pfs,
        progressed=ev, antigen_negative_fraction_final=float(antigen_negative_fraction(TA[-1], TB[-1])),
        c_max=kin.c_max, t_max=kin.t_max, persistence=kin.persistence, car_t_auc=kin.auc, car_t_final=kin.final,
        exhausted_fraction_final=float(E[-1] / tot) if tot > 0 else 0.0,
        mean_suppressor=float(np.trapezoid(A, t) / (t[-1] - t[0])) if A is not None and t[-1] > t[0] else 0.0,
        mean_hypoxia=float(np.trapezoid(H, t) / (t[-1] - t[0])) if H is not None and t[-1] > t[0] else 0.0,
        infiltration_depth=infiltration,
    )
