"""The READMEs' tables say what the notebooks hold (issue #25): the notebook list, the exercises, the widgets
and the measured CPU times, compared with the notebook sources in course/ (no kernel is started)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "course").glob("[0-9][0-9]_*.py"))
README = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")


def number(path: Path) -> str:
    return path.stem[:2]


def table_rows(text: str, header_start: str):
    """The rows (lists of cell texts) of the Markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_the_notebook_table_lists_every_notebook_once_in_order():
    rows = table_rows(README, "| # | notebook |")
    assert [r[0] for r in rows] == [number(s) for s in SOURCES]
    for r, s in zip(rows, SOURCES):
        assert f"[`{s.stem}`]({s.stem}.ipynb)" in r[1], r[1]
        assert (ROOT / "notebooks" / f"{s.stem}.ipynb").exists()


def test_the_exercise_table_lists_every_exercise():
    stubs = set()
    for s in SOURCES:
        text = s.read_text(encoding="utf-8")
        for m in re.finditer(r"^def (\w+)\([^)]*\):\n\s+# YOUR CODE HERE", text, re.M):
            check = re.search(rf"^(check_\w+)\({m.group(1)}\)", text, re.M)
            assert check, f"{s.name}: the exercise {m.group(1)} is not followed by its check"
            stubs.add((number(s), m.group(1), check.group(1)))
    rows = {(r[0], re.match(r"`(\w+)\(", r[1]).group(1), r[2].strip("`"))
            for r in table_rows(README, "| notebook | exercise | check |")}
    assert stubs, "no exercise stub found in course/"
    assert rows == stubs, f"missing from the README: {sorted(stubs - rows)}; not in the notebooks: {sorted(rows - stubs)}"


def test_the_widget_list_names_every_notebook_with_a_widget():
    with_widget = {number(s) for s in SOURCES if re.search(r"^\w+\.ui\s*$", s.read_text(encoding="utf-8"), re.M)}
    section = README[README.index("### Widgets"):README.index("## Tests")]
    listed = set()
    for m in re.finditer(r"^- \*\*[^*]+\*\* \(([\d, ]+)\)", section, re.M):
        listed |= {n.strip() for n in m.group(1).split(",")}
    assert with_widget, "no notebook source shows a widget (.ui)"
    assert listed == with_widget, f"not listed: {sorted(with_widget - listed)}; listed without one: {sorted(listed - with_widget)}"


def test_the_cpu_times_are_the_banners():
    rows = {r[0]: r[-1] for r in table_rows(README, "| # | notebook |")}
    for s in SOURCES:
        banner = re.search(r"measured (\d+) s of CPU time", s.read_text(encoding="utf-8"))
        assert banner, f"{s.name}: its banner states no measured CPU time"
        assert rows[number(s)].startswith(f"{banner.group(1)} s"), (
            f"{s.name}: the banner says {banner.group(1)} s, notebooks/README.md says {rows[number(s)]!r}")
    learners = re.search(r"with the (\d+) few-shot learners", (ROOT / "course" / "08_compare_and_next.py").read_text())
    assert learners and f"({learners.group(1)} shipped few-shot learners)" in rows["08"]


def test_no_recorded_command_names_a_machine_folder():
    """Commands a reader is told to run (RESULTS.md, READMEs, docs, the manifest's recorded commands) name no
    folder of the machine they ran on: placeholders (RUN_DIR, LOCK_FILE) or relative paths instead."""
    texts = [ROOT / "RESULTS.md", ROOT / "README.md", ROOT / "benchmarks" / "README.md", ROOT / "notebooks" / "README.md",
             ROOT / "metalib" / "weights" / "MANIFEST.json", *sorted((ROOT / "docs").glob("*.md"))]
    bad = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in texts
           for m in re.finditer(r"(?<![\w.])/(tmp|work|root|home)/[\w./-]+", p.read_text(encoding="utf-8"))]
    assert not bad, bad
