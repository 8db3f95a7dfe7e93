"""Fast checks of the pieces the RIT kernel's forward-mode tangents are built from (the whole-run tangents against
complex step are in test_sensitivities.py, slow): the delayed-source interpolant's tangent as a linear form
(``_cum_weights``) against central differences of the interpolant itself, in every node value and the position,
on every branch (interior, first step, steep change (the 3 min(d0, d1) slope limit), last step, extrapolation, on a
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
