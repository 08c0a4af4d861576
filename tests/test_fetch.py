"""The notebooks' data fetch (metalib.data.fetch_if_missing) against a server on 127.0.0.1, never the web.

The server serves the real Omniglot archives of the data folder (``METALIB_DATA``). They are rebuilt
zips, not byte-identical to the published ones (their MANIFEST.txt), so the tests give the fetch their
own MD5 in place of the published one: what is tested is the mechanism — the good archive fetched and
verified, a corrupt one refused with nothing written, offline nothing done and the loader's message as
before.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from metalib.data import DataNotFoundError, Omniglot, fetch_if_missing
from metalib.data.omniglot import ARCHIVES, PARTS, find_source
from tests._data import require_omniglot

pytestmark = pytest.mark.data


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archives() -> dict:
    require_omniglot()
    srcs = {part: find_source(part, None) for part in PARTS}
    if any(s is None or s.kind != "zip" for s in srcs.values()):
        pytest.skip("the data folder holds Omniglot as folders, not the two zip archives")
    return {part: s.path for part, s in srcs.items()}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """``serve({name: bytes-or-path})`` -> base URL of a server on 127.0.0.1 holding those files."""
    servers = []

    def start(files: dict) -> str:
        folder = tmp_path / f"served{len(servers)}"
        folder.mkdir()
        for name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, folder / name)
            else:
                (folder / name).write_bytes(content)
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _urls(base: str) -> dict:
    return {part: f"{base}/{ARCHIVES[part]}" for part in PARTS}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nobody listens there


def _own_root(tmp_path: Path) -> Path:
    root = tmp_path / "mydata"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    return root


def test_a_missing_omniglot_is_fetched_verified_and_said(archives, serve, tmp_path):
    base = serve({ARCHIVES[p]: archives[p] for p in PARTS})
    root, said = _own_root(tmp_path), []
    md5 = {p: _md5(archives[p]) for p in PARTS}
    got = fetch_if_missing(root=root, urls=_urls(base), md5=md5, progress=False, say=said.append)
    assert got == "downloaded"
    for p in PARTS:
        assert _md5(root / "omniglot" / ARCHIVES[p]) == md5[p]
    mb = sum(archives[p].stat().st_size for p in PARTS) / 1e6
    assert f"{mb:.1f} MB" in said[0] and "MD5-checked" in said[0] and "127.0.0.1" in said[0]
    assert str(root / "omniglot") in said[0] and "downloaded and verified" in said[-1]
    assert sorted(f.name for f in (root / "omniglot").iterdir()) == sorted(ARCHIVES.values())  # no temp left
    # present now: nothing fetched, nothing said, not even the server asked
    said.clear()
    assert fetch_if_missing(root=root, urls=_urls(f"http://127.0.0.1:{_closed_port()}"), say=said.append) == "present"
    assert said == []


def test_a_corrupt_archive_is_refused_and_nothing_written(archives, serve, tmp_path):
    bad = bytearray(archives["background"].read_bytes())
    bad[len(bad) // 2] ^= 0xFF  # one byte flipped in the middle
    base = serve({ARCHIVES["background"]: bytes(bad), ARCHIVES["evaluation"]: archives["evaluation"]})
    root, said = _own_root(tmp_path), []
    md5 = {p: _md5(archives[p]) for p in PARTS}
    got = fetch_if_missing(root=root, urls=_urls(base), md5=md5, progress=False, say=said.append)
    assert got == "refused"
    assert "download refused, nothing was written" in said[-1] and "MD5" in said[-1]
    folder = root / "omniglot"
    assert not folder.exists() or not any(folder.iterdir())  # neither the archive nor a temp file


def test_offline_nothing_is_done_and_the_loader_message_is_unchanged(tmp_path):
    root, said = _own_root(tmp_path), []
    with pytest.raises(DataNotFoundError) as before:
        Omniglot("test", root=root, cache_dir=tmp_path / "cache", progress=False)
    got = fetch_if_missing(root=root, urls=_urls(f"http://127.0.0.1:{_closed_port()}"), timeout=2, say=said.append)
    assert got == "offline" and said == []
    assert not (root / "omniglot").exists()
    with pytest.raises(DataNotFoundError) as after:
        Omniglot("test", root=root, cache_dir=tmp_path / "cache", progress=False)
    assert str(after.value) == str(before.value)


def test_a_shared_data_root_gets_nothing_the_per_user_folder_does(archives, serve, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)  # group-writable: a lab's copy
    base = serve({ARCHIVES[p]: archives[p] for p in PARTS})
    md5 = {p: _md5(archives[p]) for p in PARTS}
    said = []
    assert fetch_if_missing(root=shared, urls=_urls(base), md5=md5, progress=False, say=said.append) == "downloaded"
    assert not (shared / "omniglot").exists()
    user = tmp_path / "xdg" / "metalib" / "omniglot"
    assert all((user / ARCHIVES[p]).is_file() for p in PARTS) and str(user) in said[0]


def test_miniimagenet_has_no_download_and_says_so(tmp_path):
    said = []
    assert fetch_if_missing("mini-imagenet", root=tmp_path, say=said.append) == "manual"
    assert len(said) == 1 and "no public download" in said[0]
    with pytest.raises(ValueError):
        fetch_if_missing("imagenet", root=tmp_path)
