"""The workflow's triage rule between likelihood routes (calib.diagnostics.route_advice)."""

from calib.diagnostics import EXACT_GRADIENT_BUDGET_S, route_advice


def test_surrogate_error_above_the_noise_escalates_to_exact_when_the_model_has_gradients():
    adv = route_advice("surrogate", True, {"log_volume": 0.4, "cytokine": 0.05}, {"log_volume": 0.2, "cytokine": 0.1})
    assert adv["advice"] == "escalate_to_exact" and "log_volume" in adv["reason"] and "cytokine" not in adv["reason"]
    assert adv["surrogate_rmse_over_noise"] == {"log_volume": 2.0, "cytokine": 0.5}
    # without exact gradients: more refinement or the black-box model with SMC
    assert route_advice("surrogate", False, {"y": 0.4}, {"y": 0.2})["advice"] == "refine_or_blackbox"


def test_surrogate_error_below_the_noise_keeps_the_route():
    adv = route_advice("surrogate", True, {"y": 0.19}, {"y": 0.2})
    assert adv["advice"] == "keep" and adv["surrogate_rmse_over_noise"]["y"] == 0.95


def test_exact_route_over_its_cost_budget_is_flagged():
    assert route_advice("exact", True, gradient_seconds=EXACT_GRADIENT_BUDGET_S / 2)["advice"] == "keep"
    adv = route_advice("exact", True, gradient_seconds=EXACT_GRADIENT_BUDGET_S * 3)
    assert adv["advice"] == "surrogate_cheaper" and adv["gradient_seconds"] == EXACT_GRADIENT_BUDGET_S * 3


def test_no_noise_estimate_means_no_escalation_rule_applies():
    assert route_advice("surrogate", True, {"y": 5.0}, {})["advice"] == "keep"
    assert route_advice("blackbox", False)["advice"] == "keep"
