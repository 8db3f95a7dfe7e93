"""The CAR-T model as a calibration simulator: a batch of parameter vectors × one condition → log burden and log CAR-T.

The simulator protocol of the calibration layer (``name``, ``parameter_names``, ``observables``, ``times``,
``simulate(theta, condition) -> (n, len(observables), len(times))``), rebuilt in campaign workers from its descriptor
(this class's import path + keyword arguments). Each row runs :func:`immunocal.forward.cart.simulate_patient` — the homogeneous
ODE (seed 001 eqs 9–15) or the spatial model (``model = "spatial"``: focus geometry on a ``dim``-D grid of ``n``
nodes per axis, step ``dt``) — with the parameters ``parameter_names`` over the registry preset ``preset``.

Condition (a conditions-table row): ``cart_days`` (infusion days; default day 0) and ``cart_doses`` (dose per
infusion; default ``dose``), ``tumour0`` (initial burden) and ``tb_fraction`` (its antigen-negative fraction),
``condition``, ``description``; any other key is an error. Observables: ``log_burden`` (log of T_A + T_B) and
``log_cart`` (log of C), floored at ``floor`` before the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONDITION_KEYS = frozenset({"condition", "description", "cart_days", "cart_doses", "tumour0", "tb_fraction"})
OBSERVABLES = {"log_burden": "burden", "log_cart": "C"}


@dataclass
class CartSimulator:
    """Log tumour burden and log CAR-T density of a (virtual) patient on a daily grid."""

    parameter_names: tuple[str, ...] = ("exhaustion_rate",)
    preset: str = "normalised"
    model: str = "homogeneous"
    t_end: float = 60.0
    dose: float = 0.05
    tumour0: float = 0.5
    observables: tuple[str, ...] = ("log_burden",)
    floor: float = 1e-8
    dim: int = 1
    n: int = 41
    dt: float = 0.05
    name: str = "cart"

    def __post_init__(self):
        from immunocal.priors import registry

        self.parameter_names = tuple(self.parameter_names)
        self.observables = tuple(self.observables)
        reg = registry()
        for p in self.parameter_names:
            reg.record("cart", p)  # raises naming the unknown parameter
        bad = [o for o in self.observables if o not in OBSERVABLES]
        if bad:
            raise ValueError(f"CAR-T simulator: unknown observable(s) {bad}; choose from {list(OBSERVABLES)}")
        if self.model not in ("homogeneous", "spatial"):
            raise ValueError(f"CAR-T simulator: model must be 'homogeneous' or 'spatial', got {self.model!r}")
        if not (self.t_end >= 1 and float(self.t_end).is_integer()):
            raise ValueError(f"CAR-T simulator: t_end must be a whole number of days >= 1, got {self.t_end}")
        self.times = np.arange(0.0, self.t_end + 0.5, 1.0)

    def _condition(self, condition) -> dict:
        c = dict(condition or {})
        unknown = sorted(set(c) - CONDITION_KEYS)
        if unknown:
            raise ValueError(f"condition {c.get('condition', '')!r}: unknown column(s) {unknown} for the CAR-T model; "
                             f"known: {sorted(CONDITION_KEYS)}")
        days = [float(d) for d in c.get("cart_days", [])] or [0.0]
        doses = [float(d) for d in c.get("cart_doses", [])] or [self.dose] * len(days)
        if len(doses) != len(days):
            raise ValueError(f"condition {c.get('condition', '')!r}: {len(doses)} cart_doses for {len(days)} cart_days")
        if len(set(doses)) != 1:
            raise ValueError(f"condition {c.get('condition', '')!r}: infusions of different doses are not supported "
                             f"({doses})")
        return {"infusion_times": days, "dose": doses[0], "tumour0": float(c.get("tumour0", self.tumour0)),
                "tb_fraction": float(c.get("tb_fraction", 0.0))}

    def simulate(self, theta: np.ndarray, condition: dict | None = None) -> np.ndarray:
        from .patient import simulate_patient

        theta = np.atleast_2d(np.asarray(theta, float))
        if theta.shape[1] != len(self.parameter_names):
            raise ValueError(f"theta has {theta.shape[1]} columns for {len(self.parameter_names)} parameters")
        cond = self._condition(condition)
        out = np.empty((len(theta), len(self.observables), len(self.times)))
        for i, row in enumerate(theta):
            r = simulate_patient(dict(zip(self.parameter_names, map(float, row))), preset=self.preset,
                                 model=self.model, t_end=self.t_end, observation_times=self.times, dim=self.dim,
                                 n=self.n, dt=self.dt, **cond)
            for k, o in enumerate(self.observables):
                out[i, k] = np.log(np.maximum(r.series[OBSERVABLES[o]], self.floor))
        return out
