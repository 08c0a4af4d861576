"""Notebook 10 (learning the update): the computations behind its figures, widgets and exercise.

* **Meta-SGD on sinusoids** — :data:`METASGD` (Finn et al.'s sinusoid budget with Meta-SGD's per-parameter
  α), :func:`train_metasgd`, :func:`evaluate_metasgd` (the 600 seeded test tasks of
  :mod:`metalib.course.sinusoid_lab`, adapted with the learned α *and* with the shared SGD protocol),
  :func:`ship_sinusoid_metasgd` (how ``metalib/weights/sinusoid-metasgd.pt`` was made), :func:`alpha_by_layer`
  and :func:`prediction_path` (what the Meta-SGD explorer draws);
* **the LSTM meta-learner** — :func:`gate_trace`: one Omniglot episode's inner loop, every coordinate's
  gates and update beside SGD's for the same gradient;
* **ANIL's question** — :func:`layer_change`: how far MAML's inner loop moves each layer;
* **R2-D2** — :func:`ridge_system_sizes`: the primal and Woodbury systems' sizes;
* **the exercise** — :func:`check_metasgd_step` (with :func:`metasgd_step`, the reference solution).

Run ``python -m metalib.course.update_lab ship-sinusoid`` to retrain and ship the sinusoid weights.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import algorithms
from ..io import exclusive_lock
from ..algorithms import Learner
from ..algorithms.lstm_meta import Unroll
from ..functional import NonFiniteLossError
from ..tasks import Sinusoid
from . import fewshot_lab as fl
from . import sinusoid_lab as lab
# the exercise lives with its solution, check and common mistakes in metalib.course.exercises.metasgd_step
from .exercises.metasgd_step import check_metasgd_step, metasgd_step

__all__ = [
    "METASGD", "WEIGHTS", "make_metasgd", "train_metasgd", "evaluate_metasgd", "ship_sinusoid_metasgd",
    "load_sinusoid_learners", "alpha_by_layer", "layer_of", "layer_label", "prediction_path", "GateTrace", "gate_trace",
    "layer_change", "ridge_system_sizes", "metasgd_step", "check_metasgd_step",
]

# ============================================================================ Meta-SGD on sinusoids
METASGD = dict(iterations=lab.PAPER["iterations"], k_support=lab.PAPER["k_support"], k_query=lab.PAPER["k_query"],
               meta_batch=lab.PAPER["meta_batch"], meta_lr=lab.PAPER["meta_lr"], inner_steps=1,
               alpha_init=(0.005, 0.1))
"""The sinusoid run of ``sinusoid-metasgd``: Finn et al.'s sinusoid budget and tasks (:data:`metalib.course.
sinusoid_lab.PAPER`: 70,000 iterations, K = 10, 10 queries, meta-batch 25, Adam 1e-3, one inner step), with
Meta-SGD's per-parameter α initialised in [0.005, 0.1] (Li et al. 2017) instead of MAML's α = 0.01."""


WEIGHTS = {"maml": "sinusoid-maml", "metasgd": "sinusoid-metasgd"}
"""The shipped sinusoid learners the notebook compares."""


def make_metasgd(model: Optional[nn.Module] = None) -> Learner:
    """A Meta-SGD learner for the sinusoid MLP (MSE loss, :data:`METASGD`'s settings), via the registry."""
    return algorithms.get("metasgd", lab.random_model(0) if model is None else model, loss_fn=F.mse_loss,
                          inner_steps=METASGD["inner_steps"], alpha_init=METASGD["alpha_init"])


def train_metasgd(iterations: int = METASGD["iterations"], seed: int = 0, progress: bool = True,
                  snapshot_at: Optional[Iterable[int]] = None):
    """Meta-train Meta-SGD on the sinusoid family from a seeded initialisation (θ as
    :func:`metalib.course.sinusoid_lab.random_model`, α from the same seed). Returns ``(learner, History)``."""
    from ..training import meta_train

    torch.manual_seed(seed)
    learner = make_metasgd(lab.random_model(seed))
    family, gen = Sinusoid(), torch.Generator().manual_seed(seed)

    def sample_batch():
        return family.sample(METASGD["meta_batch"], METASGD["k_support"], METASGD["k_query"], generator=gen)

    hist = meta_train(learner, sample_batch, iterations, F.mse_loss, meta_lr=METASGD["meta_lr"], progress=progress,
                      desc="Meta-SGD (sinusoids)", snapshot_at=snapshot_at)
    return learner, hist


def evaluate_metasgd(learner: Learner, ks: Sequence[int] = lab.EVAL["ks"], steps: Sequence[int] = lab.EVAL["steps"],
                     n_tasks: int = lab.EVAL["n_tasks"]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """:func:`metalib.course.sinusoid_lab.evaluate` — the protocol of the shipped sinusoid learners: query MSE on
    the 600 seeded test tasks (50 queries) after 1 and 10 steps, means over the tasks that did not diverge —
    with Meta-SGD's **learned α** as the step size (``θ − α∘∇L``) instead of SGD's 0.01."""
    alpha = {k: a.detach() for k, a in learner.learning_rates().items()}
    # sinusoid_lab's vmapped loop hands the step size to metalib.functional.inner_loop, which takes a dict
    return lab.evaluate(learner.model, ks=ks, steps=steps, n_tasks=n_tasks, lr=alpha)


def _steps_key(s: int) -> str:
    return f"{s} step" if s == 1 else f"{s} steps"


def ship_sinusoid_metasgd(iterations: int = METASGD["iterations"], seed: int = 0, note: str = "",
                          directory=None, lock: Optional[str] = None) -> Dict:
    """Train Meta-SGD on sinusoids (:func:`train_metasgd`), evaluate it both ways (:func:`evaluate_metasgd`, and
    :func:`metalib.course.sinusoid_lab.evaluate` of its θ with SGD at 0.01) and save it as ``sinusoid-metasgd``
    with a manifest entry like the other sinusoid learners' (the learner's whole state: θ and α).

    ``lock``: a file to hold an exclusive ``flock`` on while the weights and the manifest are written (others
    who ship at the same time wait for it); training and evaluation run without it."""
    from ..device import describe_device
    from ..pretrained import save_pretrained

    start = time.perf_counter()
    learner, hist = train_metasgd(iterations, seed, progress=False,
                                  snapshot_at=lab.snapshot_schedule(iterations, 30))
    minutes = (time.perf_counter() - start) / 60
    own, sgd = evaluate_metasgd(learner), lab.evaluate(learner.model)
    tail = hist.loss[-1000:]
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in METASGD.items()}
    how_own = lab.evaluation_protocol().replace(f"SGD steps of lr {lab.TEST_LR}", "steps of the learned α (θ − α∘∇L)")
    info = {
        "description": "Meta-SGD (learned per-parameter α) on Finn et al.'s sinusoid regression (1-40-40-1 ReLU MLP)",
        "command": f"python -m metalib.course.update_lab ship-sinusoid --iterations {iterations} --seed {seed}",
        "seed": seed, "iterations": iterations, "settings": settings,
        "learner": {"algorithm": "metasgd", "settings": {"inner_steps": METASGD["inner_steps"],
                                                         "alpha_init": list(METASGD["alpha_init"]),
                                                         "loss_fn": "mse_loss"}},
        "device": describe_device("cpu"), "torch": torch.__version__, "minutes": round(minutes, 2),
        "final_training_loss": round(sum(tail) / max(len(tail), 1), 4),
        "test_inner_lr": "learned (alpha)",
        "snapshots": sorted(hist.snapshots),  # θ only (α is in the weights file's learner state)
        "metrics": {
            "post_adaptation_mse": own["mse"], "diverged_tasks": own["diverged"], "how": how_own,
            "sgd_0.01_from_theta": {"post_adaptation_mse": sgd["mse"], "diverged_tasks": sgd["diverged"],
                                    "how": lab.evaluation_protocol()},
            "eval": {**lab.EVAL, "lr": "learned alpha", "diverged_above": lab.DIVERGED},
        },
        "note": note,
    }
    kw = {} if directory is None else {"directory": directory}
    # snapshots: the network's weights θ during training (as the other sinusoid learners ship them)
    with exclusive_lock(lock):
        # re-shipping sinusoid-metasgd is what this function is for: replacing the name is meant
        return save_pretrained(WEIGHTS["metasgd"], learner, info=info, snapshots=hist.snapshots, overwrite=True, **kw)


def load_sinusoid_learners() -> Dict[str, Learner]:
    """``{"maml": MAML, "metasgd": Meta-SGD}`` with the shipped sinusoid weights (checksum verified)."""
    from ..pretrained import pretrained

    return {k: pretrained(name) for k, name in WEIGHTS.items()}


def layer_of(name: str) -> str:
    """``"0.weight" -> "0"``: the module a parameter belongs to (weight and bias of a layer together)."""
    return name.rsplit(".", 1)[0]


def layer_label(model: nn.Module, layer: str) -> str:
    """``"features.3.0" -> "features.3.0 (Conv2d)"``: a layer's name with its module's type."""
    try:
        return f"{layer} ({type(model.get_submodule(layer)).__name__})"
    except AttributeError:
        return layer


def alpha_by_layer(learner: Learner) -> Dict[str, Tensor]:
    """Meta-SGD's learned α, flattened per layer (weights and bias together): ``{layer: [n]}``, detached."""
    rates = getattr(learner, "learning_rates", None)
    if not callable(rates):
        raise TypeError(f"{learner.describe()} has no per-parameter learning rates (learner.learning_rates())")
    out: Dict[str, List[Tensor]] = {}
    for name, a in rates().items():
        out.setdefault(layer_of(name), []).append(a.detach().flatten())
    return {k: torch.cat(v) for k, v in out.items()}


def prediction_path(learner: Learner, x_s: Tensor, y_s: Tensor, x_eval: Tensor, steps: int) -> Tensor:
    """Predictions on ``x_eval`` after 0, 1, ..., ``steps`` inner steps of ``learner``'s own update (MAML: SGD
    at its α; Meta-SGD: θ − α∘∇L) on ``(x_s, y_s)``: ``[steps + 1, n_eval, 1]``. Once the adaptation diverges
    (a non-finite support loss: the step size is too large for this task) the remaining rows are NaN."""
    with torch.no_grad():
        params = {k: v.detach() for k, v in learner.initial_params().items()}
        preds = [learner(params, x_eval)]
        for _ in range(steps):
            try:
                params = {k: v.detach() for k, v in learner.adapt(x_s, y_s, steps=1, params=params).items()}
                preds.append(learner(params, x_eval))
            except NonFiniteLossError:
                preds += [torch.full_like(preds[0], float("nan"))] * (steps + 1 - len(preds))
                break
    return torch.stack(preds)


# ============================================================================ the LSTM meta-learner
@dataclass
class GateTrace:
    """One Omniglot episode's inner loop by the LSTM meta-learner (:func:`gate_trace`): the :class:`Unroll`
    (gates, gradients, updates per step and coordinate), the layers' slices, the query accuracy after the
    LSTM's updates and after plain SGD at ``sgd_lr`` for the same number of steps from the same start."""

    unroll: Unroll
    layers: Dict[str, slice]
    accuracy: float
    sgd_accuracy: float
    sgd_lr: float
    steps: int

    def coords(self, layer: str = "all") -> slice:
        return slice(None) if layer == "all" else self.layers[layer]

    def gate_quantiles(self, gate: str, layer: str = "all", q: Sequence[float] = (0.1, 0.5, 0.9)) -> Tensor:
        """``[len(q), steps]``: quantiles over the layer's coordinates of the ``"input"``/``"forget"`` gate."""
        g = {"input": self.unroll.input_gates, "forget": self.unroll.forget_gates}[gate][:, self.coords(layer)]
        return torch.quantile(g.double(), torch.tensor(q, dtype=torch.float64), dim=1).float()

    def effective_lr(self, step: int, layer: str = "all") -> float:
        r"""The SGD learning rate that best matches the LSTM's update at ``step`` (1-based) in least squares:
        :math:`\eta^* = -\langle \Delta_t, \nabla_t\rangle / \|\nabla_t\|^2`."""
        sl = self.coords(layer)
        g, d = self.unroll.grads[step - 1, sl].double(), self.unroll.updates[step - 1, sl].double()
        return float(-(d @ g) / (g @ g).clamp_min(1e-300))


def layer_slices(unroll: Unroll) -> Dict[str, slice]:
    """``{layer: slice of the flat vectors}`` (weights and bias of a layer together; contiguous)."""
    out: Dict[str, slice] = {}
    for name, sl in unroll.slices().items():
        layer = layer_of(name)
        out[layer] = slice(out[layer].start, sl.stop) if layer in out else sl
    return out


def gate_trace(learner: Learner, data, seed: int = 0, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
               steps: Optional[int] = None, sgd_lr: float = 0.4) -> GateTrace:
    """Unroll ``learner`` (an LSTM meta-learner) on episode 0 of the seeded sequence ``seed`` of ``data``
    (:func:`metalib.course.fewshot_lab.sample_episode`), recording every step, and measure its query accuracy
    beside plain SGD (``sgd_lr``: MAML's Omniglot inner lr 0.4 by default) from the same initialisation."""
    unroll = getattr(learner, "unroll", None)
    if not callable(unroll):
        raise TypeError(f"{learner.describe()} is not an LSTM meta-learner (it has no unroll())")
    steps = learner.eval_steps if steps is None else steps
    ep = fl.sample_episode(data, n_way, k_shot, n_query, seed=seed)
    x_s, y_s, x_q, y_q = ep[0][0], ep[1][0], ep[2][0], ep[3][0]
    with torch.no_grad():
        rec = unroll(x_s, y_s, steps, record=True)
        acc = float((learner(rec.params, x_q).argmax(-1) == y_q).float().mean()) * 100
        with learner.gates_pinned(forget=1.0, input=sgd_lr):
            sgd = unroll(x_s, y_s, steps)[0]
        sgd_acc = float((learner(sgd, x_q).argmax(-1) == y_q).float().mean()) * 100
    return GateTrace(rec, layer_slices(rec), acc, sgd_acc, sgd_lr, steps)


# ============================================================================ ANIL: feature reuse
@torch.no_grad()
def layer_change(learner: Learner, data, episodes: int = 20, n_way: int = 5, k_shot: int = 1,
                 steps: Optional[int] = None, seed: int = 0) -> Dict[str, float]:
    r"""How far the inner loop moves each layer: the mean over ``episodes`` seeded episodes of
    :math:`\|\phi_l - \theta_l\| / \|\theta_l\|` (weights and bias of layer ``l`` together) after ``steps``
    inner steps (default: the learner's test-time steps). ANIL's premise: MAML barely moves its body."""
    theta = {k: v.detach() for k, v in learner.initial_params().items()}
    totals: Dict[str, float] = {}
    for i in range(episodes):
        ep = fl.sample_episode(data, n_way, k_shot, 1, seed=seed, index=i)
        phi = learner.adapt(ep[0][0], ep[1][0], steps=steps)
        num: Dict[str, float] = {}
        den: Dict[str, float] = {}
        for k, t in theta.items():
            layer = layer_of(k)
            num[layer] = num.get(layer, 0.0) + float(((phi[k] - t) ** 2).sum())
            den[layer] = den.get(layer, 0.0) + float((t ** 2).sum())
        for layer in num:
            totals[layer] = totals.get(layer, 0.0) + math.sqrt(num[layer] / max(den[layer], 1e-30)) / episodes
    return totals


# ============================================================================ R2-D2
def ridge_system_sizes(n_way: int, k_shot: int, dim: int) -> Tuple[int, int]:
    """``(primal, woodbury)``: the sizes of R2-D2's two linear systems for an N-way K-shot task on a
    ``dim``-dimensional embedding (plus the bias column): ``(dim + 1, N·K)``."""
    return dim + 1, n_way * k_shot




# ============================================================================ command line
def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Train and ship notebook 10's sinusoid Meta-SGD weights.")
    ap.add_argument("what", choices=["ship-sinusoid"])
    ap.add_argument("--iterations", type=int, default=METASGD["iterations"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="")
    ap.add_argument("--lock", default=None, help="hold an exclusive flock on this file while writing the manifest")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    entry = ship_sinusoid_metasgd(args.iterations, args.seed, args.note, lock=args.lock)
    print(f"shipped {WEIGHTS['metasgd']}: {entry['minutes']} min, post-adaptation MSE {entry['metrics']['post_adaptation_mse']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
