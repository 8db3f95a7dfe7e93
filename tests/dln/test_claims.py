"""SPEC §5 qualitative claims of seed 003 with the registry defaults, each with explicit numeric margins.

Timeline and arms: forward/dln/scenarios.py (day 0 inoculation, treatment from day 10, read-out day 30).
"""

import pytest

from immunocal.forward.dln import default_parameters, param_array
from immunocal.forward.dln import scenarios as sc


@pytest.fixture(scope="module")
def prm():
    return param_array(default_parameters())


@pytest.fixture(scope="module")
def trex1(prm):
    return sc.volumes(sc.trex1_arms(), prm)


@pytest.fixture(scope="module")
def irr(prm):
    return sc.volumes(sc.irradiation_arms(), prm)


@pytest.fixture(scope="module")
def exh(prm):
    return {k: v["tumour"] for k, v in sc.volumes(sc.exhaustion_arms(), prm).items()}


@pytest.fixture(scope="module")
def park(prm):
    return sc.volumes(sc.abscopal_pd1_arms(), prm)


def test_trex1_8x3_smaller_distant_similar_primary(trex1):
    """Seed Fig 4: with anti-CTLA-4, distant volume at day 30 with 8 Gy x 3 at least 20 % smaller than with
    20 Gy x 1, while the primaries differ by less than 25 %."""
    assert trex1["8x3"]["distant"] <= 0.8 * trex1["20x1"]["distant"]
    assert abs(trex1["8x3"]["primary"] / trex1["20x1"]["primary"] - 1) < 0.25


def test_dln_irradiation_keeps_primary_enlarges_distant(irr):
    """Seed Fig 5 (Buchwald, RT alone): adding the primary's DLN to the field leaves the primary within 25 % and
    enlarges the distant tumour by at least 20 %."""
    t, td = irr["tumour_rt"], irr["tumour_and_dln_rt"]
    assert abs(td["primary"] / t["primary"] - 1) < 0.25
    assert td["distant"] >= 1.2 * t["distant"]


def test_dln_irradiation_suppresses_checkpoint_inhibitor_effects(irr):
    """Seed Fig 6 C, F, I (Marciscano): with anti-PD-1 or anti-CTLA-4, DLN irradiation enlarges the distant tumour by
    at least 20 % and does not improve the primary (the seed reports the ICI benefit suppressed)."""
    for suffix in ("+anti_pd1", "+anti_ctla4"):
        t, td = irr["tumour_rt" + suffix], irr["tumour_and_dln_rt" + suffix]
        assert td["distant"] >= 1.2 * t["distant"], suffix
        assert td["primary"] >= t["primary"], suffix


def test_rt_with_anti_pd1_beats_rt_alone_on_primary(irr):
    """Seed Fig 6 E (Marciscano): tumour RT + anti-PD-1 controls the primary better than RT alone (not a SPEC §5
    claim, a seed-figure check)."""
    assert irr["tumour_rt+anti_pd1"]["primary"] <= 0.8 * irr["tumour_rt"]["primary"]
    assert irr["tumour_rt"]["primary"] <= 0.8 * irr["control"]["primary"]


@pytest.mark.xfail(
    strict=True,
    reason="seed Fig 6 H not reproduced by the defaults: primary at day 30 with tumour RT + anti-CTLA-4 6.23 mm^3 "
    "vs RT alone 6.38 mm^3 (ratio 0.98; day 40: 25.6 vs 31.1, ratio 0.82). A refit that also enforced it "
    "(forward/dln/derive_defaults.py, seeds 3 and 5) lost other claims or margins",
)
def test_rt_with_anti_ctla4_beats_rt_alone_on_primary(irr):
    assert irr["tumour_rt+anti_ctla4"]["primary"] <= 0.8 * irr["tumour_rt"]["primary"]


def test_trex1_primaries_similar_over_days_20_to_40(prm):
    """Stronger than the day-30 check: the 8x3 / 20x1 primary ratio stays within 25 % on days 20, 25, ..., 40."""
    m = sc.claim_metrics(prm)
    assert 0.75 <= m["trex1_primary_ratio_worst"] <= 1.25


def test_anti_cd8_grows_faster_than_control(exh):
    assert exh["anti_cd8"] >= 1.2 * exh["control"]


def test_anti_pdl1_slows_growth(exh):
    assert exh["anti_pdl1"] <= 0.8 * exh["control"]


def test_bezafibrate_alone_like_control_but_synergises_with_anti_pdl1(exh):
    assert abs(exh["bezafibrate"] / exh["control"] - 1) < 0.05
    assert exh["bezafibrate_anti_pdl1"] <= 0.8 * exh["anti_pdl1"]


def test_rt_plus_anti_pd1_shrinks_distant_vs_rt_alone(park):
    """Seed Fig 2 (Park): RT to the primary with anti-PD-1 gives a distant tumour >= 20 % smaller than RT alone."""
    assert park["rt_anti_pd1"]["distant"] <= 0.8 * park["rt"]["distant"]


def test_claim_table_matches_the_fit_targets(prm):
    """The same claims as the table that forward/dln/derive_defaults.py fits against."""
    m = sc.claim_metrics(prm)
    for name, (lo, hi) in sc.CLAIMS.items():
        assert lo <= m[name] <= hi, (name, m[name])
    assert 200 <= m["control_volume_day30"] <= 800
