"""miniImageNet: every on-disk format in miniature (generated here), pickles, errors, the real copy.

The real-data tests read only the test split (20 classes x 600, complete in the staged copy) and
check train/val through ``verify`` without decoding, to keep the suite short.
"""

from __future__ import annotations

import os
import pickle
import time

import pytest
import torch

from _data import require_miniimagenet
from metalib.data import (
    CorruptDataError,
    DataNotFoundError,
    MiniImageNet,
    PickleNotAllowedError,
    ravi_classes,
    verify_miniimagenet,
)
from metalib.data.__main__ import main as cli
from _data import fake_color, write_fake_miniimagenet

CLASSES = {"train": ["n111", "n222", "n333"], "val": ["n444", "n555"], "test": ["n666", "n777"]}


def _load(root, split="train", **kw):
    kw.setdefault("cache_dir", root / "cache")
    kw.setdefault("progress", False)
    return MiniImageNet(split, root=root, **kw)


def _assert_colours(ds, tol):
    """Every image has the solid colour that encodes its (class, index)."""
    means = ds.images.float().mean(dim=(-2, -1))  # [C, P, 3]
    for c in range(ds.n_classes):
        for i in range(ds.n_per_class):
            want = torch.tensor(fake_color(c, i), dtype=torch.float32)
            assert (means[c, i] - want).abs().max() <= tol, (c, i, means[c, i], want)


@pytest.mark.parametrize("fmt", ["zip", "folder", "nested"])
def test_image_formats(tmp_path, fmt):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=6, fmt=fmt)
    for split, names in CLASSES.items():
        ds = _load(tmp_path, split)
        assert ds.images.shape == (len(names), 6, 3, 84, 84) and ds.images.dtype == torch.uint8
        assert ds.class_names == sorted(names) and not ds.from_cache and not ds.ravi_split
        _assert_colours(ds, tol=3)  # JPEG of a flat colour is exact to a few levels


def test_cache_is_reused_and_tracks_the_csv(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=4)
    first = _load(tmp_path, "val")
    second = _load(tmp_path, "val")
    assert second.from_cache and torch.equal(first.images, second.images)
    assert second.cache_path == first.cache_path and first.cache_path.is_file()
    # dropping the last row of every class from the CSV changes the split -> rebuild
    lines = (folder / "val.csv").read_text().splitlines()
    keep = [ln for ln in lines if not ln.startswith(("n44400000004", "n55500000004"))]
    (folder / "val.csv").write_text("\n".join(keep) + "\n")
    third = _load(tmp_path, "val")
    assert not third.from_cache and third.images.shape[1] == 3


def test_smaller_image_size(tmp_path):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2)
    ds = _load(tmp_path, "test", image_size=32)
    assert ds.images.shape == (2, 2, 3, 32, 32)
    _assert_colours(ds, tol=3)
    assert _load(tmp_path, "test").images.shape[-1] == 84  # cached separately


def test_unequal_counts_are_truncated_with_a_warning(tmp_path):
    write_fake_miniimagenet(tmp_path, {"train": ["n1", "n2", "n3"]}, n_per_class={"n1": 5, "n2": 3, "n3": 4})
    with pytest.warns(UserWarning, match="between 3 and 5 images.*keeping the first 3"):
        ds = _load(tmp_path, "train")
    assert ds.images.shape == (3, 3, 3, 84, 84)
    _assert_colours(ds, tol=3)


def test_without_csv_the_ravi_class_list_is_used(tmp_path):
    wnids = ravi_classes("test")
    write_fake_miniimagenet(tmp_path, {"test": wnids[:2], "train": ravi_classes("train")[:1]},
                            n_per_class=3, with_csv=False)
    ds = _load(tmp_path, "test")
    assert ds.class_names == wnids[:2] and ds.images.shape == (2, 3, 3, 84, 84)
    _assert_colours(ds, tol=3)


def test_csv_listing_a_missing_image(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2, fmt="folder")
    os.remove(folder / "images" / "n66600000002.jpg")
    with pytest.raises(CorruptDataError, match="1 listed images are not in .*n66600000002.jpg"):
        _load(tmp_path, "test")
    rep = {r["split"]: r for r in verify_miniimagenet(tmp_path)}
    assert rep["test"]["missing_images"] == 1 and rep["test"]["status"].startswith("incomplete")
    assert rep["train"]["status"] == "ok: 3 classes x 2 images (NOT Ravi's classes; subset: Ravi has 600/class)"


def test_bad_csv_header(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2)
    (folder / "train.csv").write_text("name,class\nn11100000001.jpg,n111\n")
    with pytest.raises(CorruptDataError, match="header 'filename,label'"):
        _load(tmp_path, "train")


def test_corrupt_zip(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2)
    (folder / "images.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CorruptDataError, match="images.zip is not a readable zip"):
        _load(tmp_path, "train")


def test_missing_data_says_exactly_what_to_put_where(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        _load(tmp_path, "train")
    msg = str(e.value)
    for needle in (str(tmp_path / "mini-imagenet"), "images.zip", "train.csv", "val.csv", "test.csv",
                   "mini-imagenet-cache-", "allow_pickle=True", "METALIB_DATA", "no stable public download"):
        assert needle in msg, needle


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"split": "validate"}, ValueError, "unknown miniImageNet split 'validate'"),
        ({"split": 1}, TypeError, "must be a str"),
        ({"image_size": 85}, ValueError, "between 1 and 84"),
        ({"image_size": "84"}, TypeError, "image_size must be an int"),
        ({"allow_pickle": "yes"}, TypeError, "allow_pickle must be a bool"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    split = kwargs.pop("split", "train")
    with pytest.raises(error, match=match):
        _load(tmp_path, split, **kwargs)


def test_validation_alias(tmp_path):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2)
    assert _load(tmp_path, "validation").split == "val"


# ----------------------------------------------------------------------------- pickles


@pytest.mark.parametrize("fmt", ["learn2learn", "gidaris"])
def test_pickles_need_opt_in_then_convert_once(tmp_path, fmt):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=5, fmt=fmt)
    with pytest.raises(PickleNotAllowedError) as e:
        _load(tmp_path, "val")
    assert "execute arbitrary code" in str(e.value) and "allow_pickle=True" in str(e.value)
    assert "images.zip" in str(e.value)  # the safe alternative
    ds = _load(tmp_path, "val", allow_pickle=True)
    assert ds.class_names == ["n444", "n555"] and ds.images.shape == (2, 5, 3, 84, 84)
    _assert_colours(ds, tol=0)  # pickles hold raw pixels: exact
    again = _load(tmp_path, "val")  # no opt-in needed: the safe tensor cache is read
    assert again.from_cache and torch.equal(again.images, ds.images)


def test_gidaris_global_labels_map_to_names(tmp_path):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2, fmt="gidaris")
    ds = _load(tmp_path, "test", allow_pickle=True)  # labels 5 and 6 in the file
    assert ds.class_names == ["n666", "n777"]
    _assert_colours(ds, tol=0)


def test_malicious_pickle_is_refused_even_with_opt_in(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "mini-imagenet"
    folder.mkdir()
    (folder / "mini-imagenet-cache-train.pkl").write_bytes(pickle.dumps({"image_data": Evil(), "class_dict": {}}))
    with pytest.raises(CorruptDataError, match="refusing to load .*system"):
        _load(tmp_path, "train", allow_pickle=True)
    assert not marker.exists()


def test_html_saved_as_pickle_is_named_as_such(tmp_path):
    folder = tmp_path / "mini-imagenet"
    folder.mkdir()
    (folder / "mini-imagenet-cache-test.pkl").write_bytes(
        b"\n<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>"
    )
    for allow in (False, True):  # reading the first bytes is safe: no opt-in needed to say so
        with pytest.raises(CorruptDataError, match="is an HTML page, not a pickle.*Google Drive"):
            _load(tmp_path, "test", allow_pickle=allow)


def test_truncated_and_foreign_pickles(tmp_path):
    folder = tmp_path / "mini-imagenet"
    folder.mkdir()
    blob = pickle.dumps({"data": 1})
    (folder / "mini-imagenet-cache-test.pkl").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptDataError, match="truncated or damaged"):
        _load(tmp_path, "test", allow_pickle=True)
    (folder / "mini-imagenet-cache-test.pkl").write_bytes(pickle.dumps({"foo": [1]}))
    with pytest.raises(CorruptDataError, match="unknown pickle layout"):
        _load(tmp_path, "test", allow_pickle=True)


def test_images_are_preferred_over_pickles(tmp_path):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2, fmt="learn2learn")
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=3, fmt="zip")
    ds = _load(tmp_path, "train")  # no PickleNotAllowedError: the zip is used
    assert ds.images.shape[1] == 3 and ds.source.endswith("images.zip")


def test_cli_prepare(tmp_path, capsys):
    write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=2, fmt="learn2learn")
    args = ["prepare", "mini-imagenet", "--root", str(tmp_path), "--cache-dir", str(tmp_path / "c"), "--split", "test"]
    assert cli(args) == 1
    assert "allow_pickle=True" in capsys.readouterr().err
    assert cli(args + ["--allow-pickle"]) == 0
    assert "(2, 2, 3, 84, 84)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- real data


@pytest.mark.data
def test_real_test_split():
    require_miniimagenet("test")
    ds = MiniImageNet("test", progress=False)
    assert ds.images.shape == (20, 600, 3, 84, 84) and ds.images.dtype == torch.uint8
    assert ds.class_names == ravi_classes("test") and ds.ravi_split
    x = ds.images[:, :50].float()
    assert 60 < x.mean() < 190 and x.std() > 30  # natural RGB photos, not blank or constant
    t = time.perf_counter()
    warm = MiniImageNet("test", progress=False)
    elapsed = time.perf_counter() - t
    assert warm.from_cache and torch.equal(warm.images[7, 123], ds.images[7, 123])
    assert elapsed < 1.5, f"warm load took {elapsed:.2f} s"


@pytest.mark.data
def test_real_verify_counts():
    """miniImageNet (train 400/class) staged copy: train 64x400, val 16x200, test 20x600."""
    require_miniimagenet("train")
    rep = {r["split"]: r for r in verify_miniimagenet()}
    assert (rep["train"]["classes"], rep["train"]["per_class"]) == (64, (400, 400))
    assert (rep["val"]["classes"], rep["val"]["per_class"]) == (16, (200, 200))
    assert (rep["test"]["classes"], rep["test"]["per_class"]) == (20, (600, 600))
    assert all(r["ravi_classes"] and r["missing_images"] == 0 for r in rep.values())
    assert rep["test"]["status"] == "ok: 20 classes x 600 images (Ravi classes; complete)"


def test_numpy1_era_pickle_paths_are_allowed(tmp_path):
    """Old pickles name numpy.core.multiarray (numpy 2 renamed it numpy._core)."""
    import numpy as np

    folder = tmp_path / "mini-imagenet"
    folder.mkdir()
    images = np.zeros((4, 84, 84, 3), dtype=np.uint8)
    images[2:] = 9
    blob = pickle.dumps({"data": images, "labels": [np.int64(7)] * 2 + [np.int64(8)] * 2,
                         "catname2label": {"nA": 7, "nB": 8}}, protocol=2)
    (folder / "miniImageNet_category_split_val.pickle").write_bytes(
        blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = _load(tmp_path, "val", allow_pickle=True)
    assert ds.class_names == ["nA", "nB"] and ds.images[1].min() == 9 and ds.images[0].max() == 0
