"""SPEC §3.2 qualitative results at reduced size (2-D, 24×24 nodes; the studies run 3-D)."""

import pytest

from immunocal.forward.cart import experiments as X
from immunocal.forward.cart.grid import Grid
from immunocal.priors import registry


@pytest.fixture(scope="module")
def setup():
    return registry().parameter_set("cart", "normalised"), Grid.cube(2, 24)


def test_fig4_infiltration_without_antigen_escape(setup):
    ps, grid = setup
    c = X.infiltration_checks(X.infiltration(ps, grid, t_end=12.0, dt=0.05))
    assert c["tumour_monotone_decrease"], c
    assert c["C_rises_then_plateaus"], c
    assert c["E_slower_than_C"], c
    assert c["front_advances"], c


def test_figs5_6_heterogeneity_orderings(setup):
    ps, grid = setup
    c = X.heterogeneity_checks(X.heterogeneity(ps, grid, t_end=30.0, dt=0.1))
    assert all(c["burden_increases_with_tb0"].values()), c
    assert all(c["order_burden"]), c
    assert all(c["order_tb_fraction"]), c


def test_fig8_microenvironment(setup):
    ps, grid = setup
    c = X.microenvironment_checks(X.microenvironment(ps, grid, t_end=30.0, dt=0.1))
    assert c["order_final_burden"], c
    assert c["A_H_highest_in_enhanced"], c
    assert c["C_step_visible"], c


@pytest.mark.slow
def test_fig4_infiltration_3d_study_grid():
    """Same checks on the study grid (3-D 32³, dt 0.02): holds, with ∫T_A at its minimum at t ≈ 12."""
    ps = registry().parameter_set("cart", "normalised")
    c = X.infiltration_checks(X.infiltration(ps, Grid.cube(3, 32), t_end=12.0, dt=0.02))
    assert c["tumour_monotone_decrease"] and c["C_rises_then_plateaus"] and c["E_slower_than_C"], c
    assert c["front_advances"], c


@pytest.mark.slow
def test_fig8_microenvironment_3d_study_grid():
    ps = registry().parameter_set("cart", "normalised")
    c = X.microenvironment_checks(X.microenvironment(ps, Grid.cube(3, 32), t_end=30.0, dt=0.02))
    assert c["order_final_burden"] and c["A_H_highest_in_enhanced"] and c["C_step_visible"], c
