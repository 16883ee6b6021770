"""Packaging: the wheel carries every package and data file, and the installed data is found from anywhere."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from audiotag_data import DATA_DIR_ENV, data_dir
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _source_dir(package: str) -> Path:
    """The repository folder a package name is installed from (package-dir mappings applied)."""
    top, *rest = package.split(".")
    return ROOT / SETUPTOOLS.get("package-dir", {}).get(top, top) / Path(*rest)


def test_every_code_package_is_listed() -> None:
    listed = set(SETUPTOOLS["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("vggish", "classifier", "pipeline", "safeio")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert all(_source_dir(package).is_dir() for package in listed)


def test_every_data_file_is_package_data() -> None:
    data = ROOT / "data"
    globs = SETUPTOOLS["package-data"]
    unmatched = []
    for path in data.rglob("*"):
        if not path.is_file() or path.suffix in {".py", ".pyc"}:
            continue
        package = ".".join(("audiotag_data", *path.parent.relative_to(data).parts))
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in globs.get(package, [])):
            unmatched.append(str(path.relative_to(ROOT)))
    assert not unmatched, f"data files the wheel would leave out: {unmatched}"


def test_data_dir_is_the_installed_package_unless_overridden(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert (data_dir() / "vggish_pca_params.npz").is_file()
    assert (data_dir() / "heads" / "audioset.npz").is_file()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert data_dir() == tmp_path


def test_version_comes_from_pyproject(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"audiotag {PYPROJECT['project']['version']}"


@pytest.mark.slow
def test_the_wheel_carries_its_data_and_finds_it_outside_the_clone(tmp_path: Path) -> None:
    """Build the wheel, unpack it into a folder of its own and use it from another folder."""
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("audiotag-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data_file in ("class_labels_indices.csv", "ontology.json", "vggish_pca_params.npz",
                      "heads/audioset.npz", "heads/MODEL_CARD.md"):
        assert f"audiotag_data/{data_file}" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "research/", "docs/")) for name in names)

    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = (
        "import json, audiotag_data, vggish.postprocess as p;"
        "from classifier.labels import load_class_labels;"
        "from classifier.pretrained import available_heads;"
        "print(json.dumps([str(audiotag_data.data_dir()), len(load_class_labels()), available_heads(),"
        " p.Postprocessor().means.shape[0], p.__file__]))"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found_dir, classes, heads, pca_size, module_file = json.loads(result.stdout)
    assert Path(found_dir) == site / "audiotag_data" and Path(module_file).is_relative_to(site)
    assert (classes, heads, pca_size) == (527, ["audioset"], 128)
