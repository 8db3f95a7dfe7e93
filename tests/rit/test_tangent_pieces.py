"""Fast checks of the pieces the RIT kernel's forward-mode tangents are built from (the whole-run tangents against
complex step are in test_sensitivities.py, slow): the delayed-source interpolant's tangent as a linear form
(``_cum_weights``, and ``_ring_weights`` for the free-growth ring buffer) against central differences of the
interpolant itself, in every node value, the position (and the initial rate before the ring's first node), on every
branch (interior, first step, steep change (the 3 min(d0, d1) slope limit), last step, extrapolation, on a
node). Next to a zero-flux step the interpolant has a kink in that node (the slope switches off at d = 0): the
tangent takes the branch of the value, as complex step does (checked there), so central differences do not apply.
"""

import numpy as np
import pytest

from immunocal.forward.rit import kernels as K

# a cumulative history: increments with steep changes (the 3 min(d0, d1) limit) and a zero-flux step (kept away)
HIST = np.cumsum([0.0, 1.0, 1.2, 0.0, 0.5, 4.0, 0.3, 0.31, 2.0])
LAST = len(HIST) - 2  # node LAST + 1 exists (as in the kernel: the next node is written after the step)

POSITIONS = {"first_step": 0.3, "interior": 4.6, "steep": 5.25, "on_node": 3.0,
             "last_step": LAST - 0.4, "extrapolation": LAST + 0.35}


@pytest.mark.parametrize("pos", list(POSITIONS.values()), ids=list(POSITIONS))
def test_interpolant_tangent_weights_equal_central_differences(pos):
    cw = np.zeros((1, 5))
    i0 = K._cum_weights(HIST, pos, LAST, cw, 0)
    value = K._cum_at(HIST, pos, LAST, True)
    eps = 1e-7
    for node in range(len(HIST)):
        up, dn = HIST.copy(), HIST.copy()
        up[node] += eps
        dn[node] -= eps
        fd = (K._cum_at(up, pos, LAST, True) - K._cum_at(dn, pos, LAST, True)) / (2 * eps)
        seed = np.zeros((len(HIST), 1))
        seed[node, 0] = 1.0
        got = K._cum_apply(seed, i0, cw, 0, 0, 0.0)
        assert got == pytest.approx(fd, abs=1e-7), f"node {node}: weight {got} vs central difference {fd}"
    if pos != round(pos):  # on a node the value is the node's (the interpolant's slope there is the tangent's)
        fd = (K._cum_at(HIST, pos + eps, LAST, True) - K._cum_at(HIST, pos - eps, LAST, True)) / (2 * eps)
        got = K._cum_apply(np.zeros((len(HIST), 1)), i0, cw, 0, 0, 1.0)
        assert got == pytest.approx(fd, rel=1e-6, abs=1e-7)
    assert np.isfinite(value)


# the free-growth ring: slots hold positions KK - M + 1 .. KK (wrapping), before position 0 the initial rate
M, KK, INIT_RATE, DT = 6, 8, 0.7, 2.0
RING_POSITIONS = {"interior": 5.6, "steep": 5.25, "on_node": 6.0, "last_step": KK - 0.4, "extrapolation": KK + 0.35}
# a short history (KK = 2, every position in the ring): the first step and before position 0 use the initial rate
SHORT = {"before_start": -0.6, "first_step": 0.3, "extrapolation": 2.4}


def _ring(hist, m, kk):
    ring = np.zeros(m)
    for j in range(max(kk - m + 1, 0), kk + 1):
        ring[j % m] = hist[j]
    return ring


@pytest.mark.parametrize("m, kk, pos", [(M, KK, p) for p in RING_POSITIONS.values()]
                         + [(4, 2, p) for p in SHORT.values()] + [(3, 0, 0.45)],
                         ids=[f"ring_{n}" for n in RING_POSITIONS] + [f"short_{n}" for n in SHORT]
                         + ["one_node_extrapolation"])
def test_ring_tangent_weights_equal_central_differences(m, kk, pos):
    ring = _ring(HIST, m, kk)
    cw, iw = np.zeros((1, 6)), np.zeros((1, 4), dtype=np.int64)
    K._ring_weights(ring, m, kk, pos, DT, INIT_RATE, cw, iw, 0)

    def value(rg=ring, p=pos, rate=INIT_RATE):
        return K._cum_ring(rg, m, kk, p, DT, rate, True)

    eps = 1e-7
    for slot in range(m):
        up, dn = ring.copy(), ring.copy()
        up[slot] += eps
        dn[slot] -= eps
        fd = (value(rg=up) - value(rg=dn)) / (2 * eps)
        seed = np.zeros((m, 1))
        seed[slot, 0] = 1.0
        got = K._ring_apply(seed, cw, iw, 0, 0, 0.0, 0.0)
        assert got == pytest.approx(fd, abs=1e-7), f"slot {slot}: weight {got} vs central difference {fd}"
    fd = (value(rate=INIT_RATE + eps) - value(rate=INIT_RATE - eps)) / (2 * eps)
    assert K._ring_apply(np.zeros((m, 1)), cw, iw, 0, 0, 0.0, 1.0) == pytest.approx(fd, abs=1e-7)
    if pos != round(pos):
        fd = (value(p=pos + eps) - value(p=pos - eps)) / (2 * eps)
        assert K._ring_apply(np.zeros((m, 1)), cw, iw, 0, 0, 1.0, 0.0) == pytest.approx(fd, rel=1e-6, abs=1e-7)
