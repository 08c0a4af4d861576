"""The sinusoid experiments behind notebooks 01-03, so that their cells stay short.

Four ways to get an initialisation for the 1-40-40-1 sinusoid MLP (Finn et al. 2017, sec. 5.1):

* ``"maml"``     — second-order MAML, 1 inner step (lr 0.01), meta-batch 25, K = 10, Adam 1e-3;
* ``"fomaml"``   — the same, first-order;
* ``"reptile"``  — Reptile (Nichol et al. 2018), settings in :data:`REPTILE`;
* ``"pretrain"`` — one network trained jointly on all tasks (no inner loop), same budget;

plus ``"random"``, a freshly initialised network. All of them are *fine-tuned the same way* at
test time — plain SGD on the K support points with step size :data:`TEST_LR` — so only the
initialisation differs. Test tasks are drawn from fixed seeds (:func:`test_tasks`): every method,
every K and every notebook sees the very same tasks.

The shipped weights (``metalib.pretrained("sinusoid-maml")`` etc.) were trained with
``scripts/train_sinusoid.py``, which calls :func:`train` and :func:`evaluate` from this module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from .. import algorithms
from .. import models as _models
from ..algorithms import MAML
from ..batch import TaskBatch
from ..functional import buffers_of, forward, inner_loop, params_of
from ..tasks import Sinusoid

# --------------------------------------------------------------------------- settings
KINDS: Tuple[str, ...] = ("maml", "fomaml", "reptile", "pretrain")
"""The four trained initialisations, in the order the notebooks plot them."""

LABELS: Dict[str, str] = {
    "maml": "MAML",
    "fomaml": "first-order MAML",
    "reptile": "Reptile",
    "pretrain": "pretrained (joint training)",
    "random": "random initialisation",
}
SHORT: Dict[str, str] = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile", "pretrain": "pretrained", "random": "random init"}
COLORS: Dict[str, str] = {"maml": "C0", "fomaml": "C2", "reptile": "C1", "pretrain": "C3", "random": "0.5"}
WEIGHTS: Dict[str, str] = {k: f"sinusoid-{k}" for k in KINDS}
"""Names of the shipped weights (``metalib.pretrained(WEIGHTS["maml"])``)."""

BUILDER = "metalib.models:sinusoid_mlp"

PAPER = dict(iterations=70_000, k_support=10, k_query=10, meta_batch=25, meta_lr=1e-3, inner_lr=0.01, inner_steps=1)
"""Finn et al.'s sinusoid settings (official ``main.py``): 70,000 meta-iterations, K = 10 support and
10 query points per task, 25 tasks per meta-batch, Adam with lr 1e-3, one inner SGD step of 0.01."""

REPTILE = dict(inner_lr=0.01, inner_steps=5, outer_lr=1.0, anneal=True)
"""Reptile on MAML's tasks and budget (meta-batch 25 tasks of K = 10, 70,000 iterations): 5 inner SGD
steps of 0.01 — the step every method is fine-tuned with at test time — on the support points, and a
meta step ε = 1.0 annealed linearly to 0, as in Nichol et al.'s batched Omniglot/miniImageNet runs
(ε = 0.7–1 → 0). Their paper has no sinusoid table; their sine-wave demo takes one task per update with
ε = 0.1 and inner SGD 0.02 — with a meta-batch of 25 and ε = 1, inner lr 0.02 diverged within 3,000
iterations in a trial here, so 0.01 it is."""

TEST_LR = 0.01
"""Step size of the test-time fine-tuning (SGD), the same for every initialisation."""

EVAL = dict(n_tasks=600, k_query=50, seed=2017, ks=(5, 10, 20), steps=(1, 10))
"""How the manifest's metrics are measured: the mean query MSE over ``n_tasks`` seeded test tasks
(:func:`test_tasks`), ``k_query`` query points each, after 1 and 10 SGD steps from K = 5, 10, 20
support points."""


# --------------------------------------------------------------------------- models and learners
def random_model(seed: int = 0) -> nn.Module:
    """A freshly initialised sinusoid MLP (PyTorch's default init), reproducible from ``seed``."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = _models.sinusoid_mlp()
    torch.random.set_rng_state(gen_state)
    return model


LEARNERS: Dict[str, Tuple[str, Dict[str, object]]] = {
    "maml": ("maml", dict(inner_lr=PAPER["inner_lr"], inner_steps=PAPER["inner_steps"])),
    "fomaml": ("maml", dict(inner_lr=PAPER["inner_lr"], inner_steps=PAPER["inner_steps"], first_order=True)),
    "pretrain": ("pretrain", dict(inner_lr=TEST_LR, inner_steps=1)),
    "reptile": ("reptile", dict(inner_lr=REPTILE["inner_lr"], inner_steps=REPTILE["inner_steps"],
                                outer_lr=REPTILE["outer_lr"])),
}
"""``{kind: (registered algorithm, settings)}``: what :func:`make_learner` builds (with the MSE loss),
the same as the shipped weights' manifest entries record (``learner``)."""


def make_learner(kind: str, model: Optional[nn.Module] = None):
    """The metalib learner that trains ``kind`` (:data:`LEARNERS`, the MSE loss), via the registry."""
    if kind not in LEARNERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    name, settings = LEARNERS[kind]
    return algorithms.get(name, _models.sinusoid_mlp() if model is None else model, loss_fn=F.mse_loss, **settings)


def snapshot_schedule(iterations: int, n: int = 40) -> List[int]:
    """About ``n`` iterations from 0 to ``iterations``, spaced evenly on a log scale (learning is
    fastest at the start), always including 0 and ``iterations``."""
    if iterations <= 0:
        return [0]
    pts = {0, iterations}
    for i in range(n - 1):
        v = math.exp(math.log(10) + (math.log(iterations) - math.log(10)) * i / max(n - 2, 1))
        v = int(round(v, -int(math.floor(math.log10(v))) + 1))  # two significant digits
        pts.add(min(v, iterations))
    return sorted(pts)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model, its loss history and weight snapshots."""

    model: nn.Module
    loss: List[float]
    seconds: float
    snapshots: Dict[int, Dict[str, Tensor]] = field(default_factory=dict)
    label: str = ""

    def summary(self, window: int = 100) -> str:
        """One line that stays when the progress bar is gone: iterations, time, the recent loss."""
        tail = self.loss[-window:]
        mean = sum(tail) / len(tail) if tail else float("nan")
        return (f"{self.label}: {len(self.loss):,} meta-iterations in {self.seconds:.1f} s; "
                f"training loss {mean:.3f} (mean of the last {len(tail)} meta-batches)")


def train(
    kind: str,
    iterations: int,
    seed: int = 0,
    progress: bool = True,
    snapshot_at: Optional[Iterable[int]] = None,
    desc: Optional[str] = None,
) -> TrainResult:
    """Meta-train ``kind`` from scratch for ``iterations`` meta-batches (seeded init and tasks).

    The loop is :class:`metalib.training.TrainingLoop` (what :func:`metalib.training.meta_train`
    runs) with the settings of :data:`PAPER` (Reptile: :data:`REPTILE`, whose annealing is its
    learner's own schedule). ``snapshot_at``: iterations at which to keep a copy of the weights (the
    weights *after* that many updates), e.g. :func:`snapshot_schedule`. ``progress``: a progress bar
    that stays visible when the run ends (print :meth:`TrainResult.summary` for a record that survives
    a saved notebook).
    """
    from ..training import ProgressBar, Snapshots, TrainingLoop

    model = random_model(seed)
    learner = make_learner(kind, model)   # its loss is the MSE
    family = Sinusoid()
    gen = torch.Generator().manual_seed(seed)

    def sample_batch() -> TaskBatch:
        return family.sample(PAPER["meta_batch"], PAPER["k_support"], PAPER["k_query"], generator=gen)

    label = desc or LABELS[kind]
    callbacks = [Snapshots(at=snapshot_at)] + ([ProgressBar(label, leave=True)] if progress else [])
    loop = TrainingLoop(learner, sample_batch, iterations, meta_lr=PAPER["meta_lr"], callbacks=callbacks)
    if not REPTILE["anneal"]:
        loop.scheduler = None
    hist = loop.run()
    return TrainResult(model, hist.loss, hist.seconds, hist.snapshots, label)


def load(kind: str) -> nn.Module:
    """The network of the shipped weights of ``kind`` (checksum verified); ``"random"`` gives
    :func:`random_model`."""
    if kind == "random":
        return random_model(0)
    from ..pretrained import pretrained

    return pretrained(WEIGHTS[kind]).model


_TRAINED: Dict[str, TrainResult] = {}  # paper-length runs trained in this session (full mode)


def get_models(full: bool = False, kinds: Sequence[str] = KINDS, progress: bool = True) -> Dict[str, nn.Module]:
    """``{kind: model}``: the shipped weights, or — with ``full=True`` — paper-length runs
    (:data:`PAPER`) trained here from scratch, with snapshots (about 25 minutes for all four on a
    laptop CPU). Runs trained here are kept for :func:`provenance` and :func:`snapshots`."""
    out = {}
    for kind in kinds:
        if full:
            if kind not in _TRAINED:
                n = PAPER["iterations"]
                _TRAINED[kind] = train(kind, n, seed=0, progress=progress, snapshot_at=snapshot_schedule(n, 30))
            out[kind] = _TRAINED[kind].model
        else:
            out[kind] = load(kind)
    return out


def snapshots(kind: str) -> Dict[int, Dict[str, Tensor]]:
    """Weight snapshots of ``kind``: of the run trained here in full mode, else the shipped ones."""
    if kind in _TRAINED:
        return _TRAINED[kind].snapshots
    from ..pretrained import pretrained_snapshots

    return pretrained_snapshots(WEIGHTS[kind])


def provenance(kind: str) -> str:
    """One line: how the weights of ``kind`` in use were trained (the manifest's record of the
    shipped weights, or the run trained here in full mode)."""
    if kind in _TRAINED:
        r = _TRAINED[kind]
        from ..device import describe_device

        return (f"{LABELS[kind]:<28} trained here: {len(r.loss):,} iterations in {r.seconds / 60:.1f} min "
                f"on {describe_device('cpu')}")
    from ..pretrained import pretrained_info

    info = pretrained_info(WEIGHTS[kind])
    return (f"{WEIGHTS[kind]:<17} {info['iterations']:>6,} iterations, {info['minutes']:.0f} min on "
            f"{info['device']} | {info['command']}")


def fit_from_scratch(x_s: Tensor, y_s: Tensor, steps: int = 2000, lr: float = 1e-2, seed: int = 0) -> nn.Module:
    """A fresh network trained on nothing but the K support points (Adam, ``steps`` full-batch
    steps): what you get without any prior knowledge of the task family."""
    model = random_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x_s), y_s).backward()
        opt.step()
    return model


# --------------------------------------------------------------------------- tasks
def test_tasks(
    n_tasks: int = EVAL["n_tasks"],
    k: int = 10,
    k_query: int = EVAL["k_query"],
    seed: int = EVAL["seed"],
    max_k: int = 50,
) -> TaskBatch:
    """Seeded test tasks whose only dependence on ``k`` is the size of the support set.

    Amplitudes, phases, a pool of ``max_k`` support inputs and ``k_query`` query inputs are drawn
    from ``seed``; the support set is the first ``k`` inputs of the pool. So K = 5, 10 and 20 use the
    same tasks, nested support sets and the same query points — differences are due to K alone.
    """
    if not 1 <= k <= max_k:
        raise ValueError(f"k must be in [1, {max_k}], got {k}")
    fam = Sinusoid()
    gen = torch.Generator().manual_seed(seed)
    p = fam.sample_params(n_tasks, generator=gen)
    x = fam.sample_x(n_tasks, max_k + k_query, generator=gen)
    x = torch.cat([x[:, :k], x[:, max_k:]], 1)
    y = fam.function(x, p.amplitude.view(-1, 1, 1).double(), p.phase.view(-1, 1, 1).double())
    x, y = x.float(), y.float()
    return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])


def demo_task(amplitude: float = 3.0, phase: float = 1.0, k: int = 10, seed: int = 0, max_k: int = 50):
    """One task with chosen amplitude and phase: ``(x_s [k, 1], y_s [k, 1])``. The support inputs are
    the first ``k`` of a seeded pool of ``max_k``, so they stay put when amplitude/phase change."""
    if not 1 <= k <= max_k:
        raise ValueError(f"k must be in [1, {max_k}], got {k}")
    gen = torch.Generator().manual_seed(seed)
    x = Sinusoid().sample_x(1, max_k, generator=gen)[0, :k].float()
    return x, true_curve(x, amplitude, phase)


def true_curve(x: Tensor, amplitude: float, phase: float) -> Tensor:
    """``amplitude * sin(x - phase)``."""
    return amplitude * torch.sin(x - phase)


def grid(n: int = 200) -> Tensor:
    """``[n, 1]`` evenly spaced inputs over the task domain [-5, 5] (for plotting curves)."""
    return torch.linspace(-5.0, 5.0, n).unsqueeze(1)


# --------------------------------------------------------------------------- evaluation
def _frozen(model: nn.Module):
    return {k: v.detach() for k, v in params_of(model).items()}, buffers_of(model)


def adaptation_path(
    model: nn.Module, x_s: Tensor, y_s: Tensor, x_eval: Tensor, steps: int, lr: float = TEST_LR
) -> Tensor:
    """Predictions on ``x_eval`` after 0, 1, ..., ``steps`` SGD steps on ``(x_s, y_s)`` (one task):
    ``[steps + 1, n_eval, 1]``: :meth:`metalib.MAML.adapt` at ``lr`` along the path
    (:func:`metalib.course.fewshot_lab.adaptation_path`)."""
    from .fewshot_lab import adaptation_path as path_of

    learner = MAML(model, inner_lr=lr, first_order=True, loss_fn=F.mse_loss)
    path = path_of(learner, x_s, y_s, range(steps + 1))
    with torch.no_grad():
        return torch.stack([learner(path[k], x_eval) for k in range(steps + 1)])


def query_mse(model: nn.Module, batch: Sequence[Tensor], at: Sequence[int], lr: float = TEST_LR) -> Tensor:
    """Query MSE of every task after each number of SGD steps in ``at`` (on its support set):
    ``[T, len(at)]``, vmapped over tasks. The query set is evaluated only at those step counts
    (it is the expensive part), the adaptation runs to ``max(at)``."""
    at = [int(s) for s in at]
    if not at or min(at) < 0:
        raise ValueError(f"at must be a non-empty list of step counts >= 0, got {at}")
    params, buffers = _frozen(model)
    last = max(at)

    def one_task(xs, ys, xq, yq):
        p, out = params, {}
        for s in range(last + 1):
            if s in at:
                out[s] = F.mse_loss(forward(model, p, buffers, xq), yq)
            if s < last:
                p, _ = inner_loop(model, p, buffers, xs, ys, F.mse_loss, lr, 1, first_order=True)
        return torch.stack([out[s] for s in at])

    x_s, y_s, x_q, y_q = batch
    return vmap(one_task)(x_s, y_s, x_q, y_q).detach()


def mse_per_step(model: nn.Module, batch: Sequence[Tensor], steps: int, lr: float = TEST_LR) -> Tensor:
    """Query MSE of every task after 0, 1, ..., ``steps`` SGD steps on its support set:
    ``[T, steps + 1]``. Column ``s`` equals ``MAML(model, lr).task_losses(batch, F.mse_loss,
    steps=s)[0]`` — checked in ``tests/test_sinusoid_lab.py``."""
    return query_mse(model, batch, range(steps + 1), lr)


DIVERGED = 100.0
"""A task's fine-tuning counts as *diverged* when its query MSE is not finite or above this (the worst
sensible prediction, 0 everywhere, scores at most A²/2 = 12.5). Plain SGD with a fixed step size does
diverge on the odd task — e.g. 5 support points at the edges of a large-amplitude sine — and one such
task would dominate a mean over hundreds; so means are taken over the other tasks, and the diverged
ones are counted and reported beside them."""


def summarise(per_task: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Mean over tasks of ``per_task`` (``[T, ...]``) leaving out diverged entries (:data:`DIVERGED`),
    its 95% confidence half-width ``1.96·σ/√n``, and the number of diverged tasks."""
    v = per_task.double()
    ok = torch.isfinite(v) & (v <= DIVERGED)
    n = ok.sum(0).clamp_min(1)
    x = torch.where(ok, v, torch.zeros_like(v))
    mean = x.sum(0) / n
    var = (torch.where(ok, v - mean, torch.zeros_like(v)) ** 2).sum(0) / (n - 1).clamp_min(1)
    return mean, 1.96 * var.sqrt() / n.sqrt(), (~ok).sum(0)


def evaluate(
    model: nn.Module,
    ks: Sequence[int] = EVAL["ks"],
    steps: Sequence[int] = EVAL["steps"],
    n_tasks: int = EVAL["n_tasks"],
    k_query: int = EVAL["k_query"],
    seed: int = EVAL["seed"],
    lr: float = TEST_LR,
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Post-adaptation query MSE (see :data:`EVAL`):
    ``{"mse": {"K=5": {"1 step": mean, "10 steps": mean}, ...}, "diverged": {"K=5": {"1 step": 0, ...}, ...}}``
    — the mean over tasks whose fine-tuning did not diverge, and how many did (:func:`summarise`)."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {"mse": {}, "diverged": {}}
    for k in ks:
        mean, _, bad = summarise(query_mse(model, test_tasks(n_tasks, k, k_query, seed), steps, lr))
        out["mse"][f"K={k}"] = {_steps_key(s): float(m) for s, m in zip(steps, mean)}
        out["diverged"][f"K={k}"] = {_steps_key(s): int(b) for s, b in zip(steps, bad)}
    return out


def _steps_key(s: int) -> str:
    return f"{s} step" if s == 1 else f"{s} steps"


def evaluation_protocol() -> str:
    """How :func:`evaluate` measures, in words (recorded in the manifest beside the numbers)."""
    return (
        f"mean query MSE over {EVAL['n_tasks']} test tasks (metalib.sinusoid_lab.test_tasks, seed "
        f"{EVAL['seed']}, {EVAL['k_query']} query points each, support = first K points of a seeded "
        f"pool) after 1 and 10 SGD steps of lr {TEST_LR} on the K support points, float32 on CPU; tasks "
        f"whose fine-tuning diverged (query MSE > {DIVERGED:g} or not finite) are left out of the mean "
        "and counted in 'diverged'"
    )


@dataclass
class Comparison:
    """Results of :func:`compare`: MSE against steps (for each K) and against K (for each step count).
    Means and intervals leave out diverged tasks (:func:`summarise`); :meth:`diverged` counts them."""

    ks: Tuple[int, ...]
    max_steps: int
    per_task: Dict[str, Dict[int, Tensor]]  # kind -> K -> [T, max_steps + 1]

    def curve(self, kind: str, k: int) -> Tensor:
        """Mean MSE after 0..max_steps steps, ``[max_steps + 1]``."""
        return summarise(self.per_task[kind][k])[0]

    def ci(self, kind: str, k: int) -> Tensor:
        """95% confidence half-width of :meth:`curve`."""
        return summarise(self.per_task[kind][k])[1]

    def diverged(self, kind: str, k: int) -> Tensor:
        """How many tasks diverged after 0..max_steps steps, ``[max_steps + 1]``."""
        return summarise(self.per_task[kind][k])[2]

    def at(self, kind: str, k: int, steps: int) -> float:
        return float(self.curve(kind, k)[steps])

    def median(self, kind: str, k: int, steps: int) -> float:
        """The median MSE over *all* tasks after ``steps`` steps (diverged ones included: one task
        cannot move a median, whatever its value)."""
        v = self.per_task[kind][k][:, steps].double()
        return float(torch.where(torch.isnan(v), torch.full_like(v, math.inf), v).median())

    def worst(self, kind: str, k: int, steps: int) -> float:
        """The largest MSE of any task after ``steps`` steps (``inf`` if one is not finite)."""
        v = self.per_task[kind][k][:, steps].double()
        return math.inf if not bool(torch.isfinite(v).all()) else float(v.max())

    def table(self, steps: Sequence[int] = (1, 10), kinds: Optional[Sequence[str]] = None,
              median: bool = False) -> str:
        """A plain-text table: one row per method, one column per (K, steps); ``[n]`` after a number:
        n tasks diverged and are not in that mean. ``median``: each cell is "mean / median" (the
        median over all tasks, diverged ones included)."""
        kinds = list(kinds or self.per_task)
        width = 21 if median else 17
        head = f"{'initialisation':<28}" + "".join(f"{'K=%d, %s' % (k, _steps_key(s)):>{width}}" for k in self.ks for s in steps)
        rows = [head, "-" * len(head)]
        any_bad = False
        for kind in kinds:
            cells = ""
            for k in self.ks:
                for s in steps:
                    bad = int(self.diverged(kind, k)[s])
                    any_bad |= bad > 0
                    text = f"{self.at(kind, k, s):.2f}" + (f" / {self.median(kind, k, s):.2f}" if median else "")
                    cells += text.rjust(width - 4) + (f" [{bad}]" if bad else "    ")
            rows.append(f"{LABELS.get(kind, kind):<28}{cells}")
        n = next(iter(next(iter(self.per_task.values())).values())).shape[0]
        rows.append(f"{'mean / median' if median else 'mean'} query MSE over {n} test tasks" + (
            f"; [n]: n tasks diverged (MSE > {DIVERGED:g}) and are left out of that mean"
            + (" (not of the median)" if median else "") if any_bad else ""))
        return "\n".join(rows)


def compare(
    models: Mapping[str, nn.Module],
    ks: Sequence[int] = (5, 10, 20),
    max_steps: int = 10,
    n_tasks: int = EVAL["n_tasks"],
    k_query: int = EVAL["k_query"],
    seed: int = EVAL["seed"],
    lr: float = TEST_LR,
) -> Comparison:
    """Every model fine-tuned on the same seeded test tasks, for each K, after 0..``max_steps`` steps."""
    per_task = {
        kind: {k: mse_per_step(m, test_tasks(n_tasks, k, k_query, seed), max_steps, lr) for k in ks}
        for kind, m in models.items()
    }
    return Comparison(tuple(ks), max_steps, per_task)


def snapshot_model(state_dict: Mapping[str, Tensor]) -> nn.Module:
    """A sinusoid MLP holding the weights of one training snapshot."""
    model = _models.sinusoid_mlp()
    model.load_state_dict(dict(state_dict))
    return model


def snapshot_curve(
    snapshots: Mapping[int, Mapping[str, Tensor]], k: int = 10, steps: int = 1, n_tasks: int = 200,
    lr: float = TEST_LR, seed: int = EVAL["seed"],
) -> Tuple[List[int], List[float], List[float]]:
    """For each snapshot (sorted by iteration): the mean query MSE on seeded test tasks before
    adaptation and after ``steps`` steps from K points (:func:`summarise`). Returns
    ``(iterations, before, after)``."""
    batch = test_tasks(n_tasks, k, EVAL["k_query"], seed)
    its = sorted(snapshots)
    before, after = [], []
    for it in its:
        per = summarise(mse_per_step(snapshot_model(snapshots[it]), batch, steps, lr))[0]
        before.append(float(per[0]))
        after.append(float(per[-1]))
    return its, before, after


def joint_optimum(x: Tensor, amplitude: Tuple[float, float] = (0.1, 5.0), phase: Tuple[float, float] = (0.0, math.pi)) -> Tensor:
    r"""The best single function for all tasks at once under the MSE: the mean
    :math:`\mathbb{E}_{A,\varphi}[A \sin(x - \varphi)] = \bar A \cdot \frac{\cos(x - \varphi_1) - \cos(x - \varphi_0)}{\varphi_1 - \varphi_0}`,
    which for the paper's ranges is :math:`-\frac{2 \bar A}{\pi} \cos x \approx -1.62 \cos x`."""
    a_mean = (amplitude[0] + amplitude[1]) / 2
    p0, p1 = phase
    return a_mean * (torch.cos(x - p1) - torch.cos(x - p0)) / (p1 - p0)
