"""Tiny helpers to write the notebooks from Python (the .ipynb files are generated, then executed).

    python notebooks/_build/build.py            # regenerate every notebook's cells (outputs cleared)
    jupyter nbconvert --to notebook --execute --inplace notebooks/0*.ipynb   # fill in the outputs
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(src: str):
    return new_code_cell(textwrap.dedent(src).strip("\n"))


def write(path: Path, cells) -> None:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(path).stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
