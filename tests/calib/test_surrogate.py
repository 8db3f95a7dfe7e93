import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from immunocal.calib.campaign import Campaign
from immunocal.calib.design import design
from immunocal.calib.surrogate import GPSurrogate, fit_from_campaign, propose_refinement, refine
from immunocal.calib.toy import LogisticModel


@pytest.fixture(scope="module")
def logistic_campaign(tmp_path_factory):
    fm = LogisticModel()
    folder = tmp_path_factory.mktemp("camp") / "logistic"
    camp = Campaign.create(folder, "toy.logistic", design(fm.space(), 256, seed=0), chunk_size=64)
    camp.run(workers=0, progress=False)
    return camp


@pytest.fixture(scope="module")
def fitted(logistic_campaign):
    return fit_from_campaign(logistic_campaign, test_fraction=0.25, seed=0)


def test_validation_report_on_held_out_runs(fitted):
    _sur, rep = fitted
    r = rep["observables"]["log_volume"]
    assert rep["n_test"] == 64 and rep["n_train"] == 192
    assert r["r2"] > 0.999
    assert r["max_abs_error"] < 0.1  # log-volume units (10 % in volume); outputs span ~[2.3, 8.5]
    assert r["coverage_90"] > 0.8  # the emulator's own 90 % intervals are not overconfident


def test_sign_agreement_counts_the_values_on_the_true_side():
    """``sign_agreement`` of the validation: the fraction of (run, time) values whose sign the emulator gets right
    — for a logit-valued output, the event's side."""
    from immunocal.calib.surrogate import validate

    class Fixed:
        observables = ("logit",)
        surrogate_id = "fixed"

        def predict(self, theta):
            mean = np.array([2.0, -1.0, 0.5, -3.0, 4.0])[:, None, None]
            return mean, np.ones_like(mean)

    truth = np.array([1.0, -2.0, -0.5, -1.0, -0.1])[:, None, None]  # the 3rd and 5th on the wrong side
    rep = validate(Fixed(), np.zeros((5, 1)), truth)["observables"]["logit"]
    assert rep["sign_agreement"] == pytest.approx(3 / 5)
    # scored only where a likelihood uses the output: the runs of the mask
    masked = validate(Fixed(), np.zeros((5, 1)), truth, mask=np.array([[1], [1], [0], [1], [0]], bool))
    assert masked["observables"]["logit"]["sign_agreement"] == 1.0
    assert masked["observables"]["logit"]["n_scored"] == 3
    assert masked["observables"]["logit"]["max_abs_error"] == pytest.approx(2.0)  # run 4: −3 vs −1
    assert "logit" not in validate(Fixed(), np.zeros((5, 1)), truth, mask=np.zeros((5, 1), bool))["observables"]
    with pytest.raises(ValueError, match="mask"):
        validate(Fixed(), np.zeros((5, 1)), truth, mask=np.ones((4, 1), bool))


def test_pytensor_prediction_equals_numpy_and_gradient_matches_finite_differences(fitted, rng):
    sur, _ = fitted
    fm = LogisticModel()
    X = design(fm.space(), 7, method="random", seed=11)
    th = pt.dmatrix("theta")
    mean, var = sur.predict_pt(th)
    f = pytensor.function([th], [mean, var])
    m_np, v_np = sur.predict(X)
    m_pt, v_pt = f(X)
    np.testing.assert_allclose(m_pt, m_np, rtol=1e-10, atol=1e-10)
    # the GP variance is amp − k K⁻¹ k, a difference of O(amp) numbers: compare on the output-variance scale
    np.testing.assert_allclose(v_pt, v_np, rtol=1e-6, atol=1e-9 * float((sur.y_scale_**2).max()))
    w = rng.normal(size=m_np.shape)
    obj = (mean * w).sum() + 10.0 * (var * w).sum()
    g = pytensor.function([th], pytensor.grad(obj, th))(X)

    def fobj(x):
        m, v = sur.predict(x)
        return (m * w).sum() + 10.0 * (v * w).sum()

    fd = np.zeros_like(X)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            h = 1e-4 * X[i, j]  # central differences; smaller steps hit round-off of k·α (measured)
            Xp, Xm = X.copy(), X.copy()
            Xp[i, j] += h
            Xm[i, j] -= h
            fd[i, j] = (fobj(Xp) - fobj(Xm)) / (2 * h)
    assert np.abs(g - fd).max() <= 1e-5 * np.abs(fd).max()


def test_save_load_roundtrip(fitted, tmp_path):
    sur, _ = fitted
    p = sur.save(tmp_path / "s.npz")
    back = GPSurrogate.load(p)
    X = design(sur.space, 5, seed=3)
    np.testing.assert_array_equal(back.predict(X)[0], sur.predict(X)[0])
    assert back.surrogate_id == sur.surrogate_id and back.forward_ == "toy.logistic"
    with pytest.raises(FileNotFoundError, match="no such surrogate file"):
        GPSurrogate.load(tmp_path / "none.npz")


def test_a_compact_file_recomputes_the_factors_and_is_the_same_surrogate(fitted, tmp_path):
    """``save(compact=True)`` leaves out the inverse Cholesky factors (the file's bulk) and loading recomputes them
    from the hyperparameters: the same bits, id and predictions, for a shared and for a masked (zero-padded) fit."""
    from immunocal.calib.design import ParameterSpace

    sur, _ = fitted
    space = ParameterSpace(("x0", "x1"), np.zeros(2), np.ones(2), ("linear", "linear"))
    X = design(space, 60, seed=0)
    Y, mask = _jump_outputs(X)
    masked = GPSurrogate(space, ("a", "b"), [0.0], n_restarts=0).fit(X, Y, mask=mask)
    assert masked.X_.ndim == 3 and len({int(np.count_nonzero(np.diag(L))) for L in masked.Linv_}) == 2
    for s, name in ((sur, "shared"), (masked, "masked")):
        full, compact = s.save(tmp_path / f"{name}.npz"), s.save(tmp_path / f"{name}_c.npz", compact=True)
        assert compact.stat().st_size < full.stat().st_size
        back = GPSurrogate.load(compact)
        np.testing.assert_array_equal(back.Linv_, s.Linv_)
        assert back.surrogate_id == s.surrogate_id
        Xt = design(s.space, 7, seed=4)
        for a, b in zip(back.predict(Xt), s.predict(Xt)):
            np.testing.assert_array_equal(a, b)


def test_held_out_variance_is_the_validation_error_and_survives_a_save(fitted, logistic_campaign, tmp_path):
    """``variance = "held_out"``: the same mean, the held-out mean squared error of each output as the variance
    (stored with the surrogate); refused for a surrogate without held-out runs."""
    import pytensor.tensor as pt

    sur, _ = fitted
    theta, Y = logistic_campaign.training_data()
    test = np.random.default_rng(0).permutation(len(theta))[:64]  # fit_from_campaign's split (seed 0, 25 %)
    want = ((sur.predict(theta[test], return_var=False) - Y[test]) ** 2).mean(0)
    np.testing.assert_allclose(sur.heldout_var_, want, rtol=1e-12)
    X = design(sur.space, 4, seed=5)
    m_gp, _ = sur.predict_pt(pt.as_tensor_variable(X))
    back = GPSurrogate.load(sur.save(tmp_path / "s.npz")).use_variance("held_out")
    m_ho, v_ho = back.predict_pt(pt.as_tensor_variable(X))
    # the same mean: the fused kernel (constant variance) against the graph (GP variance), up to summation order
    np.testing.assert_allclose(m_ho.eval(), m_gp.eval(), rtol=1e-10)
    np.testing.assert_allclose(v_ho.eval(), np.broadcast_to(want, (4, *want.shape)), rtol=1e-12)
    untested, _ = fit_from_campaign(logistic_campaign, test_fraction=0.0, n_restarts=0)
    with pytest.raises(ValueError, match="needs a surrogate validated on held-out runs"):
        untested.use_variance("held_out")
    with pytest.raises(ValueError, match="must be 'gp', 'held_out' or 'posterior'"):
        sur.use_variance("pointwise")


def test_posterior_variance_replaces_the_measured_observables_only_and_survives_a_save(fitted, tmp_path):
    """``variance = "posterior"``: each observable's error measured at posterior draws replaces its held-out error
    (the others keep theirs); it is saved with the surrogate, enters its id, and is refused before it is measured
    or for an observable the emulator does not output."""
    import copy

    sur, _ = fitted
    sur = copy.deepcopy(sur)
    with pytest.raises(ValueError, match=r"variance 'posterior' needs .*\[refinement\] rounds >= 1"):
        sur.use_variance("posterior")
    first = sur.observables[0]
    before = sur.surrogate_id
    sur.set_posterior_error({first: 0.0123})
    assert sur.surrogate_id != before
    want = np.array(sur.heldout_var_, copy=True)
    want[0, :] = 0.0123
    np.testing.assert_array_equal(sur.posterior_var_, want)
    X = design(sur.space, 3, seed=7)
    back = GPSurrogate.load(sur.save(tmp_path / "p.npz")).use_variance("posterior")
    assert back.surrogate_id == sur.surrogate_id
    _, v = back.predict_pt(pt.as_tensor_variable(X))
    np.testing.assert_allclose(v.eval(), np.broadcast_to(want, (3, *want.shape)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"posterior error given for \['nope'\]"):
        sur.set_posterior_error({"nope": 1.0})
    with pytest.raises(ValueError, match="posterior mean squared error of"):
        sur.set_posterior_error({first: float("nan")})


def test_fit_errors():
    fm = LogisticModel()
    sur = GPSurrogate(fm.space(), fm.observables, fm.times)
    with pytest.raises(ValueError, match="need at least 8 training runs"):
        sur.fit(np.ones((3, 3)), np.ones((3, 1, len(fm.times))))
    X = design(fm.space(), 16)
    Y = fm.simulate(X)
    Y[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sur.fit(X, Y)


def test_active_refinement_adds_points_where_the_posterior_is(tmp_path, rng):
    fm = LogisticModel()
    camp = Campaign.create(tmp_path / "r", "toy.logistic", design(fm.space(), 48, seed=1), chunk_size=16)
    camp.run(workers=0, progress=False)
    theta_before, _ = camp.training_data()
    # a narrow "posterior" around one parameter vector
    centre = np.array([0.3, 1500.0, 50.0])
    post = centre * np.exp(rng.normal(0, 0.03, size=(400, 3)))
    new = propose_refinement(post, theta_before, fm.space(), 6)
    assert new.shape == (6, 3)
    assert np.all(np.abs(np.log(new / centre)) < 0.2)
    sur0, _ = fit_from_campaign(camp, test_fraction=0.0, n_restarts=0)
    err0 = np.abs(sur0.predict(post, return_var=False) - fm.simulate(post)).max()
    sur1, rep = refine(camp, post, 8, workers=0, n_restarts=0)
    err1 = np.abs(sur1.predict(post, return_var=False) - fm.simulate(post)).max()
    assert rep["n_train"] == 48 + 8
    assert err1 < 0.5 * err0


def test_tagged_refinement_round_is_not_repeated(tmp_path, rng):
    """A rerun (or resume) of a tagged round adds no new points; an untagged call always adds."""
    fm = LogisticModel()
    camp = Campaign.create(tmp_path / "r", "toy.logistic", design(fm.space(), 32, seed=1), chunk_size=16)
    camp.run(workers=0, progress=False)
    post = np.array([0.3, 1500.0, 50.0]) * np.exp(rng.normal(0, 0.03, size=(200, 3)))
    _, rep = refine(camp, post, 5, workers=0, tag="round1", n_restarts=0)
    assert rep["n_train"] == 37
    again = Campaign(camp.path)                       # a fresh process reading the folder
    assert again.meta["refinement_rounds"]["round1"] == [32, 33, 34, 35, 36]
    _, rep = refine(again, post, 5, workers=0, tag="round1", n_restarts=0)
    assert rep["n_train"] == 37 and again.n == 37
    _, rep = refine(again, post, 3, workers=0, tag="round2", n_restarts=0)
    assert rep["n_train"] == 40
    # the rows padding round2 to a chunk boundary are not runs: nothing is pending
    st = again.status()
    assert (st["n_runs"], st["finished"], st["pending"]) == (40, 40, 0)


def test_config_refuses_a_surrogate_of_another_forward_model_or_condition(fitted, tmp_path):
    """A surrogate trained for another forward model or another condition would bias the posterior silently."""
    from immunocal.calib.workflow import Calibration, check_surrogate_provenance

    sur, _ = fitted
    sur.save(tmp_path / "s.npz")
    loaded = GPSurrogate.load(tmp_path / "s.npz")
    check_surrogate_provenance(loaded, "s.npz", "toy.logistic", "ctrl", None)  # matches: no error
    with pytest.raises(ValueError, match="trained on forward model 'toy.logistic', but .* 'toy.linear'"):
        check_surrogate_provenance(loaded, "s.npz", "toy.linear", "ctrl", None)
    with pytest.raises(ValueError, match="trained for condition .* but data condition 'treated' is"):
        check_surrogate_provenance(loaded, "s.npz", "toy.logistic", "treated", {"rt_days": [0.0]})
    loaded.forward_ = None
    with pytest.raises(ValueError, match="no provenance"):
        check_surrogate_provenance(loaded, "s.npz", "toy.logistic", "ctrl", None)
    with pytest.raises(ValueError, match="but the config's forward model is 'toy.linear'"):
        check_surrogate_provenance(GPSurrogate.load(tmp_path / "s.npz"), "s.npz", "toy.linear", "ctrl", None)
    # options are part of the identity: the same class with other settings is another forward model
    with pytest.raises(ValueError, match="trained on forward model 'toy.logistic', but .*options"):
        check_surrogate_provenance(GPSurrogate.load(tmp_path / "s.npz"), "s.npz",
                                   {"spec": "toy.logistic", "options": {"noise": 0.1}}, "ctrl", None)
    # through the workflow: the config's [emulator] path is checked before any sampling
    (tmp_path / "m.csv").write_text("subject,condition,observable,time,value\na,ctrl,log_volume,1,4.0\n")
    cfg = {"model": {"forward": "toy.linear"}, "data": {"measurements": "m.csv"},
           "parameters": {"slope": {"role": "population", "prior": {"distribution": "Normal", "mu": 0, "sigma": 1}}},
           "emulator": {"kind": "surrogate", "path": "s.npz"}, "_base": str(tmp_path), "_path": "c.toml"}
    with pytest.raises(ValueError, match="but the config's forward model is 'toy.linear'"):
        Calibration(cfg, tmp_path / "run", progress=False).train()


class _JacobianLogistic:
    """The toy logistic model offering exact sensitivities (closed form) and no PyTensor expression."""

    name = "toy.logistic_jacobian"

    def __init__(self):
        self._toy = LogisticModel()
        self.parameter_names, self.observables, self.times = (self._toy.parameter_names, self._toy.observables,
                                                              self._toy.times)

    def space(self):
        return self._toy.space()

    def simulate(self, theta, condition=None):
        return self._toy.simulate(theta, condition)

    def simulate_jacobian(self, theta, condition=None):
        theta = np.atleast_2d(np.asarray(theta, float))
        f = float((condition or {}).get("growth_factor", 1.0))
        r, k, v0 = theta[:, 0:1] * f, theta[:, 1:2], theta[:, 2:3]
        t = self.times[None, :]
        e = np.exp(-r * t)
        den = 1.0 + (k / v0 - 1.0) * e
        y = np.log(k) - np.log(den)  # log V = log K - log(1 + (K/V0 - 1) e^{-rt})
        dr = f * (k / v0 - 1.0) * t * e / den
        dk = 1.0 / k - (e / v0) / den
        dv0 = (k * e / v0**2) / den
        return y[:, None, :], np.stack([dr, dk, dv0], -1)[:, None, :, :]


def test_exact_emulator_op_gradient_is_the_vector_jacobian_product(rng):
    """A forward model with ``simulate_jacobian`` (and no ``simulate_pt``) becomes a differentiable Op: its value
    equals ``simulate``, the gradient of a scalar is the vector-Jacobian product and matches central differences
    of ``simulate``; a wrong input shape is a named error."""
    from immunocal.calib.surrogate import ExactEmulator, ForwardGradOp

    fm = _JacobianLogistic()
    cond = {"growth_factor": 0.5}
    em = ExactEmulator(fm, cond)
    th = pt.matrix("th")
    mean, var = em.predict_pt(th)
    assert "ForwardGradOp" in pytensor.printing.debugprint(mean, file="str")
    loss = pt.sum(pt.sin(mean))
    f = pytensor.function([th], [mean, var, pt.grad(loss, th)])
    x = np.column_stack([rng.uniform(0.1, 0.6, 4), rng.uniform(500, 3000, 4), rng.uniform(20, 80, 4)])
    m, v, g = f(x)
    np.testing.assert_allclose(m, fm.simulate(x, cond), rtol=1e-12)
    assert np.all(v == 0)
    y, jac = fm.simulate_jacobian(x, cond)
    np.testing.assert_allclose(g, np.einsum("not,notp->np", np.cos(y), jac), rtol=1e-12)
    fd = np.zeros_like(x)
    for i in range(4):
        for j in range(3):
            h = 1e-6 * x[i, j]
            up, dn = x.copy(), x.copy()
            up[i, j] += h
            dn[i, j] -= h
            fd[i, j] = (np.sin(fm.simulate(up, cond)).sum() - np.sin(fm.simulate(dn, cond)).sum()) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    with pytest.raises(TypeError, match="theta must be a matrix"):
        ForwardGradOp(fm)(pt.vector("v"))
    with pytest.raises(ValueError, match="has neither a PyTensor form"):
        ExactEmulator(type("M", (), {"name": "m", "observables": ("y",), "times": np.zeros(1)})())


class _HorizonLogistic(_JacobianLogistic):
    """The same model taking per-row horizons: outputs after a row's ``until`` hold the value there."""

    name = "toy.logistic_horizon"
    supports_until = True

    def __init__(self):
        super().__init__()
        self.calls = []
        self.value_calls = []

    def simulate(self, theta, condition=None, until=None):
        self.value_calls.append(None if until is None else np.asarray(until).tolist())
        y, _ = _JacobianLogistic.simulate_jacobian(self, theta, condition)
        if until is not None:
            for r, u in enumerate(until):
                k = int(np.searchsorted(self.times, u))
                y[r, :, k + 1:] = y[r, :, k:k + 1]
        return y

    def simulate_jacobian(self, theta, condition=None, until=None):
        y, jac = super().simulate_jacobian(theta, condition)
        self.calls.append(None if until is None else np.asarray(until).tolist())
        if until is not None:
            for r, u in enumerate(until):
                k = int(np.searchsorted(self.times, u))
                y[r, :, k + 1:] = y[r, :, k:k + 1]
                jac[r, :, k + 1:] = jac[r, :, k:k + 1]
        return y, jac


def test_per_row_horizons_reach_the_simulator_through_the_op_and_the_model(rng):
    """The likelihood passes each unit's last data day as ``until`` to a simulator that supports it: values and
    gradients at the data days are unchanged; a horizon per row is part of the Op's identity; a wrong count or a
    simulator without the capability is a named error."""
    from immunocal.calib.data import Measurements
    from immunocal.calib.model import ObservableSpec, ParameterSpec, build_model
    from immunocal.calib.surrogate import ExactEmulator, ForwardGradOp

    fm = _HorizonLogistic()
    em = ExactEmulator(fm, None)
    assert em.accepts_until and not ExactEmulator(_JacobianLogistic(), None).accepts_until
    t = fm.times
    # subject a observed to times[2], subject b to times[-1]
    subj = ["a"] * 3 + ["b"] * len(t)
    times = np.concatenate([t[:3], t])
    data = Measurements.from_arrays(subj, ["c"] * len(subj), ["log_volume"] * len(subj), times,
                                    rng.normal(5.0, 0.1, len(subj)))
    from immunocal.priors import Prior

    params = [ParameterSpec("growth_rate", "population", prior=Prior("LogNormal", {"mu": -1.2, "sigma": 0.3})),
              ParameterSpec("carrying_capacity", "fixed", value=1500.0),
              ParameterSpec("initial_volume", "fixed", value=50.0)]
    m = build_model({"c": em}, params, data, {"log_volume": ObservableSpec(sigma=0.2)})
    with m:
        logp = m.compile_logp()
        dlogp = m.compile_dlogp()
    point = m.initial_point()
    value, grad = logp(point), dlogp(point)
    assert fm.calls[-1] == [float(t[2]), float(t[-1])]  # the gradient: sensitivities to each row's horizon
    assert fm.value_calls[-1] == [float(t[2]), float(t[-1])]  # the log density alone: values, same horizons
    fm_full = _JacobianLogistic()
    m_full = build_model({"c": ExactEmulator(fm_full, None)}, params, data, {"log_volume": ObservableSpec(sigma=0.2)})
    with m_full:
        np.testing.assert_allclose(value, m_full.compile_logp()(point), rtol=1e-12)
        np.testing.assert_allclose(grad, m_full.compile_dlogp()(point), rtol=1e-12)
    op = ForwardGradOp(fm, None, [1.0, 2.0])
    assert op != ForwardGradOp(fm, None, [1.0, 3.0]) and op == ForwardGradOp(fm, None, [1.0, 2.0])
    with pytest.raises(ValueError, match="2 horizons for 3 rows"):
        pytensor.function([], op(pt.as_tensor_variable(np.ones((3, 3))))[0])()
    with pytest.raises(ValueError, match="does not take per-row horizons"):
        ForwardGradOp(_JacobianLogistic(), None, [1.0])


def test_a_function_without_the_gradient_runs_the_values_only_op(rng):
    """The exact route's Op yields values and Jacobian; a compiled function that reads no Jacobian (log-likelihood,
    predictive draws) is rewritten to the values-only Op (same horizons): the simulator's sensitivities are not
    computed, the values are the same; with the gradient the one sensitivity Op remains."""
    from immunocal.calib.surrogate import ExactEmulator

    fm = _HorizonLogistic()
    th = pt.matrix("th")
    mean, _ = ExactEmulator(fm, None).predict_pt(th, until=[1.0, 3.0])
    x = np.column_stack([rng.uniform(0.1, 0.6, 2), rng.uniform(500, 3000, 2), rng.uniform(20, 80, 2)])
    values_only = pytensor.function([th], mean)
    ops = [type(n.op).__name__ for n in values_only.maker.fgraph.toposort()]
    assert "_ForwardOp" in ops and "_ForwardGradOp" not in ops
    y = values_only(x)
    assert fm.calls == [] and fm.value_calls == [[1.0, 3.0]]
    with_grad = pytensor.function([th], [mean, pt.grad(pt.sum(mean), th)])
    ops = [type(n.op).__name__ for n in with_grad.maker.fgraph.toposort()]
    assert ops.count("_ForwardGradOp") == 1 and "_ForwardOp" not in ops
    y2, _ = with_grad(x)
    np.testing.assert_array_equal(y, y2)
    assert fm.calls == [[1.0, 3.0]]


def _jump_outputs(X):
    """Two observables over the unit square: ``a`` smooth everywhere; ``b`` smooth where it can be observed
    (x0 + x1 < 1) and a constant 28 elsewhere (like the early-peak time where the peak vanishes)."""
    a = np.sin(3 * X[:, 0]) + X[:, 1] ** 2
    seen = X[:, 0] + X[:, 1] < 1
    b = np.where(seen, 5 * X[:, 0] + 2 * X[:, 1] ** 2, 28.0)
    return np.stack([a, b], 1)[:, :, None], np.column_stack([np.ones(len(X), bool), seen])


def test_an_observable_emulated_only_where_it_can_be_observed(rng):
    from immunocal.calib.design import ParameterSpace
    from immunocal.calib.surrogate import validate

    space = ParameterSpace(("x0", "x1"), np.zeros(2), np.ones(2), ("linear", "linear"))
    X, Xt = design(space, 120, seed=0), design(space, 200, method="random", seed=5)
    Y, mask = _jump_outputs(X)
    Yt, mask_t = _jump_outputs(Xt)
    joint = GPSurrogate(space, ("a", "b"), [0.0], n_restarts=0).fit(X, Y)
    split = GPSurrogate(space, ("a", "b"), [0.0], n_restarts=0).fit(X, Y, mask=mask)
    r_joint = validate(joint, Xt, Yt, mask=mask_t)["observables"]
    r_split = validate(split, Xt, Yt, mask=mask_t)["observables"]
    # where b is observed the masked fit never sees the jump: its error there is far smaller, and the smooth output
    # is no longer mixed with the jump through the shared principal components
    assert r_split["b"]["rmse"] < 0.1 * r_joint["b"]["rmse"], (r_split["b"], r_joint["b"])
    assert r_split["a"]["rmse"] <= r_joint["a"]["rmse"] + 1e-3
    assert r_split["b"]["rmse"] < 0.05
    # the per-component training sets (zero-padded) give the same prediction in the PyTensor graph, with gradients
    assert split.X_.ndim == 3 and joint.X_.ndim == 2
    th = pt.dmatrix("theta")
    mean, var = split.predict_pt(th)
    m_pt, v_pt = pytensor.function([th], [mean, var])(Xt[:9])
    m_np, v_np = split.predict(Xt[:9])
    # these smooth outputs are interpolated (weights |α| ~ 1e5): the two backends' different order of the
    # squared-distance sums shows as ~1e-8 round-off
    np.testing.assert_allclose(m_pt, m_np, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(v_pt, v_np, rtol=1e-6, atol=1e-9 * float((split.y_scale_**2).max()))
    # a padded run contributes nothing: the same GP fitted on the observed runs alone predicts b identically
    only = GPSurrogate(space, ("b",), [0.0], n_restarts=0).fit(X[mask[:, 1]], Y[mask[:, 1]][:, 1:])
    np.testing.assert_allclose(split.predict(Xt)[0][:, 1], only.predict(Xt)[0][:, 0], rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(split.predict(Xt)[1][:, 1], only.predict(Xt)[1][:, 0], rtol=1e-6, atol=1e-12)


def test_an_all_true_mask_is_the_unmasked_fit_and_bad_masks_are_named(fitted):
    fm = LogisticModel()
    X = design(fm.space(), 24, seed=2)
    Y = fm.simulate(X)
    plain = GPSurrogate(fm.space(), fm.observables, fm.times, n_restarts=0).fit(X, Y)
    full = GPSurrogate(fm.space(), fm.observables, fm.times, n_restarts=0).fit(X, Y, mask=np.ones((24, 1), bool))
    assert plain.surrogate_id == full.surrogate_id and full.X_.ndim == 2
    with pytest.raises(ValueError, match=r"emulation mask has shape \(24, 2\)"):
        GPSurrogate(fm.space(), fm.observables, fm.times).fit(X, Y, mask=np.ones((24, 2), bool))
    few = np.zeros((24, 1), bool)
    few[:5] = True
    with pytest.raises(ValueError, match=r"got 5 where \['log_volume'\] can be observed"):
        GPSurrogate(fm.space(), fm.observables, fm.times).fit(X, Y, mask=few)


def test_a_masked_surrogate_round_trips_and_the_campaign_fit_uses_the_simulators_mask(tmp_path):
    from immunocal.calib.design import ParameterSpace

    space = ParameterSpace(("x0", "x1"), np.zeros(2), np.ones(2), ("linear", "linear"))
    X = design(space, 60, seed=0)
    Y, mask = _jump_outputs(X)
    sur = GPSurrogate(space, ("a", "b"), [0.0], n_restarts=0).fit(X, Y, mask=mask)
    back = GPSurrogate.load(sur.save(tmp_path / "m.npz"))
    assert back.surrogate_id == sur.surrogate_id and back.X_.shape == sur.X_.shape
    np.testing.assert_array_equal(back.predict(X[:4])[0], sur.predict(X[:4])[0])
    # a campaign of a simulator with an emulation_mask (the CAR-T cohort's: t_max where the data can have it) is fitted,
    # validated and given its held-out error on those runs alone
    from immunocal.calib.cohort import CohortSimulator

    sim = CohortSimulator()
    camp = Campaign.create(tmp_path / "cohort", "immunocal.calib.cohort:CohortSimulator",
                           design(sim.space(), 60, seed=1), condition={"cart_days": [0], "cart_doses": [5e8]},
                           chunk_size=30)
    camp.run(workers=0, progress=False)
    em, rep = fit_from_campaign(camp, test_fraction=0.25, seed=0)
    theta, Y = camp.training_data()
    seen = sim.emulation_mask(Y)[:, list(sim.observables).index("t_max")]
    test = np.random.default_rng(0).permutation(60)[:15]      # fit_from_campaign's split
    assert 0 < seen.sum() < 60 and em.X_.ndim == 3
    assert rep["emulated_where_observable"] == {"t_max": int(seen.sum() - seen[test].sum())}
    assert rep["observables"]["t_max"]["n_scored"] == seen[test].sum()
    err = em.predict(theta[test], return_var=False)[:, list(sim.observables).index("t_max"), 0] - Y[test, 4, 0]
    assert em.heldout_var_[list(sim.observables).index("t_max"), 0] == pytest.approx(np.mean(err[seen[test]] ** 2))
    plain, _ = fit_from_campaign(camp, test_fraction=0.25, seed=0, emulation_mask=None)
    assert plain.X_.ndim == 2
