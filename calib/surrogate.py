"""Differentiable emulators of a forward model's outputs: PCA + Gaussian processes frozen into PyTensor.

Method (Higdon et al. 2008, "Computer model calibration using high-dimensional output"):

1. inputs are mapped to the unit cube by the model's :class:`~calib.design.ParameterSpace` (log scale for log
   parameters);
2. outputs (observables × times, flattened) are centred and scaled, and projected on their leading principal
   components (enough to explain ``1 − pca_tol`` of the variance, at most ``max_components``);
3. each component score gets an independent GP with a constant × ARD-RBF + white-noise kernel whose
   hyperparameters scikit-learn fits by maximum marginal likelihood;
4. the fitted GPs are frozen: prediction ``m(x) = k(x, X) α`` and variance ``v(x) = s² + w − ‖L⁻¹ k(X,x)‖²`` (K = LLᵀ)
   are PyTensor expressions (exact gradients for NUTS). The output variance is
   ``Σ_j (scale · W_j)² v_j(x) + r²`` with ``r²`` the PCA truncation residual on the training set.

The emulator variance is added to the observation variance in the likelihood (see :mod:`immunocal.calib.model`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from .design import ParameterSpace


class GPSurrogate:
    """PCA + GP emulator. ``fit(theta, outputs)`` with outputs of shape ``(n, n_obs, n_times)``."""

    family = "pca_gp"

    def __init__(self, space: ParameterSpace, observables, times, pca_tol: float = 1e-6, max_components: int = 8,
                 n_restarts: int = 2, seed: int = 0):
        self.space = space
        self.observables = tuple(observables)
        self.times = np.asarray(times, float)
        self.pca_tol = pca_tol
        self.max_components = max_components
        self.n_restarts = n_restarts
        self.seed = seed
        self.variance = "gp"           # or "held_out" (predict_pt)
        self.heldout_var_ = None       # (n_obs, n_times): mean squared held-out error (fit_from_campaign)
        self.posterior_var_ = None     # (n_obs, n_times): mean squared error at posterior draws (set_posterior_error)

    # ------------------------------------------------------------------ fitting
    def fit(self, theta: np.ndarray, outputs: np.ndarray, mask: np.ndarray | None = None) -> GPSurrogate:
        """Fit on runs ``theta`` ``(n, p)`` with ``outputs`` ``(n, n_obs, n_times)``. ``mask`` ``(n, n_obs)``: the runs
        each observable is fitted on — where a likelihood can observe it (the simulator's ``emulation_mask``); the
        observables sharing a mask column get their own PCA and GPs on their runs, so the values of the others (e.g.
        an output that jumps where it is never observed) neither enter their fit nor mix into the other outputs'
        principal components. Masked-out values must still be finite (they are not used)."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:  # threads only oversubscribe
            warnings.simplefilter("always", ConvergenceWarning)
            self._fit(theta, outputs, mask)
        # hyperparameters at a bound (e.g. the nugget at its floor for a smooth deterministic simulator) are
        # expected; they are kept as a count, the held-out validation report is the real check
        self.fit_warnings_ = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return self

    def _fit(self, theta: np.ndarray, outputs: np.ndarray, mask: np.ndarray | None = None) -> GPSurrogate:
        theta = np.atleast_2d(np.asarray(theta, float))
        n_obs, n_t = len(self.observables), len(self.times)
        Y = np.asarray(outputs, float).reshape(len(theta), -1)
        if Y.shape[1] != n_obs * n_t:
            raise ValueError(f"outputs have {Y.shape[1]} columns, expected {n_obs}×{n_t}")
        if not np.all(np.isfinite(Y)):
            raise ValueError("training outputs contain non-finite values (drop failed runs first)")
        mask = np.ones((len(theta), n_obs), bool) if mask is None else np.asarray(mask, bool)
        if mask.shape != (len(theta), n_obs):
            raise ValueError(f"emulation mask has shape {mask.shape}; expected (runs, observables) = "
                             f"{(len(theta), n_obs)}")
        X = self.space.to_unit(theta)
        groups: dict[bytes, list[int]] = {}          # observables sharing a mask column: one PCA + GPs on their runs
        for o in range(n_obs):
            groups.setdefault(mask[:, o].tobytes(), []).append(o)
        self.y_mean_, self.y_scale_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        self.resid_var_ = np.zeros(Y.shape[1])
        W, comps = [], []                            # comps: (runs, scores of the component)
        for obs in groups.values():
            runs = np.flatnonzero(mask[:, obs[0]])
            if len(runs) < 2 * self.space.dim + 2:
                names = [self.observables[o] for o in obs]
                raise ValueError(f"need at least {2 * self.space.dim + 2} training runs, got {len(runs)}"
                                 + (f" where {names} can be observed (emulation mask)" if len(runs) < len(X) else ""))
            cols = (np.asarray(obs)[:, None] * n_t + np.arange(n_t)[None, :]).ravel()
            Yg = Y[np.ix_(runs, cols)]
            mean, scale = Yg.mean(0), Yg.std(0)
            scale[scale < 1e-12] = 1.0
            Z = (Yg - mean) / scale
            _, s, Vt = np.linalg.svd(Z, full_matrices=False)
            frac = np.cumsum(s**2) / max(np.sum(s**2), 1e-300)
            k = int(min(np.searchsorted(frac, 1 - self.pca_tol) + 1, self.max_components, len(s)))
            scores = Z @ Vt[:k].T
            self.y_mean_[cols], self.y_scale_[cols] = mean, scale
            self.resid_var_[cols] = ((Z - scores @ Vt[:k]) ** 2).mean(0) * scale**2
            for j in range(k):
                w = np.zeros(Y.shape[1])
                w[cols] = Vt[j]
                W.append(w)
                comps.append((runs, scores[:, j]))
        self.W_ = np.array(W)  # (k, n_out)
        shared = len(groups) == 1
        # one training set for all components (X_ (n, p)), or each component its own runs padded to n with zero
        # weights (X_ (k, n, p)): a padded run adds nothing to the mean (α = 0) or the variance (L⁻¹ row/column 0)
        self.X_ = X if shared else np.zeros((len(comps), len(X), X.shape[1]))
        alphas, kinvs, amps, lss, noises = [], [], [], [], []
        rng = np.random.RandomState(self.seed)
        for j, (runs, z) in enumerate(comps):
            amp, ls, noise, alpha, Linv = self._fit_component(X[runs], z, rng)
            if shared:
                alphas.append(alpha)
                kinvs.append(Linv)
            else:
                self.X_[j, :len(runs)] = X[runs]
                alphas.append(np.zeros(len(X)))
                alphas[-1][:len(runs)] = alpha
                kinvs.append(np.zeros((len(X), len(X))))
                kinvs[-1][:len(runs), :len(runs)] = Linv
            amps.append(amp)
            lss.append(ls)
            noises.append(noise)
        self.alpha_ = np.array(alphas)
        self.Linv_ = np.array(kinvs)
        self.amp_ = np.array(amps)
        self.ls_ = np.array(lss)
        self.noise_ = np.array(noises)
        return self

    def _fit_component(self, X: np.ndarray, z: np.ndarray, rng):
        """One principal component's GP (constant × RBF with one length scale per input + white noise, maximum
        marginal likelihood): amplitude, length scales, noise, weights α = K⁻¹z and the Cholesky factor's inverse."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        sd = z.std() or 1.0
        kern = ConstantKernel(sd**2, (1e-6 * sd**2, 1e3 * sd**2)) * RBF(np.full(self.space.dim, 0.5), (1e-2, 1e2)) \
            + WhiteKernel(1e-6 * sd**2, (1e-10 * sd**2, 1e-1 * sd**2))
        gp = GaussianProcessRegressor(kern, normalize_y=False, n_restarts_optimizer=self.n_restarts,
                                      random_state=rng).fit(X, z)
        kf = gp.kernel_
        amp, ls, noise = kf.k1.k1.constant_value, np.atleast_1d(kf.k1.k2.length_scale), kf.k2.noise_level
        Linv = _inverse_cholesky(X, amp, ls, noise)
        return amp, ls, noise, Linv.T @ (Linv @ z), Linv

    def _inverse_cholesky_factors(self, n_runs: np.ndarray) -> np.ndarray:
        """``Linv_`` of every component from its training runs and hyperparameters (a compact file's load)."""
        X = self._train_inputs()
        n = X.shape[1]
        out = np.zeros((len(self.amp_), n, n))
        for j, m in enumerate(np.asarray(n_runs, int)):
            Xj = X[j if len(X) > 1 else 0, :m]
            out[j, :m, :m] = _inverse_cholesky(Xj, float(self.amp_[j]), self.ls_[j], float(self.noise_[j]))
        return out

    def _train_inputs(self) -> np.ndarray:
        """The training inputs per component, ``(k or 1, n, p)`` (shared by all components unless fitted with a
        mask)."""
        return self.X_ if self.X_.ndim == 3 else self.X_[None]

    # ------------------------------------------------------------------ numpy prediction
    def predict(self, theta: np.ndarray, return_var: bool = True):
        """Mean (and variance) of the outputs, shape ``(n, n_obs, n_times)``."""
        X = self.space.to_unit(np.atleast_2d(theta))
        a = X[None, :, :] / self.ls_[:, None, :]  # (k, m, p)
        b = self._train_inputs() / self.ls_[:, None, :]  # (k, n, p)
        d2 = (a**2).sum(-1)[:, :, None] + (b**2).sum(-1)[:, None, :] - 2 * a @ b.transpose(0, 2, 1)
        kx = self.amp_[:, None, None] * np.exp(-0.5 * np.maximum(d2, 0.0))  # (k, m, n)
        m = np.einsum("kmn,kn->mk", kx, self.alpha_)
        shape = (len(X), len(self.observables), len(self.times))
        mean = (self.y_mean_ + (m @ self.W_) * self.y_scale_).reshape(shape)
        if not return_var:
            return mean
        u = kx @ self.Linv_.transpose(0, 2, 1)  # (k, m, n) = (L⁻¹ k)ᵀ
        v = np.maximum((self.amp_ + self.noise_)[:, None] - (u**2).sum(-1), self.noise_[:, None]).T
        var = (v @ (self.W_**2) * self.y_scale_**2 + self.resid_var_).reshape(shape)
        return mean, var

    def use_variance(self, mode: str) -> GPSurrogate:
        """Select the emulator variance of :meth:`predict_pt`: ``"gp"``, ``"held_out"`` (needs a validation) or
        ``"posterior"`` (needs :meth:`set_posterior_error`)."""
        if mode not in ("gp", "held_out", "posterior"):
            raise ValueError(f"emulator variance must be 'gp', 'held_out' or 'posterior', got {mode!r}")
        if mode == "held_out" and self.heldout_var_ is None:
            raise ValueError("emulator variance 'held_out' needs a surrogate validated on held-out runs "
                             "([emulator] test_fraction > 0 when it was trained)")
        if mode == "posterior" and self.posterior_var_ is None:
            raise ValueError("emulator variance 'posterior' needs the emulator's error measured at posterior draws: "
                             "[refinement] rounds >= 1 (the pilot posterior it is measured at), or a surrogate saved "
                             "after such a refinement")
        self.variance = mode
        return self

    def set_posterior_error(self, mse: dict[str, float]) -> GPSurrogate:
        """The ``"posterior"`` variance: ``mse`` ``{observable: mean squared error}`` measured against the true model
        at posterior draws (constant over times); observables not in it keep their held-out error."""
        if self.heldout_var_ is None:
            raise ValueError("set_posterior_error needs the held-out error for the observables it does not measure")
        unknown = sorted(set(mse) - set(self.observables))
        if unknown:
            raise ValueError(f"posterior error given for {unknown}, which the emulator does not output "
                             f"({list(self.observables)})")
        var = np.array(self.heldout_var_, float, copy=True)
        for o, v in mse.items():
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"posterior mean squared error of {o!r} is {v!r}")
            var[self.observables.index(o), :] = v
        self.posterior_var_ = var
        return self

    # ------------------------------------------------------------------ PyTensor prediction
    def predict_pt(self, theta):
        """Mean and variance as PyTensor expressions of a ``(n, p)`` tensor ``theta``; shapes ``(n, n_obs, n_t)``.
        All GP components are evaluated in one batched graph (small graph, fast compilation). The variance is the
        GP's own (``variance = "gp"``) or a constant per output — ``"held_out"``, each output's mean squared error on
        the held-out runs (:func:`fit_from_campaign`), or ``"posterior"`` (:meth:`set_posterior_error`) — for many
        subjects × training runs where the GP variance's O(subjects · runs²) cost dominates the log-density; with a
        constant variance the mean is one fused Numba pass giving value and Jacobian
        (:mod:`immunocal.calib.gp_kernel`)."""
        import pytensor.tensor as pt

        X = self.space.to_unit_pt(theta)
        n = theta.shape[0]
        shape = (n, len(self.observables), len(self.times))
        if self.variance in ("held_out", "posterior"):  # constant per output: O(m n), not the GP's O(m n²)
            from .gp_kernel import gp_mean_op_class

            m = gp_mean_op_class()(True)(X, *self._kernel_constants())[0]  # (m, k): one fused pass, value + Jacobian
            mean = (self.y_mean_ + pt.dot(m, self.W_) * self.y_scale_).reshape(shape)
            const = self.heldout_var_ if self.variance == "held_out" else self.posterior_var_
            return mean, pt.zeros(shape) + const[None, :, :]
        kx, m = self._graph_components(X)
        mean = (self.y_mean_ + pt.dot(m, self.W_) * self.y_scale_).reshape(shape)
        u = pt.matmul(kx, self.Linv_.transpose(0, 2, 1))
        v = pt.maximum((self.amp_ + self.noise_)[:, None] - (u**2).sum(-1), self.noise_[:, None]).T
        var = (pt.dot(v, self.W_**2) * self.y_scale_**2 + self.resid_var_).reshape(shape)
        return mean, var

    def _graph_components(self, X):
        """The kernel matrix ``k(x, X)`` ``(k, m, n)`` and the component means ``(m, k)`` as a PyTensor graph of
        unit-cube points ``X`` (the GP variance needs the kernel matrix; ``bench calib`` times it against the fused
        kernel)."""
        import pytensor.tensor as pt

        a = X[None, :, :] / self.ls_[:, None, :]
        b = self._train_inputs() / self.ls_[:, None, :]
        d2 = (a**2).sum(-1)[:, :, None] + (b**2).sum(-1)[:, None, :] - 2 * pt.matmul(a, b.transpose(0, 2, 1))
        kx = self.amp_[:, None, None] * pt.exp(-0.5 * pt.maximum(d2, 0.0))
        return kx, (kx * self.alpha_[:, None, :]).sum(-1).T

    def _kernel_constants(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fused mean kernel's inputs (:mod:`immunocal.calib.gp_kernel`): each component's training inputs over
        its length scales ``(k, p, n)``, the inverse length scales ``(k, p)`` and the weights amp · α ``(k, n)``."""
        X = np.broadcast_to(self._train_inputs(), (len(self.ls_), *self.X_.shape[-2:]))
        Xs = np.ascontiguousarray((X / self.ls_[:, None, :]).transpose(0, 2, 1))
        return Xs, np.ascontiguousarray(1.0 / self.ls_), np.ascontiguousarray(self.amp_[:, None] * self.alpha_)

    # ------------------------------------------------------------------ persistence
    _ARRAYS = ("y_mean_", "y_scale_", "W_", "resid_var_", "X_", "alpha_", "Linv_", "amp_", "ls_", "noise_")

    @property
    def surrogate_id(self) -> str:
        h = hashlib.sha256(json.dumps(self._meta(), sort_keys=True).encode())
        for a in self._ARRAYS:
            h.update(np.ascontiguousarray(getattr(self, a)).tobytes())
        if self.posterior_var_ is not None:  # it enters the likelihood as the "posterior" variance
            h.update(np.ascontiguousarray(self.posterior_var_, float).tobytes())
        return f"{self.family}-{h.hexdigest()[:12]}"

    def _meta(self) -> dict:
        return {"family": self.family, "space": self.space.to_dict(), "observables": list(self.observables),
                "times": list(map(float, self.times)), "pca_tol": self.pca_tol,
                "max_components": self.max_components, "forward": getattr(self, "forward_", None),
                "condition": getattr(self, "condition_", None), "fixed": getattr(self, "fixed_", None)}

    def save(self, path: str | Path, compact: bool = False) -> Path:
        """Save to ``.npz`` (arrays + JSON metadata), atomically. ``compact``: without the kernel matrices' inverse
        Cholesky factors ``Linv_`` (k × n × n: 10 MB for 8 components of 400 runs, against ≈ 0.2 MB for the
        rest), which loading recomputes from the hyperparameters (:func:`_inverse_cholesky`); on other numerical
        libraries the recomputed factor may differ in its last bits, and then the loaded surrogate's id does too —
        a check on its identity, not a silent change."""
        import os

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        extra = {a: getattr(self, a) for a in ("heldout_var_", "posterior_var_") if getattr(self, a) is not None}
        arrays = {a: getattr(self, a) for a in self._ARRAYS}
        if compact:
            arrays.pop("Linv_")
            # the runs of each component (a masked component's X_ and α are padded with zeros after them)
            arrays["n_runs_"] = np.array([int(np.count_nonzero(np.any(Li != 0, axis=1))) for Li in self.Linv_])
        np.savez(tmp, meta=np.array(json.dumps(self._meta())), **arrays, **extra)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GPSurrogate:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such surrogate file")
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("family") != cls.family:
                raise ValueError(f"{path}: surrogate family {meta.get('family')!r}, expected {cls.family!r}")
            obj = cls(ParameterSpace.from_dict(meta["space"]), meta["observables"], meta["times"],
                      meta["pca_tol"], meta["max_components"])
            for a in cls._ARRAYS:
                if a != "Linv_" or "Linv_" in z.files:
                    setattr(obj, a, z[a])
            if "Linv_" not in z.files:  # a compact file: the factors recomputed as the fit computed them
                obj.Linv_ = obj._inverse_cholesky_factors(z["n_runs_"])
            obj.heldout_var_ = z.get("heldout_var_")
            obj.posterior_var_ = z.get("posterior_var_")
        obj.forward_ = meta.get("forward")
        obj.condition_ = meta.get("condition")
        obj.fixed_ = meta.get("fixed")  # as saved (None for a surrogate fitted outside a campaign): its id survives
        return obj


def _inverse_cholesky(X: np.ndarray, amp: float, ls: np.ndarray, noise: float) -> np.ndarray:
    """L⁻¹ of the component's kernel matrix K = amp · RBF(X; ls) + noise · I = L Lᵀ — what the predictive variance
    needs (v(x) = a + w − ‖L⁻¹k‖², stable: no K⁻¹ cancellation). The one computation of it: fitting and loading a
    compact file (:meth:`GPSurrogate.save`) give the same bits on the same numerical libraries — with one BLAS
    thread, as the fit runs (threaded BLAS sums in another order)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        K = amp * np.exp(-0.5 * _sqdist(X / ls, X / ls)) + noise * np.eye(len(X))
        L = np.linalg.cholesky(K)
        return np.linalg.solve(L, np.eye(len(X)))


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def _full_space(forward, space=None) -> ParameterSpace:
    """The parameter space of a forward model's full input vector: ``space`` if given (its names must be the model's
    parameters, in order), else the model's own ``space()``."""
    if space is None:
        if not hasattr(forward, "space"):
            raise ValueError(f"forward model {forward.name!r} has no space(); pass the parameter space explicitly")
        return forward.space()
    if tuple(space.names) != tuple(forward.parameter_names):
        raise ValueError(f"parameter space {list(space.names)} is not the input vector of forward model "
                         f"{forward.name!r} ({list(forward.parameter_names)})")
    return space


class ExactEmulator:
    """The true forward model as a zero-variance "emulator" with gradients: its PyTensor form (``simulate_pt``) or,
    for a simulator with exact sensitivities (``simulate_jacobian``), :func:`ForwardGradOp` — NUTS on the true model."""

    family = "exact"

    def __init__(self, forward, condition=None, space=None):
        if not (hasattr(forward, "simulate_pt") or hasattr(forward, "simulate_jacobian")):
            raise ValueError(f"forward model {forward.name!r} has neither a PyTensor form (simulate_pt) nor exact "
                             "sensitivities (simulate_jacobian): use a surrogate or the black-box emulator")
        self.forward = forward
        self.condition = condition
        self.observables = tuple(forward.observables)
        self.times = np.asarray(forward.times, float)
        self.space = _full_space(forward, space)
        self.surrogate_id = f"exact-{forward.name}"

    @property
    def accepts_until(self) -> bool:
        """Whether :meth:`predict_pt` uses per-row horizons (the simulator computes only up to each row's last
        needed time: ``supports_until`` in the forward protocol)."""
        return not hasattr(self.forward, "simulate_pt") and bool(getattr(self.forward, "supports_until", False))

    def predict_pt(self, theta, until=None):
        """Mean (and zero variance) of ``theta``'s rows; ``until`` (one time per row, when :attr:`accepts_until`):
        each row is simulated only up to that time — outputs after it are finite but not the model's, so the
        caller reads none of them (the likelihood uses each subject's own data days)."""
        import pytensor.tensor as pt

        if hasattr(self.forward, "simulate_pt"):
            mean = self.forward.simulate_pt(theta, self.condition)
        else:
            mean = ForwardGradOp(self.forward, self.condition,
                                 until if self.accepts_until else None)(pt.as_tensor_variable(theta))[0]
        return mean, pt.zeros_like(mean)

    def predict(self, theta, return_var=True):
        mean = self.forward.simulate(np.atleast_2d(theta), self.condition)
        return (mean, np.zeros_like(mean)) if return_var else mean


class BlackBoxEmulator:
    """The true forward model behind a gradient-free PyTensor Op (for SMC / slice / DEMetropolis samplers)."""

    family = "blackbox"

    def __init__(self, forward, condition=None, space=None):
        self.forward = forward
        self.condition = condition
        self.observables = tuple(forward.observables)
        self.times = np.asarray(forward.times, float)
        self.space = _full_space(forward, space)
        self.surrogate_id = f"blackbox-{forward.name}"

    def predict_pt(self, theta):
        import pytensor.tensor as pt

        op = ForwardOp(self.forward, self.condition)
        mean = op(pt.as_tensor_variable(theta))
        return mean, pt.zeros_like(mean)

    def predict(self, theta, return_var=True):
        mean = self.forward.simulate(np.atleast_2d(theta), self.condition)
        return (mean, np.zeros_like(mean)) if return_var else mean


@functools.cache
def _forward_op_class():
    import warnings

    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    # under PyTensor's Numba backend these Ops run their Python perform (which calls the Numba-compiled forward
    # model) through Numba's object mode by design; PyTensor's warning saying so repeats each Op's whole identity
    # (descriptor, schedule, horizons) once per condition — noise, not news. Other Ops keep the warning.
    warnings.filterwarnings("ignore", message=r"Numba will use object mode to run _Forward(Grad)?Op\{",
                            category=UserWarning)

    class _ForwardOp(Op):
        """Black-box Op ``theta (n, p) -> outputs (n, n_obs, n_t)`` calling ``immunocal.forward.simulate``; no gradient."""

        __props__ = ("key",)

        def __init__(self, forward, condition, until=None):
            self.forward = forward
            self.condition = condition
            self.until = None if until is None else tuple(float(t) for t in until)
            from .forward_api import descriptor_key

            # the model's full identity (spec + options), not just its name: two settings never share an Op
            self.key = (descriptor_key(getattr(forward, "descriptor", forward.name)),
                        json.dumps(condition, sort_keys=True, default=str), self.until)

        def make_node(self, theta):
            theta = pt.as_tensor_variable(theta)
            return Apply(self, [theta], [pt.tensor3(dtype="float64")])

        def _until(self, theta):
            if self.until is None:
                return {}
            if len(self.until) != theta.shape[0]:
                raise ValueError(f"forward model {self.forward.name!r}: {len(self.until)} horizons for "
                                 f"{theta.shape[0]} rows of theta")
            return {"until": np.asarray(self.until)}

        def perform(self, node, inputs, outputs):
            from .forward_api import await_compiled

            (theta,) = inputs
            await_compiled(self.forward, jacobian=False)  # kernels compiled in the background (compile_in_background)
            theta = np.atleast_2d(theta)
            out = np.asarray(self.forward.simulate(theta, self.condition, **self._until(theta)), dtype=np.float64)
            outputs[0][0] = out

        def infer_shape(self, fgraph, node, shapes):
            n = shapes[0][0]
            return [(n, len(self.forward.observables), len(self.forward.times))]

    return _ForwardOp


def ForwardOp(forward, condition=None, until=None):
    """The forward model as a PyTensor Op without a gradient; ``until``: one last needed time per row (as
    :func:`ForwardGradOp`)."""
    if until is not None and not getattr(forward, "supports_until", False):
        raise ValueError(f"forward model {forward.name!r} does not take per-row horizons (supports_until)")
    return _forward_op_class()(forward, condition, until)


@functools.cache
def _forward_grad_op_class():
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply

    base = _forward_op_class()

    class _ForwardGradOp(base):
        """``theta (n, p) -> [outputs (n, n_obs, n_t), jacobian (n, n_obs, n_t, p)]`` from the forward model's exact
        sensitivities (``simulate_jacobian``); the gradient of a scalar of ``outputs`` is the vector–Jacobian
        product ``Σ_{o,t} ḡ[n,o,t] J[n,o,t,:]`` — one forward-mode run gives value and gradient (PyTensor merges
        the node, so ``outputs`` and ``jacobian`` are computed once per evaluation). ``until``: one last needed
        time per row (part of the Op's identity), passed to the simulator."""

        def make_node(self, theta):
            theta = pt.as_tensor_variable(theta)
            if theta.ndim != 2:
                raise TypeError(f"forward model {self.forward.name!r}: theta must be a matrix (subjects × "
                                f"{len(self.forward.parameter_names)} parameters), got a {theta.ndim}-d tensor")
            return Apply(self, [theta], [pt.tensor3(dtype="float64"), pt.tensor4(dtype="float64")])

        def perform(self, node, inputs, outputs):
            from .forward_api import await_compiled

            (theta,) = inputs
            await_compiled(self.forward, jacobian=True)
            theta = np.atleast_2d(np.asarray(theta, np.float64))
            p = len(self.forward.parameter_names)
            if theta.shape[1] != p:
                raise ValueError(f"forward model {self.forward.name!r}: theta has {theta.shape[1]} columns, expected "
                                 f"{p} ({list(self.forward.parameter_names)})")
            y, jac = self.forward.simulate_jacobian(theta, self.condition, **self._until(theta))
            outputs[0][0] = np.asarray(y, np.float64)
            outputs[1][0] = np.asarray(jac, np.float64)

        def infer_shape(self, fgraph, node, shapes):
            n, p = shapes[0]
            shape = (n, len(self.forward.observables), len(self.forward.times))
            return [shape, (*shape, p)]

        def grad(self, inputs, output_grads):
            from pytensor.gradient import DisconnectedType

            g_y, g_j = output_grads
            if not isinstance(g_j.type, DisconnectedType):
                raise NotImplementedError("no second derivatives: the Jacobian output is not differentiable")
            jac = self(inputs[0])[1]
            return [pt.sum(g_y[:, :, :, None] * jac, axis=(1, 2))]

        def connection_pattern(self, node):
            return [[True, False]]

    from pytensor.graph.rewriting.basic import node_rewriter
    from pytensor.tensor.rewriting.basic import register_specialize

    @register_specialize
    @node_rewriter([_ForwardGradOp])
    def local_forward_values_only(fgraph, node):
        """A function that reads the values but not the Jacobian (the log-likelihood, predictive draws, a log
        density without its gradient) runs the values-only Op: the tangents cost ~3x the values (RIT), and
        ``compute_log_likelihood`` / ``sample_posterior_predictive`` evaluate every posterior draw."""
        if fgraph.clients.get(node.outputs[1]):
            return None
        op = node.op
        return {node.outputs[0]: base(op.forward, op.condition, op.until)(node.inputs[0])}

    return _ForwardGradOp


def ForwardGradOp(forward, condition=None, until=None):
    """The forward model as a differentiable PyTensor Op (exact sensitivities; see :class:`ExactEmulator`)."""
    if not hasattr(forward, "simulate_jacobian"):
        raise ValueError(f"forward model {forward.name!r} has no exact sensitivities (simulate_jacobian)")
    if until is not None and not getattr(forward, "supports_until", False):
        raise ValueError(f"forward model {forward.name!r} does not take per-row horizons (supports_until)")
    return _forward_grad_op_class()(forward, condition, until)


def validate(surrogate, theta: np.ndarray, outputs: np.ndarray, levels=(0.5, 0.9), mask=None) -> dict:
    """Held-out validation: R², max abs error per observable (over times and runs) and per output, the coverage
    of the emulator's own central predictive intervals at ``levels``, and the fraction of values whose sign the
    emulator gets right (``sign_agreement``: for a logit-valued output, how often it predicts the event's side).
    ``mask`` ``(runs, observables)``: the runs each observable is scored on (where a likelihood uses it); an
    observable with no run is left out."""
    from scipy.stats import norm

    mean, var = surrogate.predict(theta)
    y = np.asarray(outputs, float)
    err = mean - y
    sd = np.sqrt(var)
    rep: dict = {"n_test": len(theta), "surrogate_id": surrogate.surrogate_id, "observables": {}}
    mask = np.ones((len(theta), len(surrogate.observables)), bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != (len(theta), len(surrogate.observables)):
        raise ValueError(f"validation mask has shape {mask.shape}; expected (runs, observables) = "
                         f"{(len(theta), len(surrogate.observables))}")
    for o, name in enumerate(surrogate.observables):
        runs = mask[:, o]
        if not runs.any():
            continue
        yo, eo = y[runs, o, :], err[runs, o, :]
        mean_o, sd_o = mean[runs, o, :], sd[runs, o, :]
        ss_tot = ((yo - yo.mean(0)) ** 2).sum(0)
        varying = ss_tot > 1e-12 * max(ss_tot.max(), 1e-300)  # times where the output varies over the runs
        r2_t = np.where(varying, 1 - (eo**2).sum(0) / np.where(varying, ss_tot, 1.0), np.nan)
        ss_all = ((yo - yo.mean()) ** 2).sum()
        # an output constant over the design (e.g. a quantity saturated at the follow-up) has no R²: None, named
        r2_all = float(1 - (eo**2).sum() / ss_all) if ss_all > 1e-12 * max(float((yo**2).sum()), 1e-300) else None
        entry = {"r2": r2_all, "constant": r2_all is None, "r2_min_over_times": float(np.nanmin(r2_t)) if np.any(np.isfinite(r2_t))
                 else None, "max_abs_error": float(np.abs(eo).max()),
                 "rmse": float(np.sqrt((eo**2).mean())), "max_abs_error_by_time": np.abs(eo).max(0).tolist(),
                 "sign_agreement": float(np.mean((mean_o > 0) == (yo > 0))), "n_scored": int(runs.sum())}
        for lev in levels:
            z = norm.ppf(0.5 + lev / 2)
            entry[f"coverage_{int(round(lev * 100))}"] = float((np.abs(eo) <= z * sd_o).mean())
        rep["observables"][name] = entry
    return rep


def fit_from_campaign(campaign, test_fraction: float = 0.2, seed: int = 0, rounds=None, partial: bool = False,
                      emulation_mask="forward", **kwargs):
    """Fit a :class:`GPSurrogate` on a campaign's successful runs (the design's and, with ``rounds``, only those
    refinement rounds'; ``None``: all), holding out ``test_fraction`` for validation. Returns
    ``(surrogate, report)``; the surrogate remembers the campaign's forward descriptor and condition. A campaign with
    pending runs is refused unless ``partial`` (its finished part is not the design: a corner of the box may be
    missing); the report says how many runs were pending. ``emulation_mask`` ``(outputs) -> (runs, observables)``:
    each observable is fitted, validated and given its held-out error only on the runs where it can be observed
    (:meth:`GPSurrogate.fit`); by default the campaign's simulator's own ``emulation_mask`` if it has one, ``None``:
    every output of every run."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    pending = campaign.status()["pending"]
    if pending and not partial:
        raise ValueError(f"{campaign.path}: {pending} of {campaign.status()['n_runs']} runs are pending; finish it (`immunocal "
                         f"campaign resume {campaign.path}`) or train on the finished part on purpose (--partial)")
    theta, Y = campaign.training_data(rounds)
    if len(theta) == 0:
        raise ValueError(f"{campaign.path}: no successful runs to train on (run the campaign first)")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(theta))
    n_test = int(round(test_fraction * len(theta)))
    test, train = perm[:n_test], perm[n_test:]
    space = ParameterSpace.from_dict(campaign.meta["space"])
    sur = GPSurrogate(space, campaign.meta["observables"], campaign.meta["times"], seed=seed, **kwargs)
    if emulation_mask == "forward":
        from .forward_api import load_forward_model

        emulation_mask = getattr(load_forward_model(campaign.meta["forward"]), "emulation_mask", None)
    mask = None if emulation_mask is None else np.asarray(emulation_mask(Y), bool)
    sur.fit(theta[train], Y[train], mask=None if mask is None else mask[train])
    sur.forward_ = campaign.meta["forward"]
    sur.condition_ = campaign.meta["condition"]
    sur.fixed_ = dict(campaign.meta.get("fixed", {}))
    report = validate(sur, theta[test], Y[test], mask=None if mask is None else mask[test]) if n_test else {"n_test": 0}
    if n_test:
        sq = (sur.predict(theta[test], return_var=False) - Y[test]) ** 2
        m = np.ones(sq.shape[:2], bool) if mask is None else mask[test]
        if not m.any(0).all():
            missing = [o for o, a in zip(sur.observables, m.any(0)) if not a]
            raise ValueError(f"{campaign.path}: no held-out run where {missing} can be observed (emulation mask); "
                             "raise [emulator] test_fraction or the design size")
        sur.heldout_var_ = (sq * m[:, :, None]).sum(0) / m.sum(0)[:, None]
    if mask is not None:
        report["emulated_where_observable"] = {o: int(mask[train, i].sum()) for i, o in enumerate(sur.observables)
                                               if not mask[:, i].all()}
    report["n_train"] = len(train)
    report["pending_runs"] = int(pending)
    return sur, report


def propose_refinement(posterior_theta: np.ndarray, existing_theta: np.ndarray, space: ParameterSpace,
                       n_new: int) -> np.ndarray:
    """Pick ``n_new`` posterior draws that are farthest (greedy maximin, unit-cube metric) from the existing design:
    new runs go where the posterior puts mass and the emulator has seen little."""
    P = space.to_unit(np.atleast_2d(posterior_theta))
    E = space.to_unit(np.atleast_2d(existing_theta))
    inside = np.all((P >= 0) & (P <= 1), axis=1)
    P, cand = P[inside], np.atleast_2d(posterior_theta)[inside]
    if len(P) == 0:
        raise ValueError("no posterior draw lies inside the emulator's parameter space")
    dmin = np.sqrt(_sqdist(P, E)).min(1) if len(E) else np.full(len(P), np.inf)
    chosen = []
    for _ in range(min(n_new, len(P))):
        i = int(np.argmax(dmin))
        chosen.append(i)
        dmin = np.minimum(dmin, np.sqrt(_sqdist(P, P[i:i + 1]))[:, 0])
        dmin[i] = -1.0
    return cand[chosen]


def refine(campaign, posterior_theta: np.ndarray, n_new: int, workers: int | None = 0, progress: bool = False,
           tag: str | None = None, rounds=None, test_fraction: float = 0.0, **fit_kwargs):
    """Active refinement: propose ``n_new`` points where ``posterior_theta`` (draws, ``(m, p)``) puts mass, run them
    in ``campaign``, and refit. Returns ``(surrogate, report)`` of :func:`fit_from_campaign` (holding out
    ``test_fraction`` of all runs — the design's and the refinement's — for its validation; default none).

    With a ``tag`` the round is recorded in the campaign's metadata and is not proposed again: a rerun (or a resume
    after a kill) of the same round only finishes its pending runs and refits."""
    rounds = campaign.meta.setdefault("refinement_rounds", {})
    if tag is None or tag not in rounds:
        space = ParameterSpace.from_dict(campaign.meta["space"])
        theta, _ = campaign.training_data()
        new = propose_refinement(posterior_theta, np.vstack([theta, campaign.design]), space, n_new)
        indices = campaign.extend(new)
        if tag is not None:
            rounds[tag] = [int(i) for i in indices]
            campaign.save_meta()
    campaign.run(workers=workers, progress=progress)
    return fit_from_campaign(campaign, test_fraction=test_fraction, rounds=rounds, **fit_kwargs)
