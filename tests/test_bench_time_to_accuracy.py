"""benchmarks/bench_time_to_accuracy.py --smoke (issue #29): the budget search, the CPU-time race
stopped at a mark and resumed (checked iteration for iteration against an uninterrupted run), the
600-episode test at a mark, shipping those weights (they must reproduce the recorded test
accuracies), the table and the figure — on synthetic images, in seconds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_time_to_accuracy.py"


def _run(*args, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_runs_every_part_and_checks_itself(tmp_path):
    r = _run("--smoke", out=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "smoke OK" in r.stdout
    recs = json.loads((tmp_path / "results" / "time_to_accuracy.json").read_text())["records"]
    assert sorted(r["mark_minutes"] for r in recs) == [0.01, 0.02, 0.03]
    manifest = json.loads((tmp_path / "weights" / "MANIFEST.json").read_text())
    entry = manifest["protonet-omniglot-5w1s-budget0.02"]
    assert entry["cpu_minutes"] >= 0.0198 and entry["wall_minutes"] > 0 and "--race protonet" in entry["command"]
    assert (tmp_path / "figure.png").exists() and "time-to-accuracy:start" in (tmp_path / "README.md").read_text()


def test_smoke_fails_when_a_check_fails(tmp_path):
    """The smoke is not a test that cannot fail: a results folder holding a stray record (a mark the
    smoke never trains to) stops it."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "time_to_accuracy.json").write_text(json.dumps({"records": [
        {"learner": "protonet", "mark_minutes": 0.05, "iteration": 10 ** 9, "cpu_seconds": 0.0,
         "wall_seconds": 0.0, "val_accuracy": 150.0, "val_ci95": 0.0}]}))
    r = _run("--smoke", out=tmp_path)
    assert r.returncode != 0 and "smoke OK" not in r.stdout
