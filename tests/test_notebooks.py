"""Every notebook in notebooks/ runs top to bottom (a few epochs, in a temporary folder)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if ".ipynb_checkpoints" not in p.parts}


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    """The environment the kernel inherits: this venv's python, the repo importable, fast mode."""
    # the kernelspec pip installs with ipykernel runs "python": make it this interpreter
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("ZOO_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no path-migration warning from jupyter_core
    if "python3" not in kernelspec.KernelSpecManager().find_kernel_specs():
        # ipykernel's pip install puts the spec in <sys.prefix>/share/jupyter/kernels: look there
        shared = str(Path(sys.prefix) / "share" / "jupyter")
        monkeypatch.setenv(
            "JUPYTER_PATH", os.pathsep.join(filter(None, [shared, os.environ.get("JUPYTER_PATH")]))
        )
    assert "python3" in kernelspec.KernelSpecManager().find_kernel_specs(), (
        "no python3 kernelspec: install the dev extras (ipykernel) into this environment"
    )
    return tmp_path


def test_notebooks_are_found():
    assert any(p.name == "regression_and_mdn.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env):
    before = _files(ROOT / "notebooks")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(kernel_env)}},  # the kernel's working directory
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]  # fmt: skip
    assert not errors
    assert _files(ROOT / "notebooks") == before, "a notebook wrote files beside itself"
