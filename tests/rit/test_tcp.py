"""Markov mode (statistical test against the exact birth-death extinction law) and population TCP (SPEC §4)."""

import numpy as np
import pytest
from scipy import stats

from immunocal.forward.rit import Schedule
from immunocal.forward.rit.radiobiology import iso_bed_schedule
from immunocal.forward.rit.tcp import (
    binomial_ci,
    birth_death_exact_runs,
    birth_death_extinction,
    galton_watson_extinction,
    linear_birth_death_extinction,
    perturbed_parameters,
    population_tcp,
)
from immunocal.priors import registry


@pytest.fixture(scope="module")
def t3():
    return registry().parameter_set("rit", "dewan_table3")


@pytest.mark.parametrize("n0,pb,pd,steps", [(3, 0.05, 0.06, 200), (10, 0.02, 0.05, 100), (1, 0.3, 0.1, 50)])
def test_markov_step_matches_exact_extinction_probability(rng, n0, pb, pd, steps):
    n_runs = 4000
    final = birth_death_extinction(n0, pb, pd, steps, n_runs, rng)
    q = galton_watson_extinction(n0, pb, pd, steps)
    k = int(np.sum(final == 0))
    assert stats.binomtest(k, n_runs, q).pvalue > 1e-3, (k / n_runs, q)
    # supercritical ultimate extinction (pd/pb)^n0 is the long-time limit of the recursion
    if pb > pd:
        assert galton_watson_extinction(n0, pb, pd, 5000) == pytest.approx((pd / pb) ** n0, rel=1e-6)


@pytest.mark.parametrize("n0,lam,mu,h,steps", [(3, 1.0, 1.2, 0.0125, 400), (10, 0.4, 1.0, 0.05, 60),
                                               (1, 2.0, 0.5, 0.0125, 80), (5, 25.0, 25.0, 0.0125, 40)])
def test_exact_markov_step_matches_continuous_time_extinction(rng, n0, lam, mu, h, steps):
    """The default scheme's Markov step is the exact transition of the linear birth-death process, so any number
    of steps of any size reproduces its extinction law (binomial test) and mean n0 e^{(lam - mu) t}; rates up to
    25/day x 0.0125 d (the seed's per-step probabilities would be capped at such rates)."""
    n_runs = 4000
    final = birth_death_exact_runs(n0, lam, mu, h, steps, n_runs, rng)
    q = linear_birth_death_extinction(n0, lam, mu, h * steps)
    k = int(np.sum(final == 0))
    assert stats.binomtest(k, n_runs, q).pvalue > 1e-3, (k / n_runs, q)
    mean = n0 * np.exp((lam - mu) * h * steps)
    assert abs(final.mean() - mean) < 5 * final.std() / np.sqrt(final.size) + 1e-12


def test_markov_mean_population(rng):
    # E[N_K] = n0 (1 + pb - pd)^K; KS-free check by the CLT with a 5-sigma margin
    n0, pb, pd, steps = 50, 0.04, 0.02, 30
    final = birth_death_extinction(n0, pb, pd, steps, 3000, rng)
    mean = n0 * (1 + pb - pd) ** steps
    assert abs(final.mean() - mean) < 5 * final.std() / np.sqrt(final.size)


def test_tcp_reproducible_and_ci(t3):
    s = Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=40)
    r1 = population_tcp(t3, s, np.random.default_rng(7), n_sims=50)
    r2 = population_tcp(t3, s, np.random.default_rng(7), n_sims=50)
    assert r1.tcp == r2.tcp and np.array_equal(r1.controlled, r2.controlled)
    assert r1.ci[0] <= r1.tcp <= r1.ci[1]
    assert binomial_ci(0, 200)[0] == 0.0 and binomial_ci(0, 200)[1] == pytest.approx(0.018275, abs=1e-5)
    none = population_tcp(t3, Schedule(t_end=40), np.random.default_rng(7), n_sims=20)
    assert none.tcp == 0.0


def test_perturbation_is_five_percent_of_free_parameters(t3, rng):
    thetas, n_out = perturbed_parameters(t3, 4000, rng)
    # Table 3 fits alpha_C = 0.02 and phi = 0.03 at their Table 4 lower bounds: ~3/4 of the draws leave the box
    assert 0.6 * 4000 < n_out < 0.9 * 4000
    from immunocal.forward.rit import kernels as K
    from immunocal.forward.rit.model import parameter_array

    base = parameter_array(t3)
    free = registry().free_parameters("rit", "dewan_table3")
    for i, name in enumerate(K.PARAM_NAMES):
        rel = thetas[:, i] / base[i] - 1 if base[i] != 0 else thetas[:, i]
        if name in free and base[i] != 0:
            assert np.std(rel) == pytest.approx(0.05, rel=0.05)
        else:
            assert np.all(rel == 0)


def test_tcp_errors(t3):
    s = Schedule(t_end=10)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        population_tcp(t3, s, 1234, n_sims=10)
    with pytest.raises(ValueError, match="number of simulations must be >= 1"):
        population_tcp(t3, s, np.random.default_rng(0), n_sims=0)
    with pytest.raises(ValueError, match="must lie in"):
        binomial_ci(5, 4)


# ---------------------------------------------------------------------------------- SPEC §4 qualitative results
def _tcp(ps, rt, c4, seed=2024, n=200):
    return population_tcp(
        ps, Schedule.from_strings(rt=rt, ctla4=c4, t_end=60), np.random.default_rng(seed), n
    ).tcp


def test_ctla4_schedule_258_is_best_of_the_three_experimental(t3):
    p036, p258, p469 = (_tcp(t3, "8x3@0,1,2", c4) for c4 in ("0,3,6", "2,5,8", "4,6,9"))
    assert p258 >= p036 and p258 >= p469, (p036, p258, p469)


def test_tcp_falls_when_immunotherapy_starts_after_day_3(t3):
    from immunocal.forward.rit.scenarios import it_timing_schedules

    sched = it_timing_schedules()
    tcps = [population_tcp(t3, sched[f"start_{d}"], np.random.default_rng(2024), 200).tcp for d in range(8)]
    assert max(tcps[4:]) < min(tcps[:3]) - 0.2, tcps
    # with the 3-day spacing of the experimental schedules the fall is there too
    spaced = [_tcp(t3, "8x3@0,1,2", f"{d},{d + 3},{d + 6}") for d in range(8)]
    assert max(spaced[4:]) < min(spaced[:3]) - 0.2, spaced


def test_iso_bed_moderate_hypofractionation_beats_single_and_ten_fractions(t3):
    doses = iso_bed_schedule([1, 2, 3, 10], 9.29)
    tcp = {n: _tcp(t3, f"{doses[n]:.4f}x{n}@{','.join(str(i) for i in range(n))}", "2,5,8") for n in doses}
    assert max(tcp[2], tcp[3]) > tcp[1] and max(tcp[2], tcp[3]) > tcp[10], tcp


def test_ctla4_alone_is_within_a_few_percent_of_no_treatment():
    from immunocal.forward.rit import simulate_volumes

    for preset in ("dewan_table1", "dewan_table3"):
        ps = registry().parameter_set("rit", preset)
        times = np.arange(0, 31, 3.0)
        v0 = simulate_volumes(ps, Schedule(t_end=30), times)
        v1 = simulate_volumes(ps, Schedule.from_strings(ctla4="2,5,8", t_end=30), times)
        assert np.max(np.abs(v1 / v0 - 1)) < 0.03


def test_stochastic_runs_follow_the_deterministic_model_above_the_threshold(t3):
    from immunocal.forward.rit import simulate

    s = Schedule.from_strings(rt="8x3@0,1,2", ctla4="2,5,8", t_end=40)
    det = simulate(t3, s)
    r = population_tcp(t3, s, np.random.default_rng(11), n_sims=30, rel_sd=0.0, record_volumes=True)
    above = det["C"] >= 1000.0
    first_below = int(np.argmin(above))  # C of the nominal model drops below 1000 cells here
    assert 0 < first_below < len(det.t) - 1
    np.testing.assert_allclose(
        r.volumes[:, :first_below], np.broadcast_to(det.volume[:first_below], (30, first_below)), rtol=1e-12
    )
    # below the threshold the runs differ (Markov) and every nominal run is eventually controlled or not
    assert np.ptp(r.volumes[:, -1]) > 0 or r.tcp in (0.0, 1.0)
