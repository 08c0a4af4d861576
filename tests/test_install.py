"""The student install: the README's CPU recipe, requirements.txt and pyproject.toml ask for the same torch.

A CPU torch outside the requirements' range is replaced by PyPI's CUDA build (~3 GB of nvidia-*
packages); CI's dry run (scripts/check_cpu_install.py) checks the resolution itself, this test the text.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_cpu_install  # noqa: E402


def test_readme_cpu_recipe_pins_the_requirements_torch():
    pin = check_cpu_install.torch_pin(ROOT / "requirements.txt")
    readme = (ROOT / "README.md").read_text()
    recipes = re.findall(r'pip install "torch([^"]+)" --index-url https://download.pytorch.org/whl/cpu', readme)
    assert recipes, "README.md has no CPU recipe of the form pip install \"torch<range>\" --index-url .../whl/cpu"
    assert set(recipes) == {pin}
    assert f'"torch{pin}"' in (ROOT / "pyproject.toml").read_text()
    assert f'"torch{pin}"' in (ROOT / "requirements.txt").read_text()   # the recipe in its comment
    # no unpinned CPU recipe left anywhere in the student-facing text
    assert "pip install torch --index-url" not in readme


def test_unwanted_names_torch_and_every_nvidia_package():
    names = ["filelock", "matplotlib", "nvidia-cublas", "nvidia_nccl_cu13", "torch", "tqdm"]
    assert check_cpu_install.unwanted(names) == ["nvidia-cublas", "nvidia_nccl_cu13", "torch"]
    assert check_cpu_install.unwanted(["numpy", "torchvision"]) == []


def test_size_check_strips_only_torch_and_the_project(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# torch: see README\ntorch>=2.14,<2.15\ntorchvision>=0.29\nnumpy>=1.26\n-e .\n-e ./other\n")
    out = check_cpu_install.without_torch(req, tmp_path / "out.txt").read_text().splitlines()
    assert out == ["# torch: see README", "torchvision>=0.29", "numpy>=1.26", "-e ./other"]
    # and the real student file keeps everything but those two lines
    real = check_cpu_install.without_torch(ROOT / "requirements.txt", tmp_path / "real.txt").read_text()
    lines = [ln.strip() for ln in real.splitlines() if not ln.lstrip().startswith("#")]
    assert not [ln for ln in lines if ln.startswith("torch") or ln == "-e ."]
    assert {"jupyterlab>=4.2,<5", "numpy>=1.26"} <= set(lines)


def test_size_check_finds_the_newest_cpu_wheel_for_this_python(tmp_path):
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for name in (f"torch-2.9.1+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl",
                 f"torch-2.13.0+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl",
                 f"torch-2.14.1-{tag}-{tag}-manylinux_2_28_x86_64.whl",           # the CUDA build: not a stand-in
                 "torch-2.15.0+cpu-cp27-cp27-manylinux_2_28_x86_64.whl"):         # another Python
        (tmp_path / name).write_bytes(b"")
    assert check_cpu_install.find_cpu_wheel([tmp_path]).name.startswith("torch-2.13.0+cpu-")
    assert check_cpu_install.find_cpu_wheel([tmp_path / "nothing-here"]) is None


def test_size_check_skips_with_a_message_without_a_wheel(tmp_path, capsys):
    assert check_cpu_install.main(["--size", "--wheel-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("skipped (size): no torch-*+cpu wheel")


def test_disk_size_counts_like_du(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 3_000_000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 1_500_000)
    os.link(tmp_path / "a", tmp_path / "d" / "a-again")                 # a hard link is counted once
    du = subprocess.run(["du", "-sk", str(tmp_path)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert abs(check_cpu_install.disk_mb(tmp_path) - int(du) / 1024) < 0.01
    assert 4.2 < check_cpu_install.disk_mb(tmp_path) < 4.4


@pytest.mark.parametrize("mb, extra, ok", [(1302.0, [], True), (1700.0, [], False),
                                           (1302.0, [["nvidia-cublas", "13.1", 10]], False)])
def test_size_check_fails_over_the_bound_or_on_a_cuda_package(tmp_path, monkeypatch, capsys, mb, extra, ok):
    """The size check's verdict, with the install itself replaced (the real one: --size, minutes)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    (tmp_path / f"torch-2.13.0+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl").write_bytes(b"")
    rows = [["torch", "2.13.0+cpu", 700 * 2**20], ["numpy", "2.4.6", 70 * 2**20], *extra]
    monkeypatch.setattr(check_cpu_install, "measure_size", lambda wheel, req, where: (mb, rows))
    status = check_cpu_install.main(["--size", "--wheel-dir", str(tmp_path), "--max-mb", "1600"])
    out = capsys.readouterr().out
    assert status == (0 if ok else 1), out
    assert ("ok (size)" in out) == ok and ("FAIL (size)" in out) != ok
