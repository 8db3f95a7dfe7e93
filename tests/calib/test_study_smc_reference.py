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


def test_log_likelihood_shift_tells_two_samples_of_different_typical_sets_apart():
    """Two samples of the same log-likelihood distribution: no shift; one drawn 3 sds lower: a shift of -3 sd
    (summed over the rows of every observable, per draw)."""
    import arviz as az
    import numpy as np

    from immunocal.calib.diagnostics import log_likelihood_shift, total_log_likelihood

    rng = np.random.default_rng(0)

    def idata(offset):  # 2 chains x 4000 draws, 5 rows of one observable and 2 of another
        a = rng.normal(-10.0 + offset / 7, 1.0, (2, 4000, 5))
        b = rng.normal(-5.0 + offset / 7, 1.0, (2, 4000, 2))
        return az.from_dict(posterior={"x": rng.normal(size=(2, 4000))}, log_likelihood={"y": a, "z": b})

    ref = idata(0.0)
    total = total_log_likelihood(ref)
    assert total.dims == ("chain", "draw") and abs(float(total.mean()) + 60.0) < 0.1
    same, low = log_likelihood_shift(idata(0.0), ref), log_likelihood_shift(idata(-3 * np.sqrt(7)), ref)
    assert abs(same["shift_in_reference_sd"]) < 0.1
    assert abs(low["shift_in_reference_sd"] + 3.0) < 0.1 and abs(low["reference_sd"] - np.sqrt(7)) < 0.05

