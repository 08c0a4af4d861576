"""Binder and Colab launch files (binder/), checked as far as they can be offline.

Binder: the files parse, the environment they describe is the student requirements (requirements.txt),
with torch's CPU index, on a Python the project accepts. Colab: binder/colab.ipynb is a valid notebook
whose first cell installs what Colab lacks (metalib from the repository) and fetches Omniglot on Colab,
and does nothing (no install, no download) elsewhere. Not checked: a real Binder build or Colab session.
"""
from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _lines(path: Path) -> list:
    return [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines() if ln.split("#", 1)[0].strip()]


def test_binder_environment_is_the_student_requirements_with_cpu_torch():
    lines = _lines(BINDER / "requirements.txt")
    assert "-r ../requirements.txt" in lines  # pip resolves it relative to binder/requirements.txt
    assert (BINDER / ".." / "requirements.txt").resolve() == ROOT / "requirements.txt"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    # nothing else: the student requirements are the environment, not a copy that could drift
    assert set(lines) == {"-r ../requirements.txt", "--extra-index-url https://download.pytorch.org/whl/cpu"}


def test_binder_runtime_is_a_python_the_project_accepts():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(3)\.(\d+)", runtime)
    assert m, runtime
    need = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert (int(m[1]), int(m[2])) >= (int(need[1]), int(need[2]))


def test_binder_requirements_parse_with_pip():
    """pip's own parser reads the file (and the student file it includes)."""
    pytest.importorskip("pip")
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    names = {re.split(r"[<>=!~ ;\[]", r.requirement)[0].lower()
             for r in parse_requirements(str(BINDER / "requirements.txt"), session=PipSession())}
    student = {re.split(r"[<>=!~ ;\[]", r.requirement)[0].lower()
               for r in parse_requirements(str(ROOT / "requirements.txt"), session=PipSession())}
    assert names == student and "torch" in names


def _colab():
    nb = nbformat.read(BINDER / "colab.ipynb", as_version=4)
    nbformat.validate(nb)
    return nb


def test_colab_first_cell_installs_what_colab_lacks_and_fetches_the_data():
    first = _colab().cells[0]
    assert first.cell_type == "code"
    src = first.source
    assert '"google.colab" in sys.modules' in src
    assert re.search(r'"pip", "install", "-q", "-e", "/content/metalib"', src)  # metalib, with its requirements
    assert "git\", \"clone\"" in src and "enable_custom_widget_manager" in src
    assert 'fetch_if_missing("omniglot")' in src


def test_colab_cells_do_nothing_outside_colab(monkeypatch, capsys):
    """Run the notebook's code here: no clone, no pip, no download — one line says so."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    ns = {"get_ipython": lambda: types.SimpleNamespace(run_line_magic=lambda *a: calls.append(a))}
    for cell in _colab().cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, "colab.ipynb", "exec"), ns)
    assert calls == [] and ns["ON_COLAB"] is False
    assert "not on Colab: nothing to install" in capsys.readouterr().out


def test_colab_runs_a_notebook_that_exists():
    run = _colab().cells[-1].source
    name = re.search(r'NOTEBOOK = "([^"]+)"', run)[1]
    assert (ROOT / "notebooks" / f"{name}.ipynb").is_file()
