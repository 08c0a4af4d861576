"""The student install: the README's CPU recipe, requirements.txt and pyproject.toml ask for the same torch.

A CPU torch outside the requirements' range is replaced by PyPI's CUDA build (~3 GB of nvidia-*
packages); CI's dry run (scripts/check_cpu_install.py) checks the resolution itself, this test the text.
"""

import re
import sys
from pathlib import Path

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
