"""Registry values against the seed tables, validation errors, and file round-trips."""

import json
import math

import numpy as np
import pytest

from immunocal.priors import (
    ParameterFileError,
    ParameterRangeError,
    ParameterSet,
    UnknownParameterError,
    registry,
)


@pytest.fixture(scope="module")
def reg():
    return registry()


# ---------------------------------------------------------------- seed 001 Table 1 (+ gamma)
TABLE1_SEED001 = {
    "car_t_diffusion": 0.014, "tumour_diffusion": 5e-5, "exhausted_diffusion": 0.001, "chemokine_diffusion": 0.0045,
    "suppressor_diffusion": 0.02, "hypoxia_diffusion": 1.5, "car_t_proliferation_rate": 0.55,
    "tumour_growth_rate": 0.13, "car_t_contact_loss_rate": 0.41, "car_t_death_rate": 0.08, "exhaustion_rate": 0.05,
    "car_t_half_saturation": 2e9, "tumour_carrying_capacity": 2.4e8, "chemokine_production_rate": 5e-4,
    "suppressor_production_rate": 5e-3, "suppressor_hypoxia_production_rate": 0.002, "suppressor_decay_rate": 0.75,
    "hypoxia_accumulation_rate": 5e-10, "hypoxia_decay_rate": 0.43, "chemotactic_sensitivity": 0.1,
    "exhaustion_recovery_rate": 0.1, "exhausted_death_rate": 0.04, "antigen_positive_death_rate": 0.01,
    "antigen_negative_death_rate": 0.01, "antigen_loss_rate": 0.13, "antigen_recovery_rate": 0.07,
    "car_t_antigen_loss_effect": 1e-10, "car_t_recovery_suppression": 1e-9, "chemotaxis_suppression": 1.0,
    "exhaustion_suppressor_effect": 1.0, "exhaustion_hypoxia_effect": 1.0, "hypoxia_half_saturation": 0.5,
}


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_cart_table1_values(reg, preset):
    ps = reg.parameter_set("cart", preset)
    for name, value in TABLE1_SEED001.items():
        assert ps[name] == pytest.approx(value, rel=1e-12), name
    assert ps["tumour_kill_rate"] == ps["car_t_contact_loss_rate"] == 0.41  # SPEC §3: gamma = delta_CT


def test_cart_presets_differ_only_in_lambda_s(reg):
    paper, ref = reg.parameter_set("cart", "paper"), reg.parameter_set("cart", "reference")
    assert paper["chemokine_decay_rate"] == 0.56
    assert ref["chemokine_decay_rate"] == 0.46
    assert {k for k in paper if paper[k] != ref[k]} == {"chemokine_decay_rate"}
    # every Table 1 row plus gamma, nothing else
    assert set(reg.names("cart")) == set(TABLE1_SEED001) | {"chemokine_decay_rate", "tumour_kill_rate"}


# ---------------------------------------------------------------- seed 002 Supp. Tables 1-3
def test_rit_table3_values(reg):
    ps = reg.parameter_set("rit", "dewan_table3")
    expected = {
        "immune_kill_rate": 24.9382, "immune_kill_exponent": 0.6886, "immune_kill_half_saturation": 5.7249,
        "antigen_release_rate": 3.4596e7, "antigen_activation_delay": 1.0806, "t_cell_activation_rate": 6.8010e-12,
        "tumour_proliferation_rate": 0.1357, "tumour_alpha": 0.0200, "tumour_beta": 0.0022,
        "doomed_clearance_rate": 0.0300, "antigen_elimination_rate": 0.1356, "ctla4_dose": 7.4987,
        "infiltration_delay": 0.6077, "t_cell_tumour_death_rate": 6.2472e-9, "t_cell_elimination_rate": 0.5031,
        "naive_t_cell_production": 1.3358e5, "initial_naive_t_cells": 1.1679e6, "proliferation_saturation": 3.3764e-109,
        "antigen_production_rate": 1.3746e-27,
    }
    for name, value in expected.items():
        assert ps[name] == pytest.approx(value, rel=1e-12), name
    assert reg.preset_options("rit", "dewan_table3") == {
        "survival": "lq", "vascular_damage": True, "pretreatment_volume_mm3": 32.0}


def test_rit_table1_and_table2_values(reg):
    dewan, deng = reg.parameter_set("rit", "dewan_table1"), reg.parameter_set("rit", "deng_table1")
    assert deng["tumour_proliferation_rate"] == 0.1217
    assert dewan["tumour_proliferation_rate"] == 0.1367
    assert deng["proliferation_saturation"] == 4.5320e-10 and dewan["proliferation_saturation"] == 0.0
    assert dewan["beta_dose_modulation"] == -0.2001 and deng["beta_dose_modulation"] == 0.0
    assert deng["tumour_alpha"] / deng["tumour_beta"] == pytest.approx(10.0, rel=1e-3)  # Deng: alpha/beta = 10 Gy
    assert dewan["immune_kill_rate"] == 24.4339 and dewan["ctla4_dose"] == 5.0564 and dewan["pdl1_dose"] == 19.0387
    lql = reg.parameter_set("rit", "dewan_table2")
    assert lql["lql_transition"] == 8.4298 and lql["antigen_release_rate"] == 9.7669e3
    assert reg.preset_options("rit", "dewan_table2")["survival"] == "lql"
    assert reg.preset_options("rit", "deng_table1")["pretreatment_volume_mm3"] == 120.0


def test_rit_fixed_values_and_table4_bounds(reg):
    for preset in reg.presets("rit"):
        ps = reg.parameter_set("rit", preset)
        fixed = {"tumour_cell_volume": 1e-6, "t_cell_volume": 2e-7, "t_cell_alpha": 0.1, "t_cell_beta": 0.01,
                 "pdl1_elimination_rate": 0.5, "ctla4_elimination_rate": 0.1, "mitotic_delay_start": 1.0,
                 "mitotic_delay_end": 1.5, "activation_inactivation_ratio": 5.0, "initial_tumour_cells": 100.0}
        for name, value in fixed.items():
            assert ps[name] == value
            assert reg.record("rit", name).is_fixed(preset)
    table4 = {"tumour_alpha": (0.02, 0.35), "doomed_clearance_rate": (0.03, 0.7), "immune_kill_exponent": (0, 1),
              "antigen_activation_delay": (0, 5), "antigen_elimination_rate": (0.03, 0.7),
              "t_cell_activation_rate": (0, 3e-7), "infiltration_delay": (0, 5), "t_cell_tumour_death_rate": (0, 1e-7),
              "t_cell_elimination_rate": (0.03, 0.7), "beta_dose_modulation": (-0.2236, math.inf)}
    for name, bounds in table4.items():
        assert reg.record("rit", name).bounds == pytest.approx(bounds)
    assert not reg.record("rit", "immune_kill_rate").is_fixed("dewan_table3")


def test_dln_names_pending_except_seed_statements(reg):
    """(Name kept from the foundation.) The DLN issue replaced the pending values by a documented default set:
    no parameter is pending, the seed's stated values are kept, and every default says why it has its value."""
    recs = {r.name: r for r in reg.records("dln")}
    assert len(recs) >= 60
    stated = {"ctl_infiltration": 1.0, "ctl_tme_proliferation": 0.0, "induction_exponent": 0.3}
    for name, value in stated.items():
        assert recs[name].default_for("default") == value
        assert recs[name].note.startswith("seed")
    assert not [r.name for r in recs.values() if r.pending]
    kinds = ("seed", "literature", "hand-set", "fitted")
    for r in recs.values():
        assert r.note.startswith(kinds), f"{r.name}: note must start with one of {kinds}: {r.note!r}"
    # orderings the seed prescribes (Methods)
    v = {n: r.default_for("default") for n, r in recs.items()}
    assert v["pd1_survival_state1"] > v["pd1_survival_state2"] > v["pd1_survival_control"] \
        > v["pd1_survival_pdl1_overexpression"]
    assert v["ctl_priming_ctla4_state1"] > v["ctl_priming_ctla4_state2"] > v["ctl_priming"]
    assert v["apc_inhibition_tme"] > v["apc_inhibition_tme_ctla4_state2"] > v["apc_inhibition_tme_ctla4_state1"]
    assert v["apc_inhibition_dln"] > v["apc_inhibition_dln_ctla4_state2"] > v["apc_inhibition_dln_ctla4_state1"]
    assert v["exhaustion_survival_bezafibrate"] > v["exhaustion_survival"]
    assert v["overactivation_survival_pd1"] < v["overactivation_survival"]
    assert v["ctl_infiltration_rt"] > v["ctl_infiltration"]


@pytest.mark.parametrize("model", ["cart", "rit", "dln"])
def test_every_preset_default_is_admissible(reg, model):
    for preset in reg.presets(model):
        ps = reg.parameter_set(model, preset)  # raises if any default is outside its range
        for name in ps:
            rec = reg.record(model, name)
            assert rec.source.startswith("seed 00"), name
            assert rec.unit and rec.symbol and rec.description


# ---------------------------------------------------------------- validation errors
def test_unknown_parameter_named_with_suggestion(reg):
    with pytest.raises(UnknownParameterError, match=r"unknown cart parameter 'exhaustion_rat'.*exhaustion_rate"):
        reg.parameter_set("cart", "paper", {"exhaustion_rat": 0.05})


def test_out_of_range_names_parameter_value_and_range(reg):
    with pytest.raises(ParameterRangeError,
                       match=r"'immune_kill_exponent' \(q\): value 1.5 is outside the admissible range \[0, 1\]"):
        reg.parameter_set("rit", "dewan_table3", {"immune_kill_exponent": 1.5})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(reg, bad):
    with pytest.raises(ParameterRangeError, match=r"'exhaustion_rate' \(k_e0\): value .* is not finite.*\[0, 1\]"):
        reg.parameter_set("cart", "paper").replace(exhaustion_rate=bad)


def test_non_numeric_rejected(reg):
    with pytest.raises(ParameterRangeError, match="not a number"):
        reg.validate("cart", {"exhaustion_rate": "fast"})


def test_unknown_preset_and_model(reg):
    with pytest.raises(Exception, match="unknown preset 'table9'.*dewan_table3"):
        reg.parameter_set("rit", "table9")
    with pytest.raises(UnknownParameterError, match="unknown model 'ode'"):
        reg.parameter_set("ode", "paper")


def test_nothing_clipped(reg):
    ps = reg.parameter_set("cart", "paper")
    q = ps.replace(exhaustion_rate=1.0)  # on the bound is admissible and kept exactly
    assert q["exhaustion_rate"] == 1.0 and ps["exhaustion_rate"] == 0.05


def test_as_array_order(reg):
    ps = reg.parameter_set("cart", "paper")
    arr = ps.as_array(["tumour_growth_rate", "exhaustion_rate"])
    assert arr.dtype == np.float64 and arr.flags.c_contiguous
    assert arr.tolist() == [0.13, 0.05]


# ---------------------------------------------------------------- parameter files
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_parameter_file_round_trip(reg, tmp_path, suffix):
    ps = reg.parameter_set("rit", "dewan_table3").replace(immune_kill_rate=20.5)
    path = ps.to_file(tmp_path / f"p{suffix}")
    back = ParameterSet.from_file(path)
    assert back.model == "rit" and back.preset == "dewan_table3"
    assert dict(back) == dict(ps)


def test_partial_parameter_file_falls_back_to_preset(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"model": "cart", "preset": "paper", "parameters": {"exhaustion_rate": 0.06}}))
    ps = ParameterSet.from_file(path)
    assert ps["exhaustion_rate"] == 0.06 and ps["tumour_growth_rate"] == 0.13


def test_malformed_toml_names_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('model = "cart"\npreset = "paper"\n[parameters]\nexhaustion_rate = = 0.1\n')
    with pytest.raises(ParameterFileError, match=r"bad.toml: malformed TOML.*line 4"):
        ParameterSet.from_file(path)


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"model": "cart",\n "preset": "paper",\n "parameters": {"exhaustion_rate": }}\n')
    with pytest.raises(ParameterFileError, match=r"bad.json: malformed JSON at line 3"):
        ParameterSet.from_file(path)


def test_file_with_non_numeric_value_names_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('model = "cart"\npreset = "paper"\n[parameters]\ntumour_growth_rate = 0.1\nexhaustion_rate = "x"\n')
    with pytest.raises(ParameterFileError, match=r"bad.toml \(line 5\): parameter 'exhaustion_rate'"):
        ParameterSet.from_file(path)


def test_file_with_unknown_or_out_of_range_parameter(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('model = "cart"\npreset = "paper"\n[parameters]\nexhaustion = 0.1\n')
    with pytest.raises(UnknownParameterError, match=r"unknown cart parameter 'exhaustion' \(.*p.toml\)"):
        ParameterSet.from_file(path)
    path.write_text('model = "cart"\npreset = "paper"\n[parameters]\nexhaustion_rate = 3.0\n')
    with pytest.raises(ParameterRangeError, match=r"'exhaustion_rate' \(k_e0\) \(.*p.toml\): value 3"):
        ParameterSet.from_file(path)


def test_file_missing_keys_and_bad_suffix(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"model": "cart", "parameters": {}}')
    with pytest.raises(ParameterFileError, match="missing top-level key 'preset'"):
        ParameterSet.from_file(path)
    with pytest.raises(ParameterFileError, match="must end in .toml or .json"):
        registry().parameter_set("cart", "paper").to_file(tmp_path / "x.yaml")


def test_malformed_registry_file_is_rejected(tmp_path):
    from immunocal.priors.registry import load_model_file

    path = tmp_path / "m.toml"
    path.write_text('model = "m"\ntitle = "t"\nseed = "s"\n[presets.a]\n[[parameter]]\nname = "x"\nsymbol = "x"\n'
                    'unit = "1"\ndescription = "d"\ndefault = 1.0\nbounds = [2.0, 1.0]\nscale = "linear"\nsource = "s"\n')
    with pytest.raises(ParameterFileError, match=r"m.toml: parameter #1 \('x'\): bounds must satisfy lower < upper"):
        load_model_file(path)


def test_a_log_scale_default_prior_with_a_non_positive_bound_is_an_error():
    """It used to switch silently to a linear prior."""
    from immunocal.priors.prior import default_prior

    with pytest.raises(ValueError, match="log-scale prior needs a positive lower bound"):
        default_prior(1e-20, 0.0, 1e-6, "log")
    assert default_prior(1e-20, 1e-30, 1e-6, "log").parameters["scale"] == "log"


def test_log_scale_rates_that_can_be_switched_off(reg, tmp_path):
    """ρ and a (issue 14): log scale, 0 (off) still admissible, designs and the default prior start at log_lower;
    a record with a log scale and lower bound 0 but no log_lower, or a misplaced log_lower, is a named error."""
    from immunocal.calib.design import ParameterSpace
    from immunocal.priors.registry import ParameterError, load_model_file

    rho = reg.record("rit", "antigen_production_rate")
    assert rho.scale == "log" and rho.bounds_for(None) == (0.0, 1e-6) and rho.scale_bounds_for(None) == (1e-32, 1e-6)
    assert rho.check(0.0, "dewan_table3") == 0.0  # switched off: admissible, as the seed's tests use it
    assert rho.prior("dewan_table3").support == pytest.approx((1e-32, 1e-6))
    space = ParameterSpace.from_registry("rit", ["antigen_production_rate", "t_cell_activation_rate"], "dewan_table3")
    assert space.scales == ("log", "log") and space.lower == (1e-32, 1e-15)
    narrowed = ParameterSpace.from_registry("rit", ["antigen_production_rate"], "dewan_table3",
                                            bounds={"antigen_production_rate": (1e-12, 1e-6)})
    assert narrowed.lower == (1e-12,) and narrowed.scales == ("log",)
    with pytest.raises(ValueError, match="log-scale parameter needs a positive lower bound"):
        ParameterSpace.from_registry("rit", ["antigen_production_rate"], "dewan_table3",
                                     bounds={"antigen_production_rate": (0.0, 1e-6)})
    head = 'model = "m"\ntitle = "t"\nseed = "s"\n[presets.a]\n[[parameter]]\nname = "x"\nsymbol = "x"\n' \
           'unit = "1"\ndescription = "d"\ndefault = 0.0\nbounds = [0.0, 1.0]\nsource = "s"\n'
    for extra, message in (('scale = "linear"\nlog_lower = 1e-3\n', "log_lower applies to a log-scale parameter"),
                           ('scale = "log"\nlog_lower = 2.0\n', r"log_lower must be a number in \(0, upper bound\)")):
        (tmp_path / "m.toml").write_text(head + extra)
        with pytest.raises(ParameterFileError, match=message):
            load_model_file(tmp_path / "m.toml")
    (tmp_path / "m.toml").write_text(head + 'scale = "log"\n')
    rec = load_model_file(tmp_path / "m.toml").records["x"]
    with pytest.raises(ParameterError, match="needs a positive log_lower"):
        rec.prior("a")
