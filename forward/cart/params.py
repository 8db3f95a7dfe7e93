"""Parameter order of the Numba kernels and conversion of a registry :class:`~priors.ParameterSet` to an array.

The kernels receive all 34 parameters as one float64 array ``p`` (so a sampler never triggers recompilation).
The position of each parameter is fixed here, and only here; kernels index ``p`` with the ``I_*`` constants.
Every value comes from the registry (``priors/data/cart.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Field order of the state array ``U[f, k, j, i]`` (seed 001: U = (C, E, T_A, T_B, S, A, H)).
FIELDS = ("C", "E", "TA", "TB", "S", "A", "H")
C, E, TA, TB, S, A, H = range(7)

#: Registry names in kernel order.
PARAM_NAMES = (
    "car_t_diffusion",                      # 0  D_C
    "exhausted_diffusion",                  # 1  D_E
    "tumour_diffusion",                     # 2  D_T
    "chemokine_diffusion",                  # 3  D_S
    "suppressor_diffusion",                 # 4  D_A
    "hypoxia_diffusion",                    # 5  D_H
    "car_t_proliferation_rate",             # 6  rho_C
    "tumour_growth_rate",                   # 7  r_T
    "car_t_contact_loss_rate",              # 8  delta_CT
    "tumour_kill_rate",                     # 9  gamma
    "car_t_death_rate",                     # 10 d_C
    "exhaustion_rate",                      # 11 k_e0
    "car_t_half_saturation",                # 12 K_C
    "tumour_carrying_capacity",             # 13 K_T
    "chemokine_production_rate",            # 14 sigma_S
    "chemokine_decay_rate",                 # 15 lambda_S
    "suppressor_production_rate",           # 16 sigma_A
    "suppressor_hypoxia_production_rate",   # 17 sigma_M
    "suppressor_decay_rate",                # 18 lambda_A
    "hypoxia_accumulation_rate",            # 19 eta
    "hypoxia_decay_rate",                   # 20 lambda_H
    "chemotactic_sensitivity",              # 21 chi_0
    "exhaustion_recovery_rate",             # 22 p_r
    "exhausted_death_rate",                 # 23 d_E
    "antigen_positive_death_rate",          # 24 d_TA
    "antigen_negative_death_rate",          # 25 d_TB
    "antigen_loss_rate",                    # 26 mu_0
    "antigen_recovery_rate",                # 27 mu_1
    "car_t_antigen_loss_effect",            # 28 nu
    "car_t_recovery_suppression",           # 29 xi
    "chemotaxis_suppression",               # 30 alpha_A
    "exhaustion_suppressor_effect",         # 31 beta_A
    "exhaustion_hypoxia_effect",            # 32 beta_H
    "hypoxia_half_saturation",              # 33 K_H
)
(I_DC, I_DE, I_DT, I_DS, I_DA, I_DH, I_RHO, I_RT, I_DELTA, I_GAMMA, I_DC_DEATH, I_KE0, I_KC, I_KT, I_SIGS, I_LAMS,
 I_SIGA, I_SIGM, I_LAMA, I_ETA, I_LAMH, I_CHI0, I_PR, I_DE_DEATH, I_DTA, I_DTB, I_MU0, I_MU1, I_NU, I_XI, I_ALPHA,
 I_BETAA, I_BETAH, I_KH) = range(len(PARAM_NAMES))

#: Diffusion-coefficient index per field (C, E, T_A, T_B, S, A, H).
DIFFUSION_INDEX = (I_DC, I_DE, I_DT, I_DT, I_DS, I_DA, I_DH)


def param_array(params: Mapping[str, float]) -> np.ndarray:
    """Kernel parameter vector from a validated :class:`priors.ParameterSet` (or any name -> value mapping
    holding every cart parameter)."""
    if isinstance(params, np.ndarray):
        if params.shape != (len(PARAM_NAMES),) or not np.all(np.isfinite(params)):
            raise ValueError(f"cart parameter vector must hold {len(PARAM_NAMES)} finite values")
        return np.ascontiguousarray(params, dtype=np.float64)
    if hasattr(params, "as_array"):
        return np.ascontiguousarray(params.as_array(PARAM_NAMES), dtype=np.float64)
    missing = [n for n in PARAM_NAMES if n not in params]
    if missing:
        raise ValueError(f"cart parameters missing: {missing}")
    p = np.array([float(params[n]) for n in PARAM_NAMES], dtype=np.float64)
    if not np.all(np.isfinite(p)):
        bad = [n for n, v in zip(PARAM_NAMES, p) if not np.isfinite(v)]
        raise ValueError(f"cart parameters not finite: {bad}")
    return p


def diffusion_coefficients(p: np.ndarray) -> np.ndarray:
    """The 7 diffusion coefficients in field order."""
    return np.array([p[i] for i in DIFFUSION_INDEX], dtype=np.float64)
