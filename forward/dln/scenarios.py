"""Standard networks, treatment arms and read-outs of the seed's figures (one documented timeline).

Timeline (all arms): tumours inoculated on day 0 (``initial_tumour_cells`` each), treatment starts on day 10,
read-out on day ``READOUT_DAY`` = 30 (tumour volumes V = k n in mm^3). Radiation goes to the primary tumour only
(collimated beams: the seed assumes no dose elsewhere) and, in the DLN arms, the same dose to the primary's DLN.
Antibodies are given on days 10, 13, 16; bezafibrate daily from day 10 on (its effect persists, seed Fig 3);
anti-CD8 on day 8 (depletion before the first treatment day; permanent, seed Fig 3).

The two-site network mirrors bilateral flank experiments: primary and distant tumour, each with its own DLN.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .api import simulate_array
from .plan import Network, TreatmentPlan

READOUT_DAY = 30
HORIZON = 40
TREATMENT_START = 10
ANTIBODY_DAYS = (10, 13, 16)
RT_8x3 = ((10, 11, 12), 8.0)
RT_20x1 = ((10,), 20.0)
PRIMARY_SIMILARITY_DAYS = (20, 25, 30, 35, 40)


def two_site_network() -> Network:
    return Network(
        ("primary", "distant"),
        ("dln_primary", "dln_distant"),
        {"primary": ("dln_primary",), "distant": ("dln_distant",)},
    )


def one_site_network() -> Network:
    return Network(("tumour",), ("dln",), {"tumour": ("dln",)})


def _rt(target_days, dose, dln=False):
    days, d = target_days, dose
    out = [{"target": "primary", "days": list(days), "dose_gy": d}]
    if dln:
        out.append({"dln": "dln_primary", "days": list(days), "dose_gy": d})
    return out


def _ab(name):
    return {"name": name, "days": list(ANTIBODY_DAYS)}


def trex1_arms() -> dict[str, TreatmentPlan]:
    """Seed Fig 4 (Vanpouille-Box): anti-CTLA-4 with 8 Gy x 3 or 20 Gy x 1 to the primary."""
    net = two_site_network()
    return {
        "8x3": TreatmentPlan.build(net, HORIZON, _rt(*RT_8x3), [_ab("anti_ctla4")]),
        "20x1": TreatmentPlan.build(net, HORIZON, _rt(*RT_20x1), [_ab("anti_ctla4")]),
    }


def irradiation_arms() -> dict[str, TreatmentPlan]:
    """Seed Figs 5-6 (Buchwald, Marciscano): tumour RT vs tumour + DLN RT, alone or with anti-PD-1 / anti-CTLA-4."""
    net = two_site_network()
    arms = {"control": TreatmentPlan.build(net, HORIZON)}
    for drug in (None, "anti_pd1", "anti_ctla4"):
        drugs = [] if drug is None else [_ab(drug)]
        suffix = "" if drug is None else f"+{drug}"
        if drug is not None:
            arms[drug] = TreatmentPlan.build(net, HORIZON, [], drugs)
        arms["tumour_rt" + suffix] = TreatmentPlan.build(net, HORIZON, _rt(*RT_8x3), drugs)
        arms["tumour_and_dln_rt" + suffix] = TreatmentPlan.build(net, HORIZON, _rt(*RT_8x3, dln=True), drugs)
    return arms


def exhaustion_arms() -> dict[str, TreatmentPlan]:
    """Seed Fig 3 (Chamoto): control, anti-CD8, anti-PD-L1, bezafibrate, bezafibrate + anti-PD-L1 (one tumour)."""
    net = one_site_network()
    beza = {"name": "bezafibrate", "days": list(range(TREATMENT_START, HORIZON))}
    return {
        "control": TreatmentPlan.build(net, HORIZON),
        "anti_cd8": TreatmentPlan.build(net, HORIZON, [], [{"name": "anti_cd8", "days": [8]}]),
        "anti_pdl1": TreatmentPlan.build(net, HORIZON, [], [_ab("anti_pdl1")]),
        "bezafibrate": TreatmentPlan.build(net, HORIZON, [], [beza]),
        "bezafibrate_anti_pdl1": TreatmentPlan.build(net, HORIZON, [], [beza, _ab("anti_pdl1")]),
    }


def abscopal_pd1_arms() -> dict[str, TreatmentPlan]:
    """Seed Fig 2 (Park): control, anti-PD-1, RT to the primary, RT + anti-PD-1."""
    net = two_site_network()
    return {
        "control": TreatmentPlan.build(net, HORIZON),
        "anti_pd1": TreatmentPlan.build(net, HORIZON, [], [_ab("anti_pd1")]),
        "rt": TreatmentPlan.build(net, HORIZON, _rt(*RT_8x3)),
        "rt_anti_pd1": TreatmentPlan.build(net, HORIZON, _rt(*RT_8x3), [_ab("anti_pd1")]),
    }


ARM_SETS = {
    "trex1": trex1_arms,
    "irradiation": irradiation_arms,
    "exhaustion": exhaustion_arms,
    "abscopal_pd1": abscopal_pd1_arms,
}


def volumes(
    arms: Mapping[str, TreatmentPlan], prm: np.ndarray, day: int = READOUT_DAY
) -> dict[str, dict[str, float]]:
    """{arm: {target: volume (mm^3) on ``day``}} for a kernel-ordered parameter array."""
    out = {}
    for name, plan in arms.items():
        res = simulate_array(plan, prm)
        out[name] = {t: float(res.volume(t)[day]) for t in plan.network.targets}
    return out


def claim_metrics(prm: np.ndarray) -> dict[str, float]:
    """The SPEC §5 qualitative claims as ratios of day-30 volumes (see tests/dln/test_claims.py for the margins)."""
    tx_arms = trex1_arms()
    tx = volumes(tx_arms, prm)
    primary_ratios = [
        v["8x3"]["primary"] / v["20x1"]["primary"]
        for v in (volumes(tx_arms, prm, day=d) for d in PRIMARY_SIMILARITY_DAYS)
    ]
    ir = volumes(irradiation_arms(), prm)
    ex = volumes(exhaustion_arms(), prm)
    ex40 = volumes({"control": exhaustion_arms()["control"]}, prm, day=HORIZON)
    ab = volumes(abscopal_pd1_arms(), prm)
    return {
        # with anti-CTLA-4: distant 8x3 / 20x1 (want <= 0.8) and primary 8x3 / 20x1 (want within 0.75..1.25)
        "trex1_distant_ratio": tx["8x3"]["distant"] / tx["20x1"]["distant"],
        "trex1_primary_ratio": tx["8x3"]["primary"] / tx["20x1"]["primary"],
        # DLN RT: primary (T+DLN)/(T) within 0.75..1.25, distant (T+DLN)/(T) >= 1.2
        "dln_primary_ratio": ir["tumour_and_dln_rt"]["primary"] / ir["tumour_rt"]["primary"],
        "dln_distant_ratio": ir["tumour_and_dln_rt"]["distant"] / ir["tumour_rt"]["distant"],
        "dln_distant_ratio_pd1": ir["tumour_and_dln_rt+anti_pd1"]["distant"]
        / ir["tumour_rt+anti_pd1"]["distant"],
        "dln_distant_ratio_ctla4": (
            ir["tumour_and_dln_rt+anti_ctla4"]["distant"] / ir["tumour_rt+anti_ctla4"]["distant"]
        ),
        # Chamoto: anti-CD8 / control >= 1.2, anti-PD-L1 / control <= 0.8, beza / control within 0.95..1.05,
        # (beza + anti-PD-L1) / anti-PD-L1 <= 0.8
        "cd8_ratio": ex["anti_cd8"]["tumour"] / ex["control"]["tumour"],
        "pdl1_ratio": ex["anti_pdl1"]["tumour"] / ex["control"]["tumour"],
        "beza_ratio": ex["bezafibrate"]["tumour"] / ex["control"]["tumour"],
        "beza_pdl1_ratio": ex["bezafibrate_anti_pdl1"]["tumour"] / ex["anti_pdl1"]["tumour"],
        # Park: distant with RT + anti-PD-1 / RT alone <= 0.8
        "pd1_abscopal_ratio": ab["rt_anti_pd1"]["distant"] / ab["rt"]["distant"],
        "control_volume_day30": ex["control"]["tumour"],
        # seed-figure consistency (not SPEC claims): anti-CTLA-4 alone is modest (Vanpouille-Box: poorly
        # immunogenic TSA), RT + anti-CTLA-4 synergises on the distant tumour
        "ctla4_mono_ratio": ir["anti_ctla4"]["distant"] / ir["control"]["distant"],
        "ctla4_rt_synergy": tx["8x3"]["distant"] / ir["anti_ctla4"]["distant"],
        # untreated tumours keep growing (seed Figs 2-6 controls): volume day 40 / day 30
        "control_growth_30_40": ex40["control"]["tumour"] / ex["control"]["tumour"],
        # primary 8x3 / 20x1 on the day (20..40) where it is farthest from 1
        "trex1_primary_ratio_worst": max(primary_ratios, key=lambda r: abs(np.log(r))),
        # Marciscano (seed Fig 6 E, H): RT + ICI controls the primary better than RT alone (reported, not fitted)
        "rt_pd1_primary_ratio": ir["tumour_rt+anti_pd1"]["primary"] / ir["tumour_rt"]["primary"],
        "rt_ctla4_primary_ratio": ir["tumour_rt+anti_ctla4"]["primary"] / ir["tumour_rt"]["primary"],
    }


#: the claims with their margins: (metric, lower, upper)
CLAIMS: dict[str, tuple[float, float]] = {
    "trex1_distant_ratio": (0.0, 0.8),
    "trex1_primary_ratio": (0.75, 1.25),
    "dln_primary_ratio": (0.75, 1.25),
    "dln_distant_ratio": (1.2, np.inf),
    "cd8_ratio": (1.2, np.inf),
    "pdl1_ratio": (0.0, 0.8),
    "beza_ratio": (0.95, 1.05),
    "beza_pdl1_ratio": (0.0, 0.8),
    "pd1_abscopal_ratio": (0.0, 0.8),
}

#: extra fit targets from the seed's figures (documented, tested loosely): (metric, lower, upper)
EXTRA_TARGETS: dict[str, tuple[float, float]] = {
    "dln_distant_ratio_pd1": (1.2, np.inf),
    "ctla4_mono_ratio": (0.4, 1.0),
    "ctla4_rt_synergy": (0.0, 0.8),
    "control_growth_30_40": (2.0, np.inf),
    "trex1_primary_ratio_worst": (0.75, 1.25),
}
