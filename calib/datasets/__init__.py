"""Bundled real data sets in the calibration core's table format (see :mod:`immunocal.calib.data`).

* ``dewan2009/`` — group means digitised from Dewan et al., Clin Cancer Res 2009;15:5379–88 (the data seed 002
  fits).
* ``morisada2018/`` — per-mouse tumour volumes, Morisada et al., OncoImmunology 2018;7(3):e1395996 (Fig. 6).
* ``conte2025/`` — CAR-T killing kinetics in vitro per well (xCELLigence Cell Index), Conte et al. 2025: tumour
  alone and IL13Rα2 CAR-T at effector:target 1:10, 1:25, 1:50 (three wells each).
* ``ct041_virtual/`` — a VIRTUAL CT041-like cohort (N = 37, :mod:`immunocal.calib.cohort`, seed 1): not patient data; the
  tables of :func:`immunocal.calib.cohort.write_tables` and the Bayesian personalisation config.
* ``ct041_virtual_spatial/`` — the same, simulated by the spatial PDE (:meth:`immunocal.calib.cohort.CohortConfig.spatial`).

Each folder holds ``measurements.csv``, ``conditions.csv`` and ``PROVENANCE.md``. The real ones are produced from the
raw files in ``shared/data/`` by :mod:`immunocal.calib.datasets.convert` with the assumptions in ``schedule_assumptions.toml``.
"""

from importlib import resources
from pathlib import Path

DATASETS = ("dewan2009", "morisada2018", "conte2025", "ct041_virtual", "ct041_virtual_spatial")


def dataset_dir(name: str) -> Path:
    """Folder of a bundled data set (``measurements.csv``, ``conditions.csv``, ``PROVENANCE.md``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set '{name}'; bundled: {list(DATASETS)}")
    return Path(str(resources.files("immunocal.calib.datasets") / name))
