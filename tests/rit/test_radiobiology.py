"""Survival models, BED and iso-BED design against hand-computed values (seed 002 eqs 1-3, 28; §3.4)."""

import math

import numpy as np
import pytest

from immunocal.forward.rit import kernels as K
from immunocal.forward.rit.radiobiology import (
    bed,
    iso_bed_dose,
    iso_bed_schedule,
    log_survival,
    survival_lq,
    survival_lql,
    survival_modified_lq,
)


def test_lq_hand_value():
    # Table 3: alpha = 0.02, beta = 0.0022, d = 8 Gy: ln SF = -0.16 - 0.1408 = -0.3008
    assert survival_lq(8.0, 0.02, 0.0022) == pytest.approx(math.exp(-0.3008), rel=1e-14)
    assert survival_lq(8.0, 0.02, 0.0022) == pytest.approx(0.7402258031, rel=1e-9)
    assert survival_lq(0.0, 0.3, 0.03) == 1.0


def test_modified_lq_hand_value():
    # Table 1 (Dewan): beta = 0.0068 (1 - 0.2001 sqrt(20)) = 7.148540e-4 at 20 Gy; ln SF = -0.4 - 400 beta
    beta = 0.0068 * (1 - 0.2001 * math.sqrt(20.0))
    assert beta == pytest.approx(7.148540e-4, rel=1e-6)
    assert survival_modified_lq(20.0, 0.02, 0.0068, -0.2001) == pytest.approx(
        math.exp(-0.4 - 400 * beta), rel=1e-14
    )
    assert survival_modified_lq(20.0, 0.02, 0.0068, -0.2001) == pytest.approx(0.50361579, rel=1e-7)
    # c = 0 is the LQ model
    assert survival_modified_lq(8.0, 0.02, 0.0022, 0.0) == survival_lq(8.0, 0.02, 0.0022)


def test_lql_hand_value_and_lq_limit():
    # Table 2: alpha = 0.0442, beta = 0.0167, x = 8.4298, d = 8: ln SF = -0.3536 - 0.0334 (67.4384 - 1 + e^-67.4) / x^2
    x = 8.4298
    expected = -0.3536 - 0.0334 * (67.4384 - 1 + math.exp(-67.4384)) / x**2
    assert math.log(survival_lql(8.0, 0.0442, 0.0167, x)) == pytest.approx(expected, rel=1e-12)
    assert math.log(survival_lql(8.0, 0.0442, 0.0167, x)) == pytest.approx(-0.38482706, rel=1e-7)
    # x -> 0 is the LQ model; the small-xd series joins the exact form continuously
    assert survival_lql(8.0, 0.02, 0.0022, 0.0) == pytest.approx(survival_lq(8.0, 0.02, 0.0022), rel=1e-15)
    for xx in (1e-6, 1.2e-5, 1e-4):
        assert survival_lql(8.0, 0.02, 0.0022, xx) == pytest.approx(survival_lq(8.0, 0.02, 0.0022), rel=1e-4)
    d = np.array(
        [1e-4 / 2 * 0.999, 1e-4 / 2 * 1.001]
    )  # both sides of the series switch (x d = 1e-4) at x = 2
    v = survival_lql(d, 0.1, 0.05, 2.0)
    assert v[1] < v[0] and v[0] - v[1] < 1e-7


@pytest.mark.parametrize("model,code", [("lq", 0), ("modified_lq", 1), ("lql", 2)])
def test_kernel_survival_matches_python(model, code):
    theta = np.zeros(len(K.PARAM_NAMES))
    theta[K.P_ALPHA], theta[K.P_BETA], theta[K.P_C], theta[K.P_X] = 0.0442, 0.0167, -0.2001, 8.4298
    for d in (0.5, 3.3, 8.0, 16.25, 20.0):
        ref = log_survival(d, model, 0.0442, 0.0167, c=-0.2001, x=8.4298)
        assert K.log_sf_tumour(theta, code, d) == pytest.approx(ref, rel=1e-12)


def test_bed_and_iso_bed_seed_fig7():
    ab = 9.29
    target = bed(3, 8.0, ab)
    assert target == pytest.approx(24 * (1 + 8 / 9.29), rel=1e-14)
    doses = iso_bed_schedule([1, 2, 3, 5, 10], ab)
    for n, ref in zip([1, 2, 3, 5, 10], [16.25, 10.49, 8.0, 5.58, 3.30]):
        assert doses[n] == pytest.approx(ref, abs=0.01)
        assert bed(n, doses[n], ab) == pytest.approx(target, rel=1e-12)
    assert iso_bed_dose(3, target, ab) == pytest.approx(8.0, abs=1e-12)


def test_radiobiology_errors():
    with pytest.raises(ValueError, match="dose must be >= 0"):
        survival_lq(-1.0, 0.1, 0.01)
    with pytest.raises(ValueError, match="dose must be finite"):
        survival_lq(float("nan"), 0.1, 0.01)
    with pytest.raises(ValueError, match="alpha must be a finite non-negative"):
        survival_lq(2.0, -0.1, 0.01)
    with pytest.raises(ValueError, match="beta0 .* < 0"):
        survival_modified_lq(30.0, 0.02, 0.0068, -0.2236)
    with pytest.raises(ValueError, match="unknown survival model"):
        log_survival(2.0, "lqq", 0.1, 0.01)
    with pytest.raises(ValueError, match="alpha/beta must be a positive"):
        bed(3, 8.0, 0.0)
    with pytest.raises(ValueError, match="positive integer"):
        bed(2.5, 8.0, 10.0)
    with pytest.raises(ValueError, match="target BED"):
        iso_bed_dose(3, -1.0, 10.0)
