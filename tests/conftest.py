import os

import pytest
import torch

# Keep test runs reproducible and light on a 2-core machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny models: faster, and immune to a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



@pytest.fixture
def train_fewshot_cli(monkeypatch):
    """scripts/train_fewshot.py as a module, reading synthetic train/val/test splits (no data needed)."""
    import importlib.util
    from pathlib import Path

    from metalib import fewshot
    from _nets import synthetic_images

    data = {"train": synthetic_images(10, 8, 28, seed=0), "val": synthetic_images(6, 8, 28, seed=1),
            "test": synthetic_images(8, 8, 28, seed=2)}
    monkeypatch.setattr(fewshot, "load_split", lambda config, split, progress=False: data[split])
    spec = importlib.util.spec_from_file_location(
        "train_fewshot", Path(__file__).resolve().parents[1] / "scripts" / "train_fewshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
