"""``immunocal personalise``: a cohort table in, per-patient latent posteriors out (fitted patients from the
population fit, held-out patients personalised given it), next to the virtual truth; errors before computation."""

import json

import numpy as np
import pandas as pd
import pytest


def _small_config(tmp_path):
    from immunocal.calib.datasets import dataset_dir

    text = (dataset_dir("ct041_virtual") / "personalise.toml").read_text()
    for old, new in (("n = 400", "n = 96"), ("draws = 1200\ntune = 1000", "draws = 150\ntune = 200"),
                     ("points = 96 ", "points = 16 "), ("draws = 300 ", "draws = 100 "),
                     ("particles = 4000\nstages = 4\ndraws = 1000",
                      "particles = 1000\nblock = 500\nstages = 3\ndraws = 500\npopulation_draws = 50")):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "small.toml"
    path.write_text(text)
    return path


@pytest.mark.slow  # ~2 min unloaded: emulators of three dose levels, a population fit and a personalisation
def test_personalise_command_writes_a_patient_table(tmp_path, capsys):
    from immunocal.calib.cli.main import main
    from immunocal.calib.cohort import generate_cohort, save_cohort

    df = generate_cohort(12, np.random.default_rng(4))
    cohort = save_cohort(df, tmp_path / "cohort.csv", seed=4)
    cfg = _small_config(tmp_path)
    held = ",".join(df["patient_id"].iloc[:2])
    assert main(["personalise", "--cohort", str(cohort), "--out", str(tmp_path / "out"), "--config", str(cfg),
                 "--heldout", held, "--quiet"]) in (0, 3)  # 3: short chains may miss the thresholds
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["fitted"] == 10 and res["heldout"] == 2
    table = pd.read_csv(tmp_path / "out" / "patients.csv")
    assert table["patient_id"].tolist() == df["patient_id"].tolist()
    assert (table["set"] == "heldout").sum() == 2 and set(table["set"].iloc[:2]) == {"heldout"}
    for lat in ("theta_inf", "theta_init"):
        q = table[[f"{lat}_q05", f"{lat}_q50", f"{lat}_q95"]].to_numpy()
        assert np.all((q[:, 0] <= q[:, 1]) & (q[:, 1] <= q[:, 2])) and np.all((q > 0) & (q < 1))
        np.testing.assert_allclose(table[f"true_{lat}"], df[f"true_{lat}"], rtol=1e-5)  # CSV: 6 digits
    # the initial burden is measured (baseline burden, 20 % noise): its latent is recovered for every patient
    inside = (table["theta_init_q05"] <= table["true_theta_init"]) & (table["true_theta_init"] <= table["theta_init_q95"])
    assert inside.mean() >= 0.75



def test_personalise_command_errors_come_before_any_computation(tmp_path, capsys):
    from immunocal.calib.cli.main import main
    from immunocal.calib.cohort import generate_cohort, save_cohort

    cohort = save_cohort(generate_cohort(3, np.random.default_rng(4)), tmp_path / "cohort.csv", seed=4)
    assert main(["personalise", "--cohort", str(cohort), "--out", str(tmp_path / "o"), "--heldout", "V9999"]) == 2
    assert "patient id(s) ['V9999'] are not in" in capsys.readouterr().err
    (tmp_path / "o" / "run").mkdir(parents=True)
    assert main(["personalise", "--cohort", str(cohort), "--out", str(tmp_path / "o")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert not (tmp_path / "o" / "data").exists()
