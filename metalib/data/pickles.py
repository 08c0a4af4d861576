"""Reading the miniImageNet pickles that other libraries' downloads produce - only on request.

Two formats are known (both hold the 84x84 RGB images as one uint8 array):

* learn2learn ``mini-imagenet-cache-{train,validation,test}.pkl``: a dict
  ``{"image_data": uint8 ndarray [N, 84, 84, 3], "class_dict": {wnid: [row indices]}}``
  (``learn2learn.vision.datasets.MiniImagenet``; split names train / validation / test).
* Gidaris & Komodakis 2018 ``miniImageNet_category_split_{train_phase_train,val,test}.pickle``
  (also used by MetaOptNet and the codebases built on it): a Python-2 pickle (load with
  ``encoding="latin1"``) of ``{"data": uint8 ndarray [N, 84, 84, 3], "labels": [int] * N,
  "catname2label": {class name: int}}`` (some copies add ``"label2catname"``). The integer labels
  need not start at 0 (the few-shot split files use the global ids). ``train_phase_train`` holds
  the 64 training classes x 600; ``train_phase_val`` / ``train_phase_test`` are *other* images of
  the training classes, for ordinary classification, and are not used here.

Unpickling runs code chosen by whoever wrote the file, so metalib only does it when the caller
passes ``allow_pickle=True``, and even then through a restricted unpickler that resolves only the
handful of numpy / builtin names these formats need (anything else raises
``pickle.UnpicklingError``). That narrows the risk but does not make an untrusted pickle safe:
only opt in for files you trust. The safe path is Ravi's ``images.zip`` (or ``images/``) with the
CSVs. After one conversion metalib reads its own cache (plain tensors, ``weights_only=True``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .paths import CorruptDataError

__all__ = ["PickleNotAllowedError", "read_pickle", "safe_unpickle", "looks_like_html"]


class PickleNotAllowedError(PermissionError):
    """A pickle would have to be loaded but the caller did not pass ``allow_pickle=True``."""


# (module, name) pairs a numpy-array-in-a-dict pickle needs; nothing that can run commands.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # numpy arrays at pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "list"),
    ("__builtin__", "list"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class _Refused(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(
            f"refusing to load {module}.{name} from a pickle: only numpy arrays, dicts and lists "
            f"are expected in a miniImageNet pickle"
        )


def looks_like_html(head: bytes) -> bool:
    """True if the first bytes of a file are an HTML page (e.g. Google Drive's 'virus scan' /
    'quota exceeded' page saved under the .pkl name by a failed download)."""
    h = head.lstrip().lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in h[:1024]


def safe_unpickle(data: bytes) -> Any:
    """Unpickle bytes with the restricted unpickler (latin1 for Python-2 pickles)."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def read_pickle(path: Path, allow_pickle: bool) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Read a learn2learn or Gidaris miniImageNet pickle.

    Returns:
        ``(images, classes)``: ``images`` uint8 ``[N, H, W, 3]``; ``classes`` maps a class name to
        the row indices of its images (in file order).

    Raises:
        PickleNotAllowedError: ``allow_pickle`` is False (the message explains the risk and the
            safe alternative).
        CorruptDataError: the file is an HTML page, truncated, or not one of the two formats.
    """
    # Reading bytes is harmless, so a saved web page is reported even without the opt-in.
    with open(path, "rb") as f:
        head = f.read(2048)
    if looks_like_html(head):
        raise CorruptDataError(
            f"{path} is an HTML page, not a pickle: the download saved a web page (typically "
            f"Google Drive's 'cannot scan for viruses' or 'quota exceeded' page) instead of "
            f"the data. Delete it and download the file again in a browser, or use "
            f"images.zip + the CSVs instead."
        )
    if not allow_pickle:
        raise PickleNotAllowedError(
            f"{path} is a pickle. Loading a pickle can execute arbitrary code written into it, so "
            f"metalib does not do it by default. If you trust the file, pass allow_pickle=True "
            f"(or --allow-pickle on the command line): it is converted once into metalib's "
            f"tensor cache and the pickle is not needed for loading afterwards. The safe "
            f"alternative is Ravi & Larochelle's images.zip (or an images/ folder) plus "
            f"train.csv/val.csv/test.csv in the same folder."
        )
    with open(path, "rb") as f:
        try:
            # unpickle from the stream: the train pickle is >1 GB, no need to hold its bytes too
            obj = _str_keys(_RestrictedUnpickler(f, encoding="latin1").load())
        except _Refused as e:
            raise CorruptDataError(f"{path}: not a usable miniImageNet pickle ({e})") from e
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                IndexError, KeyError) as e:
            raise CorruptDataError(f"{path}: truncated or damaged pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: expected a dict in the pickle, found {type(obj).__name__}")

    if "image_data" in obj and "class_dict" in obj:  # learn2learn
        images = obj["image_data"]
        classes = {str(k): [int(i) for i in v] for k, v in _str_keys(obj["class_dict"]).items()}
    elif "data" in obj and "labels" in obj:  # Gidaris & Komodakis / MetaOptNet
        images = obj["data"]
        labels = [int(x) for x in obj["labels"]]
        names = {int(v): str(k) for k, v in _str_keys(obj.get("catname2label", {})).items()}
        classes = {}
        for i, lab in enumerate(labels):
            classes.setdefault(names.get(lab, f"class{lab:03d}"), []).append(i)
    else:
        raise CorruptDataError(
            f"{path}: unknown pickle layout with keys {sorted(map(str, obj))}; expected "
            f"learn2learn's ('image_data', 'class_dict') or Gidaris's ('data', 'labels', "
            f"'catname2label')"
        )
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise CorruptDataError(
            f"{path}: images must be a uint8 array [N, H, W, 3], found "
            f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
        )
    n = images.shape[0]
    if any(not 0 <= i < n for rows in classes.values() for i in rows):
        raise CorruptDataError(f"{path}: class index out of range for {n} images")
    return images, classes
