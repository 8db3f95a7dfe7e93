"""One short script per reproduced figure/table or comparison.

Each module ``studies/NAME.py`` defines ``run(out: Path, quick: bool) -> dict`` which writes ``out/NAME.json`` (via
:func:`immunocal.studies._common.write_json`) and PNG figures to ``out``; ``immunocal study NAME --out DIR [--quick]`` runs it.
"""
