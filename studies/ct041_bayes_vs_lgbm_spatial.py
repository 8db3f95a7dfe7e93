"""The headline comparison on the SPATIAL virtual cohort: Bayesian personalisation through the PDE emulator vs the
seed-000 LightGBM mapping, on the same truth, folds and repeats.

The cohort is the N = 37, seed-1 cohort of ``ct041_bayes_vs_lgbm`` simulated by the 2-D reaction–diffusion–chemotaxis
model (:meth:`immunocal.calib.cohort.CohortConfig.spatial`; its tables are the bundled data set
``calib/datasets/ct041_virtual_spatial``). Everything else is that study's :func:`~immunocal.studies.ct041_bayes_vs_lgbm.compare`
— folds, features, population fit, per-patient posteriors, scores, SBC, identifiability, ORR/DCR and seed 000's
θ_ref protocol — with the data set's own config (``personalise.toml``: one PCA-GP of the PDE per dose level, its
design and refinement rounds). The PDE runs of the cohort and of the emulators' designs are campaigns under
``OUT/ct041_bayes_vs_lgbm_spatial`` (a killed run resumes them). ``--quick``: one repeat, 60 design runs, no
refinement, short chains (a smoke test only).
"""

from __future__ import annotations

from pathlib import Path

NAME = "ct041_bayes_vs_lgbm_spatial"


def run(out: Path, quick: bool = False, scheduler=None, processes: int = 1) -> dict:
    from immunocal.studies.ct041_bayes_vs_lgbm import compare

    return compare(Path(out), NAME, n_patients=37, repeats=1 if quick else 10, quick=quick, scheduler=scheduler,
                   processes=processes, cohort="spatial")
