"""Data parallelism across processes (metalib.distributed): two gloo processes launched by torchrun
train the same model as one process on the same seed — the meta-gradient and the weights after 3
steps equal the single-process run's in float64 — for MAML (second and first order), Reptile and
ProtoNet; the few-shot trainer does the same under torchrun with rank 0 alone writing; a worker
that crashes fails the run at once with a clear message (no hang)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import _dist_worker as worker
from metalib.distributed import DistributedStep, shard_range

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def torchrun(mode, out, timeout=240, nproc=2):
    env = dict(os.environ, OMP_NUM_THREADS="1", DIST_TIMEOUT="60", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(HERE / "_dist_worker.py"), mode, str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - start


def rel(a, b):
    num = sum(float(((a[k] - b[k]) ** 2).sum()) for k in b) ** 0.5
    den = sum(float((b[k] ** 2).sum()) for k in b) ** 0.5
    return num / den


@pytest.fixture(scope="module")
def two_process_steps(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "steps.pt"
    proc, _ = torchrun("steps", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("case", worker.CASES)
def test_two_processes_train_the_same_model_as_one(case, two_process_steps, one_thread):
    grad1, weights1, loss1 = worker.train(case)  # one process, the whole meta-batch
    grad2, weights2, loss2 = two_process_steps[case]
    assert rel(grad2, grad1) < 1e-12, "first meta-gradient"
    assert rel(weights2, weights1) < 1e-12, "weights after 3 steps"
    torch.testing.assert_close(torch.tensor(loss2), torch.tensor(loss1), rtol=1e-12, atol=0)
    # and the run moved: the comparison can fail
    start = {k: v for k, v in worker.build(case).state_dict().items()}
    assert rel(weights1, start) > 1e-4


@pytest.mark.slow
def test_torchrun_few_shot_trainer_equals_one_process_and_rank0_alone_writes(tmp_path, one_thread):
    out = tmp_path / "trainer.pt"
    proc, _ = torchrun("trainer", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = torch.load(out)
    assert got["rank"] == 0 and got["world"] == 2
    ref = worker.fit_trainer(None)  # one process, no run folder
    for k, v in ref.model.state_dict().items():
        if k.startswith("features.") and k.endswith(".0.bias"):
            continue  # zero gradient in exact arithmetic (bias before BatchNorm): Adam steps on rounding noise
        torch.testing.assert_close(got["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(torch.tensor(got["loss"]), torch.tensor(ref.history.loss), rtol=1e-5, atol=1e-6)
    assert [v[0] for v in got["val"]] == [2, 4]  # rank 0 validated
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt"]


@pytest.mark.slow
def test_a_crashing_worker_fails_the_run_with_a_clear_message(tmp_path):
    proc, seconds = torchrun("crash", tmp_path / "crash.pt", timeout=180)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert seconds < 120, f"the run took {seconds:.0f} s to fail: it waited instead of failing"
    assert "injected crash on rank 1 at iteration 2" in text
    assert "all-reduce of the meta-gradient failed" in text and "Another process probably crashed" in text
    assert not (tmp_path / "crash.pt").exists()
    # rank 0 (whose peer died) says so in one line (issue 24): it printed two chained tracebacks, which torch
    # prefixes with '[rank0]:' (rank 1's own traceback, '[rank1]:', is the crash itself and stays)
    assert not [line for line in text.splitlines() if line.startswith("[rank0]:")], text[-3000:]
    assert [line.startswith("error: ") for line in text.splitlines()
            if "process 0 of 2: the all-reduce of the meta-gradient failed" in line] == [True], text[-3000:]


def test_a_failed_collective_is_one_error_without_a_chained_traceback():
    """The backend's error is summarised in the line; it stays reachable as ``__context__`` but is not printed
    as a second traceback ('The above exception was the direct cause ...')."""
    import traceback

    from metalib import distributed
    with pytest.raises(distributed.DistributedError, match="all-reduce of the test tensor failed") as err:
        distributed._all_reduce(torch.zeros(2), "the test tensor")  # no process group: the collective fails
    assert err.value.__cause__ is None and err.value.__suppress_context__ and err.value.__context__ is not None
    printed = "".join(traceback.format_exception(err.value))
    assert printed.count("Traceback") == 1 and "direct cause" not in printed and "During handling" not in printed


def test_train_fewshot_reports_a_dead_peer_in_one_line(train_fewshot_cli, monkeypatch, capsys):
    from metalib import distributed

    def lost_peer(*args, **kwargs):
        raise distributed.DistributedError("process 0 of 2: the all-reduce of the meta-gradient failed (RuntimeError: "
                                           "Connection closed by peer). Another process probably crashed")

    monkeypatch.setattr(train_fewshot_cli, "run", lost_peer)
    assert train_fewshot_cli.main(["--algorithm", "protonet", "--dataset", "omniglot"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {err.strip()[len('error: '):]}"] and "Another process" in err


def test_shards_cover_the_meta_batch_once_and_are_balanced():
    for n, w in [(32, 2), (5, 2), (7, 3), (4, 4)]:
        parts = [shard_range(n, r, w) for r in range(w)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        sizes = [b - a for a, b in parts]
        assert max(sizes) - min(sizes) <= 1


def test_a_meta_batch_smaller_than_the_world_is_refused_with_one_line():
    with pytest.raises(ValueError, match="cannot be shared by 2 processes: use --meta-batch >= 2"):
        shard_range(1, 0, 2)


def test_one_process_step_equals_train_step(one_thread):
    """Without a process group the distributed step is the learner's own train_step."""
    a, b = worker.train("maml"), worker.train("maml", lambda learner: DistributedStep(learner, worker.META_BATCH))
    assert rel(b[0], a[0]) == 0 and rel(b[1], a[1]) == 0
