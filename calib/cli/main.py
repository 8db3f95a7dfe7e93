"""Entry point of the ``immunocal`` console script.

Each module in :data:`COMMAND_MODULES` defines ``register(commands)``, where ``commands`` is a
:class:`Commands` helper that hands out top-level sub-parsers (``commands.add("params")``) and per-model sub-parsers
of the shared verbs ``simulate``, ``bench``, ``tcp`` (``commands.model_verb("simulate").add_parser("cart")``).
Handlers are stored with ``set_defaults(func=...)`` and import heavy modules lazily so ``immunocal --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from immunocal.priors.errors import ParameterError

COMMAND_MODULES = [
    "immunocal.calib.cli.params",
    "immunocal.calib.cli.study",
    "immunocal.calib.cli.quickstart",
    "immunocal.calib.cli.cart",
    "immunocal.calib.cli.calibration",
    "immunocal.calib.cli.rit",
    "immunocal.calib.cli.dln",
    "immunocal.calib.cli.cohort",
]

_VERB_HELP = {
    "simulate": "run a forward model and write its trajectories",
    "bench": "benchmark a forward model or the calibration layer (prints JSON)",
    "tcp": "population tumour-control probability",
}


class Commands:
    def __init__(self, subparsers):
        self._sub = subparsers
        self._verbs: dict[str, argparse._SubParsersAction] = {}

    def add(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._sub.add_parser(name, **kwargs)

    def model_verb(self, verb: str):
        """Sub-parsers of a verb shared by several models (``immunocal simulate cart|rit|dln``)."""
        if verb not in self._verbs:
            p = self._sub.add_parser(verb, help=_VERB_HELP.get(verb, verb), description=_VERB_HELP.get(verb))
            self._verbs[verb] = p.add_subparsers(dest="model", required=True, metavar="MODEL")
        return self._verbs[verb]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="immunocal",
        description="Uncertainty-aware Bayesian calibration of mechanistic tumour-immune therapy models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = Commands(sub)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:  # an invalid option value (immunocal.calib.cli.types) is printed by argparse: its status is returned like any error
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        result = args.func(args)
    except (ParameterError, ValueError, FileNotFoundError) as exc:
        print(f"immunocal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("immunocal: interrupted; finished work is kept on disk", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
