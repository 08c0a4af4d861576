"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015) for few-shot learning.

1,623 handwritten characters from 50 alphabets, 20 drawings each, 105x105 1-bit PNGs, shipped as
``images_background.zip`` (30 alphabets, 964 characters) and ``images_evaluation.zip``
(20 alphabets, 659 characters). metalib reads the two zips or their extracted folders from
``<data root>/omniglot/``, decodes them once into a uint8 cache and builds a split from it.

Pixel convention: the PNGs have white background (1) and black strokes (0). metalib inverts them,
so in ``images`` the background is 0 and strokes are 255 (strokes = 1.0 after ``/ 255``), as most
MAML / Prototypical Networks code does. Resizing (default 28x28) is done on the 8-bit greyscale
image with PIL's Lanczos filter (antialiased), as in Finn et al.'s MAML code.

Rotations: ``rotNNN`` classes are the character rotated counter-clockwise by NNN degrees
(``torch.rot90(x, k=NNN // 90, dims=(-2, -1))``, the direction of PIL's ``Image.rotate``).
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .base import ClassImageSet, check_choice, check_image_size
from .cache import fingerprint, load_cache, md5_file, path_tag, save_cache, warn_not_cached
from .download import download_file
from .paths import CorruptDataError, DataNotFoundError, cache_dir as resolve_cache_dir, data_root, show_progress, where_to_put

__all__ = [
    "Omniglot",
    "SPLIT_SCHEMES",
    "PARTS",
    "URLS",
    "PUBLISHED_MD5",
    "omniglot_dir",
    "split_classes",
    "load_part",
    "verify_omniglot",
    "download_omniglot",
    "how_to_get_omniglot",
]

PARTS = ("background", "evaluation")
ARCHIVES = {p: f"images_{p}.zip" for p in PARTS}
URLS = {
    p: f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_{p}.zip"
    for p in PARTS
}
# The checksums torchvision.datasets.Omniglot publishes for the two archives.
PUBLISHED_MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
# What a complete copy holds. Module-level so tests can shrink it for tiny generated archives.
EXPECTED = {
    "background": {"alphabets": 30, "characters": 964},
    "evaluation": {"alphabets": 20, "characters": 659},
}
N_DRAWINGS = 20
ORIGINAL_SIZE = 105
ROTATIONS = (0, 90, 180, 270)
# splits= scheme -> the split= names it knows.
SPLIT_SCHEMES: dict[str, tuple[str, ...]] = {
    "vinyals": ("train", "val", "test", "trainval"),
    "maml": ("train", "val", "test", "trainval"),
    "background": ("train", "test", "background", "evaluation"),
}
_SPLIT_DIR = Path(__file__).resolve().parent / "splits" / "omniglot"


def omniglot_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``<data root>/omniglot``."""
    return data_root(root) / "omniglot"


def how_to_get_omniglot(folder: Path) -> str:
    """The instructions every 'missing/corrupt Omniglot' error ends with (``folder`` is
    ``<data root>/omniglot``): the default data folder first, then ``$METALIB_DATA``."""
    return (
        "Put images_background.zip and images_evaluation.zip (from "
        "https://github.com/brendenlake/omniglot, folder python/), or their extracted folders "
        "images_background/ and images_evaluation/, " + where_to_put("omniglot", Path(folder).parent)
        + ". With network access, `python -m metalib.data download omniglot` fetches and checks them."
    )


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    part: str
    path: Path
    kind: str  # "zip" or "folder"


def find_source(part: str, root: str | os.PathLike[str] | None) -> _Source | None:
    """The zip if present (canonical form), else the extracted folder, else None."""
    folder = omniglot_dir(root)
    zpath = folder / ARCHIVES[part]
    if zpath.is_file():
        return _Source(part, zpath, "zip")
    dpath = folder / f"images_{part}"
    if dpath.is_dir():
        return _Source(part, dpath, "folder")
    return None


def _require_source(part: str, root: str | os.PathLike[str] | None) -> _Source:
    src = find_source(part, root)
    if src is None:
        folder = omniglot_dir(root)
        raise DataNotFoundError(
            f"Omniglot {part} set not found: neither {folder / ARCHIVES[part]} nor "
            f"{folder / f'images_{part}'}/ exists. " + how_to_get_omniglot(folder)
        )
    return src


def _corrupt(src: _Source, what: str) -> CorruptDataError:
    folder = src.path.parent
    fix = (
        f"Delete {src.path} and run `python -m metalib.data download omniglot`, or replace it by "
        f"hand. " + how_to_get_omniglot(folder)
    )
    return CorruptDataError(f"{src.path}: {what}. {fix}")


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith(".")


def _index(src: _Source) -> dict[str, list[str]]:
    """Map ``"Alphabet/characterNN"`` -> sorted drawing locations (zip member names or paths)."""
    index: dict[str, list[str]] = {}
    top = f"images_{src.part}"
    if src.kind == "zip":
        try:
            with zipfile.ZipFile(src.path) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as e:
            raise _corrupt(src, f"not a readable zip archive ({e})") from e
        seen: set[str] = set()
        for name in names:
            if _is_junk(name) or not name.lower().endswith(".png"):
                continue
            # zipfile reads the last of two members with one name: the drawing stored under it would be
            # decoded twice and the other lost (20 names, 19 drawings), so a repeated name is corruption
            if name in seen:
                raise _corrupt(src, f"member {name} appears twice in the archive (one drawing stored twice "
                                    "under one name, another lost)")
            seen.add(name)
            parts = name.split("/")
            if len(parts) != 4 or parts[0] != top:
                raise _corrupt(src, f"unexpected member {name!r} (expected {top}/<Alphabet>/<character>/<drawing>.png)")
            index.setdefault(f"{parts[1]}/{parts[2]}", []).append(name)
    else:
        for alphabet in sorted(os.listdir(src.path)):
            adir = src.path / alphabet
            if not adir.is_dir() or alphabet.startswith("."):
                continue
            for char in sorted(os.listdir(adir)):
                cdir = adir / char
                if cdir.is_dir():
                    pngs = [str(cdir / f) for f in os.listdir(cdir) if f.lower().endswith(".png") and not f.startswith(".")]
                    index[f"{alphabet}/{char}"] = pngs
    return {c: sorted(v) for c, v in sorted(index.items())}


def _check_complete(src: _Source, index: dict[str, list[str]]) -> None:
    want = EXPECTED[src.part]
    n_alpha = len({c.split("/")[0] for c in index})
    problems = []
    if n_alpha != want["alphabets"]:
        problems.append(f"{n_alpha} alphabets (expected {want['alphabets']})")
    if len(index) != want["characters"]:
        problems.append(f"{len(index)} characters (expected {want['characters']})")
    wrong = [f"{c} has {len(v)}" for c, v in index.items() if len(v) != N_DRAWINGS]
    if wrong:
        problems.append(
            f"{len(wrong)} characters without exactly {N_DRAWINGS} drawings (e.g. {', '.join(wrong[:3])})"
        )
    if problems:
        raise _corrupt(src, "incomplete Omniglot " + src.part + " set: " + "; ".join(problems))


# ----------------------------------------------------------------------------- decoding


def _decode_png(blob: bytes, size: int) -> np.ndarray:
    """PNG bytes -> ``[size, size]`` uint8 with background 0 and strokes 255.

    PIL refuses images above ``Image.MAX_IMAGE_PIXELS`` x 2 (DecompressionBombError) and only
    warns between 1x and 2x; :func:`_decode_part` turns both into :class:`CorruptDataError`.
    """
    with Image.open(io.BytesIO(blob)) as im:
        grey = im.convert("L")  # mode '1' -> 0/255, so the resize below can antialias
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.LANCZOS)
    return 255 - np.asarray(grey, dtype=np.uint8)


def _decode_part(
    src: _Source, index: dict[str, list[str]], size: int, progress: bool
) -> torch.Tensor:
    """Decode every drawing: returns uint8 ``[n_characters, 20, 1, size, size]``."""
    from tqdm.auto import tqdm

    chars = list(index)
    out = torch.empty((len(chars), N_DRAWINGS, 1, size, size), dtype=torch.uint8)
    view = out.numpy()  # shares memory: writing here fills the tensor without a copy
    zf = zipfile.ZipFile(src.path) if src.kind == "zip" else None
    bar = tqdm(total=len(chars) * N_DRAWINGS, desc=f"decoding Omniglot {src.part}",
               unit="img", disable=not show_progress(progress), leave=False)
    try:
        with warnings.catch_warnings():
            # a PNG declaring > MAX_IMAGE_PIXELS is a decompression bomb, not a 105x105 drawing
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            for ci, char in enumerate(chars):
                for di, loc in enumerate(index[char]):
                    try:
                        blob = zf.read(loc) if zf is not None else Path(loc).read_bytes()
                        view[ci, di, 0] = _decode_png(blob, size)
                    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                        raise _corrupt(src, f"member {loc} is a decompression bomb ({_one_line(e)})") from e
                    except (zipfile.BadZipFile, zlib.error, OSError, UnidentifiedImageError, ValueError) as e:
                        raise _corrupt(src, f"cannot decode {loc} ({_one_line(e)})") from e
                bar.update(N_DRAWINGS)
    finally:
        bar.close()
        if zf is not None:
            zf.close()
    return out


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def load_part(
    part: str,
    root: str | os.PathLike[str] | None = None,
    image_size: int = 28,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Optional[bool] = None,
) -> tuple[torch.Tensor, list[str], Path, bool, str]:
    """Load one archive (``"background"`` or ``"evaluation"``), unrotated, through the cache.

    Returns:
        ``(images, characters, cache_path, from_cache, source)`` where ``images`` is uint8
        ``[n_characters, 20, 1, image_size, image_size]`` and ``characters[i]`` is
        ``"Alphabet/characterNN"`` (sorted).
    """
    check_choice("Omniglot part", part, PARTS)
    size = check_image_size(image_size, ORIGINAL_SIZE)
    src = _require_source(part, root)
    cdir, _why = resolve_cache_dir(root, cache_dir)
    cpath = cdir / f"omniglot-{part}-{size}px-{path_tag(src.path.parent)}.pt"
    expect: dict[str, Any] = {"dataset": "omniglot", "part": part, "image_size": size}
    hit = load_cache(cpath, expect, [src.path])
    if hit is not None:
        images, meta = hit
        return images, list(meta["class_names"]), cpath, True, str(src.path)
    index = _index(src)
    _check_complete(src, index)
    sources = [fingerprint(src.path)]  # taken before decoding: a change meanwhile shows up next time
    images = _decode_part(src, index, size, progress)
    meta = dict(expect, class_names=list(index), sources=sources,
                pixels="uint8; 0 = background, 255 = stroke (PNG inverted)")
    try:
        save_cache(cpath, images, meta)
    except OSError as e:  # a full disk should not stop the experiment; it only costs speed
        warn_not_cached(f"Omniglot {part}", cpath, e)
    return images, list(index), cpath, False, str(src.path)


# ----------------------------------------------------------------------------- splits


def _read_list(scheme: str, split: str) -> list[str]:
    path = _SPLIT_DIR / scheme / f"{split}.txt"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def split_classes(split: str = "train", splits: str = "vinyals", rotations: bool = True) -> list[str]:
    """The class names of a shipped split list, ``"Alphabet/characterNN/rotNNN"``.

    Works without the data for ``"vinyals"`` and ``"maml"`` (the lists ship with metalib); the
    ``"background"`` scheme takes every character of an archive, so it needs the data
    (use :class:`Omniglot`).
    """
    check_choice("splits", splits, tuple(SPLIT_SCHEMES))
    check_choice(f"split for splits={splits!r}", split, SPLIT_SCHEMES[splits])
    if not isinstance(rotations, bool):
        raise TypeError(f"rotations must be a bool, got {type(rotations).__name__}")
    if splits == "background":
        raise ValueError("the 'background' scheme lists every character of an archive; load it with Omniglot()")
    lines = _read_list(splits, split)
    if splits == "vinyals":  # the Vinyals lists name every rotation explicitly
        return lines if rotations else [ln for ln in lines if ln.endswith("/rot000")]
    degrees = ROTATIONS if rotations else (0,)
    return [f"{c}/rot{d:03d}" for c in lines for d in degrees]


class Omniglot(ClassImageSet):
    """An Omniglot split as a uint8 tensor grouped by class.

    Args:
        split: which part of the scheme: ``"train"``, ``"val"``, ``"test"``, ``"trainval"``
            (``vinyals``, ``maml``) or ``"train"``/``"test"`` (``background``; aliases
            ``"background"``/``"evaluation"``).
        splits: the split scheme:

            * ``"vinyals"``: Vinyals et al. 2016 as shipped by Snell et al. (1028 / 172 / 423
              characters for train / val / test, x4 rotations = 4112 / 688 / 1692 classes;
              trainval = train + val). The lists name each rotation.
            * ``"maml"``: Finn et al. 2017's sizes (1100 train + 100 val = 1200 meta-training
              characters, 423 test). Finn's code shuffles ``os.listdir`` order with
              ``random.seed(1)``, which is not reproducible across machines, so metalib ships
              its own fixed lists: all 1623 ``"Alphabet/characterNN"`` names, background then
              evaluation, each sorted, shuffled with ``random.Random(1).shuffle``; the first
              1100 are train, the next 100 val, the rest (423) test, trainval = first 1200.
            * ``"background"``: Lake et al.'s archives: train = images_background (964
              characters), test = images_evaluation (659).
        image_size: side of the square images (default 28; 105 = original, no resize).
        root: data root (default: ``$METALIB_DATA``, else ``<project>/data``).
        rotations: add the 90/180/270 degree rotations as new classes (default True, as the
            papers do). For ``vinyals``, False keeps only the ``rot000`` lines.
        cache_dir: cache folder (default: ``$METALIB_CACHE``, else ``<root>/cache`` if the root is
            the user's own and writable, else the per-user cache folder, ``~/.cache/metalib`` on Linux).
        progress: show a progress bar while decoding the archives (first use only); default: only when
            stderr is a terminal (never inside a notebook, whose stored outputs must not depend on a cold cache).

    Attributes:
        images: uint8 ``[n_classes, 20, 1, image_size, image_size]``, background 0, strokes 255.
        class_names: ``"Alphabet/characterNN/rotNNN"`` per class.
    """

    def __init__(
        self,
        split: str = "train",
        splits: str = "vinyals",
        image_size: int = 28,
        root: str | os.PathLike[str] | None = None,
        rotations: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: Optional[bool] = None,
    ) -> None:
        check_choice("splits", splits, tuple(SPLIT_SCHEMES))
        check_choice(f"split for splits={splits!r}", split, SPLIT_SCHEMES[splits])
        if not isinstance(rotations, bool):
            raise TypeError(f"rotations must be a bool, got {type(rotations).__name__}")
        size = check_image_size(image_size, ORIGINAL_SIZE)

        if splits == "background":
            parts = ["background" if split in ("train", "background") else "evaluation"]
        else:
            wanted = split_classes(split, splits, rotations)
            parts = list(PARTS)
        loaded = [load_part(p, root, size, cache_dir, progress) for p in parts]
        base = loaded[0][0] if len(loaded) == 1 else torch.cat([x[0] for x in loaded])
        chars = [c for x in loaded for c in x[1]]
        if splits == "background":
            degrees = ROTATIONS if rotations else (0,)
            wanted = [f"{c}/rot{d:03d}" for c in chars for d in degrees]

        row = {c: i for i, c in enumerate(chars)}
        missing = sorted({w.rsplit("/", 1)[0] for w in wanted} - row.keys())
        if missing:
            raise CorruptDataError(
                f"split {splits}/{split} names {len(missing)} characters that the archives in "
                f"{omniglot_dir(root)} do not hold (e.g. {', '.join(missing[:3])}). "
                + how_to_get_omniglot(omniglot_dir(root))
            )
        idx = torch.tensor([row[w.rsplit("/", 1)[0]] for w in wanted], dtype=torch.long)
        ks = torch.tensor([int(w.rsplit("/rot", 1)[1]) // 90 for w in wanted], dtype=torch.long)
        images = base[idx]  # advanced indexing copies, so rotating below never touches the cache
        for k in (1, 2, 3):
            sel = (ks == k).nonzero().flatten()
            if len(sel):
                images[sel] = torch.rot90(images[sel], k, dims=(-2, -1))

        super().__init__(
            images,
            wanted,
            name="omniglot",
            split=split,
            cache_path=loaded[0][2] if len(loaded) == 1 else None,
            from_cache=all(x[3] for x in loaded),
            source=", ".join(x[4] for x in loaded),
        )
        self.splits = splits
        self.rotations = rotations
        self.cache_paths = [x[2] for x in loaded]


# ----------------------------------------------------------------------------- verify / download


def verify_omniglot(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Check each archive: present? complete (30+20 alphabets, 964+659 characters, 20 drawings
    each, every zip member's CRC)? the published bytes (torchvision's MD5)?

    Returns one dict per part with keys ``part, path, kind, present, complete, md5,
    published_md5, published_bytes, status`` (``status`` is a one-line verdict such as
    ``"complete, not the published bytes"``).
    """
    reports = []
    for part in PARTS:
        src = find_source(part, root)
        rep: dict[str, Any] = {
            "part": part, "path": str(omniglot_dir(root) / ARCHIVES[part]), "kind": None,
            "present": src is not None, "complete": False, "md5": None,
            "published_md5": PUBLISHED_MD5[part], "published_bytes": None,
        }
        if src is None:
            rep["status"] = "missing"
            reports.append(rep)
            continue
        rep.update(path=str(src.path), kind=src.kind)
        try:
            _check_complete(src, _index(src))
            if src.kind == "zip":
                with zipfile.ZipFile(src.path) as zf:
                    bad = zf.testzip()
                if bad is not None:
                    raise _corrupt(src, f"member {bad} fails its CRC check")
            rep["complete"] = True
        except CorruptDataError as e:
            rep["status"] = f"corrupt or incomplete: {e}"
        if src.kind == "zip":
            rep["md5"] = md5_file(src.path)
            rep["published_bytes"] = rep["md5"] == PUBLISHED_MD5[part]
        if rep["complete"]:
            if src.kind == "folder":
                rep["status"] = "complete (extracted folder; no published checksum to compare)"
            elif rep["published_bytes"]:
                rep["status"] = "complete, published bytes"
            else:
                rep["status"] = "complete, not the published bytes"
        reports.append(rep)
    return reports


def download_omniglot(
    root: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    opener: Any = None,
    progress: Optional[bool] = None,
    urls: dict[str, str] | None = None,
    md5: dict[str, str] | None = None,
) -> dict[str, str]:
    """Fetch the two archives from the dataset's home (brendenlake/omniglot on GitHub) into
    ``<root>/omniglot/``, each checked against the published MD5 before it replaces anything.

    A part whose archive or folder is already present and complete is skipped unless
    ``force=True``. Returns ``{part: "present" | "downloaded"}``. ``urls`` / ``md5``: per-part overrides of
    the addresses and of the published MD5s (another copy, e.g. a mirror or a test's local server).

    Raises:
        DownloadError: no network / HTTP error (the message says where to put the files by hand).
        ChecksumError: the bytes differ from the published ones; nothing was replaced.
    """
    folder = omniglot_dir(root)
    urls = {**URLS, **(urls or {})}
    md5 = {**PUBLISHED_MD5, **(md5 or {})}
    result = {}
    for part in PARTS:
        src = find_source(part, root)
        if src is not None and not force:
            try:
                _check_complete(src, _index(src))
                result[part] = "present"
                continue
            except CorruptDataError:
                pass  # incomplete/corrupt: fetch a good copy; it replaces the file only once verified
        download_file(urls[part], folder / ARCHIVES[part], md5=md5[part], opener=opener,
                      progress=progress, manual_hint=how_to_get_omniglot(folder))
        result[part] = "downloaded"
    return result
