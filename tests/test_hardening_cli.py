"""Issue 24, the ugly ones outside the learners: the GPU script and the course's command lines give one
line (exit 2) for every mistake, and a smoke run never poses as the real thing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _error_line(text: str, needle: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- scripts/gpu_run
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_run_without_smoke_on_a_cuda_less_machine_refuses_in_one_line(tmp_path, capsys):
    gpu_run = _script("gpu_run")
    assert gpu_run.main(["--out", str(tmp_path / "out")]) == 2
    out = capsys.readouterr()
    _error_line(out.err, "no CUDA device")
    assert "--smoke" in out.err
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_run_sh_without_smoke_on_a_cuda_less_machine_refuses_in_one_line(tmp_path):
    # this interpreter first on PATH: gpu_run.sh runs `python3` (the device machine's) without --smoke
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, OUT=str(tmp_path / "out"), OMP_NUM_THREADS="1", PATH=path)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_run.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _error_line(proc.stdout + proc.stderr, "no CUDA device")
    assert not (tmp_path / "out" / "results.json").exists()


def test_gpu_run_out_on_an_unwritable_folder_is_one_line(tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/proc/gpu-run-out")  # not writable even as root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "out"
    gpu_run = _script("gpu_run")
    try:
        assert gpu_run.main(["--out", str(target), "--smoke"]) == 2
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o755)
    _error_line(capsys.readouterr().err, str(target))


def test_gpu_run_smoke_names_and_notes_are_not_the_real_ones():
    gpu_run = _script("gpu_run")
    real = ["maml-omniglot-5w1s", "protonet-omniglot-5w1s", "protonet-omniglot-20w1s", "reptile-omniglot-5w1s"]
    assert [gpu_run.ship_name(n, smoke=False) for n in real] == real
    smoke = [gpu_run.ship_name(n, smoke=True) for n in real]
    assert all(s.startswith("smoke-") for s in smoke) and not set(smoke) & set(real)
    note = gpu_run.ship_note("GPU run (scripts/gpu_run.py): the paper's settings for {its} iterations", smoke=True,
                             its=3, paper=60000, secs=1.0, dev="CPU")
    assert note.startswith("SMOKE RUN") and "the paper's settings" not in note and "not a trained model" in note


# ----------------------------------------------------------------------------- python -m metalib.course.compare
@pytest.mark.parametrize("args, needle", [
    (["--config", "{bad"], "--config is not valid JSON"),
    (["--config", "[1, 2]"], "--config must be a JSON object"),
    (["--config", '{"algorithm": "nope", "iterations": 1}'], "nope"),
    (["--config", '{"algorithm": "protonet", "iterations": 1, "frobnicate": 1}'], "frobnicate"),
    (["--config", '{"algorithm": "protonet", "iterations": 1}', "--threads", "0"], "--threads must be >= 1"),
    (["--config", '{"algorithm": "protonet", "iterations": 1}', "--repeats", "0"], "--repeats must be >= 1"),
    (["--config", '{"algorithm": "protonet", "iterations": 1}', "--warmup", "-1"], "--warmup must be >= 0"),
    (["--config", '{"algorithm": "protonet", "iterations": 1}', "--device", "bogus"], "'bogus' is not a device"),
])
def test_compare_command_line_errors_are_one_line(capsys, args, needle):
    from metalib.course import compare

    before = torch.get_num_threads()
    try:
        assert compare._main(args) == 2
    finally:
        torch.set_num_threads(before)
    _error_line(capsys.readouterr().err, needle)


def test_compare_bad_config_in_a_subprocess_is_one_line():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "metalib.course.compare", "--config", "{bad"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    _error_line(proc.stderr, "not valid JSON")
