"""The course site (scripts/course_site.py), built and opened page by page in headless Chromium, offline.

Every HTML page of the site is loaded from a server on 127.0.0.1; any request elsewhere is aborted and
counted as a failure (the site must need no network). On every page: no console error and no page
error, no failed request, every image loaded, every local link and anchor resolves, and where the
page holds math, MathJax has rendered all of it (no TeX error). A widget page shows the stored
widget state under its "run it live" banner.
"""
from __future__ import annotations

import functools
import http.server
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    import course_site  # scripts/course_site.py

    return course_site.build(tmp_path_factory.mktemp("site") / "html")


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on the test's output
        pass


def _pages(site: Path):
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_sources" not in p.parts)


def _ids(html: str) -> set:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_site_has_every_notebook_and_doc_page(site):
    pages = _pages(site)
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks and all(f"notebooks/{n}.html" in pages for n in notebooks)
    for page in ("index.html", "README.html", "RESULTS.html", "notebooks/README.html", "docs/architecture.html",
                 "docs/site.html"):
        assert page in pages
    index = (site / "index.html").read_text()
    for family in ("Optimisation-based meta-learning", "Metric-based meta-learning", "Model-based meta-learning"):
        assert family in index


def test_no_page_loads_anything_from_the_web(site):
    for page in _pages(site):
        html = (site / page).read_text()
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="((?:https?:)?//[^"]+)"', html)
        assert not remote, (page, remote)


class _Checker:
    """One browser context for a site: requests off 127.0.0.1 are aborted and recorded; :meth:`check` opens
    a page and returns its problems (console and page errors, failed requests, HTTP errors, images not
    loaded, local links or anchors that do not resolve, math not rendered by MathJax)."""

    def __init__(self, browser, site: Path, server: str) -> None:
        self.site, self.server, self.blocked, self.events = site, server, [], []
        self.context = browser.new_context()
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        ev = self.events
        self.page.on("console", lambda m: ev.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: ev.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: ev.append(f"request failed: {r.url}"))
        self.page.on("response", lambda r: ev.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def _route(self, r):
        if r.request.url.startswith(self.server):
            r.continue_()
        else:
            self.blocked.append(r.request.url)
            r.abort()

    def check(self, name: str) -> tuple:
        """``(problems, whether the page holds math)`` for page ``name`` (a path in the site)."""
        page, site, server, problems = self.page, self.site, self.server, []
        self.events.clear()
        page.goto(f"{server}/{name}", wait_until="load")
        html = (site / name).read_text()
        n_math = len(re.findall(r'class="math[ "]', html))
        if n_math:
            try:
                page.wait_for_function(f"document.querySelectorAll('mjx-container').length >= {n_math}",
                                       timeout=60_000)
            except Exception:
                problems.append(f"{name}: {n_math} math elements, "
                                f"{page.locator('mjx-container').count()} rendered by MathJax")
            errors = page.locator("mjx-merror").count()
            if errors:
                problems.append(f"{name}: {errors} TeX errors")
        broken_images = page.evaluate(
            "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
        if broken_images:
            problems.append(f"{name}: broken images {broken_images}")
        for href in page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)"):
            if not href.startswith(server):
                continue  # a web link (Binder, a paper): not followed offline
            target, anchor = urldefrag(href)
            path = site / unquote(urlparse(target).path).lstrip("/")
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                problems.append(f"{name}: broken link {href}")
            elif anchor and path.suffix == ".html" and unquote(anchor) not in _ids(path.read_text()):
                problems.append(f"{name}: no anchor #{anchor} in {path.relative_to(site)}")
        page.wait_for_timeout(100)  # late console messages
        problems += [f"{name}: {e}" for e in self.events]
        return problems, bool(n_math)

    def close(self):
        self.context.close()


def test_every_page_offline_in_chromium(site, server, browser):
    checker = _Checker(browser, site, server)
    problems, math_pages = [], 0
    try:
        for name in _pages(site):
            found, has_math = checker.check(name)
            problems += found
            math_pages += has_math
    finally:
        checker.close()
    assert not checker.blocked, f"the site asked the network for {sorted(set(checker.blocked))[:5]}"
    assert math_pages >= 5, f"only {math_pages} pages with math: is math rendered at all?"
    assert not problems, "\n".join(problems[:40])


def test_the_checks_catch_a_broken_page(site, server, browser):
    """The checks above can fail: a page with a missing image, a dead link and anchor, a script error,
    a request to the web and math MathJax cannot render is caught on every count."""
    bad = site / "broken-on-purpose.html"
    bad.write_text('<html><head><script src="_static/mathjax/tex-svg-full.js"></script></head><body>'
                   '<img src="_images/nowhere.png"><a href="nowhere.html">x</a><a href="index.html#no-such-id">y</a>'
                   '<span class="math notranslate nohighlight">\\(\\frac{1}{\\)</span>'
                   '<img src="https://example.org/logo.png"><script>throw new Error("on purpose")</script>'
                   '</body></html>')
    checker = _Checker(browser, site, server)
    try:
        problems, _ = checker.check(bad.name)
    finally:
        checker.close()
        bad.unlink()
    text = "\n".join(problems)
    for expected in ("broken images", "broken link", "no anchor #no-such-id", "page error", "HTTP 404"):
        assert expected in text, (expected, text)
    assert "TeX errors" in text or "rendered by MathJax" in text, text  # math left unrendered
    assert checker.blocked == ["https://example.org/logo.png"]


def test_widget_pages_show_the_stored_state_and_how_to_run_them(site, server, browser):
    page = browser.new_page()
    page.goto(f"{server}/notebooks/05_prototypical_networks.html", wait_until="load")
    notes = page.locator(".static-widget-note")
    assert notes.count() >= 1 and "run the notebook live" in notes.first.inner_text()
    images = page.locator(".static-widget img")
    assert images.count() >= 1
    assert page.evaluate("[...document.querySelectorAll('.static-widget img')].every(i => i.naturalWidth > 100)")
    assert page.locator(".static-widget select[disabled]").count() >= 1
    page.close()
