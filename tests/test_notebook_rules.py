"""The rule that makes the notebooks print the same on every CPU (docs/notebooks.md), checked on the stored
notebooks and their sources — no kernel is started here.

* a cell that trains a model live (``fit_live``, ``lab.train``, ``train_live``) prints nothing that nbval
  compares: it is marked ``# NBVAL_IGNORE_OUTPUT``;
* every cell marked so because of a live computation ("the next cell checks ...") is followed by a
  compared cell that prints its property, and the stored property is ``True`` (never ``False``);
* no stored, compared output prints ``False`` for a check;
* the sanitizer masks times, addresses, rates and cache paths only — never an accuracy or a loss;
* ``scripts/notebooks.py generic`` covers the notebooks that compute live, under both generic-kernel switches.
"""
import configparser
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebooks as nbtool  # noqa: E402  (scripts/notebooks.py)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TRAINS_LIVE = re.compile(r"\b(fit_live|train_live)\(|\blab\.train\(")
IGNORED = "# NBVAL_IGNORE_OUTPUT"


def code_cells(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell) -> str:
    return "".join(cell["source"])


def text_of(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if "text" in o:
            out.append("".join(o["text"]))
        elif "data" in o and "text/plain" in o["data"] and "image/png" not in o["data"]:
            out.append("".join(o["data"]["text/plain"]))
    return "".join(out)


def ignored(cell) -> bool:
    return source(cell).lstrip().startswith(IGNORED) or "nbval-ignore-output" in cell.get("metadata", {}).get("tags", [])


def test_the_notebooks_are_there():
    assert len(NOTEBOOKS) >= 12, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_cell_that_trains_live_is_not_compared(path):
    bad = [source(c).splitlines()[0] for c in code_cells(path) if TRAINS_LIVE.search(source(c))
           and "if FULL" not in source(c) and not ignored(c) and c.get("outputs")]
    assert not bad, f"{path.name}: cells that train live and print compared output (docs/notebooks.md, kind 4): {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_live_cell_is_followed_by_its_property(path):
    cells = code_cells(path)
    for i, c in enumerate(cells):
        if ignored(c) and "the next cell checks" in re.sub(r"\s*\n#\s*", " ", source(c)):   # comment lines joined
            assert i + 1 < len(cells), f"{path.name}: the last cell promises a check after it"
            nxt = cells[i + 1]
            assert not ignored(nxt), f"{path.name}: the check after {source(c).splitlines()[2]!r} is not compared"
            out = text_of(nxt)
            assert "True" in out and "False" not in out, (
                f"{path.name}: the stored property after a live cell must hold (True) — got {out[:300]!r}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_compared_output_reports_a_failed_check(path):
    bad = [text_of(c)[:200] for c in code_cells(path) if not ignored(c) and re.search(r"[:=] False\b", text_of(c))]
    assert not bad, f"{path.name}: a stored output reports a failed check: {bad}"


def test_the_sanitizer_masks_no_number_the_prose_depends_on():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "tests" / "nbval_sanitize.cfg", encoding="utf-8")
    patterns = [re.compile(cfg[s]["regex"]) for s in cfg.sections()]
    assert patterns, "tests/nbval_sanitize.cfg holds no pattern"
    for text in ("77.0% ± 3.6%", "0.53", "loss 1.298", "1.886 [286]", "agree to 4.4e-16", "59.2 ± 3.2 | 48.0 ± 2.5"):
        hidden = [p.pattern for p in patterns if p.search(text)]
        assert not hidden, f"the sanitizer would hide {text!r} (patterns {hidden})"
    # and it still masks what does vary: a time
    assert any(p.search("in 15.6 s") for p in patterns)


def test_the_generic_pass_covers_the_live_notebooks():
    live = {s.stem[:2] for s in nbtool.pairs() if nbtool.computes_live(s)}
    # these train, adapt or evaluate a model at run time; a regression in LIVE_CALLS would drop them
    assert {"01", "02", "03", "05", "06", "07", "09", "10", "11"} <= live, sorted(live)
    assert nbtool.GENERIC_KERNELS == {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def test_computes_live_tells_a_live_source_from_a_static_one(tmp_path):
    static = tmp_path / "98_static.py"
    static.write_text("# %% [markdown]\n# # Title\n\n# %%\nprint(1 + 1)\n", encoding="utf-8")
    live = tmp_path / "99_live.py"
    live.write_text("# %%\nresult = fewshot.evaluate(learner, test, 5, 1, 15, episodes=10)\n", encoding="utf-8")
    assert not nbtool.computes_live(static)
    assert nbtool.computes_live(live)
