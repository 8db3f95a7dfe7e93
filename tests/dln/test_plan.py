"""Network and treatment-plan validation: clear errors for every malformed plan."""

import json

import numpy as np
import pytest

from immunocal.forward.dln import Network, PlanError, TreatmentPlan, load_plan
from immunocal.forward.dln.plan import DRUG_NAMES

EXAMPLE = "forward/dln/examples/abscopal_ctla4.toml"


@pytest.fixture
def net():
    return Network(("primary", "distant"), ("dln",), {"primary": ("dln",), "distant": "dln"})


def test_valid_plan_arrays(net):
    plan = TreatmentPlan.build(
        net,
        20,
        [
            {"target": "primary", "days": [3, 4], "dose_gy": 8},
            {"dln": "dln", "days": 4, "dose_gy": 2},
            {"target": "primary", "days": [4], "dose_gy": 1},
        ],
        [{"name": "anti-PD-L1", "days": [3, 6]}, {"name": "anti_ctla4", "days": [3], "dose": 2}],
    )
    assert plan.target_dose.shape == (20, 2) and plan.dln_dose.shape == (20, 1)
    assert (
        plan.target_dose[4, 0] == 9.0 and plan.target_dose[3, 0] == 8.0 and plan.target_dose[:, 1].sum() == 0
    )
    assert plan.dln_dose[4, 0] == 2.0
    assert plan.drug_dose[[3, 6], DRUG_NAMES.index("anti_pd1")].tolist() == [1.0, 1.0]
    assert plan.drug_dose[3, DRUG_NAMES.index("anti_ctla4")] == 2.0
    np.testing.assert_array_equal(net.drain_matrix, [[1.0], [1.0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"radiation": [{"target": "liver", "days": [1], "dose_gy": 2}]}, r"unknown target 'liver'"),
        ({"radiation": [{"dln": "axillary", "days": [1], "dose_gy": 2}]}, r"unknown DLN 'axillary'"),
        ({"radiation": [{"target": "primary", "days": [1], "dose_gy": -2}]}, r"negative dose -2"),
        (
            {"radiation": [{"target": "primary", "days": [20], "dose_gy": 2}]},
            r"day 20 is outside the horizon \[0, 19\]",
        ),
        ({"radiation": [{"target": "primary", "days": [1.5], "dose_gy": 2}]}, r"day 1.5 is not a whole day"),
        ({"radiation": [{"target": "primary", "dln": "dln", "days": [1], "dose_gy": 2}]}, r"exactly one of"),
        ({"radiation": [{"target": "primary", "days": [1], "dose": 2}]}, r"unknown keys \['dose'\]"),
        ({"radiation": [{"target": "primary", "days": [1], "dose_gy": float("nan")}]}, r"not finite"),
        ({"drugs": [{"name": "aspirin", "days": [1]}]}, r"unknown drug 'aspirin'"),
        ({"drugs": [{"name": "anti_pd1", "days": [25]}]}, r"drug 'anti_pd1': day 25 is outside the horizon"),
        ({"drugs": [{"name": "anti_pd1", "days": [-1]}]}, r"day -1 is outside the horizon"),
        ({"drugs": [{"name": "anti_pd1", "days": [2], "dose": -1}]}, r"negative dose"),
        ({"drugs": [{"name": "anti_pd1"}]}, r"needs 'name' and 'days'"),
    ],
)
def test_bad_plans_rejected(net, kwargs, match):
    with pytest.raises(PlanError, match=match):
        TreatmentPlan.build(net, 20, **kwargs)


@pytest.mark.parametrize("days", [0, -3, 2.5, True])
def test_bad_horizon(net, days):
    with pytest.raises(PlanError, match="days must be a positive whole number"):
        TreatmentPlan.build(net, days)


@pytest.mark.parametrize(
    "args, match",
    [
        ((("a", "b"), ("d",), {"a": ("d",)}), r"target 'b' drains to no DLN"),
        ((("a",), ("d", "e"), {"a": ("d",)}), r"DLN 'e' drains no target"),
        ((("a",), ("d",), {"a": ("x",)}), r"target 'a' drains to unknown DLN 'x'"),
        ((("a",), ("d",), {"a": ("d",), "z": ("d",)}), r"drains_to names unknown target 'z'"),
        ((("a", "a"), ("d",), {"a": ("d",)}), r"duplicate target names \['a'\]"),
        ((("a",), ("a",), {"a": ("a",)}), r"both a target and a DLN"),
        (((), ("d",), {}), r"at least one target"),
        ((("a",), (), {"a": ()}), r"at least one DLN"),
    ],
)
def test_bad_networks(args, match):
    with pytest.raises(PlanError, match=match):
        Network(*args)


def test_per_target_volume_coefficients():
    from immunocal.forward.dln import default_parameters, param_array, simulate, simulate_batch

    net = Network(("a", "b"), ("d",), {"a": ("d",), "b": ("d",)}, {}, {"b": 3e-6})
    plan = TreatmentPlan.build(net, 10)
    ps = default_parameters()
    res = simulate(plan, ps)
    np.testing.assert_allclose(res.volume("b"), 3e-6 * res.target("tumour_cells", "b"), rtol=1e-15)
    np.testing.assert_allclose(
        res.volume("a"), ps["volume_per_cell"] * res.target("tumour_cells", "a"), rtol=1e-15
    )
    vols = simulate_batch(plan, param_array(ps)[None, :])
    np.testing.assert_allclose(vols[0, :, 1], res.volume("b"), rtol=1e-12)
    with pytest.raises(PlanError, match="volume_per_cell of 'a' must be a positive finite number"):
        Network(("a",), ("d",), {"a": ("d",)}, {}, {"a": 0.0})


def test_bad_initial_cells():
    with pytest.raises(PlanError, match="initial_cells of 'a' must be a positive"):
        Network(("a",), ("d",), {"a": ("d",)}, {"a": -1})
    with pytest.raises(PlanError, match="initial_cells names unknown target 'b'"):
        Network(("a",), ("d",), {"a": ("d",)}, {"b": 1e6})


def test_example_plan_file_loads():
    plan = load_plan(EXAMPLE)
    assert plan.network.targets == ("primary", "distant")
    assert plan.target_dose[10:13, 0].tolist() == [8.0, 8.0, 8.0]


def test_json_plan_and_file_errors(tmp_path):
    data = {
        "days": 10,
        "network": {"targets": ["t"], "dlns": ["d"], "drains_to": {"t": ["d"]}},
        "drug": [{"name": "anti_pd1", "days": [12]}],
    }
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(data))
    with pytest.raises(
        PlanError, match=r"plan.json: drug 'anti_pd1': day 12 is outside the horizon \[0, 9\]"
    ):
        load_plan(p)
    bad = tmp_path / "bad.toml"
    bad.write_text("days = [\n")
    with pytest.raises(PlanError, match="malformed TOML"):
        load_plan(bad)
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "missing.toml")
    (tmp_path / "plan.yaml").write_text("x")
    with pytest.raises(PlanError, match="must end in .toml or .json"):
        load_plan(tmp_path / "plan.yaml")
    data2 = dict(data, extra=1)
    p.write_text(json.dumps(data2))
    with pytest.raises(PlanError, match=r"unknown top-level keys \['extra'\]"):
        load_plan(p)
