"""Numba forward models (no PyMC import): ``cart`` (seed 001), ``rit`` (seed 002), ``dln`` (seed 003)."""
