"""Homogeneous ODE (eqs 9–15): Jacobian, steady states E_0/E_T/E_CT, Propositions 1–2, seed Fig 3 behaviour."""

import numpy as np
import pytest

from immunocal.forward.cart import homogeneous as hom
from immunocal.priors import registry


@pytest.fixture(scope="module")
def norm():
    return registry().parameter_set("cart", "normalised")


def test_jacobian_matches_finite_differences(norm, rng):
    for _ in range(5):
        u = rng.uniform(0.05, 1.0, 7)
        J = hom.jacobian(u, norm)
        eps = 1e-6
        Jn = np.empty((7, 7))
        for j in range(7):
            e = np.zeros(7)
            e[j] = eps
            Jn[:, j] = (hom.rhs(u + e, norm) - hom.rhs(u - e, norm)) / (2 * eps)
        np.testing.assert_allclose(J, Jn, rtol=1e-6, atol=1e-8)


def test_mixed_tumour_state_satisfies_eqs_28_30(norm):
    (et,) = hom.tumour_states(norm)
    assert np.max(np.abs(hom.rhs(et, norm))) < 1e-14
    ta, tb = et[2], et[3]
    # d_TA = d_TB: R = d, N = K_T(1 − d/r_T), T_B/T_A = μ0/μ1
    assert ta + tb == pytest.approx(1.0 - 0.01 / 0.13, rel=1e-12)
    assert tb / ta == pytest.approx(0.13 / 0.07, rel=1e-12)


def test_long_time_ode_converges_to_analytic_mixed_state(norm):
    # without CAR-T (and with ρ_C small so that E_T also attracts in the C direction: round-off C cannot grow)
    ps = norm.replace(car_t_proliferation_rate=0.01)
    (et,) = hom.tumour_states(ps)
    assert hom.proposition2(ps)["conditions_hold"]
    sol = hom.solve(ps, [0, 0, 0.3, 0.0, 0, 0, 0], 1500.0, t_eval=[1500.0], method="Radau", rtol=1e-10,
                    atol=1e-14)
    np.testing.assert_allclose(sol.y[:, -1], et, rtol=1e-6, atol=1e-12)


def test_antigen_homogeneous_state_when_mu0_is_zero(norm):
    ps = norm.replace(antigen_loss_rate=0.0)
    states = hom.tumour_states(ps)
    homog = [s for s in states if s[3] == 0.0]
    assert len(homog) == 1
    assert homog[0][2] == pytest.approx(1.0 - 0.01 / 0.13, rel=1e-12)  # eq 27
    assert np.max(np.abs(hom.rhs(homog[0], ps))) < 1e-14


def test_healthy_state_and_proposition1_on_both_sides(norm):
    assert np.all(hom.rhs(hom.healthy_state(), norm) == 0)
    unstable = hom.proposition1(norm)  # r_T = 0.13 > d + ...: tumour can grow
    assert not unstable["conditions_hold"] and not unstable["stable"]
    assert np.max(unstable["eig_JT"].real) > 0
    stable = hom.proposition1(norm.replace(tumour_growth_rate=0.005))
    assert stable["conditions_hold"] and stable["stable"]
    assert np.max(stable["eig_full"].real) < 0


def test_proposition2_on_both_sides(norm):
    inv = hom.proposition2(norm)  # normalised preset: CAR-T can invade E_T (seed §3.2)
    assert not inv["conditions_hold"] and inv["car_t_can_invade"]
    assert np.max(inv["eig_full"].real) > 0
    # E_T is block-triangular in (C,E): the full Jacobian has the (C,E) block's eigenvalues
    assert np.min(np.abs(inv["eig_full"] - np.max(inv["eig_JCE"].real))) < 1e-10
    resist = hom.proposition2(norm.replace(car_t_proliferation_rate=0.01))
    assert resist["conditions_hold"] and not resist["car_t_can_invade"]
    assert np.max(resist["eig_JCE"].real) < 0
    # a small CAR-T dose then dies out in the ODE
    u0 = resist["state"].copy()
    u0[0] = 1e-4
    sol = hom.solve(norm.replace(car_t_proliferation_rate=0.01), u0, 200.0, t_eval=[0.0, 200.0])
    assert sol["C"][-1] < 1e-3 * u0[0]


def test_coexistence_state_is_a_root(norm):
    states = hom.coexistence_states(norm)
    assert len(states) >= 1
    for s in states:
        assert s[0] > 0 and s[2] > 0
        assert np.max(np.abs(hom.rhs(s, norm))) < 1e-9


def test_fig3_qualitative_dynamics(norm):
    """SPEC §3.2, homogeneous ODE with T_B(0) = 0 (seed Fig 3)."""
    opts = registry().preset_options("cart", "normalised")
    u0 = [opts["ode_car_t0"], 0, opts["ode_tumour0"], 0, 0, 0, 0]
    t_end = opts["ode_t_end"]
    sol = hom.solve(norm, u0, t_end, t_eval=np.linspace(0, t_end, 2001))
    C, E, TA, TB = sol["C"], sol["E"], sol["TA"], sol["TB"]
    N = TA + TB
    i = np.argmax(C)
    assert 0 < sol.t[i] < 0.1 * t_end and C[-1] > 0 and C[-1] < 0.8 * C[i]    # early peak, positive plateau
    assert abs(C[-1] - C[-200]) < 0.02 * C[i]
    assert E[-1] > 0 and abs(E[-1] - E[-200]) < 0.02 * E.max()                # E settles > 0
    assert TA.min() <= 0.1 * TA[0] and TA[-1] > 0                             # T_A falls ≥ 90 %, stays > 0
    assert TB[-1] / N[-1] >= 0.9                                              # T_B dominates
    assert N.min() < 0.5 * N[0] and N[-1] > N.min() * 3                       # nadir < 50 %, regrowth


def test_ode_input_errors(norm):
    with pytest.raises(ValueError, match="initial state must be 7 finite values"):
        hom.solve(norm, [0, 0, np.nan, 0, 0, 0, 0], 10.0)
    with pytest.raises(ValueError, match="t_end = -1.0 is invalid"):
        hom.solve(norm, [0] * 7, -1.0)


def test_proposition_conditions_match_eigenvalue_signs_on_random_sets(norm, rng):
    """Conditions (38) and (48) are equivalent to negative real parts of the 2×2 blocks, and the full Jacobian at
    E_0 / E_T has the block eigenvalues (block-triangular structure): checked on 200 random parameter sets."""
    names = ["tumour_growth_rate", "antigen_positive_death_rate", "antigen_negative_death_rate", "antigen_loss_rate",
             "antigen_recovery_rate", "car_t_proliferation_rate", "car_t_half_saturation", "car_t_contact_loss_rate",
             "exhaustion_rate", "car_t_death_rate", "exhaustion_recovery_rate", "exhausted_death_rate"]
    hi = {"car_t_half_saturation": 2.0, "car_t_proliferation_rate": 1.0}
    seen = {True: 0, False: 0}
    for _ in range(200):
        ps = norm.replace(**{n: rng.uniform(0.01 if n == "car_t_half_saturation" else 0.0, hi.get(n, 0.3))
                             for n in names})
        p1 = hom.proposition1(ps)
        assert p1["conditions_hold"] == bool(np.max(p1["eig_JT"].real) < 0)
        for et in hom.tumour_states(ps):
            p2 = hom.proposition2(ps, et)
            assert p2["conditions_hold"] == bool(np.max(p2["eig_JCE"].real) < 0)
            full = np.sort_complex(p2["eig_full"])
            for ev in p2["eig_JCE"]:
                assert np.min(np.abs(full - ev)) < 1e-8 * max(1.0, abs(ev))
            seen[p2["conditions_hold"]] += 1
    assert seen[True] > 5 and seen[False] > 5
