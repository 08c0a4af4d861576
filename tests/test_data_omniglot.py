"""Omniglot loading, caching, splits, download and verification.

Most tests build a miniature Omniglot in tmp_path (tests/_data.py.write_fake_omniglot) and
shrink the completeness expectations to match it. The tests marked ``data`` use the real copy
(``$METALIB_DATA``); without it they skip, or fail under ``CI``.
"""

from __future__ import annotations

import io
import os
import stat
import time
import urllib.error
import zipfile
from pathlib import Path

import pytest
import torch

import metalib.data.cache as cache_mod
import metalib.data.omniglot as omni
from _data import require_omniglot
from metalib.data import (
    ChecksumError,
    CorruptDataError,
    DataNotFoundError,
    DownloadError,
    Omniglot,
    cache_dir,
    data_root,
    split_classes,
    verify_omniglot,
)
from metalib.data.__main__ import main as cli
from metalib.data.cache import md5_file
from metalib.data.download import download_file
from _data import write_fake_omniglot

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A miniature Omniglot (2 + 1 alphabets x 2 characters x 20 drawings) counted as complete."""
    monkeypatch.setattr(omni, "EXPECTED", write_fake_omniglot(tmp_path))
    return tmp_path


def _load(root, **kw):
    kw.setdefault("cache_dir", Path(root) / "cache")
    kw.setdefault("progress", False)
    return Omniglot(root=root, **kw)


def _bits(row: torch.Tensor) -> int:
    return sum(1 << i for i, v in enumerate(row.tolist()) if v == 255)


# ----------------------------------------------------------------------------- paths


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("METALIB_DATA", raising=False)
    assert data_root() == Path(omni.__file__).resolve().parents[2] / "data"
    monkeypatch.setenv("METALIB_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"


def test_cache_dir_precedence_and_read_only_root(monkeypatch, tmp_path):
    monkeypatch.delenv("METALIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "root"
    root.mkdir()
    assert cache_dir(root) == (root / "cache", "<data root>/cache (data root is writable)")

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)  # like the shared data copy; root could still write, we must not
    try:
        path, why = cache_dir(ro)
        assert path == tmp_path / "xdg" / "metalib" and "read-only" in why
        assert not (ro / "cache").exists()
    finally:
        ro.chmod(0o755)

    monkeypatch.setenv("METALIB_CACHE", str(tmp_path / "envcache"))
    assert cache_dir(root)[0] == tmp_path / "envcache"
    assert cache_dir(root, tmp_path / "argcache")[0] == tmp_path / "argcache"


# ----------------------------------------------------------------------------- loading


def test_fake_zip_full_size_classes_and_pixels(fake):
    ds = _load(fake, split="train", splits="background", image_size=105, rotations=False)
    assert ds.images.shape == (4, 20, 1, 105, 105) and ds.images.dtype == torch.uint8
    assert ds.class_names == [f"Back_{a}/character{c:02d}/rot000" for a in (0, 1) for c in (1, 2)]
    for c in range(4):
        for d in range(20):
            img = ds.images[c, d, 0]
            assert _bits(img[0]) == c  # the character id written into row 0
            assert _bits(img[1]) == d + 1  # drawings in file order
            # strokes (black in the PNG) are 255, background (white) is 0
            assert (img[40:60, 40:60] == 255).all() and (img[70:, :] == 0).all()
    test = _load(fake, split="evaluation", splits="background", image_size=105, rotations=False)
    assert test.n_classes == 2 and _bits(test.images[0, 0, 0, 0]) == 4


def test_fake_folder_equals_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(omni, "EXPECTED", write_fake_omniglot(tmp_path / "z"))
    write_fake_omniglot(tmp_path / "f", as_zip=False)
    a = _load(tmp_path / "z", split="train", splits="background")
    b = _load(tmp_path / "f", split="train", splits="background")
    assert "images_background.zip" in a.source and b.source.endswith("images_background")
    assert torch.equal(a.images, b.images) and a.class_names == b.class_names


def test_resize_is_antialiased(fake):
    ds = _load(fake, split="train", splits="background", image_size=28, rotations=False)
    assert ds.images.shape == (4, 20, 1, 28, 28)
    values = ds.images.unique()
    # Lanczos on the greyscale image produces intermediate levels; nearest would give only 0/255
    assert ((values > 0) & (values < 255)).any()
    assert ds.images[:, :, :, 12, 12].float().mean() > 200  # the stroke square (rows 40-60 of 105)


def test_rotations_are_new_classes(fake):
    ds = _load(fake, split="train", splits="background", image_size=28)
    assert ds.n_classes == 16
    assert ds.class_names[:4] == [f"Back_0/character01/rot{d:03d}" for d in (0, 90, 180, 270)]
    for k in range(4):  # counter-clockwise by k * 90 degrees
        assert torch.equal(ds.images[k], torch.rot90(ds.images[0], k, dims=(-2, -1)))
    assert not torch.equal(ds.images[0], ds.images[1])


def test_cache_reused_and_rebuilt_when_the_source_changes(fake):
    first = _load(fake, split="train", splits="background")
    assert not first.from_cache and first.cache_path.is_file()
    assert first.cache_path.with_suffix(".json").is_file()
    second = _load(fake, split="train", splits="background")
    assert second.from_cache and torch.equal(first.images, second.images)

    zpath = fake / "omniglot" / "images_background.zip"
    os.utime(zpath, ns=(1, 1))  # same bytes, new mtime: the sha256 still matches
    assert _load(fake, split="train", splits="background").from_cache

    # different bytes: the cache must be rebuilt from the new archive
    with zipfile.ZipFile(zpath) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    first_png = sorted(members)[0]
    members[first_png] = members[sorted(members)[-1]]
    with zipfile.ZipFile(zpath, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    third = _load(fake, split="train", splits="background")
    assert not third.from_cache
    assert not torch.equal(third.images, first.images)


def test_cache_write_is_atomic(fake, monkeypatch):
    good = _load(fake, split="train", splits="background", rotations=False)
    before = good.cache_path.read_bytes()
    real_save = torch.save

    def broken_save(obj, f):  # writes half a file, then the disk "fails"
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[:1000])
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache_mod.save_cache(good.cache_path, good.images, {"dataset": "x"})
    assert good.cache_path.read_bytes() == before  # the old cache is intact
    leftovers = [p.name for p in good.cache_path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # and the loader still uses it
    assert _load(fake, split="train", splits="background", rotations=False).from_cache


def test_corrupt_cache_file_is_rebuilt(fake):
    ds = _load(fake, split="train", splits="background", rotations=False)
    ds.cache_path.write_bytes(b"garbage")
    with pytest.warns(cache_mod.DamagedCacheWarning, match="not the zip archive torch.save writes"):
        again = _load(fake, split="train", splits="background", rotations=False)
    assert not again.from_cache and torch.equal(again.images, ds.images)


# ----------------------------------------------------------------------------- bad data


def test_missing_data_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("METALIB_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as e:
        _load(tmp_path, split="train")
    msg = str(e.value)
    assert str(tmp_path / "omniglot") in msg and "images_background.zip" in msg
    assert "METALIB_DATA" in msg and "python -m metalib.data download omniglot" in msg


def test_corrupt_zip_names_the_file(fake):
    zpath = fake / "omniglot" / "images_background.zip"
    zpath.write_bytes(b"this is not a zip")
    with pytest.raises(CorruptDataError) as e:
        _load(fake, split="train", splits="background")
    assert str(zpath) in str(e.value) and "not a readable zip" in str(e.value)
    assert "download omniglot" in str(e.value)


def test_incomplete_archive_is_reported(fake):
    zpath = fake / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(zpath) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    dropped = sorted(members)[3]
    del members[dropped]
    with zipfile.ZipFile(zpath, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(CorruptDataError, match="incomplete Omniglot background set.*has 19"):
        _load(fake, split="train", splits="background")
    rep = {r["part"]: r for r in verify_omniglot(fake)}
    assert not rep["background"]["complete"] and rep["evaluation"]["complete"]


def test_verify_reports_crc_damage_and_checksums(fake):
    rep = {r["part"]: r for r in verify_omniglot(fake)}
    assert rep["background"]["status"] == "complete, not the published bytes"
    assert rep["background"]["md5"] == md5_file(fake / "omniglot" / "images_background.zip")

    zpath = fake / "omniglot" / "images_evaluation.zip"
    with zipfile.ZipFile(zpath) as zf:
        info = zf.infolist()[5]
    raw = bytearray(zpath.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF  # damage one member's compressed bytes
    zpath.write_bytes(bytes(raw))
    rep = {r["part"]: r for r in verify_omniglot(fake)}
    assert not rep["evaluation"]["complete"] and "corrupt" in rep["evaluation"]["status"]


def test_verify_folder_and_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(omni, "EXPECTED", write_fake_omniglot(tmp_path, as_zip=False))
    rep = {r["part"]: r for r in verify_omniglot(tmp_path)}
    assert rep["background"]["status"].startswith("complete (extracted folder")
    rep = {r["part"]: r for r in verify_omniglot(tmp_path / "nothing")}
    assert rep["background"]["status"] == "missing" and not rep["background"]["present"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"splits": "lake"}, ValueError, "unknown splits 'lake'"),
        ({"split": "validation"}, ValueError, "unknown split"),
        ({"splits": "background", "split": "val"}, ValueError, "unknown split"),
        ({"image_size": 0}, ValueError, "between 1 and 105"),
        ({"image_size": 106}, ValueError, "does not upsample"),
        ({"image_size": 28.0}, TypeError, "image_size must be an int"),
        ({"image_size": True}, TypeError, "image_size must be an int"),
        ({"rotations": "yes"}, TypeError, "rotations must be a bool"),
        ({"split": 3}, TypeError, "must be a str"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        _load(tmp_path, **kwargs)  # checked before looking for files


# ----------------------------------------------------------------------------- splits (no data)


def _chars(lines):
    return {ln.rsplit("/", 1)[0] for ln in lines}


def test_vinyals_split_lists():
    sizes = {s: len(split_classes(s, "vinyals")) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 4112, "val": 688, "test": 1692, "trainval": 4800}
    train, val, test = (set(split_classes(s)) for s in ("train", "val", "test"))
    assert split_classes("trainval") == split_classes("train") + split_classes("val")
    assert not (train & val or train & test or val & test)
    assert len(_chars(train | val | test)) == 1623
    assert all(c.endswith(("/rot000", "/rot090", "/rot180", "/rot270")) for c in train)
    assert split_classes("test", rotations=False) == [c for c in split_classes("test") if c.endswith("rot000")]


def test_maml_split_lists_follow_the_documented_rule():
    import random

    chars = {s: _chars(split_classes(s, "maml", rotations=False)) for s in ("train", "val", "test", "trainval")}
    assert [len(chars[s]) for s in ("train", "val", "test", "trainval")] == [1100, 100, 423, 1200]
    assert chars["trainval"] == chars["train"] | chars["val"]
    assert not (chars["trainval"] & chars["test"])
    vinyals = _chars(split_classes("train") + split_classes("val") + split_classes("test"))
    assert chars["trainval"] | chars["test"] == vinyals  # the same 1623 characters
    # The rule: background characters sorted, then evaluation sorted, random.Random(1).shuffle.
    background = {c for c in vinyals if c.split("/")[0] in _BACKGROUND}
    ordered = sorted(background) + sorted(vinyals - background)
    random.Random(1).shuffle(ordered)
    lines = omni._read_list("maml", "trainval") + omni._read_list("maml", "test")
    assert lines == ordered
    assert len(split_classes("train", "maml")) == 4400  # x4 rotations


_BACKGROUND = {
    "Alphabet_of_the_Magi", "Anglo-Saxon_Futhorc", "Arcadian", "Armenian", "Asomtavruli_(Georgian)",
    "Balinese", "Bengali", "Blackfoot_(Canadian_Aboriginal_Syllabics)", "Braille", "Burmese_(Myanmar)",
    "Cyrillic", "Early_Aramaic", "Futurama", "Grantha", "Greek", "Gujarati", "Hebrew",
    "Inuktitut_(Canadian_Aboriginal_Syllabics)", "Japanese_(hiragana)", "Japanese_(katakana)", "Korean",
    "Latin", "Malay_(Jawi_-_Arabic)", "Mkhedruli_(Georgian)", "N_Ko",
    "Ojibwe_(Canadian_Aboriginal_Syllabics)", "Sanskrit", "Syriac_(Estrangelo)", "Tagalog", "Tifinagh",
}


def test_vinyals_split_on_fake_data_names_missing_characters(fake):
    with pytest.raises(CorruptDataError, match="names 1028 characters that the archives"):
        _load(fake, split="train", splits="vinyals")


# ----------------------------------------------------------------------------- download


def _fake_zip(path: Path, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("images_background/x.txt", payload)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_download_good_checksum_puts_the_file_in_place(tmp_path):
    src = tmp_path / "remote.zip"
    _fake_zip(src, b"good")
    dest = tmp_path / "data" / "omniglot" / "images_background.zip"
    out = download_file(src.as_uri(), dest, md5=md5_file(src), progress=False)
    assert out == dest and dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["images_background.zip"]


def test_download_bad_checksum_keeps_the_old_file(tmp_path):
    src = tmp_path / "remote.zip"
    _fake_zip(src, b"new")
    dest = tmp_path / "images_background.zip"
    old = _fake_zip(dest, b"old and good")
    with pytest.raises(ChecksumError, match="does not match the published"):
        download_file(src.as_uri(), dest, md5="0" * 32, progress=False)
    assert dest.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_background.zip", "remote.zip"]


def test_download_interrupted_leaves_nothing_behind(tmp_path):
    class Broken(io.BytesIO):
        headers: dict = {"Content-Length": "100000"}

        def read(self, n=-1):
            if self.tell() > 10:
                raise ConnectionResetError("connection reset")
            return super().read(5)

    def opener(url, timeout):
        return Broken(b"x" * 100)

    dest = tmp_path / "images_evaluation.zip"
    with pytest.raises(DownloadError, match="broke off"):
        download_file("https://example.invalid/x.zip", dest, md5="0" * 32, opener=opener, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_without_network_says_where_to_put_files(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    with pytest.raises(DownloadError) as e:
        omni.download_omniglot(tmp_path, opener=offline, progress=False)
    assert "no network" in str(e.value) and "Put images_background.zip" in str(e.value)
    assert str(tmp_path / "omniglot") in str(e.value)
    assert list((tmp_path / "omniglot").iterdir()) == []


def test_download_omniglot_skips_complete_parts_and_fetches_missing(fake, tmp_path, monkeypatch):
    zpath = fake / "omniglot" / "images_evaluation.zip"
    remote = tmp_path / "remote_eval.zip"
    remote.write_bytes(zpath.read_bytes())
    zpath.unlink()
    monkeypatch.setitem(omni.PUBLISHED_MD5, "evaluation", md5_file(remote))
    got = omni.download_omniglot(fake, urls={"evaluation": remote.as_uri(), "background": "file:///nonexistent"},
                                 progress=False)
    assert got == {"background": "present", "evaluation": "downloaded"}
    assert zpath.read_bytes() == remote.read_bytes()


def test_cli_info_verify_download(fake, capsys, monkeypatch):
    assert cli(["info", "--root", str(fake)]) == 0
    out = capsys.readouterr().out
    assert "images_background.zip" in out and "cache" in out and str(fake) in out
    assert cli(["verify", "--root", str(fake)]) == 0  # Omniglot verified; miniImageNet absent, only listed
    out = capsys.readouterr().out
    assert "complete, not the published bytes" in out and "mini-imagenet: absent" in out
    assert cli(["verify", "mini-imagenet", "--root", str(fake)]) == 1  # named, so it must be there
    capsys.readouterr()
    assert cli(["download", "mini-imagenet", "--root", str(fake)]) == 1
    assert "no stable public download" in capsys.readouterr().err
    monkeypatch.setattr(omni, "URLS", {p: "file:///nonexistent/x.zip" for p in omni.PARTS})
    (fake / "omniglot" / "images_background.zip").unlink()
    assert cli(["download", "omniglot", "--root", str(fake)]) == 1
    assert "Put images_background.zip" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def real_train():
    """Vinyals train from the real copy; the first call decodes both archives into the cache."""
    require_omniglot()
    return Omniglot("train", progress=False)


@pytest.mark.data
def test_real_vinyals_splits(real_train):
    assert real_train.images.shape == (4112, 20, 1, 28, 28)
    assert real_train.class_names == split_classes("train")
    for split, n in (("val", 688), ("test", 1692), ("trainval", 4800)):
        ds = Omniglot(split, progress=False)
        assert ds.images.shape == (n, 20, 1, 28, 28) and ds.from_cache
        assert ds.class_names == split_classes(split)


@pytest.mark.data
def test_real_other_schemes(real_train):
    assert Omniglot("train", "background").n_classes == 964 * 4
    assert Omniglot("test", "background", rotations=False).n_classes == 659
    assert Omniglot("train", "maml").n_classes == 1100 * 4
    assert Omniglot("test", "maml").n_classes == 423 * 4


@pytest.mark.data
def test_real_pixels_and_rotations(real_train):
    x = real_train.images
    assert x.dtype == torch.uint8 and x.max() == 255
    assert (x == 0).float().mean() > 0.6  # background dominates and is 0 (inverted PNG)
    assert 0.02 < (x.float() / 255).mean() < 0.2  # strokes are a small bright part
    names = real_train.class_names
    assert names[0].endswith("rot000") and names[1].endswith("rot090")
    assert torch.equal(x[1], torch.rot90(x[0], 1, dims=(-2, -1)))
    assert torch.equal(x[3], torch.rot90(x[0], 3, dims=(-2, -1)))


@pytest.mark.data
def test_real_warm_load_is_fast_and_cache_is_not_in_read_only_root(real_train):
    t = time.perf_counter()
    ds = Omniglot("train", progress=False)
    elapsed = time.perf_counter() - t
    assert ds.from_cache and torch.equal(ds.images, real_train.images)
    assert elapsed < 1.5, f"warm load took {elapsed:.2f} s"
    root = data_root()
    if not root.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        assert not (root / "cache").exists()
        assert all(not str(p).startswith(str(root)) for p in ds.cache_paths)


@pytest.mark.data
def test_real_verify():
    require_omniglot()
    rep = {r["part"]: r for r in verify_omniglot()}
    assert rep["background"]["complete"] and rep["evaluation"]["complete"]
    assert rep["background"]["status"].startswith("complete")


def test_cli_prepare_omniglot(fake, capsys):
    assert cli(["prepare", "omniglot", "--root", str(fake), "--cache-dir", str(fake / "c")]) == 0
    out = capsys.readouterr().out
    assert "omniglot train: (4, 20, 1, 28, 28)" in out and "omniglot test: (2, 20, 1, 28, 28)" in out
    assert sorted(p.suffix for p in (fake / "c").iterdir()) == [".json", ".json", ".pt", ".pt"]


def test_cache_never_goes_into_a_shared_data_root(monkeypatch, tmp_path):
    """A lab's shared copy (group-writable, or another user's) gets no cache, even where writable."""
    import os

    monkeypatch.delenv("METALIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)  # group-writable: a shared copy
    path, why = cache_dir(shared)
    assert path == tmp_path / "xdg" / "metalib" and "shared" in why
    assert not (shared / "cache").exists()
    shared.chmod(0o755)
    assert cache_dir(shared)[0] == shared / "cache"  # the user's own again
    (shared / "cache").rmdir()
    if os.geteuid() == 0:  # another owner's folder, writable for us (root) all the same
        os.chown(shared, 12345, -1)
        path, why = cache_dir(shared)
        assert path == tmp_path / "xdg" / "metalib" and not (shared / "cache").exists()
