"""Notebook 08's equal-budget race view: ``compare.race_results`` reads the race's record (JSON, no
code), sorts each learner's points by CPU time and keeps the test numbers; ``plots.race_curves`` draws
one line per learner, a ◇ per test number and the paper's ★ — and the committed record is readable."""
import json

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metalib.course import compare, plots  # noqa: E402


def record(learner, seconds, val, test=None):
    r = {"learner": learner, "cpu_seconds": seconds, "iteration": int(seconds * 10), "mark_minutes": seconds / 60,
         "val_accuracy": val, "val_ci95": 0.5}
    if test is not None:
        r["test"] = {"mean": test, "ci95": 0.3}
    return r


def test_race_results_sorted_with_tests(tmp_path):
    path = tmp_path / "race.json"
    path.write_text(json.dumps({"records": [record("b", 600, 91.0, 90.5), record("a", 300, 80.0),
                                            record("b", 120, 85.0), record("a", 60, 70.0)]}))
    races = compare.race_results(path)
    assert [p.cpu_minutes for p in races["a"]] == [1.0, 5.0]
    assert [p.val_accuracy for p in races["b"]] == [85.0, 91.0]
    assert races["b"][-1].test_accuracy == 90.5 and races["b"][0].test_accuracy is None


def test_missing_record_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench_time_to_accuracy.py") as err:
        compare.race_results(tmp_path / "none.json")
    assert "\n" not in str(err.value)


def test_curves_lines_tests_and_paper_stars(tmp_path):
    path = tmp_path / "race.json"
    path.write_text(json.dumps({"records": [record("a", 60, 70.0), record("a", 300, 80.0, 79.0),
                                            record("b", 60, 60.0), record("b", 300, 75.0)]}))
    races = compare.race_results(path)
    fig, ax = plt.subplots()
    plots.race_curves(ax, races, {"a": compare.PaperNumber("98.8", "", "", "P"), "b": None})
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    assert [list(ln.get_ydata()) for ln in lines if ln.get_marker() == "o"] == [[70.0, 80.0], [60.0, 75.0]]
    assert [list(ln.get_ydata()) for ln in lines if ln.get_marker() == "D"] == [[79.0]]
    stars = [ln for ln in lines if ln.get_marker() == "*"]
    assert [list(ln.get_ydata()) for ln in stars] == [[98.8]] and stars[0].get_xdata()[0] > 5.0  # beyond the last mark
    plt.close(fig)


def test_committed_record_is_readable():
    races = compare.race_results()
    assert "matching" in races and all(p.cpu_minutes > 0 for pts in races.values() for p in pts)
    assert compare.race_paper_number("matching").value == "98.1"


def test_the_race_marks_each_learner_with_its_own_rows_paper_number():
    """MAML's race row is marked with MAML's number, not looked up through the first shipped row of
    algorithm "maml" — first-order MAML ("FOMAML", no paper number), which used to leave MAML unmarked."""
    assert compare.race_paper_number("maml").value == "98.7 ± 0.4"
    assert compare.race_paper_number("metasgd").value == "99.53 ± 0.26"
    assert compare.race_paper_number("r2d2") is None  # not verified: no number rather than a wrong one
