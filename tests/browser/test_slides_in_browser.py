"""The lecture slides, offline, in a real (headless) browser.

``python scripts/notebooks.py slides --out DIR`` writes one reveal.js deck per notebook and copies what
the decks load (reveal.js from the package sphinx-revealjs, MathJax 3 from django-static-mathjax) into
``DIR/_assets``. For each deck this test, with every request that is not a local file refused (and
recorded), opens it at a 1280x720 viewport and asserts:

1. no request left the folder (no CDN: reveal.js, MathJax, jQuery, require.js, widget manager, fonts);
2. reveal.js initialised (``Reveal.isReady()``) with 1280x720 slides;
3. math rendered: MathJax typeset every formula (``mjx-container`` elements, no ``merror``) and no raw
   ``$...$`` is left in the rendered Markdown;
4. no slide overflows: visiting every slide, its box is at most 720 px tall and no wider than its
   1280 px, and a slide whose content is taller scrolls inside its box (``overflow-y: auto``) — the
   number of such slides and the tallest content are reported (measured).

``METALIB_SLIDES_NOTEBOOKS="09 11"`` limits the decks to notebooks whose names start with those prefixes.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import notebooks as nbs  # noqa: E402  (scripts/notebooks.py: the slides command)

WIDTH, HEIGHT = 1280, 720
ONLY = os.environ.get("METALIB_SLIDES_NOTEBOOKS", "").split()
DECKS = [s for s in nbs.pairs() if nbs.notebook_of(s).exists() and (not ONLY or any(s.stem.startswith(o) for o in ONLY))]
RAW_MATH = re.compile(r"(?<![\\$])\$(?!\s)[^$\n]{1,200}(?<!\s)\$(?!\$)")

_JS_SLIDES = """async () => {
  const out = [];
  const slides = Reveal.getSlides();
  for (const s of slides) {
    const i = Reveal.getIndices(s);
    Reveal.slide(i.h, i.v, i.f);
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const cs = getComputedStyle(s);
    out.push({h: i.h, v: i.v || 0, box_h: s.clientHeight, box_w: s.clientWidth, content_h: s.scrollHeight,
              content_w: s.scrollWidth, overflow_y: cs.overflowY,
              text: (s.innerText || '').trim().slice(0, 60)});
  }
  return out;
}"""


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("slides")
    nbs.slides(DECKS, out)
    return out


def test_the_raw_math_pattern():
    """Not vacuous: raw TeX is found, prices and code are not."""
    assert RAW_MATH.search("the loss $\\mathcal L$ falls")
    assert RAW_MATH.search("with $K > 1$ shots")
    assert not RAW_MATH.search("costs 5 $ and 6 $ ")
    assert not RAW_MATH.search("no math here")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("source", DECKS, ids=lambda s: s.stem)
def test_each_deck_works_offline_renders_its_math_and_fits(source, decks, browser, report):
    html = decks / f"{source.stem}.slides.html"
    assert html.exists(), sorted(p.name for p in decks.iterdir())
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    refused: List[str] = []
    errors: List[str] = []

    def route(r):
        if r.request.url.startswith(("file://", "data:", "blob:", "about:")):
            return r.continue_()
        refused.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(html.as_uri(), wait_until="load", timeout=120_000)
        page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=60_000)
        config = page.evaluate("() => Reveal.getConfig()")
        assert (config["width"], config["height"]) == (WIDTH, HEIGHT)
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=60_000)
        page.evaluate("() => MathJax.startup.promise.then(() => MathJax.typesetPromise())")
        math = page.evaluate("() => document.querySelectorAll('mjx-container').length")
        merrors = page.evaluate("() => [...document.querySelectorAll('mjx-merror')].map(e => e.textContent)")
        texts = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedMarkdown')].map(e => e.textContent)")
        raw = [m.group(0) for t in texts for m in [RAW_MATH.search(t)] if m]
        slides = page.evaluate(_JS_SLIDES)
    finally:
        context.close()
    assert not refused, f"{html.name} asked for {len(refused)} resource(s) outside its folder: {refused[:5]}"
    assert not errors, f"{html.name}: JavaScript errors: {errors[:3]}"
    source_text = source.read_text()
    if "$" in source_text:
        assert math > 0, f"{html.name}: no formula typeset by MathJax"
    assert not merrors, f"{html.name}: MathJax errors: {merrors[:3]}"
    assert not raw, f"{html.name}: raw TeX left in the slides: {raw[:3]}"
    too_big = [s for s in slides if s["box_h"] > HEIGHT or s["box_w"] > WIDTH or s["content_w"] > s["box_w"] + 1
               or (s["content_h"] > s["box_h"] + 1 and s["overflow_y"] not in ("auto", "scroll"))]
    assert not too_big, f"{html.name}: slides that overflow 1280x720: {too_big[:3]}"
    scrolling = [s for s in slides if s["content_h"] > s["box_h"] + 1]
    tallest = max((s["content_h"] for s in slides), default=0)
    report.append(f"{html.name}: {len(slides)} slides, {math} formulas typeset, {len(scrolling)} scroll inside "
                  f"their 720-px box (tallest content {tallest} px), none wider than 1280 px; no request left "
                  "the folder")
