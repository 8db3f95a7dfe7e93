"""Seed 000 latent map (priors/latents.py, priors/data/latents.toml)."""

import tomllib
from importlib import resources

import numpy as np
import pytest

from immunocal.priors import ParameterError, ParameterRangeError, registry
from immunocal.priors.latents import LATENTS, _build, latent_map


def test_six_latents_in_seed_order():
    assert latent_map().names == LATENTS


def test_log_ranges_are_centred_on_the_normalised_preset():
    lm, ps = latent_map(), registry().parameter_set("cart", "normalised")
    checked = 0
    for lat in lm.latents.values():
        for tg in lat.targets:
            if tg.is_parameter and tg.scale == "log":
                assert tg.value(0.5) == pytest.approx(ps[tg.name], rel=1e-12), tg.name
                checked += 1
    assert checked == 10


def test_ranges_inside_registry_bounds():
    reg = registry()
    for row in latent_map().table():
        if row["registry_parameter"]:
            a, b = reg.record("cart", row["target"]).bounds_for("normalised")
            assert a <= row["lower"] < row["upper"] <= b


def test_forward_inverse_round_trip(rng):
    lm = latent_map()
    for _ in range(20):
        th = dict(zip(LATENTS, rng.random(6)))
        back = lm.from_values(lm.values(th))
        assert np.allclose([back[k] for k in LATENTS], [th[k] for k in LATENTS], atol=1e-12)


def test_to_model_replaces_the_scaled_parameters():
    lm = latent_map()
    ps, inputs = lm.to_model({k: 1.0 for k in LATENTS})
    assert ps["exhaustion_rate"] == pytest.approx(0.2)
    assert ps["tumour_kill_rate"] == pytest.approx(10.0)
    assert inputs == pytest.approx({"tumour0": 0.9, "tb_fraction": 0.2, "infiltration_fraction": 1.0})
    # parameters no latent touches keep their preset value
    assert ps["tumour_growth_rate"] == registry().parameter_set("cart", "normalised")["tumour_growth_rate"]


def test_inverse_from_a_single_target_and_monotone():
    lm = latent_map()
    t = lm.target("theta_exh", "exhaustion_rate")
    assert t.theta(0.05) == pytest.approx(0.5)
    assert np.all(np.diff(t.value(np.linspace(0, 1, 11))) > 0)


def test_bad_latents_fail_naming_the_latent():
    lm = latent_map()
    th = {k: 0.5 for k in LATENTS}
    with pytest.raises(ParameterRangeError, match=r"theta_exh = 1.5 is outside .*\[0, 1\]"):
        lm.values({**th, "theta_exh": 1.5})
    with pytest.raises(ParameterError, match=r"missing latent\(s\) \['theta_init'\]"):
        lm.values({k: v for k, v in th.items() if k != "theta_init"})
    with pytest.raises(ParameterError, match="unknown latent"):
        lm.values({**th, "theta_foo": 0.1})
    with pytest.raises(ParameterError, match="theta_inf = nan"):
        lm.values({**th, "theta_inf": float("nan")})
    vals = lm.values(th)
    vals["chemotactic_sensitivity"] *= 2
    with pytest.raises(ParameterError, match="cannot invert theta_inf: its targets imply different latents"):
        lm.from_values(vals)


def test_range_outside_registry_bounds_is_rejected():
    data = tomllib.loads(resources.files("immunocal.priors").joinpath("data/latents.toml").read_text())
    data["latent"]["theta_exh"]["targets"][0]["upper"] = 5.0
    with pytest.raises(ParameterRangeError, match=r"exhaustion_rate leaves the registry's admissible range \[0.0, 1.0\]"):
        _build(data)
    data["latent"]["theta_exh"]["targets"][0] = {"quantity": "nonsense", "lower": 0, "upper": 1}
    with pytest.raises(ParameterError, match="needs `parameter`"):
        _build(data)
