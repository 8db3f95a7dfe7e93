"""The workflow's triage rule between likelihood routes (immunocal.calib.diagnostics.route_advice)."""

import numpy as np
import pytest

from immunocal.calib.diagnostics import EXACT_GRADIENT_BUDGET_S, route_advice


def test_surrogate_error_above_the_noise_escalates_to_exact_when_the_model_has_gradients():
    adv = route_advice("surrogate", True, {"log_volume": 0.4, "cytokine": 0.05}, {"log_volume": 0.2, "cytokine": 0.1})
    assert adv["advice"] == "escalate_to_exact" and "log_volume" in adv["reason"] and "cytokine" not in adv["reason"]
    assert adv["surrogate_rmse_over_noise"] == {"log_volume": 2.0, "cytokine": 0.5}
    # without exact gradients: more refinement or the black-box model with SMC
    assert route_advice("surrogate", False, {"y": 0.4}, {"y": 0.2})["advice"] == "refine_or_blackbox"


def test_surrogate_error_below_the_noise_keeps_the_route():
    adv = route_advice("surrogate", True, {"y": 0.19}, {"y": 0.2})
    assert adv["advice"] == "keep" and adv["surrogate_rmse_over_noise"]["y"] == 0.95


def test_unreliable_importance_weights_escalate_even_when_the_error_is_inside_the_noise():
    """A surrogate error inside the noise, systematic over hundreds of rows, can still move the posterior by many
    sds (Morisada MOC1: RMSE 0.78 noise sd, the surrogate posterior 58 sds off in alpha); the importance weights
    true model / surrogate at posterior draws see it (Pareto k > 0.7)."""
    adv = route_advice("surrogate", True, {"y": 0.15}, {"y": 0.2}, pareto_k=1.4)
    assert adv["advice"] == "escalate_to_exact" and adv["pareto_k"] == 1.4 and "1.40" in adv["reason"]
    assert route_advice("surrogate", False, {"y": 0.15}, {"y": 0.2}, pareto_k=0.9)["advice"] == "refine_or_blackbox"
    assert route_advice("surrogate", True, {"y": 0.15}, {"y": 0.2}, pareto_k=float("nan"))["advice"] == \
        "escalate_to_exact"
    ok = route_advice("surrogate", True, {"y": 0.15}, {"y": 0.2}, pareto_k=0.3)
    assert ok["advice"] == "keep" and "Pareto k 0.30" in ok["reason"]
    # the RMSE rule still applies when the weights are reliable
    assert route_advice("surrogate", True, {"y": 0.4}, {"y": 0.2}, pareto_k=0.3)["advice"] == "escalate_to_exact"


def test_the_reason_names_the_observables_whose_weights_alone_break_the_check():
    """Each observable's log weights on their own (Pareto k̂ above the limit) are named in the escalation, worst
    first; those within it are recorded, not named."""
    adv = route_advice("surrogate", False, {"t_max": 0.6}, {"t_max": 0.35}, pareto_k=33.1,
                       pareto_k_by_observable={"t_max": 3.63, "log_pfs_months": 6.97, "log_c_max": 0.39})
    assert adv["advice"] == "refine_or_blackbox"
    assert "log_pfs_months 6.97, t_max 3.63" in adv["reason"] and "log_c_max" not in adv["reason"]
    assert adv["pareto_k_by_observable"]["log_c_max"] == 0.39
    # a total within the limit names nobody, whatever a lone observable says
    ok = route_advice("surrogate", True, {"y": 0.1}, {"y": 0.2}, pareto_k=0.5, pareto_k_by_observable={"y": 0.5})
    assert ok["advice"] == "keep"


def test_each_observables_share_of_the_importance_weights():
    from immunocal.calib.diagnostics import importance_by_observable

    rng = np.random.default_rng(0)
    got = importance_by_observable({"agree": np.full(200, -3.0), "mild": 0.3 * rng.normal(size=200),
                                    "broken": 5.0 * rng.normal(size=200)})
    assert got["agree"] == {"pareto_k": 0.0, "log_weight_sd": 0.0}  # PSIS alone would say inf for a constant
    assert got["mild"]["pareto_k"] < 0.5 and got["broken"]["pareto_k"] > 0.7
    assert got["broken"]["log_weight_sd"] == pytest.approx(5.0, rel=0.15)


def test_exact_route_over_its_cost_budget_is_flagged():
    assert route_advice("exact", True, gradient_seconds=EXACT_GRADIENT_BUDGET_S / 2)["advice"] == "keep"
    adv = route_advice("exact", True, gradient_seconds=EXACT_GRADIENT_BUDGET_S * 3)
    assert adv["advice"] == "surrogate_cheaper" and adv["gradient_seconds"] == EXACT_GRADIENT_BUDGET_S * 3


def test_no_noise_estimate_means_no_escalation_rule_applies():
    assert route_advice("surrogate", True, {"y": 5.0}, {})["advice"] == "keep"
    assert route_advice("blackbox", False)["advice"] == "keep"


def test_first_order_share_and_prior_driven_flags():
    """A prediction driven by a parameter the fit left at its prior is flagged; one driven by an identified
    parameter is not; the share is var(E[y|x]) / var(y) (1 for y = f(x), 1/2 for x + noise, ~0 for unrelated x)."""
    from types import SimpleNamespace

    import numpy as np
    import xarray as xr

    from immunocal.calib.data import Measurements
    from immunocal.calib.predict import first_order_share, prediction_identifiability

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1, 400)), rng.normal(size=(1, 400))
    assert first_order_share(a.ravel(), np.tanh(a.ravel())) > 0.95
    noisy = first_order_share(a.ravel(), a.ravel() + rng.normal(size=400))  # half the variance is explained
    assert abs(noisy - 0.5) < 0.1
    assert first_order_share(a.ravel(), b.ravel()) < 0.06
    assert first_order_share(a.ravel(), np.ones(400)) is None
    rows = Measurements.from_arrays(["A/new1", "A/new1", "B/new1"], ["A", "A", "B"], ["y", "y", "y"],
                                    [0.0, 5.0, 5.0], [np.nan] * 3)
    mu = np.stack([np.zeros(400), a.ravel() + 0.1 * b.ravel(), b.ravel()], axis=-1)[None]  # A driven by a, B by b
    pred = SimpleNamespace(predictions={"mu_y": xr.DataArray(mu, dims=("chain", "draw", "obs"))})
    thinned = SimpleNamespace(posterior={"a": xr.DataArray(a, dims=("chain", "draw")),
                                         "b_loc": xr.DataArray(b, dims=("chain", "draw"))})
    res = prediction_identifiability(thinned, pred, rows, ["A", "B"], {"a": 0.1, "b_loc": 0.9})
    assert res["A"]["y"]["day"] == 5.0 and res["A"]["y"]["prior_driven_by"] == ["a"]
    assert res["B"]["y"]["prior_driven"] is False  # driven by b_loc, which the fit identified (contraction 0.9)
    assert res["B"]["y"]["parameters"]["b_loc"]["first_order_share"] > 0.9


def test_posterior_agreement_measures_mean_shift_in_reference_sds_and_sd_ratios():
    """Two posteriors side by side (the route comparisons' one measure): a scalar shifted by 0.5 reference sd with
    the same spread fails the 0.2-sd criterion; a per-subject parameter reports its worst subject and its sd ratios."""
    import numpy as np
    import xarray as xr

    from immunocal.calib.diagnostics import posterior_agreement

    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 20000))
    ref = xr.Dataset({"a": (("chain", "draw"), 2.0 * z),
                      "b": (("chain", "draw", "subject"), np.stack([z, 3.0 * z], axis=-1))})
    post = xr.Dataset({"a": (("chain", "draw"), 2.0 * z + 1.0),  # +0.5 reference sd
                       "b": (("chain", "draw", "subject"), np.stack([1.1 * z, 3.0 * z + 0.3], axis=-1))})
    res = posterior_agreement(post, ref, ["a", "b"])
    a, b = res["parameters"]["a"], res["parameters"]["b"]
    assert a["mean_diff_in_sd"] == pytest.approx(1.0 / (2.0 * z.std()), rel=1e-9) and a["sd_ratio"] == pytest.approx(1.0)
    assert not a["pass"] and not res["all_pass"]
    assert b["elements"] == 2 and b["mean_diff_in_sd"] == pytest.approx(0.3 / (3.0 * z.std()), rel=1e-9)
    assert b["sd_ratio_range"] == pytest.approx([1.0, 1.1]) and b["pass"]
    assert posterior_agreement(ref, ref, ["a", "b"])["all_pass"]
