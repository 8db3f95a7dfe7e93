"""README results section regenerated from study JSON."""

import json

import pytest

from immunocal.calib.report import END, START, update_readme


def _render(tmp_path, studies: dict) -> str:
    """The README results block rendered from ``{study: json}`` alone."""
    results = tmp_path / "results"
    results.mkdir()
    for name, j in studies.items():
        (results / f"{name}.json").write_text(json.dumps(j))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\n{END}\n")
    update_readme(results, readme, tmp_path / "figs")
    return readme.read_text()


def test_report_writes_numbers_between_markers(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "rit_fractionation.json").write_text(json.dumps(
        {"doses_gy": [16.25, 10.49], "tcp_with_ctla4": {"1": 0.01, "2": 0.895}, "tcp_rt_only": {"1": 0.0}}))
    (results / "rit_fractionation.png").write_bytes(b"\x89PNG fake")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n{START}\nold\n{END}\n\ntail\n")
    update_readme(results, readme, tmp_path / "docs" / "figures")
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x") and text.rstrip().endswith("tail")
    assert "1: 0.01, 2: 0.895" in text and "Not run for this report" in text
    assert "![rit_fractionation](docs/figures/rit_fractionation.png)" in text
    assert (tmp_path / "docs/figures/rit_fractionation.png").exists()


def test_report_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="missing the markers"):
        update_readme(tmp_path, readme, tmp_path / "f")


def test_headline_table_of_the_bayes_vs_lightgbm_study(tmp_path):
    m = {"mae": 0.21, "r2": 0.43, "coverage_90": 0.88, "crps": 0.12}
    g = {"mae": 0.25, "r2": 0.31, "coverage_90": 0.79, "crps": 0.15}
    j = {"n": 37, "repeats": 10, "outer_folds": 5,
         "table": {"theta_cyt": {"bayes": m, "lightgbm": g}},
         "identifiability": {"theta_cyt": {"contraction": 0.61, "identified": True}},
         "sbc": {"theta_cyt": {"p_value": 0.37}},
         "folds": [{"population": {"rhat_max": 1.01, "ess_bulk_min": 459, "ess_tail_min": 553, "divergences": 0},
                    "personalised_pareto_k_max": 0.57, "personalised_failures": [],
                    "seconds": {"sampling": 250.0, "total": 300.0},
                    "population_top_up": [{"batch": 1, "chains_added": 2}, {"batch": 2, "chains_added": 2}],
                    "route": {"advice": "keep", "pareto_k": 0.4,
                              "surrogate_rmse_over_noise": {"t_max": 0.5, "log_pfs_months": 0.9}}},
                   {"population": {"rhat_max": 1.0, "ess_bulk_min": 600, "ess_tail_min": 500, "divergences": 1,
                                   "ok": False},
                    "population_first_attempt": {"ok": False},
                    "personalised_pareto_k_max": 0.8, "personalised_failures": ["V0001: k 0.8"],
                    "seconds": {"sampling": 400.0, "total": 500.0},
                    "route": {"advice": "refine_or_blackbox", "pareto_k": 33.1,
                              "surrogate_rmse_over_noise": {"t_max": 1.78, "log_pfs_months": 0.4}}}],
         "response": {"orr": {"bayes": {"auroc": 0.71, "brier": 0.2}, "lightgbm": {"auroc": 0.64, "brier": 0.23}}},
         "seed_protocol": {"theta_cyt": {"lightgbm_on_ref_vs_ref": {"r2": 0.5}, "lightgbm_on_ref_vs_truth": {"r2": 0.2},
                                         "ref_vs_truth": {"r2": 0.3}, "seed000_table2": {"r2": 0.486}}},
         "seconds": {"bayes": 100.0}}
    text = _render(tmp_path, {"ct041_bayes_vs_lgbm": j})
    assert "| cyt | 0.49 | 0.31 / 0.43 | 0.25 / 0.21 | 0.79 / 0.88 | 0.15 / 0.12 | 0.61 | yes | 0.37 |" in text
    assert "1.01 / 459 / 500 / 1" in text  # worst fold diagnostics, divergences summed
    assert "0.8 / 1" in text and "0.64 / 0.23 vs 0.71 / 0.2" in text
    assert "missing the thresholds / still missing them: 1 / 1" in text
    assert "missing the ESS threshold alone (chains added): 1 (4)" in text
    # the folds' own fit times, from their records (a resumed run's wall time says little of a fold's cost)
    assert "folds / summed seconds / median / max: 2 / 800 / 400 / 500" in text
    # the route check of each fold: how many were advised off the surrogate, the worst k̂ and worst RMSE / noise
    assert "max surrogate RMSE over the fitted noise sd: 1 of 2 / 33.1 / log_pfs_months 0.9, t_max 1.78" in text
    assert "_posterior contraction_ = 1 − mean posterior variance" in text  # the columns are explained
    assert "reweighted to the true model" not in text  # a result without the reweighting says nothing of it
    j["table"]["theta_cyt"]["bayes_true_model"] = {"r2": 0.47, "coverage_90": 0.9, "crps": 0.118}
    j["true_model_reweighting"] = {"patients": 37, "share_reliable": 0.946, "pareto_k_max": 0.81}
    (tmp_path / "again").mkdir()
    text = _render(tmp_path / "again", {"ct041_bayes_vs_lgbm": j})
    assert ("R², 90 % coverage, CRPS: emulators → true model: 0.95 of 37 / 0.81; cyt: 0.43 → 0.47, 0.88 → 0.9, "
            "0.12 → 0.118") in text
    # reweighted in one repeat only (the spatial cohort): said, and compared with the emulators on that repeat
    j["true_model_reweighting"].update(repeats=[0], draws_per_patient=100)
    j["table"]["theta_cyt"]["bayes_same_repeats"] = {"r2": 0.41, "coverage_90": 0.86, "crps": 0.121}
    (tmp_path / "third").mkdir()
    text = _render(tmp_path / "third", {"ct041_bayes_vs_lgbm": j})
    assert "Bayes reweighted to the true model (repeat 0 only, 100 draws a patient; patient-repeats" in text
    assert "cyt: 0.41 → 0.47, 0.86 → 0.9, 0.121 → 0.118" in text


@pytest.mark.parametrize("routes", [False, True])
def test_dewan_section_renders_either_route_comparison(routes):
    from immunocal.calib.report import _dewan_routes

    cmp = {"all_pass": True, "parameters": {"tumour_alpha": {"mean_diff_in_sd": 0.17, "sd_ratio": 0.778}}}
    if routes:
        j = {"routes": {"exact_nuts": cmp, "surrogate_nuts": {**cmp, "all_pass": False},
                        "wall_clock_s": {"exact_nuts": {"total": 840.0}}}}
    else:
        j = {"surrogate_route_validation": {**cmp, "wall_clock_s": {"nuts_surrogate": {"total": 673.2}}}}
    lines = dict(_dewan_routes(j))
    text = "\n".join(f"{k}: {v}" for k, v in lines.items())
    assert "tumour_alpha: 0.17, 0.778" in text
    assert ("predates the exact route" in text) is not routes
    assert ("exact NUTS / surrogate NUTS: yes / no" in text) is routes


def test_report_keeps_what_it_cannot_regenerate_and_archives_what_it_can(tmp_path):
    """A study whose JSON is gone keeps its earlier section (marked carried over), a benchmark line too; a study
    rendered from JSON is archived in results/ beside the README, and a later report from an empty folder renders
    it from that archive."""
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\n\n_Generated_\n\n**DLN: exhaustion arms (seed Fig 3)** "
                      "(`immunocal study dln_exhaustion`)\n\n- kept line: 42\n\n**Benchmarks** (each line)\n\n"
                      "- `immunocal bench dln`: `{\"single_sim_s\": 2e-05}`\n\nNot run for this report: `x`.\n\n"
                      f"{END}\ntail\n")
    results = tmp_path / "run1"
    results.mkdir()
    (results / "rit_fractionation.json").write_text(json.dumps(
        {"doses_gy": [16.25], "tcp_with_ctla4": {"1": 0.01}, "tcp_rt_only": {"1": 0.0}}))
    (results / "bench_rit.json").write_text(json.dumps({"_command": "immunocal bench rit", "single_sim_s": 3e-4}))
    update_readme(results, readme, tmp_path / "figs")
    text = readme.read_text()
    assert "- kept line: 42" in text and "Carried over from an earlier report" in text and "`dln_exhaustion`" in text
    assert '`immunocal bench dln`: `{"single_sim_s": 2e-05}`' in text
    assert '`immunocal bench rit`: `{"single_sim_s": 0.0003}`' in text
    assert "1: 0.01" in text and text.rstrip().endswith("tail")
    assert (tmp_path / "results" / "rit_fractionation.json").exists()
    assert (tmp_path / "results" / "bench_rit.json").exists()
    empty = tmp_path / "run2"
    empty.mkdir()
    update_readme(empty, readme, tmp_path / "figs")
    again = readme.read_text()
    assert "1: 0.01" in again and "- kept line: 42" in again and "3e-4" not in again and "0.0003" in again
    with pytest.raises(FileNotFoundError, match="does not exist"):
        update_readme(tmp_path / "nowhere", readme, tmp_path / "figs")


def test_real_data_sections_render(tmp_path):
    """The Conte (CAR-T) and Dewan (DLN) sections: coverage, diagnostics, killing time, the kill rate in the seed's
    units, screening ranks and Dewan's finding as probabilities with the observed answer."""
    conte = {"well_volume_cm3_assumed": 0.2, "splits": {"fit_1to10_1to50": {
        "fit": ["A", "B"], "heldout": ["C"], "heldout_coverage_50": 0.25, "heldout_coverage_90": 0.8,
        "diagnostics": {"rhat_max": 1.0, "ess_bulk_min": 592.0}, "contraction": {"kill_rate_loc": 0.97},
        "killing": {"C": {"observed": {"peak_day": 0.91}, "predicted_peak_day": [0.7, 0.8, 0.95]}},
        "kill_rate": {"per_cell_day": 1.8e-4, "normalised_per_KT_day": 4.3, "registry_normalised": 2.5,
                      "cm3_per_cell_day": 3.6e-5, "registry_paper": 0.41}}}}
    dln = {"fit": ["a"] * 8, "heldout": ["b"] * 13, "diagnostics": {"rhat_max": 1.0}, "fit_coverage_90": 0.95,
           "heldout_coverage_90": 0.89, "heldout_coverage_50": 0.55,
           "screening": {"parameters_screened": 74, "rank_of_calibrated": {"tumour_proliferation_rate": 1},
                         "top12_not_calibrated": ["volume_per_cell"]},
           "contraction": {"tumour_proliferation_rate": 0.94},
           "finding": {"folder 2 (fitted)": {"P(x < y)": 0.98, "observed x < y": True,
                                             "P(z < half of w)": 0.0, "observed z < half of w": False}}}
    text = _render(tmp_path, {"cart_conte_invitro": conte, "dln_dewan_abscopal": dln})
    assert "held-out coverage 50 % / 90 %: 0.25 / 0.8" in text
    assert "C: peak day observed 0.91, predicted 0.8 [0.7, 0.95]" in text
    assert "0.00018 → 4.3 → 3.6e-05" in text and "registry normalised 2.5" in text
    assert "tumour_proliferation_rate: 1" in text and "volume_per_cell" in text
    assert "x < y: 0.98 (yes); z < half of w: 0 (no)" in text


def test_morisada_fits_report_their_route_and_resolution_ladder(tmp_path):
    """Each cell line's route (exact: seconds per gradient; surrogate: its error at posterior draws) with the
    resolution ladder at posterior draws and for the predicted mice; a result written before the route entry
    still renders its surrogate error."""
    common = {"settings": {"configs": {"MOC1": "moc1.toml"}}, "heldout_coverage_50": 0.5, "heldout_coverage_90": 0.8,
              "diagnostics": {"max_rhat": 1.0}, "tumour_control": {}}
    new = dict(common, route={
        "MOC1": {"route": "exact", "gradient_seconds": 0.0221, "ladder": ["dt0.25x1", "dt0.125x1", "dt0.0625x1"],
                 "numerics_at_posterior_over_noise": {"log_volume": 0.00034},
                 "prediction_numerics_over_noise": {"log_volume": 0.0645}, "prediction_resolution": "dt0.125x1",
                 "seconds": 2000.4},
        "MC38": {"route": "surrogate", "surrogate_max_abs_error": 1.46, "ladder": None}})
    text = _render(tmp_path, {"rit_morisada_hierarchical": new})
    assert "MOC1: route" in text and "exact (true model, kernel tangents; 0.0221 s per gradient)" in text
    assert "dt0.25x1 → dt0.125x1 → dt0.0625x1: 0.00034 / 0.0645 (predictions at dt0.125x1); 2000" in text
    assert "MC38: route" in text and "surrogate (max |error| at posterior draws 1.46 log)" in text
    old = dict(common, surrogate_at_posterior_max_abs_error={"MOC1": 0.863})
    (tmp_path / "old").mkdir()
    assert "max |error| (log): MOC1: 0.863" in _render(tmp_path / "old", {"rit_morisada_hierarchical": old})


def test_each_cell_line_renders_its_nuts_vs_smc_check(tmp_path):
    """The Morisada study's exact-route NUTS against SMC on the true model, per cell line: the agreement per
    parameter and SMC's wall clock; a failed SMC run is said as such; an older output's sentence is kept."""
    from immunocal.calib.report import _morisada_route_lines

    agree = {"all_pass": False, "parameters": {"tumour_alpha": {"mean_diff_in_sd": 0.31, "sd_ratio": 0.91}}}
    j = {"settings": {"configs": {}}, "heldout_coverage_50": 0.5, "heldout_coverage_90": 0.8,
         "diagnostics": {"max_rhat": 1.0}, "tumour_control": {}, "route": {},
         "routes_compared": {
             "MOC1": {"smc_true": {"particles": 2000, "wall_clock_s": {"total": 1234.0}, "nuts_vs_smc": agree,
                                   "log_likelihood_smc_vs_nuts": {"mean": -237.7, "reference_mean": -209.8,
                                                                  "shift_in_reference_sd": -5.47},
                                   "smc_stages": 20, "smc_accept_rate": [0.0145, 0.42]},
                      "surrogate_nuts": {"failed": "ValueError: x"}},
             "MC38": {"smc_true": {"failed": "RuntimeError: out of particles"}, "surrogate_nuts": {"failed": "y"}},
             "old": {"smc_true": "not run: reasons", "surrogate_nuts": {"failed": "z"}}}}
    text = "\n".join(f"{k}: {v}" for k, v in _morisada_route_lines(j))
    assert "exact NUTS vs SMC on the true model (2000 particles), MOC1" in text
    assert "tumour_alpha: 0.31, 0.91; no; 1234" in text
    assert "log-likelihood -237.7 vs NUTS draws' -209.8 (-5.5 sd); 20 stages, Metropolis acceptance 0.015–0.42" in text
    assert "MC38" in text and "SMC failed: RuntimeError: out of particles" in text
    assert "old: SMC on the true model: not run: reasons" in text


def test_headline_route_line_from_the_workflows_route_advice(tmp_path):
    """A fold's route record is what the workflow's triage rule returned (``route_advice``), trimmed by the study
    (``_route_record``); the headline counts the folds it advised off the surrogate."""
    from immunocal.calib.diagnostics import route_advice
    from immunocal.studies.ct041_bayes_vs_lgbm import _route_record

    noise = {"t_max": 0.3, "log_pfs_months": 0.2}
    bad = route_advice("surrogate", False, {"t_max": 0.534, "log_pfs_months": 0.1}, noise, pareto_k=33.1,
                       pareto_k_by_observable={"t_max": 3.63, "log_pfs_months": 6.97, "log_c_max": 0.39})
    good = route_advice("surrogate", False, {"t_max": 0.03, "log_pfs_months": 0.02}, noise, pareto_k=0.3)
    assert bad["advice"] == "refine_or_blackbox" and good["advice"] == "keep"
    assert _route_record(None) is None
    folds = [{"population": {"rhat_max": 1.0}, "route": _route_record(r)} for r in (bad, good)]
    assert set(folds[0]["route"]) == {"advice", "pareto_k", "surrogate_rmse_over_noise", "pareto_k_by_observable"}
    text = _render(tmp_path, {"ct041_bayes_vs_lgbm": {"n": 37, "repeats": 1, "outer_folds": 5, "table": {},
                                                      "folds": folds}})
    assert "max surrogate RMSE over the fitted noise sd: 1 of 2 / 33.1 / log_pfs_months 0.5, t_max 1.78" in text
    assert "alone have Pareto k̂ above 0.7 (folds): log_pfs_months 1, t_max 1" in text and "log_c_max 1" not in text


def test_spatial_emulator_section_names_a_refit_and_its_first_attempt():
    """A study whose fit was refitted (run_converged) says so beside the diagnostics it reports, with the settings
    of the refit and what the first attempt missed, and lists the first attempt's seconds; a fit that passed at
    once says nothing of a refit."""
    from immunocal.calib.report import _spatial_emulator

    j = {"emulator_validation": {}, "emulator_at_posterior": {},
         "diagnostics": {"rhat_max": 1.01, "ess_bulk_min": 691, "ess_tail_min": 536, "divergences": 0},
         "recovery": {"theta_cyt": {"r2": 0.62, "spearman": 0.75, "coverage_90": 0.95, "contraction": 0.56}},
         "route": {"advice": "keep", "surrogate_rmse_over_noise": {"log_pfs_months": 0.08}},
         "emulator_value_grad": {"seconds": 0.00056},
         "seconds": {"first_attempt_sampling": 288.0, "sampling": 583.0, "total": 720.0}}
    lines = dict(_spatial_emulator(j))
    assert lines["Population fit"] == "R-hat 1.01, bulk ESS 691, tail ESS 536, divergences 0"
    j["diagnostics_first_attempt"] = {"violations": ["1 divergent transitions (allowed 0)"]}
    j["sampler"] = {"draws": 2400, "tune": 2000, "target_accept": 0.95}
    lines = dict(_spatial_emulator(j))
    assert lines["Population fit"].endswith("; refitted with 2400 draws, 2000 tuning steps, target_accept 0.95 after "
                                            "a first attempt that missed the thresholds (1 divergent transitions "
                                            "(allowed 0))")
    secs = next(v for k, v in lines.items() if k.startswith("Seconds"))
    assert secs == "first attempt sampling 288, sampling 583, total 720"


def test_scaling_section_tables_every_run_and_its_fits(tmp_path):
    """The scaling study's section: one table row per run (size, Bayesian model, repeats) with both methods' R²,
    coverage and CRPS and the contraction per latent, then each run's population fits — a refit that still missed
    is counted, and a --quick run is labelled as no result."""
    def latent(r2_b, r2_g):
        return {"bayes": {"mae": 0.1, "r2": r2_b, "coverage_90": 0.9, "crps": 0.05},
                "lightgbm": {"mae": 0.2, "r2": r2_g, "coverage_90": 0.8, "crps": 0.08}, "contraction": 0.7}

    ok = {"rhat_max": 1.0, "ess_bulk_min": 800.0, "ess_tail_min": 600.0, "divergences": 0, "ok": True}
    missed = {"rhat_max": 1.01, "ess_bulk_min": 1386.0, "ess_tail_min": 934.0, "divergences": 1, "ok": False,
              "divergence_locations": {"divergent_draws": 1, "consistent": [], "deepest": {"theta_cyt": {
                  "draws": 1, "examples": [{"variable": "theta_cyt[V0030]", "side": "high",
                                            "tail_probability": 0.0014}]}}}}
    j = {"virtual": True, "quick": False, "runs": {
        "N37": {"n": 37, "variant": None, "repeats": 2, "seconds": {},
                "latents": {"theta_cyt": latent(0.82, 0.53)},
                "folds": [{"population": ok, "seconds": {"total": 300.0}},
                          {"repeat": 0, "fold": 3, "population": missed, "population_first_attempt": {"ok": False},
                           "seconds": {"total": 900.0}}]},
        "N200": {"n": 200, "variant": "no_covariates", "repeats": 1, "seconds": {},
                 "latents": {"theta_cyt": latent(0.9, 0.7)},
                 "folds": [{"population": ok, "seconds": {"total": 2000.0}}]}}}
    text = _render(tmp_path, {"ct041_scaling": j})
    assert "| run | cyt |" in text
    assert "| N37 (N = 37, well specified, 2 × 5 folds) | 0.53 / 0.82; 0.8 / 0.9; 0.08 / 0.05; 0.7 |" in text
    assert "| N200 (N = 200, no_covariates, 1 × 5 folds) | 0.7 / 0.9; 0.8 / 0.9; 0.08 / 0.05; 0.7 |" in text
    assert ("- N37: population fits over all folds: max R-hat / min bulk ESS / min tail ESS / divergences: "
            "1.01 / 800 / 600 / 1") in text
    assert "- N37: folds refitted with 2× draws after missing the thresholds / still missing them: 1 / 1" in text
    assert "- N37: each fold's population fit and personalisation, from its record: folds / summed seconds / " \
           "median / max: 2 / 1200 / 600 / 900" in text
    assert ("- N37: where the divergences of the fits reported sat (per fold: the variables deepest in their tails at "
            "the divergent draws, draws): repeat 0 fold 3: theta_cyt 1 (e.g. theta_cyt[V0030] high)") in text
    assert "N200: folds refitted" not in text and "N200: where" not in text and "not a result" not in text
    assert "not finished yet" not in text
    (tmp_path / "pending").mkdir()
    assert ("- Runs not finished yet (the study resumes them from their folds' records): N1000"
            in _render(tmp_path / "pending", {"ct041_scaling": {**j, "pending": ["N1000"]}}))
    j["quick"] = True
    (tmp_path / "quick").mkdir()
    assert "a --quick smoke run (one repeat, short chains): not a result: true" in _render(tmp_path / "quick",
                                                                                          {"ct041_scaling": j})
