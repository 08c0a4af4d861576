"""Lecture mode and the two versions of the notebooks (scripts/notebooks.py).

* every notebook carries Jupyter's slideshow metadata on every cell (RISE and ``nbconvert --to
  slides`` read it), its first cell opens a slide, and ``jupyter nbconvert --to slides`` turns it into
  reveal.js HTML with one section per slide;
* ``release`` builds, from the same executed notebooks, a student version without a single Solution
  block (no solution code anywhere in it) and an instructor version with every one of them, open;
  both are valid notebooks, in folders that hold the notebooks and their README and nothing else.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from metalib.course import exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebooks as nbs  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_cell_has_a_slide_type_and_the_first_opens_a_slide(path):
    nb = nbformat.read(str(path), as_version=4)
    types = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    missing = [i for i, t in enumerate(types) if t not in SLIDE_TYPES]
    assert not missing, f"cells {missing} have no slide type (python scripts/notebooks.py sync {path.stem[:2]})"
    assert types[0] == "slide"
    for cell, t in zip(nb.cells, types):
        if cell.cell_type == "markdown" and re.match(r"#{1,2} ", cell.source.lstrip()):
            assert t == "slide", f"a section heading that does not open a slide: {cell.source[:60]!r}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_nbconvert_turns_each_notebook_into_slides(path, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "slides", "--output-dir",
                           str(tmp_path), "--log-level", "WARN", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tmp_path / f"{path.stem}.slides.html").read_text()
    nb = nbformat.read(str(path), as_version=4)
    slides = sum(c.metadata.get("slideshow", {}).get("slide_type") == "slide" for c in nb.cells)
    assert "reveal" in html and html.count("<section") >= slides, (html.count("<section"), slides)


def test_default_slide_types():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    assert nbs.default_slide_type(md("# 05 · Title")) == "slide"
    assert nbs.default_slide_type(md("## 2 · A section\n\ntext")) == "slide"
    assert nbs.default_slide_type(md("### Exercise")) == "subslide"
    assert nbs.default_slide_type(md("Some text. ## not a heading")) == "-"
    assert nbs.default_slide_type(code("print(1)")) == "-"
    tagged = md("anything")
    tagged.metadata["tags"] = ["solution"]
    assert nbs.default_slide_type(tagged) == "fragment"
    assert nbs.default_slide_type(md("<details><summary><b>Solution</b> (click)</summary>\n...")) == "fragment"


def test_sync_gives_cells_without_one_their_default_and_keeps_the_others(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("text first"),
                                         nbformat.v4.new_markdown_cell("## A section"),
                                         nbformat.v4.new_code_cell("x = 1")])
    nb.cells[2].metadata["slideshow"] = {"slide_type": "subslide"}
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, str(path))
    assert nbs.add_slide_metadata(path) == 2
    types = [c.metadata["slideshow"]["slide_type"] for c in nbformat.read(str(path), as_version=4).cells]
    assert types == ["slide", "slide", "subslide"]
    assert nbs.add_slide_metadata(path) == 0


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    student, instructor = tmp_path_factory.mktemp("student"), tmp_path_factory.mktemp("instructor")
    built = [s for s in nbs.pairs() if nbs.notebook_of(s).exists()]   # (a source being written has none yet)
    counts = nbs.release(built, student=student, instructor=instructor)
    return student, instructor, counts


def _leaks(cells):
    """Registered solutions whose complete code stands in one of ``cells`` (code or Markdown)."""
    for e in exercises.REGISTRY.values():
        code = e.code().strip()
        for c in cells:
            if code in "\n".join(line[2:] if line.startswith("# ") else line for line in c.source.splitlines()) \
                    or code in c.source:
                yield e.name


def test_the_student_version_has_no_solution_and_the_instructor_version_all_of_them(released):
    student, instructor, counts = released
    assert sorted(p.name for p in student.iterdir()) == sorted([p.name for p in NOTEBOOKS] + ["README.md"])
    assert sorted(p.name for p in instructor.iterdir()) == sorted(p.name for p in student.iterdir())
    ours = {e.notebook for e in exercises.REGISTRY.values()}
    for path in NOTEBOOKS:
        original = nbformat.read(str(path), as_version=4)
        s = nbformat.read(str(student / path.name), as_version=4)
        i = nbformat.read(str(instructor / path.name), as_version=4)
        nbformat.validate(s)
        nbformat.validate(i)
        n = counts[path.stem]
        if path.stem in ours:
            assert n >= 1, f"{path.name} has no Solution block"
        assert not any(nbs.is_solution(c) for c in s.cells)
        assert len(s.cells) == len(original.cells) - n and len(i.cells) == len(original.cells)
        solutions = [c for c in i.cells if nbs.is_solution(c)]
        assert len(solutions) == n and all("<details open" in c.source for c in solutions)
        assert not list(_leaks(s.cells)), f"a solution in the student version of {path.name}"
        if path.stem in ours:
            assert not any("```python\n" in c.source for c in s.cells if c.cell_type == "markdown")
            assert set(_leaks(i.cells)) >= {e.name for e in exercises.REGISTRY.values() if e.notebook == path.stem}
        # everything else is the same notebook, outputs included, but for the import of solution() and its hint
        kept = [nbs.student_cell(nbformat.from_dict(dict(c))) for c in original.cells if not nbs.is_solution(c)]
        assert [c.source for c in s.cells] == [c.source for c in kept]
        assert [c.get("outputs") for c in s.cells] == [c.get("outputs") for c in kept]
        assert sum(a.source != b.source for a, b in zip(s.cells, (c for c in original.cells if not nbs.is_solution(c)))) \
            <= 1, f"{path.name}: the student version changes more than the import cell"


def _canonical(line: str) -> str:
    """A code line without comments and blanks, ``dim=-1`` and ``dim=1`` alike (2-D tensors)."""
    line = re.sub(r"\s+", "", line.split("#", 1)[0])
    return line.replace("dim=-1", "dim=1").replace("(dim=1)", "(1)").replace("dim=1", "1")


def distinctive_lines(exercise) -> list:
    """The lines of an exercise's reference solution that give it away (its statements of 20 characters or
    more, canonical: :func:`_canonical`), the ``def`` line aside."""
    return [c for c in map(_canonical, exercise.code().splitlines()[1:]) if len(c) >= 20]


def solution_lines_in(source: str, exercise) -> list:
    """The distinctive lines of ``exercise``'s solution that a cell's ``source`` holds: as a line of its own,
    or — for one of 30 characters or more, specific enough not to match ordinary code — anywhere in the
    cell's code with its lines joined (a solution re-wrapped onto fewer or more lines is still found)."""
    lines = {_canonical(line) for line in source.splitlines()}
    joined = "".join(_canonical(line) for line in source.splitlines())
    return [d for d in distinctive_lines(exercise) if d in lines or (len(d) >= 30 and d in joined)]


def test_the_student_version_holds_no_line_of_a_solution_and_no_solution_helper(released):
    """Grep the student build: no ``solution`` helper (imported, named in prose or in a stored hint), and
    no distinctive line of any exercise's reference solution anywhere in its notebook (so no worked answer
    just above the exercise either)."""
    student, _, _ = released
    found = []
    for path in sorted(student.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for i, cell in enumerate(nb.cells):
            texts = [cell.source] + [json.dumps(o) for o in cell.get("outputs", [])]
            for text in texts:
                if re.search(r"\bsolution\(|import .*\bsolution\b", text):
                    found.append(f"{path.name} cell {i}: names solution(): {text[:80]!r}")
            for e in exercises.REGISTRY.values():
                if e.notebook != path.stem:
                    continue
                for line in solution_lines_in(cell.source, e):
                    found.append(f"{path.name} cell {i}: a line of {e.name}'s solution: {line}")
    readme = (student / "README.md").read_text()
    if re.search(r"\bsolution\(|imports `solution`", readme):
        found.append("README.md names solution()")
    assert "<!-- instructor" not in readme
    assert not found, "\n".join(found)


def test_the_leak_test_finds_a_leak():
    """Not vacuous: the distinctive lines of 09's solution are found in the notebook's Solution block and
    in the section-2 cell as it was before it was reshaped."""
    e = exercises.get("matching_attention")
    assert len(distinctive_lines(e)) == 2
    old_cell = ("    cos = F.normalize(z_q, dim=1) @ F.normalize(z_s, dim=1).T          # [15, 25]\n"
                "    a = cos.softmax(dim=1)    # attention\n")
    assert {_canonical(line) for line in old_cell.splitlines()} & set(distinctive_lines(e))
    assert len(distinctive_lines(exercises.get("lrua_write"))) >= 4
    # and the worked steps that 02 and 03 showed above their exercises until issue #25 reordered them (03's
    # on one line, the solution's on two)
    old_02 = "    return {name: p - lr * g[name] for name, p in params.items()}\n"
    old_03 = "    return {name: t + eps * torch.stack([phi[name] - t for phi in phis]).mean(0) for name, t in theta.items()}\n"
    assert solution_lines_in(old_02, exercises.get("inner_step"))
    assert solution_lines_in(old_03, exercises.get("reptile_update"))
    assert not solution_lines_in("    sgd = {name: t - 0.01 * joint[name] for name, t in theta.items()}\n",
                                 exercises.get("reptile_update"))     # a short, common line alone is not a leak


def test_release_needs_a_folder():
    with pytest.raises(nbs.Error, match="--student DIR"):
        nbs.release(nbs.pairs(["00"]))


@pytest.mark.slow
def test_the_slides_load_nothing_from_the_network(tmp_path):
    """``slides`` writes decks whose scripts, styles and fonts all come from ``DIR/_assets`` (copied from
    installed packages): no ``http(s)://`` in any ``src`` or ``href``, no ``@import`` of a remote font; the
    browser test (tests/browser/test_slides_in_browser.py) opens them offline."""
    made = nbs.slides(nbs.pairs(["00"]), tmp_path)
    html = made[0].read_text()
    loads = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    remote = [u for u in loads if re.match(r"(?:https?:)?//", u)]
    assert not remote, remote
    assert "_assets/revealjs/dist/reveal.js" in loads and nbs.MATHJAX_URL in loads
    for u in loads:
        if u.startswith("_assets/"):
            assert (tmp_path / u).is_file(), u
    theme = re.search(r'href="(_assets/revealjs/dist/theme/[^"]+\.css)"', html).group(1)
    assert not re.search(r"@import\s+url\((?:https?:)?//", (tmp_path / theme).read_text())
    assert "width: 1280" in html and "height: 720" in html


def test_long_slides_continue_on_sub_slides():
    """``slides`` works on a copy in which a slide longer than the screen continues on a sub-slide, and a
    Markdown cell taller than a slide is cut between paragraphs; a Solution block stays whole and a fragment."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    para = "A sentence of prose that fills most of a line on a slide, as the notebooks' text does. " * 3
    long_md = "\n\n".join([para] * 14)
    solution = md("<details><summary><b>Solution</b></summary>\n\n" + "\n".join(["x = 1"] * 60) + "\n</details>")
    cells = [md("## A section"), code("\n".join(["y = 2"] * 12)), code("\n".join(["z = 3"] * 12)), md(long_md), solution]
    for c, t in zip(cells, ["slide", "-", "-", "-", "fragment"]):
        c.metadata["slideshow"] = {"slide_type": t}
    nb = nbformat.v4.new_notebook(cells=cells)
    moved = nbs.split_long_slides(nb)
    types = [c.metadata["slideshow"]["slide_type"] for c in nb.cells]
    assert moved >= 2 and len(nb.cells) > 5, types                        # the long Markdown cell was cut
    assert types[0] == "slide" and "subslide" in types[1:]
    assert nb.cells[-1] is solution and types[-1] == "fragment"           # kept whole, still a fragment
    assert "".join(c.source for c in nb.cells if c.cell_type == "markdown" and c is not solution
                   and c.source != "## A section").replace("\n", "") == long_md.replace("\n", "")
    assert all(nbs.cell_height_px(c) <= nbs.SLIDE_BUDGET_PX for c in nb.cells if c.cell_type == "markdown"
               and c is not solution)
