"""Generate the notebooks' cells (outputs empty); then execute them in place to store the outputs.

    python notebooks/_build/build.py [00 01 ...]
    MPLBACKEND=Agg METALIB_DATA=/path/to/data jupyter nbconvert --to notebook --execute --inplace notebooks/00_welcome.ipynb
"""
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from nbtools import write  # noqa: E402

NOTEBOOKS = {
    "00": "00_welcome",
    "01": "01_sinusoid_tasks",
    "02": "02_maml_from_scratch",
    "03": "03_reptile_and_comparison",
    "04": "04_few_shot_data",
    "05": "05_prototypical_networks",
    "06": "06_maml_on_omniglot",
    "07": "07_miniimagenet",
    "08": "08_compare_and_next",
}

if __name__ == "__main__":
    for key in sys.argv[1:] or NOTEBOOKS:
        cells = importlib.import_module(f"nb{key}").CELLS
        path = HERE.parent / f"{NOTEBOOKS[key]}.ipynb"
        write(path, cells)
        print("wrote", path)
