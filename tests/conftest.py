import os

import pytest
import torch

# Keep test runs reproducible and light on a 2-core machine. Under pytest-xdist (the README's command runs
# two worker processes) each worker keeps to one thread: on a busy 2-core machine two torch threads ran
# several times slower than one (docs/threads.md), and two workers already fill both cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


# pytest-xdist (`--dist loadfile`, pyproject.toml) hands each test file, and each notebook, to one worker, in
# collection order. The longest go first, so that the two workers end together instead of one of them running
# the browser test alone at the end: measured with `--durations` on the 2-core machine, the browser test's
# Run All took 40-210 s per widget notebook and the slowest single tests were in the files listed here.
LONGEST_FIRST = ("tests/browser/test_widgets_in_browser.py", "tests/test_omniglot_accuracy.py",
                 "tests/browser/test_slides_in_browser.py", "tests/test_batched.py", "tests/browser/test_site.py",
                 "tests/test_relation.py", "tests/test_matching.py", "notebooks/")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        try:
            path = item.path.relative_to(config.rootpath).as_posix()
        except ValueError:
            return len(LONGEST_FIRST)
        return next((i for i, p in enumerate(LONGEST_FIRST) if path.startswith(p)), len(LONGEST_FIRST))

    items.sort(key=rank)   # stable: the tests of a file, and a notebook's cells, keep their order


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
