"""Matplotlib helpers for the notebooks: one consistent look, labelled axes, legible sizes.

Every function draws into an ``Axes`` it is given (or a new figure) and returns what it drew, so
notebook cells stay one or two lines long and the widgets can reuse the same drawing code.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from torch import Tensor

from . import sinusoid_lab as lab

STYLE = {
    # Resolution: a notebook shows figures at figure.dpi (an 11-inch two-panel figure is 1,210 pixels
    # wide, scaled to the page); savefig.dpi, for exported figures and slides, is a projector's (150).
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 2.0,
    "figure.constrained_layout.use": True,
}


def style() -> None:
    """Apply the suite's matplotlib style (call once at the top of a notebook)."""
    mpl.rcParams.update(STYLE)


def subplots(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6, **kw):
    """``plt.subplots`` with a size per panel (inches) and the suite's style."""
    style()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def _np(t):
    return t.detach().cpu().flatten().numpy() if isinstance(t, Tensor) else t


def sinusoid_axes(ax: Axes, title: Optional[str] = None, ylim=(-6.0, 6.0)) -> None:
    ax.set_xlim(-5, 5)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title:
        ax.set_title(title)


# ----------------------------------------------------------------------------- tasks
def plot_tasks(ax: Axes, amplitudes: Sequence[float], phases: Sequence[float], highlight: Optional[int] = None,
               title: Optional[str] = None) -> None:
    """Several sinusoids ``A sin(x - phase)`` in grey, one highlighted (default: the largest amplitude)."""
    x = lab.grid()
    if highlight is None:
        highlight = int(torch.as_tensor(amplitudes).argmax())
    for i, (a, p) in enumerate(zip(amplitudes, phases)):
        y = lab.true_curve(x, float(a), float(p))
        if i == highlight:
            continue
        ax.plot(_np(x), _np(y), color="0.6", lw=1.0, alpha=0.7)
    a, p = float(amplitudes[highlight]), float(phases[highlight])
    ax.plot(_np(x), _np(lab.true_curve(x, a, p)), color="k", lw=2.2, label=f"one task: A = {a:.1f}, φ = {p:.1f}")
    sinusoid_axes(ax, title)


def plot_support_query(ax: Axes, x_s, y_s, x_q=None, y_q=None, support_label: str = "support (K points)",
                       query_label: str = "query") -> None:
    """Support points as filled black dots, query points as hollow circles."""
    ax.scatter(_np(x_s), _np(y_s), s=42, color="k", zorder=5, label=support_label)
    if x_q is not None:
        ax.scatter(_np(x_q), _np(y_q), s=36, facecolors="none", edgecolors="C3", lw=1.3, zorder=4, label=query_label)


def plot_task_spread(ax: Axes, n_tasks: int = 5000, seed: int = 0) -> None:
    """What all tasks share: the mean of many sampled sinusoids at every x (the best single
    prediction under the MSE) with the band holding 80% of them, and the analytic mean."""
    p = lab.Sinusoid().sample_params(n_tasks, generator=torch.Generator().manual_seed(seed))
    x = lab.grid()
    y = lab.true_curve(x.T, p.amplitude.view(-1, 1), p.phase.view(-1, 1))  # [tasks, points]
    lo, hi = torch.quantile(y, 0.1, dim=0), torch.quantile(y, 0.9, dim=0)
    ax.fill_between(_np(x), _np(lo), _np(hi), color="0.6", alpha=0.35, lw=0, label="80% of tasks")
    ax.plot(_np(x), _np(y.mean(0)), color="C3", lw=2.5, label=f"mean of {n_tasks} tasks")
    ax.plot(_np(x), _np(lab.joint_optimum(x)), color="k", ls="--", lw=1.5, label="−(2Ā/π)·cos x")
    sinusoid_axes(ax, "the average task")
    ax.legend(loc="lower left")


def show_task_batch(batch, n: int = 4, title: Optional[str] = None):
    """The first ``n`` tasks of a sinusoid batch side by side: support points filled, query hollow."""
    fig, axes = subplots(ncols=n, width=3.2, height=2.9, sharey=True)
    x_s, y_s, x_q, y_q = batch
    for i, ax in enumerate(axes):
        ax.scatter(_np(x_q[i]), _np(y_q[i]), s=22, facecolors="none", edgecolors="C3", lw=1.1, label="query")
        ax.scatter(_np(x_s[i]), _np(y_s[i]), s=36, color="k", zorder=5, label="support")
        sinusoid_axes(ax, f"task {i + 1}")
        if i:
            ax.set_ylabel("")
    axes[0].legend(loc="lower left")
    if title:
        fig.suptitle(title)
    return fig


def plot_true(ax: Axes, amplitude: float, phase: float, label: str = "true function", **kw):
    x = lab.grid()
    (line,) = ax.plot(_np(x), _np(lab.true_curve(x, amplitude, phase)), color=kw.pop("color", "k"),
                      lw=kw.pop("lw", 1.5), ls=kw.pop("ls", "--"), label=label, **kw)
    return line


def plot_predictions(ax: Axes, x: Tensor, preds: Mapping[str, Tensor], ls: str = "-", alpha: float = 1.0,
                     suffix: str = "") -> Dict[str, object]:
    """One line per initialisation (``preds``: kind -> ``[n, 1]``), in the suite's colours."""
    lines = {}
    for kind, y in preds.items():
        (lines[kind],) = ax.plot(_np(x), _np(y), ls=ls, alpha=alpha, color=lab.COLORS.get(kind),
                                 label=lab.LABELS.get(kind, kind) + suffix)
    return lines


def plot_adaptation_steps(ax: Axes, x: Tensor, path: Tensor, amplitude: float, phase: float, x_s, y_s,
                          title: Optional[str] = None, cmap: str = "viridis", colorbar: bool = True):
    """The prediction after 0, 1, ..., n steps (``path: [n + 1, points, 1]``) from light to dark."""
    steps = path.shape[0] - 1
    cm = plt.get_cmap(cmap)
    plot_true(ax, amplitude, phase, color="k", ls="--", lw=1.6)
    for s in range(steps + 1):
        c = cm(0.1 + 0.85 * s / max(steps, 1))
        ax.plot(_np(x), _np(path[s]), color=c, lw=2.4 if s in (0, steps) else 1.2,
                label="before adaptation (θ)" if s == 0 else (f"after {steps} steps" if s == steps else None))
    plot_support_query(ax, x_s, y_s)
    sinusoid_axes(ax, title)
    if colorbar:
        sm = mpl.cm.ScalarMappable(cmap=cm, norm=mpl.colors.Normalize(0, steps))
        cb = ax.figure.colorbar(sm, ax=ax, pad=0.01)
        cb.set_label("gradient steps")
    ax.legend(loc="lower left")


# ----------------------------------------------------------------------------- comparisons
def plot_mse_vs_steps(ax: Axes, comp: "lab.Comparison", k: int, kinds: Optional[Sequence[str]] = None,
                      band: bool = True, log: bool = True) -> None:
    """Mean query MSE after 0..n fine-tuning steps (with a 95% band over test tasks), one line per method."""
    kinds = list(kinds or comp.per_task)
    steps = list(range(comp.max_steps + 1))
    for kind in kinds:
        m, ci = comp.curve(kind, k).numpy(), comp.ci(kind, k).numpy()
        ax.plot(steps, m, "o-", ms=4, color=lab.COLORS.get(kind), label=lab.LABELS.get(kind, kind))
        if band:
            ax.fill_between(steps, m - ci, m + ci, color=lab.COLORS.get(kind), alpha=0.15, lw=0)
    ax.set_xlabel("gradient steps at test time")
    ax.set_ylabel("query MSE")
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.set_title(f"K = {k}")
    ax.set_xticks(steps[:: max(1, len(steps) // 6)] if len(steps) > 12 else steps)


def plot_mse_vs_k(ax: Axes, comp: "lab.Comparison", steps: int, kinds: Optional[Sequence[str]] = None,
                  log: bool = True) -> None:
    """Mean query MSE after ``steps`` steps against the number of support points K."""
    kinds = list(kinds or comp.per_task)
    for kind in kinds:
        m = [comp.at(kind, k, steps) for k in comp.ks]
        ci = [float(comp.ci(kind, k)[steps]) for k in comp.ks]
        ax.errorbar(comp.ks, m, yerr=ci, fmt="o-", ms=5, capsize=3, color=lab.COLORS.get(kind),
                    label=lab.LABELS.get(kind, kind))
    ax.set_xlabel("K (support points)")
    ax.set_ylabel("query MSE")
    ax.set_xticks(list(comp.ks))
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.set_title(f"after {steps} step{'s' if steps != 1 else ''}")


def plot_training_loss(ax: Axes, loss: Sequence[float], window: int = 50, label: Optional[str] = None,
                       color: Optional[str] = None) -> None:
    """Training loss per iteration (thin) and its running mean over ``window`` iterations (thick)."""
    it = range(1, len(loss) + 1)
    ax.plot(it, loss, color=color or "C0", alpha=0.25, lw=0.8)
    acc, sm = 0.0, []
    for i, v in enumerate(loss):
        acc += v
        if i >= window:
            acc -= loss[i - window]
        sm.append(acc / min(i + 1, window))
    ax.plot(it, sm, color=color or "C0", lw=2, label=label or f"running mean ({window} it.)")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("training loss (MSE)")
    ax.set_yscale("log")
    plain_log_ticks(ax)


# ----------------------------------------------------------------------------- diagrams
def meta_learning_diagram(ax: Optional[Axes] = None):
    """Finn et al.'s Figure 1, redrawn: the meta-learning path of θ (outer loop, thick), and from its
    end one gradient step per task towards that task's best parameters θ*ᵢ (inner loop)."""
    if ax is None:
        _, ax = subplots(width=7.0, height=4.0)
    t = torch.linspace(0, 1, 100)
    px, py = 0.8 + 2.6 * t, 0.6 + 1.9 * t - 0.9 * t**2
    ax.plot(px.numpy(), py.numpy(), color="k", lw=3)
    ax.annotate("", xy=(float(px[-1]), float(py[-1])), xytext=(float(px[-4]), float(py[-4])),
                arrowprops=dict(arrowstyle="-|>", color="k", lw=3, mutation_scale=22))
    ax.text(1.0, 1.45, "meta-learning\n(outer loop)", fontsize=11, ha="left")
    theta = (float(px[-1]), float(py[-1]))
    ax.plot(*theta, "o", color="k", ms=8)
    ax.text(theta[0] - 0.15, theta[1] + 0.18, "θ", fontsize=16, ha="right")
    targets = [(5.3, 2.9), (5.6, 1.4), (4.4, 0.25)]
    for i, (tx, ty) in enumerate(targets, 1):
        dx, dy = tx - theta[0], ty - theta[1]
        step = (theta[0] + 0.42 * dx, theta[1] + 0.42 * dy)
        ax.annotate("", xy=step, xytext=theta, arrowprops=dict(arrowstyle="-|>", color="C0", lw=2, mutation_scale=16))
        ax.plot([step[0], tx], [step[1], ty], ls=":", color="C0", lw=1.5)
        ax.plot(tx, ty, "*", color="C1", ms=14)
        ax.text(tx + 0.12, ty + 0.05, f"θ*{_sub(i)}", fontsize=14, color="C1")
        norm = math.hypot(dx, dy)
        px_, py_ = -dy / norm, dx / norm  # unit normal: put the label beside the arrow, not on it
        if py_ < 0:
            px_, py_ = -px_, -py_
        ax.text(theta[0] + 0.25 * dx + 0.22 * px_, theta[1] + 0.25 * dy + 0.22 * py_, f"−∇L{_sub(i)}",
                fontsize=11, color="C0", ha="center", va="center")
    ax.text(3.6, -0.35, "adaptation to task i (inner loop): a few gradient steps from θ", fontsize=10,
            ha="center", color="C0")
    ax.set_xlim(0.5, 6.3)
    ax.set_ylim(-0.6, 3.3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title("MAML: learn θ so that one gradient step\nbrings it close to each task's optimum θ*ᵢ")
    return ax


def _sub(i: int) -> str:
    return "".join("₀₁₂₃₄₅₆₇₈₉"[int(c)] for c in str(i))


def annotate_mse(ax: Axes, text: str, loc: str = "upper right") -> None:
    """A small boxed note (e.g. the MSE numbers) in a corner of ``ax``."""
    x, ha = (0.98, "right") if "right" in loc else (0.02, "left")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=9, family="monospace",
            bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))


def plain_log_ticks(ax: Axes, axis: str = "y") -> None:
    """Label a log axis with plain numbers (0.5, 1, 2) instead of 5×10⁻¹, labelling as many minor
    ticks as fit: all on a short axis, 2s, 3s and 5s on a longer one, 2s and 5s on a long one."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    lim = ax.get_ylim if axis == "y" else ax.get_xlim

    def minor(v, _):
        lo, hi = lim()
        span = hi / lo if lo > 0 else float("inf")
        digit = f"{v:.1e}"[0]
        keep = "23456789" if span < 4 else ("235" if span < 30 else "25")
        return f"{v:g}" if digit in keep else ""

    target.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(mpl.ticker.FuncFormatter(minor))


def fmt(v: float, digits: int = 2) -> str:
    """A float with ``digits`` significant digits, as the notebooks print numbers (stable across runs)."""
    if v == 0 or not math.isfinite(v):
        return str(v)
    return f"{v:#.{digits}g}".rstrip(".") if abs(v) < 10 ** digits else f"{v:.0f}"


def race_curves(ax: Axes, races: Mapping[str, Sequence], papers: Mapping[str, Optional[object]],
                labels: Optional[Mapping[str, str]] = None) -> None:
    """The equal-budget race (``metalib.course.compare.race_results``): per learner, validation accuracy
    against process CPU-minutes of training (a line), the 600-episode test accuracy where measured (◇),
    and the paper's number as a ★ just beyond the right edge (``papers[learner]``: a ``PaperNumber``
    or None). ``labels``: legend names (default: the learner names)."""
    xmax = max((p.cpu_minutes for pts in races.values() for p in pts), default=1.0)
    # more learners than the colour cycle has colours: the next round of colours is dashed, then dotted, so
    # no two learners share a line's look
    colors = mpl.rcParams["axes.prop_cycle"].by_key().get("color") or ["C0"]
    for i, (alg, pts) in enumerate(races.items()):
        label = (labels or {}).get(alg, alg)
        ls, marker = (("-", "o"), ("--", "s"), (":", "^"))[min(i // len(colors), 2)]
        line, = ax.plot([p.cpu_minutes for p in pts], [p.val_accuracy for p in pts], marker=marker, ms=4, ls=ls,
                        color=colors[i % len(colors)], label=label)
        tests = [p for p in pts if p.test_accuracy is not None]
        ax.plot([p.cpu_minutes for p in tests], [p.test_accuracy for p in tests], ls="", marker="D", mfc="none",
                ms=8, color=line.get_color())
        paper = papers.get(alg)
        if paper is not None:
            ax.plot([xmax * 1.05], [float(str(paper.value).split()[0])], marker="*", ms=12, color=line.get_color(),
                    clip_on=False, ls="")
    ax.set_xlim(0, xmax * 1.1)
    ax.set_xlabel("process CPU-minutes of training (1 thread)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], ls="", marker="D", mfc="none", color="0.3", label="our test (600 episodes)"),
                Line2D([], [], ls="", marker="*", ms=10, color="0.3", label="the paper's number (its protocol)")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))


# offsets (points) and alignment tried, in order, for a point's label: right, left, above, below, diagonals
_LABEL_PLACES = ((7, -3, "left"), (-7, -3, "right"), (0, 7, "center"), (0, -13, "center"), (7, 6, "left"),
                 (-7, 6, "right"), (7, -12, "left"), (-7, -12, "right"), (12, 14, "left"), (-12, 14, "right"),
                 (12, -22, "left"), (-12, -22, "right"))


def label_points(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], fontsize: float = 7,
                 marker_px: float = 6.0) -> list:
    """Label each point ``(xs[i], ys[i])`` with ``labels[i]`` where the label overlaps no other label and no
    point's marker (a square of ``marker_px`` around it): the first free place of :data:`_LABEL_PLACES`, else
    the least covered. Call it after the axes' limits and scales are set. Returns the text artists."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else fig._get_renderer()
    fig.draw_without_rendering()                     # final limits and layout: display coordinates hold
    pts = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    markers = [(px - marker_px, py - marker_px, px + marker_px, py + marker_px) for px, py in pts]
    placed: list = []
    texts = []

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    for i, (x, y, label) in enumerate(zip(xs, ys, labels)):
        best = None
        for dx, dy, ha in _LABEL_PLACES:
            t = ax.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=fontsize)
            e = t.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
            cover = sum(overlap(box, b) for b in placed) + sum(overlap(box, m) for j, m in enumerate(markers) if j != i)
            inside = ax.bbox.x0 <= e.x0 and e.x1 <= ax.bbox.x1 and ax.bbox.y0 <= e.y0 and e.y1 <= ax.bbox.y1
            cover += 0.0 if inside else 1e6
            if best is None or cover < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cover, t, box)
            else:
                t.remove()
            if cover == 0:
                break
        placed.append(best[2])
        texts.append(best[1])
    return texts
