"""Fixtures for the browser test: a JupyterLab server from this environment, Debian's Chromium
driven headless by Playwright, and a folder for screenshots.

Everything started here is shut down in the fixtures' teardown, also when a test fails: the
JupyterLab server runs in its own process group (kernels included) and the whole group is
terminated, then killed; the browser and Playwright's driver are closed.

Missing prerequisites (``/usr/bin/chromium``, the ``playwright`` package, the ipywidgets lab
extension) skip the test locally with a message saying how to install them, and FAIL it when
``CI`` is set: CI must never pass by skipping.
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from metalib.data.paths import is_ci

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("METALIB_CHROMIUM", "/usr/bin/chromium")
# Flags seen working with Debian's chromium in a container: no sandbox (root, no user namespaces),
# no GPU, and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
HOW_TO_INSTALL = ("install Debian's Chromium with `sudo bash scripts/setup_browser.sh` (apt packages "
                  "chromium and chromium-driver) and the Python package with `pip install -r requirements.txt` "
                  "(playwright; do not run `playwright install`: the test uses /usr/bin/chromium, "
                  "or $METALIB_CHROMIUM)")
# JupyterLab user settings for the test server (a temporary settings folder, so nothing of the
# user's is read or changed): never autosave (and the server refuses saves anyway, below),
# attach every cell to the DOM (so every output can be inspected), no news pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


# screenshots and logs (and any scratch notebook) under artifacts/ are not tests, also not for nbval
collect_ignore = ["artifacts"]

READ_ONLY_CONFIG = '''\
from tornado.web import HTTPError


def refuse_to_save(model, path, contents_manager, **kwargs):
    raise HTTPError(403, f"the metalib browser test never saves ({path})")


c.ContentsManager.pre_save_hook = refuse_to_save  # noqa: F821 (c: the config object)
'''


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (tests/browser)")


def _missing(message: str) -> None:
    if is_ci():
        pytest.fail(f"CI is set, so a missing browser prerequisite is an error, not a skip. {message}",
                    pytrace=False)
    pytest.skip(f"{message}; {HOW_TO_INSTALL}")


def require_browser_stack() -> None:
    """Skip (fail under CI) unless Chromium, playwright and the ipywidgets lab extension are there."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"Chromium not found at {CHROMIUM}")
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        _missing("the Python package `playwright` is not installed")
    from jupyter_core.paths import ENV_JUPYTER_PATH, SYSTEM_JUPYTER_PATH  # what the test server sees

    roots = [Path(p) / "labextensions" for p in [*ENV_JUPYTER_PATH, *SYSTEM_JUPYTER_PATH]]
    if not any((r / "@jupyter-widgets" / "jupyterlab-manager").is_dir() for r in roots):
        # Not a skip: without it every widget shows as text, exactly what this test must catch.
        pytest.fail(f"the ipywidgets JupyterLab extension @jupyter-widgets/jupyterlab-manager is in none of "
                    f"{[str(r) for r in roots]}; it ships in the "
                    "`jupyterlab_widgets` package that ipywidgets 8 requires: pip install -r requirements.txt",
                    pytrace=False)


# ---------------------------------------------------------------------------------------------
# Artefacts
# ---------------------------------------------------------------------------------------------
_SAVED: List[Path] = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots and logs: ``$METALIB_ARTIFACTS/browser`` or ``tests/browser/artifacts``."""
    root = os.environ.get("METALIB_ARTIFACTS")
    folder = Path(root) / "browser" if root else Path(__file__).parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def saved() -> List[Path]:
    """Every artefact the tests wrote; listed at the end of the run."""
    return _SAVED


_REPORT: List[str] = []


@pytest.fixture(scope="session")
def report() -> List[str]:
    """Lines (timings, what was driven) printed at the end of the run, also without ``-s``."""
    return _REPORT


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("browser test: notebooks run in JupyterLab, widgets driven")
        for line in _REPORT:
            terminalreporter.write_line(line)
    if _SAVED:
        terminalreporter.section("browser test artefacts")
        for p in _SAVED:
            terminalreporter.write_line(str(p))


# ---------------------------------------------------------------------------------------------
# JupyterLab server
# ---------------------------------------------------------------------------------------------
class LabServer:
    """A running ``jupyter lab`` (``url``, ``token``, ``log``), with a tiny REST client."""

    def __init__(self, proc: subprocess.Popen, url: str, token: str, log: Path) -> None:
        self.proc, self.url, self.token, self.log = proc, url, token, log

    def api(self, method: str, path: str, body: object = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", method=method, data=data,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Delete every session (and so its kernel): one notebook's kernel must not outlive it."""
        try:
            for s in self.api("GET", "/api/sessions") or []:
                self.api("DELETE", f"/api/sessions/{s['id']}")
        except (urllib.error.URLError, OSError):
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _detach_and_die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In the server's child process: its own process group (so the group can be killed with its
    kernels), and on Linux a SIGTERM when pytest dies without running its teardown (e.g. SIGKILL)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (server and kernels), SIGKILL what is left after 15 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:  # kernels may outlive the server process; they are in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="session")
def lab_server(artifacts) -> Iterator[LabServer]:
    """``jupyter lab`` from this environment, on 127.0.0.1 with a random port and token, serving the
    repository (kernels start in ``notebooks/`` and import the working tree's ``metalib``); config,
    runtime, data, settings and workspaces in a temporary folder."""
    require_browser_stack()
    tmp = Path(tempfile.mkdtemp(prefix="metalib-lab-"))
    for rel, value in LAB_SETTINGS.items():
        f = tmp / "settings" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    # The server is read-only: every save is refused (HTTP 403), so the notebooks in the repository
    # stay exactly as committed whatever the front end does.
    (tmp / "config").mkdir()
    (tmp / "config" / "jupyter_server_config.py").write_text(READ_ONLY_CONFIG)
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), PYTHONUNBUFFERED="1")
    for name in ("JUPYTER_PATH", "MPLBACKEND"):  # kernels as a student's: the inline backend
        env.pop(name, None)
    port, token = _free_port(), secrets.token_hex(16)
    log = artifacts / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={REPO}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI runs as root
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_detach_and_die_with_parent)
    server = LabServer(proc, f"http://127.0.0.1:{port}", token, log)
    _SAVED.append(log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {proc.returncode}:\n{server.log_tail()}", pytrace=False)
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within 180 s:\n{server.log_tail()}", pytrace=False)
                time.sleep(0.5)
        yield server
    finally:
        server.shutdown_kernels()
        _stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium under Playwright (no browser download: ``executable_path``)."""
    require_browser_stack()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=120_000)
        except Exception as e:  # a broken Chromium is a failure, not a skip
            pytest.fail(f"could not start {CHROMIUM} under Playwright: {e}", pytrace=False)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page_log() -> Dict[str, list]:
    return {"console": [], "pageerror": []}
