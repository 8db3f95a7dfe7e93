"""Seed-003 draining-lymph-node (DLN) compartment model of the cancer-immunity cycle (SPEC §5).

Equations (eqs 1-27) live in :mod:`immunocal.forward.dln.model`; networks and treatment plans in :mod:`immunocal.forward.dln.plan`;
standard scenarios of the seed's figures in :mod:`immunocal.forward.dln.scenarios`.
"""

from .api import default_parameters, param_array, simulate, simulate_array, simulate_batch
from .model import PARAM_NAMES, DLNResult, c_trex1, eqd2, lkb_ntcp, lq_survival, tumour_area
from .plan import DRUG_NAMES, Network, PlanError, TreatmentPlan, load_plan, plan_from_dict

__all__ = [
    "DRUG_NAMES",
    "PARAM_NAMES",
    "DLNResult",
    "Network",
    "PlanError",
    "TreatmentPlan",
    "c_trex1",
    "default_parameters",
    "eqd2",
    "lkb_ntcp",
    "load_plan",
    "lq_survival",
    "param_array",
    "plan_from_dict",
    "simulate",
    "simulate_array",
    "simulate_batch",
    "tumour_area",
]
