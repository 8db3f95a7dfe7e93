"""``studies/ct041_scaling``: the glue around the head-to-head (each run is ``compare``; here a stand-in)."""

import json


def test_scaling_study_summarises_every_run_with_its_folds(tmp_path, monkeypatch):
    """Each run's per-latent scores of both methods, its contraction and its folds' fits reach the study's JSON
    (the report's table and fit lines read them), the sizes and variants as RUNS says, and the figure is written."""
    import immunocal.studies.ct041_bayes_vs_lgbm as head_to_head
    from immunocal.studies import ct041_scaling

    calls = []

    def fake_compare(out, name, *, n_patients, repeats, variant, seed_protocol, quick, scheduler, processes):
        calls.append((name, n_patients, repeats, variant, seed_protocol))
        score = {"mae": 0.1, "r2": 0.5, "coverage_90": 0.9, "crps": 0.05, "spearman": 0.7}
        return {"table": {"theta_cyt": {"bayes": score, "lightgbm": {**score, "r2": 0.3}}},
                "identifiability": {"theta_cyt": {"contraction": 0.8}}, "seconds": {"bayes": 1.0},
                "folds": [{"repeat": 0, "fold": k, "population": {"rhat_max": 1.0, "divergences": 0},
                           "population_first_attempt": None, "population_top_up": None, "route": {"advice": "keep"},
                           "seconds": {"total": 100.0 + k}} for k in range(5)]}

    def saved_after_first_run(out, name, **kw):  # the JSON as it stands when the second run starts
        if name == ct041_scaling.QUICK_RUNS[1][0]:
            seen_before_second.append(json.loads((tmp_path / "ct041_scaling.json").read_text()))
        return fake_compare(out, name, **kw)

    seen_before_second = []
    monkeypatch.setattr(head_to_head, "compare", saved_after_first_run)
    result = ct041_scaling.run(tmp_path, quick=True)
    # written after every run, the runs still to come named: a study of many hours reports what has finished
    (first,) = seen_before_second
    assert list(first["runs"]) == ["N37"] and first["pending"] == ["N37_no_covariates"]
    assert result["pending"] == []
    assert [c[:4] for c in calls] == [(n, size, rep, var) for n, size, var, rep in ct041_scaling.QUICK_RUNS]
    assert all(c[4] is False for c in calls)  # the θ_ref protocol is the headline's, not repeated
    saved = json.loads((tmp_path / "ct041_scaling.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(result["runs"]))
    run = saved["runs"]["N37_no_covariates"]
    assert run["variant"] == "no_covariates" and run["latents"]["theta_cyt"]["lightgbm"]["r2"] == 0.3
    assert run["latents"]["theta_cyt"]["contraction"] == 0.8
    assert [f["seconds"]["total"] for f in run["folds"]] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert "route" not in run["folds"][0]  # what the report needs, not the whole record
    assert (tmp_path / "ct041_scaling.png").is_file()
