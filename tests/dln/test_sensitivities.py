"""Exact sensitivities of the DLN map (forward mode through the same daily update) against finite differences."""

import numpy as np
import pytest

from immunocal.forward.dln import model
from immunocal.forward.dln.api import default_parameters, log_volume_batch, log_volume_batch_jacobian
from immunocal.forward.dln.model import PARAM_NAMES, SWITCH_PARAMS
from immunocal.forward.dln.plan import TreatmentPlan
from immunocal.forward.dln.scenarios import two_site_network
from immunocal.forward.dln.simulator import DlnSimulator
from immunocal.priors import registry

SMOOTH = [n for j, n in enumerate(PARAM_NAMES) if j not in SWITCH_PARAMS]
CONDITIONS = {
    "untreated": {},
    "rt_8x3": {"rt_days": [10, 11, 12], "rt_doses_gy": [8, 8, 8]},
    "rt_dln_pd1": {"rt_days": [10], "rt_doses_gy": [12], "dln_rt_days": [10], "dln_rt_doses_gy": [4],
                   "anti_pd1_days": [9, 12, 15]},
    "rt_ctla4_beza": {"rt_days": [10, 11], "rt_doses_gy": [6, 6], "anti_ctla4_days": [10, 13],
                      "bezafibrate_days": [10, 11, 12]},
}


def _plan(cond):
    return TreatmentPlan.from_condition(cond, two_site_network(), 31)


def _fd(plan, base, names, theta, rel=1e-6):
    """Central differences of the log volumes in each parameter (relative step)."""
    cols = []
    for j in range(len(names)):
        h = rel * max(abs(theta[j]), 1e-8)
        up, dn = theta.copy(), theta.copy()
        up[j] += h
        dn[j] -= h
        f = [log_volume_batch(plan, t[None], names, np.arange(5, 31), base, 1e-3) for t in (up, dn)]
        cols.append((f[0] - f[1])[0] / (2 * h))
    return np.stack(cols, -1)


@pytest.mark.parametrize("cond", list(CONDITIONS), ids=list(CONDITIONS))
def test_jacobian_matches_central_differences_for_every_smooth_parameter(cond):
    """Every one of the 70 smooth parameters, on schedules with radiation of tumour and DLN, anti-PD-1 state
    changes, anti-CTLA-4 and bezafibrate windows and the induction caps: the tangents equal central differences."""
    base = default_parameters()
    theta = np.array([base[n] for n in SMOOTH])
    for j, n in enumerate(SMOOTH):  # strictly inside the admissible range, so the differences stay admissible
        lo, hi = registry().record("dln", n).bounds
        if theta[j] <= lo:  # a rate at 0 (e.g. no recovery): a small positive value
            theta[j] = lo + 1e-3 * min(hi - lo, 1.0)
        theta[j] = min(theta[j], hi - 1e-3 * (hi - lo))  # a survival fraction at 1
    plan = _plan(CONDITIONS[cond])
    y, jac = log_volume_batch_jacobian(plan, theta[None], SMOOTH, np.arange(5, 31), base)
    np.testing.assert_allclose(y, log_volume_batch(plan, theta[None], SMOOTH, np.arange(5, 31), base))
    fd = _fd(plan, base, SMOOTH, theta)
    # tolerance: 1e-5 of the parameter's largest sensitivity plus the differences' own round-off (eps |log V| / h)
    h = 1e-6 * np.maximum(np.abs(theta), 1e-8)
    tol = 1e-5 * np.abs(fd).max(axis=(0, 1)) + 50 * np.finfo(float).eps * np.abs(y).max() / h
    err = np.abs(jac[0] - fd) / tol
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() < 1, f"{SMOOTH[worst[2]]}: tangent {jac[0][worst]:.6g} vs FD {fd[worst]:.6g}"
    assert np.count_nonzero(np.abs(jac[0]).max(axis=(0, 1)) > 0) >= 30  # the check is not of zeros


def test_simulator_jacobian_batches_and_refuses_switch_parameters():
    fm = DlnSimulator(parameter_names=("ctl_cytotoxicity", "ctl_priming", "initial_tumour_cells", "volume_per_cell"))
    base = default_parameters()
    theta = np.array([[base[n] * f for n in fm.parameter_names] for f in (0.8, 1.0, 1.3)])
    y, jac = fm.simulate_jacobian(theta, CONDITIONS["rt_8x3"])
    assert y.shape == (3, 2, len(fm.times)) and jac.shape == (3, 2, len(fm.times), 4)
    np.testing.assert_array_equal(y, fm.simulate(theta, CONDITIONS["rt_8x3"]))
    for r in range(3):
        one = fm.simulate_jacobian(theta[r:r + 1], CONDITIONS["rt_8x3"])[1]
        np.testing.assert_allclose(jac[r:r + 1], one, rtol=1e-13)
    # d log V / d log k = 1 where V is above the floor (volume per cell scales every volume)
    k = jac[..., 3] * theta[:, None, None, 3]
    np.testing.assert_allclose(k[y > np.log(1e-3) + 1e-9], 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match=r"\['pd1_drug_threshold'\] act only through thresholds"):
        DlnSimulator(parameter_names=("pd1_drug_threshold",)).simulate_jacobian([[1.0]], {})
    assert len(SWITCH_PARAMS) == 6 and model.N_PARAMS == len(PARAM_NAMES)
