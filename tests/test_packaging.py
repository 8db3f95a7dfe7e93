"""A clean install namespace (issue "Hardening and ecosystem fit", deliverable 3): the repository's folders install as
``immunocal.calib``, ``immunocal.forward``, ``immunocal.priors``, ``immunocal.studies`` — never as top-level packages
that would shadow PyPI's unrelated ``calib``, ``forward`` and ``priors`` — and no code imports them by the bare name."""

import ast
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from immunocal.calib.forward_api import check_trusted, load_forward_model

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("calib", "forward", "priors", "studies")


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_the_namespace():
    st = _setuptools()
    assert st["package-dir"] == {"immunocal": "immunocal", **{f"immunocal.{f}": f for f in FOLDERS}}
    on_disk = {"immunocal"} | {
        "immunocal." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")}
    assert set(st["packages"]) == on_disk
    assert all(name == "immunocal" or name.startswith("immunocal.") for name in st["packages"])
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["immunocal"].startswith(
        "immunocal.calib.")


def test_installed_subpackages_are_the_repository_folders():
    for folder in FOLDERS:
        spec = importlib.util.find_spec(f"immunocal.{folder}")
        assert spec is not None and Path(spec.origin).resolve() == (ROOT / folder / "__init__.py").resolve()


def _bare_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in FOLDERS]
    return found


def test_no_code_imports_a_toolkit_folder_by_its_bare_name():
    files = [p for folder in (*FOLDERS, "tests", "immunocal") for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 100
    assert [hit for p in files for hit in _bare_imports(p)] == []


def test_a_bare_toolkit_spec_in_a_config_is_a_named_error():
    with pytest.raises(ValueError, match="write 'immunocal.forward.rit.simulator:RitSimulator'"):
        check_trusted("forward.rit.simulator:RitSimulator")
    with pytest.raises(ValueError, match="installed under the immunocal namespace"):
        load_forward_model("calib.toy:LogisticModel")
    check_trusted("immunocal.forward.rit.simulator:RitSimulator")  # the toolkit's own: allowed


@pytest.mark.slow
def test_the_wheel_holds_only_the_immunocal_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("immunocal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"immunocal"}
    for data in ("immunocal/priors/data/rit.toml", "immunocal/calib/datasets/morisada2018/moc1.toml",
                 "immunocal/calib/datasets/ct041_virtual/measurements.csv"):
        assert data in names
