"""Errors raised by the parameter registry.

Every error names what is wrong (parameter, value, allowed range, file and line) so that a user can fix the input
without reading the code. Nothing in the registry is ever silently clipped.
"""

from __future__ import annotations


class ParameterError(ValueError):
    """A parameter name, value or parameter file is invalid."""


class UnknownParameterError(ParameterError, KeyError):
    """A parameter name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ParameterRangeError(ParameterError):
    """A value outside the admissible range, or a non-finite value."""


class ParameterFileError(ParameterError):
    """A malformed parameter file (TOML/JSON)."""
