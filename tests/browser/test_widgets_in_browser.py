"""End-to-end: every notebook with widgets, run in JupyterLab in a real (headless) browser.

Unit tests call the apps' ``update()`` directly; this test checks what a student sees: the
ipywidgets front-end extension loads, each widget renders (no "Error displaying widget"), and
moving a slider / clicking a button / choosing an option re-renders its figure.

For each notebook found by :func:`widget_notebooks`:

1. open it in JupyterLab (``/lab/tree/...``), clear the stored outputs, *Run All Cells* (the
   command the Run menu calls), wait until the kernel is idle and no cell is queued;
2. assert no error output, no "Traceback", no "Error displaying widget" anywhere in the notebook;
3. for every rendered widget that has controls (progress bars have none), screenshot it, then
   drive each enabled control with the keyboard (slider: an arrow key on its handle; button,
   toggle, checkbox: Space; dropdown: another option) and assert that the widget's figure
   changed — the pixels of its ``<img>`` (``ipywidgets.Image``) or of its ``Output`` area — and
   that no error text appeared; screenshot it again;
4. in every state it visits (first shown, after each control), the figure's title lies inside the
   figure image (:func:`title_clipped`: no title ink cut by the image's border).

Screenshots go to ``tests/browser/artifacts/`` (or ``$METALIB_ARTIFACTS/browser``); their paths
are listed at the end of the pytest run. ``METALIB_BROWSER_NOTEBOOKS="02 03"`` limits the run to
notebooks whose names start with those prefixes.
"""
from __future__ import annotations

import io
import json
import os
import re
import time
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
# the folder searched for notebooks (inside the repository: JupyterLab serves the repository)
NOTEBOOKS = Path(os.environ.get("METALIB_BROWSER_NOTEBOOK_DIR", REPO / "notebooks")).resolve()
# ipywidgets models a student can operate (progress bars, labels, boxes and images are not controls)
_CONTROL_MODEL = re.compile(r"(Slider|Button|Dropdown|Select|Checkbox|Radio|Toggle|Play|Combobox)\w*Model$")
# code that builds widgets: `widgets.X(...)` / `ipywidgets.X(...)`, `interact(...)`, an app's `.ui`,
# or imports ipywidgets / metalib's widgets (under any alias)
_WIDGET_SOURCE = re.compile(r"\b(?:ipy)?widgets\.[A-Za-z_]\w*\s*\(|\binteract(?:ive)?\s*\(|\.ui\s*$"
                            r"|^\s*(?:import\s+ipywidgets\b|from\s+ipywidgets\b"
                            r"|from\s+metalib(?:\.\w+)*\s+import\b.*\bwidgets\b|import\s+metalib\.widgets\b)", re.M)
RUN_TIMEOUT_S = float(os.environ.get("METALIB_BROWSER_RUN_TIMEOUT", 600))  # one notebook, Run All
RENDER_TIMEOUT_S = 90.0  # one control change -> new figure (the kernel recomputes and re-renders)

# CSS selectors of the controls inside a widget (ipywidgets 8 DOM), in the order they are driven.
CONTROLS = {
    "slider": ".widget-slider .noUi-handle",
    "dropdown": ".widget-dropdown select",
    "toggle-buttons": ".widget-toggle-buttons",
    "button": "button.widget-button:not(.widget-toggle-button)",
    "toggle-button": "button.widget-toggle-button",
    "checkbox": ".widget-checkbox input[type=checkbox]",
    "radio": ".widget-radio-box",
}


# ---------------------------------------------------------------------------------------------
# Which notebooks have widgets
# ---------------------------------------------------------------------------------------------
def has_widgets(nb: dict) -> bool:
    """True when a notebook (parsed ``.ipynb`` JSON) shows an interactive widget: its stored widget
    state holds a control model (slider, button, dropdown, ...), or a code cell builds widgets."""
    state = (nb.get("metadata", {}).get("widgets", {})
             .get("application/vnd.jupyter.widget-state+json", {}).get("state", {}))
    names = {m.get("model_name", "") for m in state.values() if isinstance(m, dict)}
    if any(_CONTROL_MODEL.search(n) and not n.endswith("StyleModel") for n in names):
        return True
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            if _WIDGET_SOURCE.search("".join(src) if isinstance(src, list) else src):
                return True
    return False


def widget_notebooks(folder: Path = NOTEBOOKS) -> List[Path]:
    """The notebooks under ``folder`` (not recursive) that have widgets, sorted by name."""
    found = [p for p in sorted(folder.glob("*.ipynb")) if has_widgets(json.loads(p.read_text()))]
    only = os.environ.get("METALIB_BROWSER_NOTEBOOKS", "").split()
    return [p for p in found if not only or any(p.name.startswith(o) for o in only)]


def test_discovery_finds_controls_not_progress_bars():
    """The discovery rule, on made-up notebooks: a progress bar alone is not interactive."""
    def nb(models=(), source=""):
        state = {str(i): {"model_name": m, "state": {}} for i, m in enumerate(models)}
        return {"metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}},
                "cells": [{"cell_type": "code", "source": source, "outputs": []}]}

    assert not has_widgets(nb(["FloatProgressModel", "HTMLModel", "HBoxModel", "ProgressStyleModel"],
                              'demo = lab.train("maml", 1000)'))
    assert not has_widgets(nb(["SliderStyleModel", "ButtonStyleModel", "LayoutModel"]))
    assert not has_widgets(nb(source="from metalib.course import plots\nprint('widgets.', 'see widgets.ui')"))
    for model in ("IntSliderModel", "SelectionSliderModel", "ButtonModel", "DropdownModel",
                  "ToggleButtonsModel", "CheckboxModel"):
        assert has_widgets(nb(["LayoutModel", model])), model
    assert has_widgets(nb(source="app = widgets.AdaptationExplorer(models)\napp.ui"))
    assert has_widgets(nb(source="import ipywidgets as W\nipywidgets.IntSlider()"))
    assert has_widgets(nb(source='["a", "b"]\n[x.ui for x in apps][0]\nexplorer.ui'))
    assert has_widgets(nb(source="import ipywidgets as W\nW.VBox([s, img])"))
    assert has_widgets(nb(source="from metalib.course import plots, widgets as wd\nwd.explorer().ui"))
    assert not has_widgets(nb(source="print('ipywidgets: 8.1.9')\nfrom metalib.course import plots"))


def test_notebooks_with_widgets_exist():
    """Guards the parametrisation below: an empty list would silently test nothing."""
    if os.environ.get("METALIB_BROWSER_NOTEBOOKS"):
        pytest.skip("METALIB_BROWSER_NOTEBOOKS narrows the selection")
    names = [p.name for p in widget_notebooks()]
    assert "02_maml_from_scratch.ipynb" in names and "03_reptile_and_comparison.ipynb" in names, names
    assert "13_meta_reinforcement_learning.ipynb" in names, names   # goal explorer, bandit trial


# ---------------------------------------------------------------------------------------------
# A title inside its figure, from the pixels
# ---------------------------------------------------------------------------------------------
def title_clipped(png: bytes, band: float = 0.08, edge: int = 2, ink: int = 150) -> Optional[str]:
    """Why the title of a figure image is clipped, or None: in the top ``band`` of the image (where the
    figure's title is drawn) no dark "ink" pixel may touch the ``edge`` outermost columns — a title cut by
    the figure's border runs into them, one that fits leaves the figure's white margin there."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    w, h = img.size
    top = img.crop((0, 0, w, max(1, int(h * band))))
    # a column's darkest pixel: getextrema() of a greyscale image is (min, max)
    cols = [x for x in range(w) if top.crop((x, 0, x + 1, top.size[1])).getextrema()[0] < ink]
    if cols and (cols[0] < edge or cols[-1] >= w - edge):
        return f"the title's ink spans columns {cols[0]}…{cols[-1]} of 0…{w - 1}: cut at the figure's border"
    return None


def test_the_title_check_on_drawn_figures():
    """Not vacuous: a title wider than its figure is found clipped, one that fits is not."""
    from matplotlib import style
    from matplotlib.figure import Figure

    def png(title: str) -> bytes:
        # matplotlib's own defaults: an earlier test in this process may have applied the course's style
        # (metalib.course.plots.style), whose settings would change the drawing
        with style.context("default"):
            fig = Figure(figsize=(6, 3), dpi=100, layout="constrained")
            fig.add_subplot().plot([0, 1], [0, 1])
            fig.suptitle(title, fontsize=11)
            b = io.BytesIO()
            fig.savefig(b, format="png", dpi=100)
        return b.getvalue()

    assert title_clipped(png("MANN, toy classes — step 3")) is None
    assert title_clipped(png("MANN, toy classes — test episode 0, step 9: strongest read slot 12 (weight 0.53), "
                             "written most at step 3 (fed label 2); class 1: last shown at step 3"))


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------
_JS_STATE = """() => {
  const app = window.jupyterapp, panel = app && app.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const prompts = [...panel.node.querySelectorAll('.jp-InputPrompt')].map(p => p.textContent);
  return {path: panel.context.path, kernel: kernel ? kernel.status : null,
          ready: panel.sessionContext.isReady, queued: prompts.filter(t => t.includes('*')).length,
          cells: panel.content.widgets.length,
          executed: panel.content.widgets.filter(c => c.model.type === 'code' && c.model.executionCount).length,
          // JupyterLab does not execute empty code cells
          code: panel.content.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim()).length};
}"""

_JS_ERRORS = """() => {
  const panel = window.jupyterapp.shell.currentWidget, errors = [];
  panel.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    for (const o of c.model.outputs.toJSON())
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
  });
  return errors;
}"""

# enabled, and with something to choose: a dropdown / toggle group with 2+ options, a slider with a range
_JS_OPERABLE = """el => {
  if (el.disabled || el.closest('.mod-disabled')) return false;
  if (el.tagName === 'SELECT') return el.options.length > 1;
  if (el.classList.contains('noUi-handle')) {
    const lo = el.getAttribute('aria-valuemin'), hi = el.getAttribute('aria-valuemax');
    return lo === null || hi === null || Number(hi) > Number(lo);
  }
  if (el.matches('.widget-toggle-buttons, .widget-radio-box'))
    return el.querySelectorAll('button:not([disabled]), input:not([disabled])').length > 1;
  return true;
}"""

# looked for in outputs, not in the prose; the third is what ipywidgets 8 shows for a view that failed
_ERROR_TEXTS = ("Error displaying widget", "Traceback", "Click to show javascript error")


class NotebookRun:
    """One notebook open in a page: run it, find its widgets, drive them."""

    def __init__(self, page, server, notebook: Path, artifacts: Path, saved: List[Path]) -> None:
        self.page, self.server, self.nb, self.artifacts, self.saved = page, server, notebook, artifacts, saved
        self.stem = notebook.stem
        self.timings: Dict[str, float] = {}
        self.render_timeout = RENDER_TIMEOUT_S

    def shot(self, locator, name: str) -> Path:
        path = self.artifacts / f"{self.stem}__{name}.png"
        locator.screenshot(path=str(path), timeout=60_000)
        self.saved.append(path)
        return path

    # -- open and run --------------------------------------------------------------------------
    def open(self) -> None:
        rel = self.nb.relative_to(REPO).as_posix()
        url = f"{self.server.url}/lab/tree/{urllib.parse.quote(rel)}?reset&token={self.server.token}"
        t0 = time.monotonic()
        self.page.goto(url, wait_until="domcontentloaded", timeout=180_000)
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=180_000)
        self.page.evaluate("() => window.jupyterapp.restored")
        # the notebook panel, a started kernel; accept a 'Select Kernel' dialog if the notebook has no kernelspec
        deadline = time.monotonic() + 180
        while True:
            if self.page.locator(".jp-Dialog").count():
                self.page.keyboard.press("Enter")
            st = self.page.evaluate(_JS_STATE)
            if st and st["path"] == rel and st["ready"] and st["kernel"] == "idle":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{rel}: the notebook or its kernel did not start within 180 s (state {st})")
            time.sleep(0.5)
        self.timings["open_s"] = time.monotonic() - t0

    def run_all(self) -> dict:
        t0 = time.monotonic()
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        # idle kernel and no queued cell ([*]), twice in a row a second apart
        calm, st = 0, None
        time.sleep(1.0)
        while calm < 2:
            if self.page.locator(".jp-Dialog").count():
                raise AssertionError(f"{self.nb.name}: a dialog opened while running: "
                                     f"{self.page.locator('.jp-Dialog').first.inner_text()[:500]}")
            st = self.page.evaluate(_JS_STATE)
            calm = calm + 1 if st and st["kernel"] == "idle" and st["queued"] == 0 else 0
            if time.monotonic() - t0 > RUN_TIMEOUT_S:
                raise AssertionError(f"{self.nb.name}: still running after {RUN_TIMEOUT_S:.0f} s ({st}); "
                                     "set METALIB_BROWSER_RUN_TIMEOUT to wait longer")
            time.sleep(1.0)
        self.timings["run_all_s"] = time.monotonic() - t0
        return st

    # -- checks --------------------------------------------------------------------------------
    def assert_no_errors(self, when: str) -> None:
        errors = self.page.evaluate(_JS_ERRORS)
        assert not errors, f"{self.nb.name} ({when}): error output(s): {errors}"
        text = "\n".join(self.page.locator(".jp-Notebook .jp-Cell-outputWrapper").all_inner_texts())
        for bad in _ERROR_TEXTS:
            assert bad not in text, f"{self.nb.name} ({when}): {bad!r} in the notebook:\n{_around(text, bad)}"

    def widgets(self) -> list:
        """The rendered widget outputs that hold at least one control, in notebook order."""
        # an output rendered by the widget manager is a panel whose child is the widget's view
        outputs = self.page.locator(".jp-Notebook .jp-OutputArea-output:has(> .jupyter-widgets)")
        found = []
        for i in range(outputs.count()):
            out = outputs.nth(i)
            if any(out.locator(sel).count() for sel in CONTROLS.values()):
                found.append(out)
        return found

    def figure(self, widget):
        """The part of the widget that shows its figure: the ``<img>`` or the ``Output`` area."""
        img = widget.locator("img")
        if img.count():
            return img.first
        out = widget.locator(".widget-output")
        if out.count():
            return out.first
        raise AssertionError(f"{self.nb.name}: a widget with controls but no image or Output area to "
                             f"check: {widget.inner_text()[:300]!r}")

    def wait_image_loaded(self, fig) -> None:
        fig.evaluate("(el) => el.tagName !== 'IMG' || el.decode().catch(() => null)", timeout=60_000)

    def pixels(self, fig) -> bytes:
        """The figure as the browser shows it (decoded RGBA pixels of an element screenshot)."""
        from PIL import Image

        self.wait_image_loaded(fig)
        png = fig.screenshot(timeout=60_000, animations="disabled")
        return Image.open(io.BytesIO(png)).convert("RGBA").tobytes()

    def assert_title_inside(self, n: int, fig, state: str) -> None:
        """The figure's title lies inside the figure (:func:`title_clipped`) in this widget state; only for
        an ``<img>`` figure (an Output area's screenshot has the page around it)."""
        if self.src(fig) is None:
            return
        self.wait_image_loaded(fig)
        why = title_clipped(fig.screenshot(timeout=60_000, animations="disabled"))
        if why:
            self.shot(fig, f"widget{n}_CLIPPED_{_slug(state)}")
        assert why is None, f"{self.nb.name}: widget {n} {state}: {why}"

    def settle(self, fig, quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
        """Wait until the figure's pixels stay the same for ``quiet_s``."""
        t0, last = time.monotonic(), self.pixels(fig)
        while time.monotonic() - t0 < limit_s:
            time.sleep(quiet_s)
            now = self.pixels(fig)
            if now == last:
                return
            last = now

    def src(self, fig) -> Optional[str]:
        return fig.get_attribute("src") if fig.evaluate("el => el.tagName") == "IMG" else None

    # -- driving controls ------------------------------------------------------------------------
    def controls(self, widget) -> list:
        """``[(kind, label, locator)]`` of the enabled controls of a widget."""
        found = []
        for kind, sel in CONTROLS.items():
            loc = widget.locator(sel)
            for i in range(loc.count()):
                c = loc.nth(i)
                if kind == "toggle-button" and c.evaluate("el => !!el.closest('.widget-toggle-buttons')"):
                    continue  # one option of a ToggleButtons: driven as "toggle-buttons"
                if not c.is_visible() or not c.evaluate(_JS_OPERABLE):
                    continue  # a student cannot operate it either
                label = c.evaluate("""el => { const w = el.closest('.widget-inline-hbox');
                                       const d = w && w.querySelector(':scope > .widget-label');
                                       if (d && d.textContent.trim()) return d.textContent;
                                       return el.tagName === 'BUTTON' ? el.textContent : ''; }""")
                found.append((kind, label.strip() or f"{kind}{i}", c))
        return found

    def drive(self, kind: str, control) -> str:
        """Operate one control like a student would; returns what was done."""
        page = self.page
        if kind == "slider":
            now, hi = (control.get_attribute(a) for a in ("aria-valuenow", "aria-valuemax"))
            key = "ArrowLeft" if now is not None and hi is not None and float(now) >= float(hi) else "ArrowRight"
            control.focus()
            page.keyboard.press(key)
            return f"{key} on the slider (was {now}, max {hi})"
        if kind == "dropdown":
            options = control.evaluate("el => [...el.options].map(o => o.value)")
            current = control.evaluate("el => el.value")
            other = next((o for o in options if o != current), None)
            assert other is not None, "a dropdown with a single option"
            control.select_option(value=other, timeout=30_000)
            return f"dropdown {current!r} -> {other!r}"
        if kind in ("toggle-buttons", "radio"):
            items = control.locator("button, input")
            i = control.evaluate("el => [...el.querySelectorAll('button, input')]"
                                 ".findIndex(b => !(b.classList.contains('mod-active') || b.checked))")
            assert i >= 0, f"no unselected option in {kind}"
            item = items.nth(i)
            name = item.evaluate("el => el.textContent.trim() || el.value")
            item.focus()
            page.keyboard.press("Space")
            return f"chose {name!r}"
        control.focus()
        page.keyboard.press("Space")
        return f"Space on {kind} {control.evaluate('el => el.textContent')!r}"

    def drive_widget(self, n: int, widget) -> List[str]:
        widget.scroll_into_view_if_needed(timeout=30_000)
        text = widget.inner_text()
        for bad in _ERROR_TEXTS:
            assert bad not in text, f"{self.nb.name}: widget {n}: {bad!r}:\n{_around(text, bad)}"
        fig = self.figure(widget)
        self.wait_image_loaded(fig)
        self.shot(widget, f"widget{n}_before")
        self.assert_title_inside(n, fig, "as first shown")
        controls = self.controls(widget)
        assert controls, (f"{self.nb.name}: widget {n} shows controls but none can be operated "
                          "(disabled, or nothing to choose)")
        done = []
        for kind, label, control in controls:
            before_src, before_px = self.src(fig), self.pixels(fig)
            t0 = time.monotonic()
            what = self.drive(kind, control)
            # a new image arrives from the kernel (new blob URL), then its pixels must differ
            changed = False
            while time.monotonic() - t0 < self.render_timeout:
                if before_src is None or self.src(fig) != before_src:
                    if self.pixels(fig) != before_px:
                        changed = True
                        break
                time.sleep(0.3)
            secs = time.monotonic() - t0
            if changed and before_src is None:
                self.settle(fig)  # an Output area may still be mid-update (cleared, then redrawn)
            if not changed:
                self.shot(widget, f"widget{n}_FAILED_{_slug(label)}")
            assert changed, (f"{self.nb.name}: widget {n}, control {label!r} ({what}): the figure did not "
                             f"re-render within {self.render_timeout:.0f} s")
            text = widget.inner_text()
            for bad in _ERROR_TEXTS:
                assert bad not in text, f"{self.nb.name}: widget {n} after {what}: {bad!r}:\n{_around(text, bad)}"
            self.assert_title_inside(n, fig, f"after {what}")
            done.append(f"{label}: {what}, re-rendered in {secs:.1f} s")
        self.shot(widget, f"widget{n}_after")
        return done


def _around(text: str, needle: str, width: int = 600) -> str:
    i = text.find(needle)
    return text[max(0, i - width // 2): i + width // 2]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")[:40] or "control"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("notebook", widget_notebooks(), ids=lambda p: p.stem)
def test_widgets_render_and_react(notebook: Path, lab_server, browser, artifacts, saved, report):
    """Run the notebook in JupyterLab; every widget renders and re-renders its figure when driven."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    console: List[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    run = NotebookRun(page, lab_server, notebook, artifacts, saved)
    t0 = time.monotonic()
    try:
        run.open()
        state = run.run_all()
        run.assert_no_errors("after Run All")
        assert state["executed"] == state["code"], (
            f"{notebook.name}: only {state['executed']} of {state['code']} code cells ran")
        widgets = run.widgets()
        assert widgets, (f"{notebook.name}: builds widgets but none with controls rendered in JupyterLab "
                         "(is the @jupyter-widgets/jupyterlab-manager extension loaded?)")
        driven = []
        for n, w in enumerate(widgets):
            driven += [f"widget {n}: {line}" for line in run.drive_widget(n, w)]
        run.assert_no_errors("after driving the widgets")
        total = time.monotonic() - t0
        lines = [f"{notebook.name}: open {run.timings['open_s']:.1f} s, Run All {run.timings['run_all_s']:.1f} s, "
                 f"{len(widgets)} widget(s) driven, {total:.1f} s in all (wall time on this machine)"]
        lines += [f"  {line}" for line in driven]
        report.extend(lines)
        print("\n" + "\n".join(lines))
    except BaseException:
        try:
            path = artifacts / f"{notebook.stem}__FAILED_page.png"
            page.screenshot(path=str(path), full_page=True, timeout=60_000)
            html = path.with_suffix(".html")
            html.write_text(page.content())
            saved.extend([path, html])
        except Exception:
            pass
        if console:
            print(f"browser console ({len(console)} errors/warnings):\n" + "\n".join(console[-30:]))
        print(f"jupyter lab log (last lines):\n{lab_server.log_tail()}")
        raise
    finally:
        lab_server.shutdown_kernels()
        context.close()
    rel = notebook.relative_to(REPO).as_posix()
    assert f"Saving file at /{rel}" not in lab_server.log.read_text(errors="replace"), (
        f"JupyterLab tried to save {rel} (refused by the server)")


# A made-up notebook (written at test time, git-ignored) on which the checks above must fail.
_SELFCHECK_CELLS = [
    """import io
import ipywidgets as W
from PIL import Image

def png(v):
    b = io.BytesIO()
    im = Image.new("RGB", (60, 40), "white")   # a white frame, as a figure has: the title check sees no cut ink
    im.paste((int(v) * 2, 80, 160), (15, 15, 45, 35))
    im.save(b, "PNG")
    return b.getvalue()

def app(callback):
    img, s = W.Image(value=png(0), format="png"), W.IntSlider(description="value")
    s.observe(lambda change: callback(img, change["new"]), "value")
    return W.VBox([s, img])""",
    "# redraws its image\napp(lambda img, v: setattr(img, \"value\", png(v)))",
    "# never redraws: its slider moves, its image stays\napp(lambda img, v: None)",
    """# a view the front end does not have
import traitlets

class Missing(W.DOMWidget):
    _view_name = traitlets.Unicode("NoSuchView").tag(sync=True)
    _view_module = traitlets.Unicode("no-such-widget-module").tag(sync=True)
    _view_module_version = traitlets.Unicode("1.0.0").tag(sync=True)

W.VBox([W.IntSlider(description="value"), Missing()])""",
]


@pytest.mark.slow
@pytest.mark.browser
def test_checks_catch_broken_widgets(lab_server, browser, saved):
    """The checks can fail: a slider that redraws its image passes; one whose image never changes,
    and a widget whose front-end view is missing, fail with messages naming the problem."""
    import nbformat

    folder = REPO / "tests" / "browser" / "artifacts" / "_selfcheck"  # inside the served repository
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / "selfcheck.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in _SELFCHECK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, notebook)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    run = NotebookRun(page, lab_server, notebook, folder, saved)
    run.render_timeout = 10.0
    try:
        run.open()
        run.run_all()
        with pytest.raises(AssertionError, match="Click to show javascript error"):
            run.assert_no_errors("after Run All")
        good, frozen, missing = run.widgets()
        run.drive_widget(0, good)
        with pytest.raises(AssertionError, match="did not re-render within 10 s"):
            run.drive_widget(1, frozen)
        with pytest.raises(AssertionError, match="Click to show javascript error"):
            run.drive_widget(2, missing)
        # the server is read-only: saving a notebook is refused, the file stays as it was
        rel = notebook.relative_to(REPO).as_posix()
        before = notebook.read_bytes()
        with pytest.raises(urllib.error.HTTPError) as refused:
            lab_server.api("PUT", f"/api/contents/{urllib.parse.quote(rel)}",
                           {"type": "notebook", "format": "json", "content": nbformat.v4.new_notebook()})
        # Jupytext's contents manager (jupytext.toml pairs the notebooks) reports the hook's 403 as a 500
        # whose message carries it; either way it must be our refusal, not some other failure
        body = refused.value.read().decode("utf-8", "replace")
        assert refused.value.code in (403, 500) and "never saves" in body, (refused.value.code, body[:500])
        assert notebook.read_bytes() == before
    finally:
        lab_server.shutdown_kernels()
        context.close()
