"""Helpers for tests: require the real data (skip, or fail under CI) and write tiny fake datasets.

``require_omniglot()`` / ``require_miniimagenet()`` are meant for pytest tests and fixtures: when
the data is present they return its folder; when it is missing they call ``pytest.skip`` with
instructions, or ``pytest.fail`` when the ``CI`` environment variable is set (CI must never pass
by skipping). The fake writers produce each on-disk format in miniature, with pixel values that
encode class and image, so tests can check that every image lands in the right class.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from metalib.data.miniimagenet import PICKLE_NAMES, find_source as _find_mini, miniimagenet_dir
from metalib.data.omniglot import PARTS, find_source as _find_omni, omniglot_dir
from metalib.data.paths import is_ci, where_to_put

__all__ = [
    "require_omniglot",
    "require_miniimagenet",
    "write_fake_omniglot",
    "write_fake_miniimagenet",
    "fake_color",
]


def _missing(message: str) -> None:
    import pytest

    if is_ci():
        pytest.fail(f"CI is set, so missing data is an error, not a skip. {message}", pytrace=False)
    pytest.skip(message)


def require_omniglot(root: str | os.PathLike[str] | None = None) -> Path:
    """Return ``<data root>/omniglot`` if both archives (or folders) are there; else skip the
    test (``pytest.skip``), or fail it when ``$CI`` is set."""
    absent = [p for p in PARTS if _find_omni(p, root) is None]
    folder = omniglot_dir(root)
    if absent:
        _missing(
            f"Omniglot data missing: no {' / '.join(f'images_{p}.zip' for p in absent)} (or extracted "
            f"folder) in {folder}/. To run these tests, put images_background.zip and "
            f"images_evaluation.zip " + where_to_put("omniglot", folder.parent)
            + " (see data/README.md); `python -m metalib.data download omniglot` fetches them."
        )
    return folder


def require_miniimagenet(split: str = "test", root: str | os.PathLike[str] | None = None) -> Path:
    """Return ``<data root>/mini-imagenet`` if ``split`` can be read from images (zip/folder);
    else skip (``pytest.skip``), or fail when ``$CI`` is set. Pickles do not count: reading them
    needs an explicit opt-in."""
    src = _find_mini(split, root)
    folder = miniimagenet_dir(root)
    if src is None or src.kind != "images":
        _missing(
            f"miniImageNet data missing: no images.zip (or images/) in {folder}/. To run these "
            f"tests, put images.zip and train.csv/val.csv/test.csv " + where_to_put("mini-imagenet", folder.parent)
            + " (see data/README.md; there is no automatic download)."
        )
    return folder


# ----------------------------------------------------------------------------- fake Omniglot


def _bits_row(value: int, width: int = 105) -> np.ndarray:
    return np.array([(value >> i) & 1 for i in range(width)], dtype=bool)


def write_fake_omniglot(
    root: str | os.PathLike[str],
    n_alphabets: tuple[int, int] = (2, 1),
    n_characters: int = 2,
    n_drawings: int = 20,
    as_zip: bool = True,
) -> dict[str, dict[str, int]]:
    """Write a miniature Omniglot under ``<root>/omniglot/`` (zips or extracted folders).

    Drawing ``d`` (1-based) of global character ``g`` (0-based, background first) is a 105x105
    mode-'1' PNG, white except: row 0 holds ``g`` in binary and row 1 holds ``d`` (bit i at
    column i, black = 1), and a black square marks the stroke area. Returns the counts to put
    into ``metalib.data.omniglot.EXPECTED`` so that the archives count as complete.
    """
    folder = Path(root) / "omniglot"
    folder.mkdir(parents=True, exist_ok=True)
    expected, g = {}, 0
    for part, n_alpha in zip(PARTS, n_alphabets):
        files: dict[str, bytes] = {}
        for a in range(n_alpha):
            for c in range(1, n_characters + 1):
                for d in range(1, n_drawings + 1):
                    white = np.ones((105, 105), dtype=bool)
                    white[0] = ~_bits_row(g)
                    white[1] = ~_bits_row(d)
                    white[40:60, 40:60] = False
                    buf = io.BytesIO()
                    Image.fromarray(white).convert("1").save(buf, format="PNG")
                    files[f"images_{part}/{part[:4].title()}_{a}/character{c:02d}/{g + 1:04d}_{d:02d}.png"] = buf.getvalue()
                g += 1
        if as_zip:
            with zipfile.ZipFile(folder / f"images_{part}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for name, blob in files.items():
                    zf.writestr(name, blob)
        else:
            for name, blob in files.items():
                path = folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blob)
        expected[part] = {"alphabets": n_alpha, "characters": n_alpha * n_characters}
    return expected


# ----------------------------------------------------------------------------- fake miniImageNet


def fake_color(class_index: int, image_index: int) -> tuple[int, int, int]:
    """The solid RGB colour of fake image ``image_index`` of the split's ``class_index``-th class
    (classes in sorted order)."""
    return (40 + 50 * class_index) % 256, (10 + 9 * image_index) % 256, 200


def write_fake_miniimagenet(
    root: str | os.PathLike[str],
    classes: dict[str, list[str]],
    n_per_class: int | dict[str, int] = 10,
    fmt: str = "zip",
    with_csv: bool = True,
    size: int = 84,
) -> Path:
    """Write a miniature miniImageNet under ``<root>/mini-imagenet/`` and return that folder.

    Args:
        classes: ``{split: [class names]}``.
        n_per_class: images per class, or ``{class name: count}`` for unequal classes.
        fmt: ``"zip"`` (images.zip with images/<file>.jpg), ``"folder"`` (images/<file>.jpg),
            ``"nested"`` (images/<wnid>/<file>.jpg), ``"learn2learn"`` or ``"gidaris"`` (pickles).
        with_csv: write ``<split>.csv`` files (image formats only).
        size: image side in pixels.

    Each image is a solid :func:`fake_color`; file names are ``<class><8-digit index>.jpg``.
    """
    folder = Path(root) / "mini-imagenet"
    folder.mkdir(parents=True, exist_ok=True)
    counts = n_per_class if isinstance(n_per_class, dict) else None
    zf = zipfile.ZipFile(folder / "images.zip", "w", zipfile.ZIP_STORED) if fmt == "zip" else None
    label_base = 0
    for split, names in classes.items():
        rows: list[tuple[str, str]] = []
        arrays: list[np.ndarray] = []
        class_dict: dict[str, list[int]] = {}
        labels: list[int] = []
        for ci, name in enumerate(sorted(names)):
            n = counts[name] if counts is not None else int(n_per_class)  # type: ignore[arg-type]
            for ii in range(n):
                pixels = np.empty((size, size, 3), dtype=np.uint8)
                pixels[...] = fake_color(ci, ii)
                fname = f"{name}{ii + 1:08d}.jpg"
                rows.append((fname, name))
                if fmt in ("learn2learn", "gidaris"):
                    class_dict.setdefault(name, []).append(len(arrays))
                    labels.append(label_base + ci)
                    arrays.append(pixels)
                    continue
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
                if zf is not None:
                    zf.writestr(f"images/{fname}", buf.getvalue())
                else:
                    sub = folder / "images" / (name if fmt == "nested" else "")
                    sub.mkdir(parents=True, exist_ok=True)
                    (sub / fname).write_bytes(buf.getvalue())
        if fmt == "learn2learn":
            obj: dict[str, Any] = {"image_data": np.stack(arrays), "class_dict": class_dict}
            with open(folder / PICKLE_NAMES["learn2learn"][split], "wb") as f:
                pickle.dump(obj, f, protocol=4)
        elif fmt == "gidaris":
            cat = {name: label_base + ci for ci, name in enumerate(sorted(names))}
            obj = {"data": np.stack(arrays), "labels": labels, "catname2label": cat}
            with open(folder / PICKLE_NAMES["gidaris"][split], "wb") as f:
                pickle.dump(obj, f, protocol=2)  # the originals are Python-2 pickles
        elif with_csv:
            with open(folder / f"{split}.csv", "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["filename", "label"])
                w.writerows(rows)
        label_base += len(names)
    if zf is not None:
        zf.close()
    return folder
