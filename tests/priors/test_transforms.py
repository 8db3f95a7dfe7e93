"""Seed 000 bounded-logit transform and its inverse."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immunocal.priors import bounded_expit, bounded_logit, project


@settings(max_examples=300, deadline=None)
@given(
    a=st.floats(-1e3, 1e3), width=st.floats(1e-3, 1e3), u=st.floats(0.0, 1.0),
)
def test_round_trip_exact_inverse(a, width, u):
    b = a + width
    theta = min(a + u * width, b)
    z = bounded_logit(theta, a, b)
    assert bounded_expit(z, a, b) == pytest.approx(theta, abs=1e-9 * max(1.0, abs(a), abs(b)))


def test_forward_formula_matches_seed():
    a, b, eps = 0.2, 3.0, 1e-6
    theta = np.linspace(a, b, 101)
    expected = np.log((theta - a + eps) / (b - theta + eps))
    np.testing.assert_allclose(bounded_logit(theta, a, b, eps), expected, rtol=1e-12, atol=1e-12)


def test_seed_form_stays_strictly_inside_and_is_close():
    a, b = 0.0, 1.0
    z = np.linspace(-40, 40, 2001)
    theta = bounded_expit(z, a, b, seed_form=True)
    assert np.all(theta >= a) and np.all(theta <= b)
    # the seed's back-transform differs from the exact inverse by at most O(eps)
    np.testing.assert_allclose(theta, bounded_expit(z, a, b), atol=3e-6)
    assert bounded_expit(0.0, 2.0, 4.0, seed_form=True) == 3.0


def test_monotone_and_projection():
    z = bounded_logit(np.linspace(1.0, 2.0, 50), 1.0, 2.0)
    assert np.all(np.diff(z) > 0)
    np.testing.assert_array_equal(project([-1.0, 0.5, 7.0], 0.0, 1.0), [0.0, 0.5, 1.0])


def test_errors():
    with pytest.raises(ValueError, match=r"outside the admissible range \[0.0, 1.0\]"):
        bounded_logit(1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        bounded_logit(np.nan, 0.0, 1.0)
    with pytest.raises(ValueError, match="lower < upper"):
        bounded_logit(0.5, 1.0, 0.0)


@pytest.mark.parametrize("scale, lo, hi", [("linear", -2.0, 3.0), ("log", 1e-3, 50.0)])
def test_interval_maps_agree_on_numpy_and_pytensor_and_invert(scale, lo, hi):
    """One implementation of the unit-cube map and the bounded logit, numpy and PyTensor alike."""
    import pytensor
    import pytensor.tensor as pt

    from immunocal.priors.transforms import Interval

    iv = Interval(lo, hi, scale)
    x = iv.from_unit(np.linspace(0.01, 0.99, 7))
    np.testing.assert_allclose(iv.to_unit(x), np.linspace(0.01, 0.99, 7), rtol=1e-12)
    np.testing.assert_allclose(iv.expit(iv.logit(x)), x, rtol=1e-12)
    v = pt.dvector("v")
    f = pytensor.function([v], [iv.to_unit(v), iv.logit(v), iv.expit(v)])
    u_pt, z_pt, e_pt = f(x)
    np.testing.assert_allclose(u_pt, iv.to_unit(x), rtol=1e-12)
    np.testing.assert_allclose(z_pt, iv.logit(x), rtol=1e-12)
    np.testing.assert_allclose(e_pt, iv.expit(x), rtol=1e-12)
    h = 1e-6 * np.maximum(np.abs(x), 1.0)  # log |dz/dθ| against a central difference
    fd = (iv.logit(x + h) - iv.logit(x - h)) / (2 * h)
    np.testing.assert_allclose(iv.log_abs_dlogit(x), np.log(fd), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="log-scale interval needs lower > 0"):
        Interval(0.0, 1.0, "log")
    with pytest.raises(ValueError, match="scale must be one of"):
        Interval(0.0, 1.0, "logit")
