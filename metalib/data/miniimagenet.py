"""miniImageNet (Vinyals et al. 2016) with the Ravi & Larochelle (2017) class split.

100 ImageNet classes, 84x84 RGB, split by class into 64 train / 16 val / 20 test classes of 600
images each. There is no stable public host, so the files are placed by hand into
``<data root>/mini-imagenet/``, in one of these forms (checked in this order, per split):

1. Ravi's ``images.zip`` (``images/<file>.jpg``) or the extracted ``images/`` folder (flat, or
   ``images/<wnid>/<file>.jpg``), plus ``train.csv`` / ``val.csv`` / ``test.csv``
   (``filename,label``; label = ImageNet wnid). Without a CSV, every image whose file name starts
   with a wnid of that split (the Ravi class lists ship with metalib) is used.
2. learn2learn's ``mini-imagenet-cache-{train,validation,test}.pkl`` or Gidaris's
   ``miniImageNet_category_split_{train_phase_train,val,test}.pickle`` - only with
   ``allow_pickle=True`` (see :mod:`metalib.data.pickles` for the formats and the risk).

Whatever the form, the images are decoded once into a uint8 tensor cache and read from there
afterwards. Pixels stay as they are (RGB 0..255; ``/ 255`` gives [0, 1]); no mean/std
normalisation is applied here.

Classes with different image counts within a split are truncated to the smallest count (with a
warning) so that the split stays one rectangular tensor ``[n_classes, n_per_class, 3, H, W]``.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .base import ClassImageSet, check_choice, check_image_size
from .cache import fingerprint, load_cache, path_tag, save_cache, warn_not_cached
from .paths import CorruptDataError, DataNotFoundError, cache_dir as resolve_cache_dir, data_root, show_progress, where_to_put
from .pickles import read_pickle

__all__ = [
    "MiniImageNet",
    "SPLITS",
    "PICKLE_NAMES",
    "ravi_classes",
    "miniimagenet_dir",
    "how_to_get_miniimagenet",
    "verify_miniimagenet",
]

SPLITS = ("train", "val", "test")
_ALIASES = {"validation": "val", "valid": "val"}
ORIGINAL_SIZE = 84
RAVI_PER_CLASS = 600
PICKLE_NAMES = {
    "learn2learn": {s: f"mini-imagenet-cache-{'validation' if s == 'val' else s}.pkl" for s in SPLITS},
    "gidaris": {
        "train": "miniImageNet_category_split_train_phase_train.pickle",
        "val": "miniImageNet_category_split_val.pickle",
        "test": "miniImageNet_category_split_test.pickle",
    },
}
_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_SPLIT_DIR = Path(__file__).resolve().parent / "splits" / "miniimagenet" / "ravi"


def ravi_classes(split: str) -> list[str]:
    """The ImageNet wnids of a Ravi & Larochelle split (64 / 16 / 20), sorted."""
    split = _split_name(split)
    return (_SPLIT_DIR / f"{split}.txt").read_text().split()


def _split_name(split: object) -> str:
    if isinstance(split, str):
        split = _ALIASES.get(split, split)
    return check_choice("miniImageNet split", split, SPLITS)


def miniimagenet_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``<data root>/mini-imagenet``."""
    return data_root(root) / "mini-imagenet"


def how_to_get_miniimagenet(folder: Path) -> str:
    """The instructions every 'missing miniImageNet' error ends with (``folder`` is
    ``<data root>/mini-imagenet``): the default data folder first, then ``$METALIB_DATA``."""
    return (
        "miniImageNet has no stable public download, so put the files by hand "
        + where_to_put("mini-imagenet", Path(folder).parent)
        + ": either images.zip (holding images/<file>.jpg, as in Ravi & Larochelle's release) or an "
        "images/ folder, together with train.csv, val.csv and test.csv (filename,label); or, if "
        "you trust them, learn2learn's mini-imagenet-cache-{train,validation,test}.pkl or "
        "miniImageNet_category_split_{train_phase_train,val,test}.pickle, loaded with "
        "allow_pickle=True. See docs/data.md."
    )


@dataclass(frozen=True)
class _Source:
    kind: str  # "images" or "pickle"
    path: Path  # images.zip, images/ or the pickle
    csv: Path | None = None  # the split CSV (None: use the shipped Ravi class list)


def find_source(split: str, root: str | os.PathLike[str] | None) -> _Source | None:
    folder = miniimagenet_dir(root)
    images = folder / "images.zip"
    if not images.is_file():
        images = folder / "images"
    if images.exists():
        csv_path = folder / f"{split}.csv"
        return _Source("images", images, csv_path if csv_path.is_file() else None)
    for names in PICKLE_NAMES.values():
        if (folder / names[split]).is_file():
            return _Source("pickle", folder / names[split])
    return None


# ----------------------------------------------------------------------------- image sources


def _read_csv(path: Path) -> dict[str, list[str]]:
    """Ravi CSV -> {label: [file names in CSV order]}."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise CorruptDataError(f"{path}: expected a CSV with the header 'filename,label'")
    classes: dict[str, list[str]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise CorruptDataError(f"{path}, line {n}: expected 'filename,label', got {row!r}")
        classes.setdefault(row[1].strip(), []).append(row[0].strip())
    return classes


class _ImageStore:
    """Find images by file name in images.zip or an images/ tree (flat or per-class folders).

    The CSVs name images by file name only, so a file name must occur once: two entries with the
    same name (in different folders, or the same entry twice) are refused with
    :class:`CorruptDataError` naming both, instead of letting the second silently replace the first.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.where: dict[str, str] = {}
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise CorruptDataError(
                    f"{path} is not a readable zip archive ({e}); replace it. "
                    + how_to_get_miniimagenet(path.parent)
                ) from e
            for info in self.zip.infolist():
                name = info.filename
                if not info.is_dir() and name.lower().endswith(_IMAGE_EXT) and "__MACOSX" not in name:
                    self._add(name.rsplit("/", 1)[-1], name)
        else:
            for dirpath, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(_IMAGE_EXT):
                        self._add(f, os.path.join(dirpath, f))

    def _add(self, filename: str, location: str) -> None:
        if filename not in self.where:
            self.where[filename] = location
            return
        self.close()
        shown = [self.where[filename], location]
        if self.zip is None:  # folder: paths relative to the dataset folder, like zip members
            shown = [os.path.relpath(x, self.path.parent) for x in shown]
        raise CorruptDataError(
            f"{self.path}: two entries have the file name {filename} ({shown[0]} and {shown[1]}); "
            f"the CSVs name images by file name, so one would silently replace the other. Remove "
            f"the wrong one or replace {self.path.name} with a clean copy"
        )

    def read(self, filename: str) -> bytes:
        loc = self.where[filename]
        return self.zip.read(loc) if self.zip is not None else Path(loc).read_bytes()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _by_wnid(filenames: Iterable[str], split: str) -> dict[str, list[str]]:
    """Group image file names ``<wnid><index>.jpg`` by the Ravi wnids of ``split`` (no CSV case)."""
    wnids = set(ravi_classes(split))
    listing: dict[str, list[str]] = {}
    for fname in sorted(filenames):
        if fname[:9] in wnids:  # wnids are 'n' + 8 digits
            listing.setdefault(fname[:9], []).append(fname)
    return listing


def _rectangular(classes: dict[str, list[Any]], what: str) -> tuple[list[str], int]:
    """Sorted class names and the per-class count to keep (the minimum, with a warning)."""
    if not classes:
        raise CorruptDataError(f"{what}: no images found")
    counts = {c: len(v) for c, v in classes.items()}
    keep, most = min(counts.values()), max(counts.values())
    if keep != most:
        fewest = min(counts, key=counts.__getitem__)
        warnings.warn(
            f"{what}: classes hold between {keep} and {most} images (fewest: {fewest}); keeping "
            f"the first {keep} of every class so the split is one rectangular tensor",
            stacklevel=3,
        )
    if keep == 0:
        raise CorruptDataError(f"{what}: class {min(counts, key=counts.__getitem__)} has no images")
    return sorted(classes), keep


def _to_chw(img: Image.Image, size: int) -> np.ndarray:
    rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _decode_images(src: _Source, split: str, size: int, progress: bool) -> tuple[torch.Tensor, list[str]]:
    from tqdm.auto import tqdm

    store = _ImageStore(src.path)
    try:
        if src.csv is not None:
            listing = _read_csv(src.csv)
            what = f"miniImageNet {split} ({src.csv})"
        else:
            listing = _by_wnid(store.where, split)
            what = f"miniImageNet {split} ({src.path}, Ravi class list; no {split}.csv)"
        missing = [f for files in listing.values() for f in files if f not in store.where]
        if missing:
            raise CorruptDataError(
                f"{what}: {len(missing)} listed images are not in {src.path} (e.g. "
                f"{', '.join(missing[:3])}). " + how_to_get_miniimagenet(src.path.parent)
            )
        names, per_class = _rectangular(listing, what)
        out = torch.empty((len(names), per_class, 3, size, size), dtype=torch.uint8)
        view = out.numpy()
        with tqdm(total=len(names) * per_class, desc=f"decoding miniImageNet {split}",
                  unit="img", disable=not show_progress(progress), leave=False) as bar, warnings.catch_warnings():
            # an image declaring > MAX_IMAGE_PIXELS is a decompression bomb, not an 84x84 photo
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            for ci, name in enumerate(names):
                for ii, fname in enumerate(listing[name][:per_class]):
                    try:
                        with Image.open(io.BytesIO(store.read(fname))) as img:
                            view[ci, ii] = _to_chw(img, size)
                    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                        raise CorruptDataError(
                            f"{src.path}: member {store.where[fname]} is a decompression bomb "
                            f"({_one_line(e)}); replace {src.path.name} with a clean copy"
                        ) from e
                    except (zipfile.BadZipFile, zlib.error, OSError, UnidentifiedImageError, ValueError) as e:
                        raise CorruptDataError(
                            f"{src.path}: cannot decode {store.where[fname]} ({_one_line(e)}); "
                            f"replace {src.path.name} with a clean copy"
                        ) from e
                bar.update(per_class)
    finally:
        store.close()
    return out, names


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _convert_pickle(src: _Source, split: str, size: int, allow_pickle: bool) -> tuple[torch.Tensor, list[str]]:
    array, classes = read_pickle(src.path, allow_pickle)
    names, per_class = _rectangular(classes, f"miniImageNet {split} ({src.path})")
    out = torch.empty((len(names), per_class, 3, size, size), dtype=torch.uint8)
    view = out.numpy()
    for ci, name in enumerate(names):
        rows = classes[name][:per_class]
        if array.shape[1:3] == (size, size):
            view[ci] = array[rows].transpose(0, 3, 1, 2)
        else:
            for ii, r in enumerate(rows):
                view[ci, ii] = _to_chw(Image.fromarray(array[r]), size)
    return out, names


# ----------------------------------------------------------------------------- dataset


class MiniImageNet(ClassImageSet):
    """A miniImageNet split (Ravi & Larochelle classes) as a uint8 tensor grouped by class.

    Args:
        split: ``"train"`` (64 classes), ``"val"`` (16; alias ``"validation"``) or ``"test"`` (20).
        root: data root (default: ``$METALIB_DATA``, else ``<project>/data``); the files live in
            ``<root>/mini-imagenet/``.
        image_size: side of the square images (default 84 = stored size; smaller sizes are
            resized with PIL's Lanczos filter and cached separately).
        allow_pickle: allow reading a learn2learn / Gidaris pickle when no images.zip / images/
            is present. Off by default because unpickling can execute code; once converted,
            later loads use the tensor cache and need no opt-in.
        cache_dir: cache folder (default: ``$METALIB_CACHE``, else ``<root>/cache`` if the root is
            the user's own and writable, else the per-user cache folder, ``~/.cache/metalib`` on Linux).
        progress: show a progress bar while decoding (first use only); default: only when stderr is a
            terminal (never inside a notebook, whose stored outputs must not depend on a cold cache).

    Attributes:
        images: uint8 ``[n_classes, n_per_class, 3, image_size, image_size]``, RGB 0..255.
        class_names: ImageNet wnids (sorted).
        ravi_split: True when the classes are exactly Ravi & Larochelle's classes of this split.

    The offline copy staged for this project (``../shared/data`` beside the checkout) has 600
    images per class in test but 200 (val) and 400 (train) - results trained on it are
    "miniImageNet (train 400/class)".
    """

    def __init__(
        self,
        split: str = "train",
        root: str | os.PathLike[str] | None = None,
        image_size: int = 84,
        allow_pickle: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: Optional[bool] = None,
    ) -> None:
        split = _split_name(split)
        size = check_image_size(image_size, ORIGINAL_SIZE)
        if not isinstance(allow_pickle, bool):
            raise TypeError(f"allow_pickle must be a bool, got {type(allow_pickle).__name__}")
        folder = miniimagenet_dir(root)
        src = find_source(split, root)
        if src is None:
            raise DataNotFoundError(f"miniImageNet {split} split not found in {folder}/. " + how_to_get_miniimagenet(folder))
        list_file = src.csv if src.csv is not None else _SPLIT_DIR / f"{split}.txt"
        sources = [src.path] + ([list_file] if src.kind == "images" else [])
        cdir, _why = resolve_cache_dir(root, cache_dir)
        cpath = cdir / f"mini-imagenet-{split}-{size}px-{src.kind}-{path_tag(folder)}.pt"
        expect: dict[str, Any] = {"dataset": "mini-imagenet", "split": split, "image_size": size, "source_kind": src.kind}

        hit = load_cache(cpath, expect, sources)
        if hit is not None:
            images, meta = hit
            names, from_cache = list(meta["class_names"]), True
        else:
            prints = [fingerprint(p) for p in sources]
            if src.kind == "images":
                images, names = _decode_images(src, split, size, progress)
            else:
                images, names = _convert_pickle(src, split, size, allow_pickle)
            meta = dict(expect, class_names=names, sources=prints, pixels="uint8 RGB 0..255")
            try:
                save_cache(cpath, images, meta)
            except OSError as e:  # a full disk should not stop the experiment; it only costs speed
                warn_not_cached(f"miniImageNet {split}", cpath, e)
            from_cache = False
        super().__init__(images, names, name="mini-imagenet", split=split, cache_path=cpath,
                         from_cache=from_cache, source=str(src.path))
        self.ravi_split = names == ravi_classes(split)


# ----------------------------------------------------------------------------- verify


def verify_miniimagenet(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Check each split without decoding: which source, classes x images per class, whether the
    classes are Ravi's, whether every listed image is in the archive. Pickles are only reported
    (opening them needs ``allow_pickle``). One dict per split with a one-line ``status``."""
    reports = []
    store: _ImageStore | None = None
    try:
        for split in SPLITS:
            src = find_source(split, root)
            rep: dict[str, Any] = {"split": split, "source": None, "path": None, "classes": 0,
                                   "per_class": None, "ravi_classes": None, "missing_images": None}
            if src is None:
                rep["status"] = "missing"
                reports.append(rep)
                continue
            rep.update(source=src.kind, path=str(src.path))
            if src.kind == "pickle":
                rep["status"] = "pickle present (not opened; load with allow_pickle=True to convert)"
                reports.append(rep)
                continue
            try:
                if store is None:
                    store = _ImageStore(src.path)
                if src.csv is not None:
                    listing = _read_csv(src.csv)
                else:
                    listing = _by_wnid(store.where, split)
            except CorruptDataError as e:
                rep["status"] = f"corrupt: {e}"
                reports.append(rep)
                continue
            counts = sorted(len(v) for v in listing.values())
            missing = sum(f not in store.where for v in listing.values() for f in v)
            rep.update(classes=len(listing), per_class=(counts[0], counts[-1]) if counts else None,
                       ravi_classes=sorted(listing) == ravi_classes(split), missing_images=missing)
            if not counts:
                rep["status"] = (f"incomplete: {src.csv} lists no images" if src.csv is not None else
                                 f"incomplete: no {split}.csv, and no image in {src.path} is named "
                                 f"after a Ravi {split} wnid")
            elif missing:
                rep["status"] = f"incomplete: {missing} listed images missing from {src.path}"
            else:
                lo, hi = counts[0], counts[-1]
                shape = f"{len(listing)} classes x {lo}" + (f"..{hi}" if hi != lo else "") + " images"
                kind = "Ravi classes" if rep["ravi_classes"] else "NOT Ravi's classes"
                full = "complete" if lo == RAVI_PER_CLASS else f"subset: Ravi has {RAVI_PER_CLASS}/class"
                rep["status"] = f"ok: {shape} ({kind}; {full})"
            reports.append(rep)
    finally:
        if store is not None:
            store.close()
    return reports
