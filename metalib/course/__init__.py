"""The course layer: what the notebooks use on top of the library — widgets, labs, plots, exercises.

* :mod:`~metalib.course.sinusoid_lab`, :mod:`~metalib.course.fewshot_lab` — the heavy lifting of the
  notebooks (seeded test tasks and episodes, adaptation paths, embeddings, tables);
* :mod:`~metalib.course.plots`, :mod:`~metalib.course.widgets` — figures and ipywidgets apps;
* :mod:`~metalib.course.exercises` — each exercise's automatic check and its solution;
* :mod:`~metalib.course.compare` — the comparison tables of notebook 08.

It may import the library (``metalib.*``); the library never imports it (``docs/architecture.md``,
enforced by ``tests/test_architecture.py``). Import the modules you need:
``from metalib.course import widgets, plots``.
"""

import os


def full_mode() -> bool:
    """The notebooks' switch: True when the environment variable ``METALIB_FULL`` is ``1`` (or ``true``,
    ``yes``): train the paper-length runs in the notebook instead of loading the shipped weights.
    Every notebook reads it once, in its first code cell (``FULL = full_mode()``)."""
    return os.environ.get("METALIB_FULL", "0").strip().lower() in ("1", "true", "yes")
