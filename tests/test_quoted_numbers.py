"""Every number the prose quotes is one the notebook shows, a recorded one, or the paper's (issue #25).

In the Markdown cells of each notebook (Solution blocks aside), a *quoted number* is a decimal (``0.523``,
``98.46``) or a percentage (``45.7%``, ``80%``) — results, not the ``5``-way or the eq. ``2`` of the text.
Each must be

* **shown**: in an output of the same notebook, as written or rounded from it (``97%`` from ``97.3%``,
  ``10.3`` from ``10.31``), or a constant of its code as written (a step of ``0.01``);
* **recorded**: in ``RESULTS.md``, in a cell that names ``RESULTS.md`` (the shipped runs' logs);
* **the paper's**: in ``docs/references.md``, in a cell that says whose it is (``paper`` or ``et al.``).

Not quoted numbers: formulas (``$...$``: a derivation the reader can redo), inline code, link targets,
arXiv identifiers and the 95% of a confidence interval.
"""
import re
from pathlib import Path
from typing import Iterable, List, Set

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
QUOTED = re.compile(r"(?<![\w.\-/])(\d[\d,]*\.\d+|\d[\d,]*(?=\s?%))(?!\w|\.\d)")
ANY_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|\]\([^)]*\)|arXiv:\s*\d+\.\d+|https?://\S+"
                       r"|95\s?% (?:confidence|CI)", re.S)   # (the 95% of a confidence interval: a level, not a result)


def _text(x) -> str:
    return x if isinstance(x, str) else "".join(x)


def _numbers(text: str) -> Set[str]:
    return {m.group(0).replace(",", "") for m in ANY_NUMBER.finditer(text)}


def shown(nb, code: bool = True) -> Set[str]:
    """Every number in the notebook's outputs (and, with ``code``, in its code cells)."""
    parts = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        if code:
            parts.append(c.source)
        for o in c.get("outputs", []):
            if "text" in o:
                parts.append(_text(o["text"]))
            parts += [_text(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return _numbers("\n".join(parts))


def _rounds_to(quoted: str, pool: Iterable[str]) -> bool:
    digits = len(quoted.split(".")[1]) if "." in quoted else 0
    q = float(quoted)
    for n in pool:
        try:
            v = float(n)
        except ValueError:
            continue
        if abs(v - q) <= 0.5 * 10 ** -digits + 1e-9 and v != 0:
            return True
    return False


def unsupported(nb, results: Set[str], papers: Set[str]) -> List[str]:
    """The quoted numbers of ``nb``'s Markdown cells that are neither shown, recorded nor the paper's."""
    pool, printed = shown(nb), shown(nb, code=False)   # a constant of the code as written; a result rounded or not
    missing = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "markdown" or "solution" in c.metadata.get("tags", []):
            continue
        prose = NOT_PROSE.sub(" ", c.source)
        for m in QUOTED.finditer(prose):
            n = m.group(1).replace(",", "")
            if n in pool or _rounds_to(n, printed):
                continue
            if "RESULTS.md" in c.source and n in results:
                continue
            if re.search(r"paper|et al\.", c.source) and n in papers:
                continue
            missing.append(f"cell {i}: {n} in “…{prose[max(0, m.start() - 60): m.end() + 15].strip()}…”"
                           .replace("\n", " "))
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_quoted_number_is_shown_recorded_or_the_papers(path):
    results = _numbers((ROOT / "RESULTS.md").read_text())
    papers = _numbers((ROOT / "docs" / "references.md").read_text())
    missing = unsupported(nbformat.read(str(path), as_version=4), results, papers)
    assert not missing, f"{path.name}: numbers the prose quotes that no output shows:\n" + "\n".join(missing)


def test_the_check_finds_an_unsupported_number():
    """Not vacuous: a number the outputs do not show is found; one they show (or round to) is not."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print(acc)", outputs=[nbformat.v4.new_output("stream", text="accuracy 97.34%\n")]),
        nbformat.v4.new_markdown_cell("It reaches 97.3% (about 97%), and $e/(e+4) \\approx 0.40$; `lr=0.5`."),
        nbformat.v4.new_markdown_cell("Step 3 already raises it to 0.242."),
        nbformat.v4.new_markdown_cell("The paper reports 98.1% (Vinyals et al.)."),
    ])
    missing = unsupported(nb, results=set(), papers={"98.1"})
    assert len(missing) == 1 and "0.242" in missing[0], missing
    assert unsupported(nb, results=set(), papers=set())[-1].startswith("cell 3: 98.1")
