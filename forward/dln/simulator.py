"""The DLN model as a calibration simulator: a batch of parameter vectors × one condition → log tumour volumes.

The simulator protocol of the calibration layer (``name``, ``parameter_names``, ``observables``, ``times``,
``simulate(theta, condition) -> (n, len(observables), len(times))``), rebuilt in campaign workers from its descriptor
(this class's import path + keyword arguments). Model days = days from inoculation; a condition (a conditions-table
row) becomes a :class:`~forward.dln.plan.TreatmentPlan` through :meth:`TreatmentPlan.from_condition` (radiation to
the primary and/or its DLN, several drugs; unknown columns refused). Parameters not in ``parameter_names`` keep the
registry preset's values. Observables: ``log_volume_<target>`` for every tumour of the network, floored at
``floor_mm3`` before the log (the model's cell counts reach 0 on eradication).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NETWORKS = ("two_site", "one_site")


@dataclass
class DlnSimulator:
    """Log tumour volumes of the DLN model (seed 003) on a daily grid."""

    parameter_names: tuple[str, ...] = ("ctl_cytotoxicity", "ctl_priming")
    preset: str = "default"
    network: str = "two_site"
    days: tuple[float, float] = (10.0, 30.0)
    floor_mm3: float = 1e-3
    inoculation_delay_days: dict | None = None  # e.g. {"distant": 2}: Network.inoculation_delay_days
    name: str = "dln"

    def __post_init__(self):
        from .api import default_parameters
        from .model import PARAM_NAMES
        from .scenarios import one_site_network, two_site_network

        self.parameter_names = tuple(self.parameter_names)
        unknown = [n for n in self.parameter_names if n not in PARAM_NAMES]
        if unknown:
            raise ValueError(f"DLN simulator: unknown parameter(s) {unknown}")
        if self.network not in NETWORKS:
            raise ValueError(f"DLN simulator: network must be one of {list(NETWORKS)}, got {self.network!r}")
        lo, hi = (float(d) for d in self.days)
        if not (0 <= lo < hi and float(lo).is_integer() and float(hi).is_integer()):
            raise ValueError(f"DLN simulator: days must be whole days 0 <= first < last, got {self.days}")
        if not self.floor_mm3 > 0:
            raise ValueError(f"DLN simulator: floor_mm3 must be > 0, got {self.floor_mm3}")
        from dataclasses import replace

        self._net = two_site_network() if self.network == "two_site" else one_site_network()
        if self.inoculation_delay_days:
            self._net = replace(self._net, inoculation_delay_days=dict(self.inoculation_delay_days))
        self._base_set = default_parameters(self.preset)
        self.times = np.arange(lo, hi + 0.5, 1.0)
        self.observables = tuple(f"log_volume_{t}" for t in self._net.targets)

    def simulate(self, theta: np.ndarray, condition: dict | None = None) -> np.ndarray:
        from .api import log_volume_batch
        from .plan import TreatmentPlan

        plan = TreatmentPlan.from_condition(condition, self._net, int(self.times[-1]) + 1)
        return log_volume_batch(plan, theta, self.parameter_names, self.times.astype(int), self._base_set,
                                self.floor_mm3)

    def simulate_jacobian(self, theta: np.ndarray, condition: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`simulate` and its exact Jacobian ``(n, len(observables), len(times), len(parameter_names))``
        (forward-mode sensitivities through the model's own daily map: the ``exact`` emulator's gradient)."""
        from .api import log_volume_batch_jacobian
        from .plan import TreatmentPlan

        plan = TreatmentPlan.from_condition(condition, self._net, int(self.times[-1]) + 1)
        return log_volume_batch_jacobian(plan, theta, self.parameter_names, self.times.astype(int), self._base_set,
                                         self.floor_mm3)
