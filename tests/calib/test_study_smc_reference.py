"""The studies' gradient-free reference (SMC on the true model) is built from a config by one helper."""

from pathlib import Path

from immunocal.calib.config import check_keys, load_config, public
from immunocal.calib.datasets import dataset_dir
from immunocal.studies._common import SMC_PARTICLES, smc_on_true_model


def test_smc_reference_is_the_same_calibration_gradient_free_on_the_true_model():
    cfg = load_config(dataset_dir("morisada2018") / "moc1_exact.toml")
    smc = smc_on_true_model(cfg)
    check_keys(public(smc), "", Path("smc"))  # still a valid config
    assert smc["emulator"] == {"kind": "blackbox"}
    assert smc["sampler"] == {"method": "smc", "draws": SMC_PARTICLES, "chains": 1, "seed": 1}
    assert smc["conditions"]["heldout"] == [] and smc["predict"]["draws"] == 0
    # the model, data, fitted arms, priors and observation model are the config's own
    for key in ("model", "data", "parameters", "observables", "design"):
        assert smc[key] == cfg[key]
    assert smc["conditions"]["fit"] == cfg["conditions"]["fit"]
    assert cfg["emulator"]["kind"] == "exact" and cfg["conditions"]["heldout"]  # the input is left as it was
    assert smc_on_true_model(cfg, quick=True)["sampler"]["draws"] == 500
