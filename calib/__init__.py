"""Calibration layer: designs, campaigns, surrogates, likelihoods, PyMC models, ML baseline, diagnostics, CLI."""

__version__ = "0.1.0"
