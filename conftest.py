"""nbval (the notebooks in notebooks/): which ones need the real data.

In CI (``CI`` set) a missing dataset must fail; elsewhere the cells that need it are skipped with a
message saying how to get the data, like the data tests in tests/.

* 00_welcome: only its data-check cell (``data.info(``) needs the data;
* 04–08 (few-shot classification): every cell does — the notebook reads Omniglot / miniImageNet from
  the first cells on, so without the data the whole notebook is skipped.
"""
import os
from typing import Dict

import pytest

# no progress bars in notebooks run under nbval (the kernel inherits this) or in the tests: a bar is a
# widget in Jupyter, and stored outputs must not change (metalib.device.interactive)
os.environ["METALIB_PROGRESS"] = "0"

# notebook file-name prefix -> the datasets its cells read
NEEDS_DATA = {
    "04_": ("omniglot",),
    "05_": ("omniglot",),
    "06_": ("omniglot",),
    "07_": ("mini-imagenet",),
    "08_": ("omniglot", "mini-imagenet"),
    "09_": ("omniglot",),   # metric-based family
    "10_": ("omniglot",),   # learned inner loops
    "11_": ("omniglot",),   # model-based family
}
HOW_TO = ("not found: point METALIB_DATA at a folder holding omniglot/ and mini-imagenet/ "
          "(see docs/data.md; `python -m metalib.data info` shows what is found)")


def _present() -> Dict[str, bool]:
    try:
        from metalib.data import info

        report = info(checksums=False)
        return {name: bool(report[name]["present"]) for name in ("omniglot", "mini-imagenet")}
    except Exception:
        return {"omniglot": False, "mini-imagenet": False}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return  # CI: never skip; a missing dataset fails the notebook
    present = _present()
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None:
            continue
        name = os.path.basename(str(item.fspath))
        needs = next((d for prefix, d in NEEDS_DATA.items() if name.startswith(prefix)), ())
        if "data.info(" in cell.get("source", ""):
            needs = ("omniglot", "mini-imagenet")
        missing = [d for d in needs if not present[d]]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"{' and '.join(missing)} {HOW_TO}"))
