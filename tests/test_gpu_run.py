"""The prepared GPU run (scripts/gpu_run.sh) end to end in its --smoke mode on the CPU: every step
(bench, MAML, ProtoNet 5/20-way, Reptile, tests, shipping) runs, in under two minutes, and what it
ships loads back through metalib.pretrained with the accuracy it recorded."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from _data import require_omniglot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.data, pytest.mark.slow]
# a smoke run never ships under the real names, nor with notes that describe the full run (issue 24)
NAMES = ["smoke-maml-omniglot-5w1s", "smoke-protonet-omniglot-5w1s", "smoke-protonet-omniglot-20w1s",
         "smoke-reptile-omniglot-5w1s"]


def test_gpu_run_smoke_runs_every_step_and_ships_loadable_weights(tmp_path):
    require_omniglot()
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run.sh"), "--smoke"], env=env, capture_output=True,
                          text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    # the run's own clock (from its start to its last step); the wall time adds interpreter start-up
    assert results["elapsed_s"] < 120, f"--smoke took {results['elapsed_s']:.0f} s ({seconds:.0f} s wall)"
    # what comes back from the device machine: at most 8 files, no deeper than OUT/a/b
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 2 for p in files), files
    steps = results["steps"]
    assert set(steps) == {"bench", "maml", "protonet", "reptile"}
    for name, rec in steps.items():
        assert "error" not in rec and "skipped" not in rec, (name, rec.get("error") or rec.get("skipped"))
    rows = {r["impl"]: r for r in steps["bench"]["rows"] if r["workload"] == "W2-smoke"}
    assert {"loop", "textbook", "batched", "batched bf16 autocast"} <= set(rows), sorted(rows)
    assert "| workload |" in steps["bench"]["markdown"]
    assert rows["loop"]["rel_err"] == 0.0 and "median_ms" in rows["loop"]
    # reduced precision is kept only within the stated tolerance of float32's meta-gradient
    bf16 = rows["batched bf16 autocast"]
    assert (bf16["rel_err"] < 1e-3) != bool(bf16.get("refused")), bf16
    assert steps["maml"]["iterations"] >= 1 and steps["maml"]["time_to_accuracy"]
    manifest = json.loads((out / "weights" / "MANIFEST.json").read_text())
    assert sorted(manifest) == sorted(NAMES)

    from metalib import fewshot

    for name in NAMES:
        entry = manifest[name]
        assert entry["command"] == "bash scripts/gpu_run.sh --smoke" and entry["note"].startswith("SMOKE RUN")
        learner, config = fewshot.pretrained_learner(name, device="cpu", directory=out / "weights")
        assert config.n_way == entry["n_way"]
        again = fewshot.evaluate_pretrained(name, device="cpu", directory=out / "weights")
        assert abs(again.mean - entry["metrics"]["test_accuracy"]) < 1e-3, name  # the manifest rounds to 4 decimals
    assert manifest["smoke-protonet-omniglot-20w1s"]["n_way"] == 20
    assert (out / "log.txt").read_text().count("done in") == 1
