"""Issue 17, data layer: nothing corrupt is ever used silently; every bad input and a full disk
give one clear line.

All tests use miniature datasets written into tmp_path (tests/_data.py); none needs the real
data.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import os
import re
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import metalib.data.omniglot as omni
import metalib.data.paths as paths_mod
from metalib.data import CorruptDataError, MiniImageNet, Omniglot, verify_miniimagenet
from metalib.data.__main__ import _parser
from metalib.data.__main__ import main as cli
from metalib.data.report import format_info, info
from _data import (require_miniimagenet, require_omniglot, write_fake_miniimagenet,
                                  write_fake_omniglot)

PROJECT = Path(__file__).resolve().parents[1]
CLASSES = {"train": ["n111", "n222", "n333"], "val": ["n444", "n555"], "test": ["n666", "n777"]}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setattr(omni, "EXPECTED", write_fake_omniglot(tmp_path))
    return tmp_path


def _omni(root, **kw):
    kw.setdefault("cache_dir", Path(root) / "cache")
    return Omniglot("train", splits="background", root=root, rotations=False, progress=False, **kw)


def _mini(root, split="train", **kw):
    kw.setdefault("cache_dir", Path(root) / "cache")
    return MiniImageNet(split, root=root, progress=False, **kw)


def _one_line(text: str) -> str:
    text = text.strip()
    assert text and "\n" not in text, f"not one line: {text!r}"
    assert "Traceback" not in text
    return text


def _run(args: list[str], **env) -> subprocess.CompletedProcess:
    # tests/ too: the scripts run here import the miniature-data writers from tests/_data.py
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT), str(PROJECT / "tests")]), **env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full, cwd=PROJECT,
                          timeout=180)


# ----------------------------------------------------------------------------- 1. cache payload digest


def _flip(path: Path, where: float, n: int = 64) -> None:
    raw = bytearray(path.read_bytes())
    start = int(len(raw) * where)
    for i in range(start, start + n):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
@pytest.mark.parametrize("dataset", ["omniglot", "mini-imagenet"])
def test_flipped_bytes_in_the_cache_are_detected_and_rebuilt(tmp_path, monkeypatch, dataset, where):
    if dataset == "omniglot":
        monkeypatch.setattr(omni, "EXPECTED", write_fake_omniglot(tmp_path))
        load = lambda: _omni(tmp_path)  # noqa: E731
    else:
        write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=6)
        load = lambda: _mini(tmp_path)  # noqa: E731
    first = load()
    good = first.images.clone()
    cache = first.cache_path
    _flip(cache, where)
    with pytest.warns(UserWarning) as rec:
        again = load()
    assert not again.from_cache and torch.equal(again.images, good)
    msgs = [str(w.message) for w in rec if str(cache) in str(w.message)]
    assert len(msgs) == 1 and "rebuil" in msgs[0], [str(w.message) for w in rec]
    _one_line(msgs[0])
    third = load()  # the rebuilt cache is good again
    assert third.from_cache and torch.equal(third.images, good)


def test_forged_all_zero_cache_with_a_valid_header_is_rebuilt(fake):
    first = _omni(fake)
    blob = torch.load(first.cache_path, weights_only=True)
    blob["images"] = torch.zeros_like(blob["images"])
    torch.save(blob, first.cache_path)
    with pytest.warns(UserWarning, match=re.escape(str(first.cache_path))):
        again = _omni(fake)
    assert not again.from_cache and torch.equal(again.images, first.images) and again.images.any()


def test_cache_without_a_digest_is_rebuilt(fake):
    first = _omni(fake)
    blob = torch.load(first.cache_path, weights_only=True)
    blob["meta"] = {k: v for k, v in blob["meta"].items() if "digest" not in k and "payload" not in k}
    torch.save(blob, first.cache_path)
    with pytest.warns(UserWarning, match=re.escape(str(first.cache_path))):
        again = _omni(fake)
    assert not again.from_cache and torch.equal(again.images, first.images)


def test_an_unreadable_cache_is_rebuilt_with_a_warning(fake):
    first = _omni(fake)
    first.cache_path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=re.escape(str(first.cache_path))):
        again = _omni(fake)
    assert not again.from_cache and torch.equal(again.images, first.images)


# ----------------------------------------------------------------------------- 3. full disk


def test_full_disk_at_fsync_while_caching_warns_and_returns_the_data(fake, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.warns(UserWarning) as rec:
        ds = _omni(fake)
    monkeypatch.undo()
    assert ds.images.shape == (4, 20, 1, 28, 28) and not ds.from_cache
    msgs = [str(w.message) for w in rec if "cache" in str(w.message)]
    assert len(msgs) == 1 and "disk full?" in msgs[0] and str(ds.cache_path) in msgs[0]
    _one_line(msgs[0])
    assert list((fake / "cache").iterdir()) == []  # no partial file, no temp file


_FULL_DISK_CACHE = r"""
import resource, signal, sys, warnings
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a file-size limit: writes fail with EFBIG
import metalib.data.omniglot as omni
from metalib.data import MiniImageNet, Omniglot
from _data import write_fake_miniimagenet, write_fake_omniglot
root = sys.argv[1]
omni.EXPECTED = write_fake_omniglot(root)
write_fake_miniimagenet(root, {"train": ["n111", "n222"]}, n_per_class=3)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
warnings.simplefilter("always")
warnings.showwarning = lambda m, *a, **k: print("WARNING", m)
ds = Omniglot("train", splits="background", root=root, cache_dir=root + "/cache", rotations=False, progress=False)
print("OMNIGLOT", tuple(ds.images.shape), ds.from_cache)
ds = MiniImageNet("train", root=root, cache_dir=root + "/cache", progress=False)
print("MINI", tuple(ds.images.shape), ds.from_cache)
"""


def test_full_disk_during_the_cache_write_warns_and_returns_the_data(tmp_path):
    res = _run(["-c", _FULL_DISK_CACHE, str(tmp_path)])
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout.splitlines()
    assert "OMNIGLOT (4, 20, 1, 28, 28) False" in out and "MINI (2, 3, 3, 84, 84) False" in out, res.stdout
    warns = [ln for ln in out if ln.startswith("WARNING")]
    assert len(warns) == 2 and all("disk full?" in w for w in warns), out
    assert "omniglot-background" in warns[0] and "mini-imagenet-train" in warns[1]
    assert list((tmp_path / "cache").iterdir()) == []  # nothing partial left behind


# ----------------------------------------------------------------------------- 4. CLI errors: one line


def _cli(capsys, args) -> tuple[int, str, str]:
    rc = cli(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_prepare_into_a_read_only_cache_dir_is_one_line_exit_2(fake, capsys):
    ro = fake / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for target in (ro, ro / "sub"):
            rc, _out, err = _cli(capsys, ["prepare", "omniglot", "--root", str(fake), "--cache-dir", str(target)])
            assert rc == 2
            line = _one_line(err)
            assert str(target) in line and "cannot be written" in line
            assert not (ro / "sub").exists()  # a read-only folder is not written into, even as root
    finally:
        ro.chmod(0o755)


def test_prepare_into_a_read_only_cache_dir_in_a_subprocess(fake):
    ro = fake / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        # the cache folder is resolved before the archives are indexed: no need for fake EXPECTED counts here
        res = _run(["-m", "metalib.data", "prepare", "omniglot", "--root", str(fake), "--cache-dir", str(ro)])
    finally:
        ro.chmod(0o755)
    assert res.returncode == 2 and res.stdout == ""
    _one_line(res.stderr)


@pytest.mark.parametrize("args, rc, needle", [
    (["prepare", "omniglot", "--image-size", "0"], 2, "--image-size"),
    (["prepare", "omniglot", "--image-size", "-3"], 2, "--image-size"),
    (["prepare", "omniglot", "--image-size", "106"], 2, "does not upsample"),
    (["prepare", "omniglot", "--image-size", "x"], 2, "--image-size"),
    (["prepare", "imagenet"], 2, "imagenet"),
    (["verify", "imagenet"], 2, "imagenet"),
    (["frobnicate"], 2, "frobnicate"),
    (["prepare", "mini-imagenet", "--split", "holdout"], 2, "holdout"),
    (["prepare", "mini-imagenet"], 1, "mini-imagenet"),  # data missing: exit 1, as documented
])
def test_cli_errors_are_one_line(fake, capsys, args, rc, needle):
    extra = ["--cache-dir", str(fake / "c")] if args[0] == "prepare" else []
    got, out, err = _cli(capsys, args + ["--root", str(fake)] + extra)
    assert got == rc
    line = _one_line(err)
    assert needle in line
    if "--image-size" in args:
        assert not (fake / "c").exists() or not any((fake / "c").glob("*.pt"))  # nothing was built


def test_cli_unexpected_error_is_one_line(fake, capsys, monkeypatch):
    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error\nsecond line")

    monkeypatch.setattr(omni, "_decode_part", boom)
    rc, _out, err = _cli(capsys, ["prepare", "omniglot", "--root", str(fake), "--cache-dir", str(fake / "c")])
    assert rc == 2 and "Input/output error" in _one_line(err)


def test_cli_warnings_are_one_line(fake, capsys, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    rc, out, err = _cli(capsys, ["prepare", "omniglot", "--root", str(fake), "--cache-dir", str(fake / "c")])
    assert rc == 0 and "omniglot train" in out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("warning: ") for ln in lines) and "disk full?" in lines[0]


# ----------------------------------------------------------------------------- 5. duplicate names in images.zip


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (84, 84), colour).save(buf, format="JPEG")
    return buf.getvalue()


def test_duplicate_file_names_in_the_miniimagenet_zip_are_refused(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=3)
    with zipfile.ZipFile(folder / "images.zip", "a") as zf:
        zf.writestr("images/extra/n11100000002.jpg", _jpeg((0, 0, 0)))
    with pytest.raises(CorruptDataError) as e:
        _mini(tmp_path)
    msg = _one_line(str(e.value))
    assert "images/n11100000002.jpg" in msg and "images/extra/n11100000002.jpg" in msg
    assert str(folder / "images.zip") in msg
    rep = {r["split"]: r for r in verify_miniimagenet(tmp_path)}
    assert rep["train"]["status"].startswith("corrupt") and "images/extra/n11100000002.jpg" in rep["train"]["status"]


def test_duplicate_file_names_in_the_images_folder_are_refused(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=3, fmt="nested")
    (folder / "images" / "n222" / "n11100000001.jpg").write_bytes(_jpeg((0, 0, 0)))
    with pytest.raises(CorruptDataError, match=r"n111/n11100000001\.jpg.*n222/n11100000001\.jpg"):
        _mini(tmp_path)


# ----------------------------------------------------------------------------- 6. decompression bombs


def _png_bomb(side: int = 30000) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (105, 105), 1).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:20] = side.to_bytes(4, "big")
    b[20:24] = side.to_bytes(4, "big")
    b[29:33] = zlib.crc32(bytes(b[12:29])).to_bytes(4, "big")
    return bytes(b)


def _jpeg_bomb(side: int = 30000) -> bytes:
    b = bytearray(_jpeg((10, 20, 30)))
    i = b.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height (2), width (2)
    b[i + 5:i + 7] = side.to_bytes(2, "big")
    b[i + 7:i + 9] = side.to_bytes(2, "big")
    return bytes(b)


def _replace_member(zpath: Path, name: str, blob: bytes) -> None:
    with zipfile.ZipFile(zpath) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    assert name in members
    members[name] = blob
    with zipfile.ZipFile(zpath, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def test_decompression_bomb_png_in_the_omniglot_zip(fake):
    zpath = fake / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(zpath) as zf:
        victim = sorted(zf.namelist())[5]
    _replace_member(zpath, victim, _png_bomb())
    with pytest.raises(CorruptDataError) as e:
        _omni(fake)
    msg = _one_line(str(e.value))
    assert victim in msg and str(zpath) in msg and "decompression bomb" in msg


def test_decompression_bomb_jpeg_in_the_miniimagenet_zip(tmp_path):
    folder = write_fake_miniimagenet(tmp_path, CLASSES, n_per_class=3)
    _replace_member(folder / "images.zip", "images/n22200000003.jpg", _jpeg_bomb())
    with pytest.raises(CorruptDataError) as e:
        _mini(tmp_path)
    msg = _one_line(str(e.value))
    assert "n22200000003.jpg" in msg and "decompression bomb" in msg


# ----------------------------------------------------------------------------- 7. --image-size 0


def test_prepare_image_size_zero_is_refused(fake, capsys):
    rc, out, err = _cli(capsys, ["prepare", "omniglot", "--image-size", "0", "--root", str(fake),
                                 "--cache-dir", str(fake / "c")])
    assert rc == 2 and out == "" and "positive" in _one_line(err)
    assert not (fake / "c").exists() or not list((fake / "c").glob("*.pt"))


# ----------------------------------------------------------------------------- 8. verify [name]


def test_verify_checks_what_is_present_and_names_what_is_absent(fake, capsys):
    rc, out, _err = _cli(capsys, ["verify", "--root", str(fake)])
    assert rc == 0  # Omniglot complete, miniImageNet absent
    assert "complete, not the published bytes" in out
    assert re.search(r"mini-imagenet.*absent", out)
    rc, out, _err = _cli(capsys, ["verify", "omniglot", "--root", str(fake)])
    assert rc == 0 and "mini-imagenet" not in out
    rc, out, err = _cli(capsys, ["verify", "mini-imagenet", "--root", str(fake)])
    assert rc == 1 and "absent" in out + err
    rc, out, _err = _cli(capsys, ["verify", "omniglot", "--root", str(fake), "--json"])
    rep = json.loads(out)
    assert rc == 0 and set(rep) >= {"omniglot"} and "mini-imagenet" not in rep


def test_verify_fails_for_a_present_but_broken_dataset(fake, capsys):
    write_fake_miniimagenet(fake, CLASSES, n_per_class=3)
    rc, _out, _err = _cli(capsys, ["verify", "--root", str(fake)])
    assert rc == 0
    (fake / "omniglot" / "images_evaluation.zip").unlink()
    rc, out, _err = _cli(capsys, ["verify", "--root", str(fake)])
    assert rc == 1 and "missing" in out
    rc, _out, _err = _cli(capsys, ["verify", "mini-imagenet", "--root", str(fake)])
    assert rc == 0


def test_verify_with_nothing_present_fails(tmp_path, capsys):
    rc, out, err = _cli(capsys, ["verify", "--root", str(tmp_path)])
    assert rc == 1 and "absent" in out + err


# ----------------------------------------------------------------------------- 9. messages agree


@pytest.fixture
def default_root(tmp_path, monkeypatch):
    """The default data folder moved into tmp_path, METALIB_DATA unset, CI unset."""
    monkeypatch.delenv("METALIB_DATA", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(paths_mod, "project_dir", lambda: tmp_path / "project")
    return tmp_path / "project" / "data"


@pytest.mark.parametrize("require", [require_omniglot, require_miniimagenet])
def test_skip_message_names_the_default_folder_first(default_root, require):
    with pytest.raises(pytest.skip.Exception) as e:
        require()
    msg = str(e.value)
    assert str(default_root) in msg and "METALIB_DATA" in msg
    assert msg.index(str(default_root)) < msg.index("METALIB_DATA")
    assert "default" in msg


@pytest.mark.parametrize("load", [lambda: Omniglot("train", progress=False),
                                  lambda: MiniImageNet("test", progress=False)])
def test_missing_data_error_names_the_default_folder_first(default_root, load, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load()
    msg = _one_line(str(e.value))
    assert msg.index(str(default_root)) < msg.index("METALIB_DATA")


def test_info_says_a_missing_data_root_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.delenv("METALIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    rep = info(tmp_path / "nowhere", checksums=False)
    text = format_info(rep)
    assert "read-only" not in text and "read-only" not in rep["cache"]["origin"]
    assert "does not exist" in rep["cache"]["origin"]
    first = text.splitlines()[0]
    assert str(tmp_path / "nowhere") in first and "does not exist" in first


def test_info_on_the_default_root_does_not_demand_the_variable(default_root):
    text = format_info(info(checksums=False))
    first = text.splitlines()[0]
    assert str(default_root) in first and "default" in first
    assert "must be set" not in text and "set METALIB_DATA to a folder" not in first


# ----------------------------------------------------------------------------- 10. docs


def test_docs_name_no_machine_specific_path():
    modules = [f"metalib/data/{p.name}" for p in (PROJECT / "metalib" / "data").glob("*.py")]
    for rel in ["docs/data.md", "data/README.md", *modules]:
        text = (PROJECT / rel).read_text()
        assert "/work/" not in text, rel
    doc = (PROJECT / "docs" / "data.md").read_text()
    assert "digest" in doc and "disk full" in doc and "verify [omniglot|mini-imagenet]" in doc


# ----------------------------------------------------------------------------- 11. --help


def _parsers():
    top = _parser()
    yield "python -m metalib.data", top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


@pytest.mark.parametrize("name, parser", list(_parsers()))
def test_help_documents_every_option_and_its_default(name, parser):
    text = parser.format_help()
    assert "`" not in text, text
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"{name}: {action.dest} has no help"
        assert "default" in action.help, f"{name}: {action.dest}: {action.help!r} shows no default"


# ----------------------------------------------------------------------------- 11. issue 24: duplicate members, damaged sidecars


def _duplicate_a_member(zpath: Path) -> tuple[str, str]:
    """Rewrite the zip with drawing 20 of the first character stored under drawing 1's name (20 names,
    one of them twice): the attack of issue 24. Returns (the duplicated name, the lost name)."""
    with zipfile.ZipFile(zpath) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    first = next(n for n, _ in members if n.endswith("_01.png"))
    lost = first.replace("_01.png", "_20.png")
    with zipfile.ZipFile(zpath, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        for n, b in members:
            zf.writestr(first if n == lost else n, b)
    return first, lost


def test_a_duplicate_member_name_in_the_omniglot_zip_fails_verify(fake, capsys):
    dup, _lost = _duplicate_a_member(fake / "omniglot" / "images_background.zip")
    rc, out, _err = _cli(capsys, ["verify", "omniglot", "--root", str(fake)])
    assert rc == 1 and "omniglot FAILED" in out and "twice" in out and dup in out
    with pytest.raises(CorruptDataError, match="twice") as e:
        _omni(fake)
    assert dup in _one_line(str(e.value))


def test_the_cache_never_holds_one_drawing_twice(fake):
    ok = _omni(fake)
    first = ok.images[0]
    assert len({bytes(d.numpy()) for d in first}) == first.shape[0]  # 20 distinct drawings
    _duplicate_a_member(fake / "omniglot" / "images_background.zip")
    with pytest.raises(CorruptDataError, match="twice"):
        _omni(fake)  # the changed zip is re-indexed, not served from the old cache nor decoded with the duplicate


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", None])
def test_info_lists_a_cache_file_whose_sidecar_is_damaged(fake, damage):
    _omni(fake)
    cache = fake / "cache"
    pts = sorted(cache.glob("*.pt"))
    assert pts
    side = pts[0].with_suffix(".json")
    if damage is None:
        side.unlink()
    else:
        side.write_text(damage)
    rep = info(fake, cache_dir=cache, checksums=False)
    entries = {e["file"]: e for e in rep["cache"]["entries"]}
    assert pts[0].name in entries and entries[pts[0].name].get("damaged")
    line = next(ln for ln in format_info(rep).splitlines() if pts[0].name in ln)
    assert "damaged" in line
