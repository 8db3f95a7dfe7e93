"""studies/ct041_lgbm in quick mode (slow: ~40 s)."""

import json

import pytest


@pytest.mark.slow
def test_ct041_lgbm_quick(tmp_path):
    from immunocal.studies import ct041_lgbm

    res = ct041_lgbm.run(tmp_path, quick=True)
    data = json.loads((tmp_path / "ct041_lgbm.json").read_text())
    assert data["virtual"] is True and res["resolution_check"]["converged"]
    assert set(data["table2"]) == set(ct041_lgbm.SEED_TABLE2)
    assert all(set(v) == {"virtual", "spatial", "seed000"} for v in data["table2"].values())
    assert data["spatial"]["cohort_config"]["model"] == "spatial"
    for name in ("table2_comparison.png", "fig5_per_fold_errors.png", "fig6_7_binary.png", "fig8_cliffs_delta.png",
                 "fig9_landscape.png", "ct041_virtual_n37.csv", "ct041_spatial_n37.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_headline_folds_use_the_shared_refined_emulators_and_do_not_refine_again(tmp_path):
    """The headline study refines its shared emulators once (the config's ``[refinement]``); each fold loads them
    (``[emulator] paths``) with no ``[refinement]`` of its own — a fold asked to refine loaded emulators would stop
    with "needs surrogates trained from a [design]" after its pilot was planned."""
    from immunocal.calib.workflow import Calibration, with_saved_emulators
    from immunocal.studies.ct041_bayes_vs_lgbm import _base_config

    base = _base_config(tmp_path, quick=False)
    assert base["refinement"] == {"rounds": 1, "points": 96, "draws": 300}  # the bundled config's
    assert base["emulator"]["variance"] == "posterior"  # measured at the refinement's pilot: the folds load it
    quick = _base_config(tmp_path, quick=True)
    assert quick["refinement"]["points"] < base["refinement"]["points"]
    paths = {"dose_5e8": str(tmp_path / "dose_5e8.npz")}
    fold = with_saved_emulators(base, paths)
    assert "refinement" not in fold and fold["emulator"]["paths"] == paths
    assert base["refinement"] and "paths" not in base["emulator"]  # the base is not changed
    assert fold["emulator"]["variance"] == base["emulator"]["variance"]
    # what the fold would hit with the base's [refinement] still in it
    cal = Calibration({**fold, "refinement": base["refinement"]}, tmp_path / "fold", progress=False)
    cal.campaigns = {}
    with pytest.raises(ValueError, match=r"\[refinement\] needs surrogates trained from a \[design\]"):
        cal.refine()


def test_headline_shared_emulators_are_read_back_on_a_restart_unless_something_changed(tmp_path, monkeypatch):
    """A restarted headline study reads its shared emulators back (``emulators.json``): training and refining them
    again would cost two pilot posteriors and could change them under every finished fold. A changed data table or
    saved file trains them again, and says so."""
    import numpy as np

    from immunocal.calib.cohort import generate_cohort, write_tables
    from immunocal.calib.workflow import Calibration
    from immunocal.studies.ct041_bayes_vs_lgbm import _base_config, _emulators

    write_tables(generate_cohort(12, np.random.default_rng(3)), tmp_path / "data")
    cfg = _base_config(tmp_path / "data", quick=True)
    cfg.pop("refinement")                                     # small and quick: the design alone
    cfg["design"] = {"n": 30, "seed": 1}
    cfg["emulator"]["variance"] = "held_out"
    folder = tmp_path / "emulators"
    paths, validation, _ = _emulators(cfg, folder)
    assert set(paths) == set(validation) and (folder / "emulators.json").exists()
    trained = []
    real_train = Calibration.train

    def counting_train(self, *a, **k):
        trained.append(1)
        return real_train(self, *a, **k)

    monkeypatch.setattr(Calibration, "train", counting_train)
    again, validation_again, _ = _emulators(cfg, folder)
    assert again == paths and validation_again == validation and trained == []
    # a saved emulator replaced by another: trained again
    from immunocal.calib.surrogate import GPSurrogate

    c = sorted(paths)[0]
    other = GPSurrogate.load(paths[sorted(paths)[1]])
    other.save(paths[c])
    _emulators(cfg, folder)
    assert trained == [1]
    # the data changed (one more patient): trained again
    write_tables(generate_cohort(13, np.random.default_rng(3)), tmp_path / "data")
    _emulators(cfg, folder)
    assert trained == [1, 1]


@pytest.mark.parametrize("where", [{}, {"processes": 2}, {"scheduler": "tcp://127.0.0.1:1"}])
def test_headline_folds_in_worker_processes_run_their_chains_one_after_another(tmp_path, monkeypatch, where):
    """Run one at a time, a fold's NUTS chains take both cores in their own processes; run ``processes`` at a time or
    on Dask, each fold is one worker's task and its chains run one after another there (``cores = 1``: a worker
    process may not start the chains' own, and the draws are the same) — the folds' configs otherwise unchanged, so
    a study resumed either way reads its finished folds back."""
    from immunocal.calib import parallel
    from immunocal.calib.outputs import config_hash
    from immunocal.calib.workflow import with_saved_emulators
    from immunocal.studies import ct041_bayes_vs_lgbm as study

    class Stop(Exception):
        pass

    seen = {}

    real = parallel.map_tasks

    def capture(fn, tasks, **kw):
        if fn is not study._fold_task:  # the cohort's own simulation
            return real(fn, tasks, **kw)
        seen.update(tasks=tasks, **kw)
        raise Stop

    monkeypatch.setattr(study, "_emulators", lambda cfg, folder: ({"dose_5e8": "x.npz"}, {}, None))
    monkeypatch.setattr(study, "_surrogate_ids", lambda paths: {c: f"id-{c}" for c in paths})
    monkeypatch.setattr(parallel, "map_tasks", capture)
    with pytest.raises(Stop):
        study.compare(tmp_path, "h", repeats=1, **where)
    cfgs = [t[0] for t in seen["tasks"]]
    assert len(cfgs) == study.N_SPLITS
    assert seen["processes"] == where.get("processes", 1) and seen["scheduler"] == where.get("scheduler")
    assert all(c["sampler"].get("cores") == (1 if where else None) for c in cfgs)
    base = with_saved_emulators(study._base_config(tmp_path / "h" / "data", False), {"dose_5e8": "x.npz"})
    base["data"]["heldout_subjects"] = cfgs[0]["data"]["heldout_subjects"]
    assert config_hash(cfgs[0]) == config_hash(base)


def test_spatial_headline_is_the_same_comparison_on_the_pde_cohort_with_its_own_config(tmp_path, monkeypatch):
    """``ct041_bayes_vs_lgbm_spatial`` runs the headline's ``compare`` on the spatial cohort: the generator with the
    spatial settings (its PDE runs a resumable campaign), the spatial data set's config for every fold; an unknown
    cohort is refused by name."""
    from immunocal.calib import cohort, parallel
    from immunocal.calib.config import load_config
    from immunocal.calib.datasets import dataset_dir
    from immunocal.studies import ct041_bayes_vs_lgbm as study
    from immunocal.studies import ct041_bayes_vs_lgbm_spatial as spatial

    class Stop(Exception):
        pass

    made, seen = {}, {}
    real_generate = cohort.generate_cohort

    def generate(n, rng, cfg=None, **kw):  # the homogeneous cohort stands in for the PDE's (no PDE runs here)
        made.update(cfg=cfg, **kw)
        return real_generate(n, rng)

    real_map = parallel.map_tasks

    def capture(fn, tasks, **kw):
        if fn is not study._fold_task:
            return real_map(fn, tasks, **kw)
        seen["tasks"] = tasks
        raise Stop

    monkeypatch.setattr(cohort, "generate_cohort", generate)
    monkeypatch.setattr(study, "_emulators", lambda cfg, folder: ({"dose_5e8": "x.npz"}, {}, None))
    monkeypatch.setattr(study, "_surrogate_ids", lambda paths: {c: f"id-{c}" for c in paths})
    monkeypatch.setattr(parallel, "map_tasks", capture)
    with pytest.raises(Stop):
        spatial.run(tmp_path, quick=False, processes=2)
    assert made["cfg"].model == "spatial" and made["campaign"] == tmp_path / spatial.NAME / "cohort_campaign"
    want = load_config(dataset_dir("ct041_virtual_spatial") / "personalise.toml")
    cfg = seen["tasks"][0][0]
    assert cfg["model"] == want["model"] and cfg["sampler"]["draws"] == want["sampler"]["draws"]
    assert len(seen["tasks"]) == 10 * study.N_SPLITS and cfg["sampler"]["cores"] == 1
    quick = study._base_config(tmp_path, True, cohort="spatial")
    assert quick["design"]["n"] == 60 and "refinement" not in quick
    with pytest.raises(ValueError, match="unknown cohort 'pde'"):
        study._base_config(tmp_path, False, cohort="pde")


def test_headline_summary_scores_the_true_model_reweighting_beside_the_emulators(tmp_path):
    """``_summarise`` scores the test patients' posteriors twice — as the emulators give them and reweighted to the
    true model — and summarises the reweighting's k̂ over the folds' records; identical draws score identically."""
    import numpy as np
    import pandas as pd

    from immunocal.studies import ct041_bayes_vs_lgbm as study

    study.use_agg()
    rng = np.random.default_rng(0)
    ids = [f"V{i:04d}" for i in range(12)]
    lats = ["theta_a", "theta_b"]
    truth = rng.uniform(0.1, 0.9, (12, 2))
    df = pd.DataFrame({"patient_id": ids})
    near = [{s: truth[i] + 0.05 * rng.standard_normal((50, 2)) for i, s in enumerate(ids)}]
    far = [{s: truth[i] + 0.3 + 0.05 * rng.standard_normal((50, 2)) for i, s in enumerate(ids)}]
    lgbm = {"oof": truth[None] + 0.1, "ensembles": [[truth[i] + 0.1 * rng.standard_normal((50, 2))
                                                     for i in range(12)]], "method": "split-conformal"}
    y = np.arange(12) % 2
    binary = {"orr": {"observed_frequency": 0.5, "bayes": study._binary_scores(y, rng.uniform(0, 1, 12)),
                      "lightgbm": study._binary_scores(y, rng.uniform(0, 1, 12))}}
    folds = [{"true_model_pareto_k": {s: (0.9 if s == "V0003" else 0.2) for s in ids[:6]}},
             {"true_model_pareto_k": {s: 0.3 for s in ids[6:]}}]

    def stats(draws):  # what the folds' records hold
        return [{s: {lat: study._latent_stats(d[s][:, j], truth[i, j]) for j, lat in enumerate(lats)}
                 for i, s in enumerate(ids)} for d in draws]

    res = study._summarise(tmp_path, "h", df, truth, lats, 1, stats(far), lgbm, {}, binary, stats(near),
                           {"folds": folds})
    for j, lat in enumerate(lats):  # the scores from the records are the draws' own
        d = [near[0][s][:, j] for s in ids]
        inside = [np.quantile(e, 0.05) <= t <= np.quantile(e, 0.95) for e, t in zip(d, truth[:, j])]
        assert res["table"][lat]["bayes_true_model"]["coverage_90"] == pytest.approx(np.mean(inside))
        assert res["table"][lat]["bayes_true_model"]["mae"] == pytest.approx(
            np.mean(np.abs([e.mean() for e in d] - truth[:, j])))
        assert res["identifiability"][lat]["mean_posterior_sd"] == pytest.approx(
            np.sqrt(np.mean([far[0][s][:, j].var() for s in ids])))
    for lat in lats:
        assert res["table"][lat]["bayes_true_model"]["mae"] < res["table"][lat]["bayes"]["mae"]
        assert res["table"][lat]["bayes_true_model"]["coverage_90"] > res["table"][lat]["bayes"]["coverage_90"]
    assert res["true_model_reweighting"] == {"patients": 12, "pareto_k_max": 0.9, "share_reliable": 11 / 12,
                                             "repeats": [0], "draws_per_patient": None}
    assert "bayes_same_repeats" not in res["table"]["theta_a"]  # every repeat reweighted: "bayes" is that
    same = study._summarise(tmp_path, "h2", df, truth, lats, 1, stats(near), lgbm, {}, binary, stats(near),
                            {"folds": []})
    assert same["table"]["theta_a"]["bayes_true_model"] == same["table"]["theta_a"]["bayes"]
    assert same["true_model_reweighting"]["patients"] == 0
    # two repeats, only the first reweighted (the spatial cohort's TRUE_MODEL): the true model's scores beside the
    # emulators' on that repeat ("bayes_same_repeats"), "bayes" over both; none reweighted: no true-model row
    lgbm2 = {**lgbm, "oof": np.concatenate([lgbm["oof"]] * 2), "ensembles": lgbm["ensembles"] * 2}
    two = study._summarise(tmp_path, "h3", df, truth, lats, 2, stats(far) + stats(near), lgbm2, {}, binary,
                           stats(near) + [{}], {"folds": folds, "true_model_draws": 100})
    one = study._summarise(tmp_path, "h4", df, truth, lats, 1, stats(far), lgbm, {}, binary, stats(near),
                           {"folds": folds})
    for lat in lats:
        assert two["table"][lat]["bayes_same_repeats"]["mae"] == pytest.approx(one["table"][lat]["bayes"]["mae"])
        assert two["table"][lat]["bayes_true_model"]["mae"] == pytest.approx(one["table"][lat]["bayes_true_model"]["mae"])
        assert two["table"][lat]["bayes"]["mae"] < one["table"][lat]["bayes"]["mae"]  # the near repeat counts too
    assert two["true_model_reweighting"]["repeats"] == [0] and two["true_model_reweighting"]["draws_per_patient"] == 100
    none = study._summarise(tmp_path, "h5", df, truth, lats, 1, stats(far), lgbm, {}, binary, [{}], {"folds": []})
    assert "bayes_true_model" not in none["table"]["theta_a"] and none["true_model_reweighting"]["repeats"] == []
    assert (tmp_path / "h.json").exists() and (tmp_path / "h_scores.png").exists()


def test_headline_fold_records_are_read_back_wherever_the_study_lies_and_only_while_they_match(tmp_path, monkeypatch):
    """A finished fold leaves a record (``records/<fold>.json``: diagnostics, response probabilities, each test
    patient's scored statistics) that a restarted study reads back without opening the fold — also in another folder
    with the same tables and emulators (keyed on their contents and ids, not their paths), so a study carried to
    another machine resumes. Another table, emulator, truth or setting fits the fold again, and says so."""
    import json
    import shutil

    import numpy as np

    from immunocal.studies import ct041_bayes_vs_lgbm as study

    calls = []
    rng = np.random.default_rng(1)

    def fake_fold(cfg, folder, test, latents, retry, true_model_draws):
        calls.append(folder.name)
        draws = {s: rng.uniform(size=(40, len(latents))) for s in test}
        diag = {"population": {"rhat_max": 1.0}, "personalised_pareto_k_max": 0.3}
        return draws, diag, {s: {"orr": 0.5, "dcr": 0.7} for s in test}, draws if true_model_draws else None

    monkeypatch.setattr(study, "_fold_draws", fake_fold)

    def task(where, ids=None, truth=((0.2, 0.4), (0.6, 0.5)), moved=study.POSTERIOR_DRAWS):
        data = tmp_path / where / "data"
        if not data.exists():
            data.mkdir(parents=True)
            (data / "measurements.csv").write_text("subject,value\nV1,1.0\n")
            (data / "conditions.csv").write_text("condition\nc\n")
        cfg = {"data": {"measurements": str(data / "measurements.csv"), "conditions": str(data / "conditions.csv")},
               "emulator": {"paths": {"c": str(tmp_path / where / "c.npz")}}, "sampler": {"draws": 10}}
        return (cfg, tmp_path / where / "study" / "repeat0_fold0", ["V1", "V2"], ["theta_a", "theta_b"], True,
                [list(t) for t in truth], ids or {"c": "gp-1"}, moved)

    rec = study._fold_task(task("here"))
    path = tmp_path / "here" / "study" / "records" / "repeat0_fold0.json"
    assert calls == ["repeat0_fold0"] and json.loads(path.read_text()) == rec
    assert set(rec["stats"]) == {"bayes", "bayes_true_model"}
    assert set(rec["stats"]["bayes"]["V1"]["theta_b"]) == {"mean", "sd", "q05", "q25", "q75", "q95", "crps", "rank"}
    assert study._fold_task(task("here")) == rec and len(calls) == 1
    (tmp_path / "there" / "study").mkdir(parents=True)  # the records carried elsewhere, the tables regenerated
    shutil.copytree(tmp_path / "here" / "study" / "records", tmp_path / "there" / "study" / "records")
    assert study._fold_task(task("there")) == rec and len(calls) == 1
    study._fold_task(task("there", ids={"c": "gp-2"}))  # another emulator
    study._fold_task(task("there", truth=((0.2, 0.4), (0.6, 0.6))))  # another truth
    (tmp_path / "there" / "data" / "measurements.csv").write_text("subject,value\nV1,2.0\n")  # another table
    study._fold_task(task("there"))
    assert len(calls) == 4
    # a fold not reweighted to the true model (the spatial cohort's later repeats): another key, no true-model stats
    unmoved = study._fold_task(task("there", moved=0))
    assert len(calls) == 5 and set(unmoved["stats"]) == {"bayes"}
    # the key of a fold reweighted on all scored draws is the one records were written with before the setting
    # existed (the homogeneous headline's 50 committed records stay valid)
    from immunocal.calib.outputs import config_hash

    cfg, _, test, latents, retry, truth, ids, _ = task("here")
    assert rec["key"] == config_hash({"version": study.RECORD_VERSION, "config": config_hash(study._portable(cfg, ids)),
                                      "retry": retry, "posterior_draws": study.POSTERIOR_DRAWS,
                                      "early": list(study.EARLY_OBSERVABLES), "latents": latents, "test": test,
                                      "truth": truth})


def test_seed_protocol_pseudo_labels_are_read_back_by_key_without_the_fit(tmp_path, monkeypatch):
    """θ_ref (seed 000 §2.3) is saved with the key of the full-cohort fit's config (tables by content, emulators
    by id) and read back while it matches without the fit's files, in another folder too; another emulator fits
    again."""
    import shutil

    import numpy as np

    from immunocal.calib import personalise, workflow
    from immunocal.studies import ct041_bayes_vs_lgbm as study

    fits = []

    class FakeCalibration:
        parameters = [type("Spec", (), {"name": n, "role": "latent"})() for n in ("theta_a", "theta_b")]

        def __init__(self, cfg, folder, **kw):
            fits.append(folder)

        def load_finished(self):
            return None

        def run(self):
            return {}

    monkeypatch.setattr(workflow, "Calibration", FakeCalibration)
    monkeypatch.setattr(personalise, "inverse_problem",
                        lambda cal: (["V1", "V2"], np.array([[0.1, 0.2], [0.3, 0.4]])))
    ids = {"c": "gp-1"}
    monkeypatch.setattr(study, "_surrogate_ids", lambda paths: ids)
    for where in ("here", "there"):
        (tmp_path / where).mkdir()
        (tmp_path / where / "m.csv").write_text("subject,value\nV1,1\n")
    base = {"data": {"measurements": str(tmp_path / "here" / "m.csv")}, "emulator": {}, "sampler": {"draws": 5}}
    got = study._pseudo_labels(base, {"c": "x.npz"}, tmp_path / "here" / "full", ["V2", "V1"], ["theta_b"])
    np.testing.assert_array_equal(got, [[0.4], [0.2]])
    assert len(fits) == 1
    shutil.copytree(tmp_path / "here" / "full", tmp_path / "there" / "full")
    elsewhere = {**base, "data": {"measurements": str(tmp_path / "there" / "m.csv")}}
    np.testing.assert_array_equal(
        study._pseudo_labels(elsewhere, {"c": "y.npz"}, tmp_path / "there" / "full", ["V1"], ["theta_a"]), [[0.1]])
    assert len(fits) == 1
    ids["c"] = "gp-2"
    study._pseudo_labels(elsewhere, {"c": "y.npz"}, tmp_path / "there" / "full", ["V1"], ["theta_a"])
    assert len(fits) == 2
