"""Notebook 12 (generative meta-learning): PLATIPUS beside MAML on the ambiguous sinusoid-or-line tasks.

* :data:`AMBIGUOUS` — the run both learners share (tasks :class:`metalib.tasks.SineLine`, 5 support points);
* :func:`make`, :func:`train` — a seeded learner of each kind, meta-trained by :func:`metalib.training.meta_train`
  (the same loop as every learner);
* :func:`test_tasks`, :func:`calibration` — the seeded held-out tasks and the calibration of the sampled
  functions against the truth (held-out log-likelihood, coverage of the true function by the sampled band,
  the mean function's MSE), MAML's single function measured the same way;
* :func:`ship` — how ``metalib/weights/sineline-<kind>.pt`` were made; :func:`load` reads them back.

Run ``python -m metalib.course.generative_lab ship --kinds platipus maml`` to retrain and ship them.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import algorithms
from ..io import exclusive_lock
from ..algorithms import Learner
from ..algorithms.platipus import band_coverage, mixture_log_likelihood
from ..batch import TaskBatch
from ..models import sinusoid_mlp
from ..ambiguous import SineLine, SineLineParams

__all__ = ["AMBIGUOUS", "KINDS", "WEIGHTS", "EVAL", "make", "train", "test_tasks", "sample_curves", "calibration",
           "ship", "load", "info", "METAGAN_WEIGHTS", "metagan_view"]

NOISE_STD = 0.3
AMBIGUOUS = dict(iterations=10_000, k_support=5, k_query=10, meta_batch=10, meta_lr=1e-3, inner_lr=0.05,
                 inner_steps=1, sigma_init=0.1, kl_weight=2 * NOISE_STD ** 2 / 10)
"""The run of both shipped learners: :class:`metalib.tasks.SineLine` tasks (the PLATIPUS paper's ambiguous
regression: sinusoid or line, noise 0.3; docs/references.md), 5 support and 10 query points, meta-batch 10,
Adam 1e-3, one inner SGD step of 0.05 (MAML's sinusoid step is 0.01: the lines' slopes up to 3 need a
larger one for a sampled θ to reach the support points in one step), σ_θ and v_q initialised at 0.1 (in
10,000 iterations they move little from there: the spread is mostly this choice; measured, issue 26). ``kl_weight`` β = 2·0.3²/10: the task loss is
the *mean* squared error, while the ELBO's likelihood term is the Gaussian log-likelihood of the 10 query
points with noise std 0.3, Σ(y − f)²/(2·0.3²) = MSE · 10/(2·0.3²) (up to a constant) — so the ELBO in nats,
divided by that factor, is MSE + β·KL."""

KINDS: Tuple[str, ...] = ("platipus", "maml")
EXTRA: Dict[str, Tuple[str, ...]] = {"platipus": ("kl_weight", "sigma_init"), "maml": ()}
"""The :data:`AMBIGUOUS` settings only one kind takes."""
WEIGHTS: Dict[str, str] = {k: f"sineline-{k}" for k in KINDS}
EVAL = dict(n_tasks=200, k_support=5, k_query=50, grid=100, n_samples=10, seed=2018, noise_std=NOISE_STD,
            margin=2 * NOISE_STD)
"""Calibration protocol: 200 seeded held-out tasks (seed 2018), 5 support points, 50 noisy held-out query
points (log-likelihood) and a 100-point grid on [−5, 5] of the noiseless truth (coverage); 10 sampled
functions per task (seeded per task); the band is widened by ±2 noise std (0.6)."""


def make(kind: str, model: Optional[nn.Module] = None, seed: int = 0) -> Learner:
    """A ``kind`` learner (``"platipus"`` or ``"maml"``) on the 1-40-40-1 MLP, MSE loss, :data:`AMBIGUOUS`'s
    settings, built through the registry (a seeded initialisation unless ``model`` is given)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if model is None:
        torch.manual_seed(seed)
        model = sinusoid_mlp()
    kw = dict(inner_lr=AMBIGUOUS["inner_lr"], inner_steps=AMBIGUOUS["inner_steps"], loss_fn=F.mse_loss,
              **{k: AMBIGUOUS[k] for k in EXTRA[kind]})
    return algorithms.get(kind, model, **kw)


def train(kind: str, iterations: int = AMBIGUOUS["iterations"], seed: int = 0, progress: bool = True):
    """Meta-train ``kind`` on fresh :class:`SineLine` batches (seeded weights, tasks and ε) with
    :func:`metalib.training.meta_train`. Returns ``(learner, History)``."""
    from ..training import meta_train

    learner = make(kind, seed=seed)
    family, gen = SineLine(noise_std=NOISE_STD), torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # PLATIPUS's ε during training come from the global RNG

    def sample_batch() -> TaskBatch:
        return family.sample(AMBIGUOUS["meta_batch"], AMBIGUOUS["k_support"], AMBIGUOUS["k_query"], generator=gen)

    hist = meta_train(learner, sample_batch, iterations, meta_lr=AMBIGUOUS["meta_lr"], progress=progress,
                      desc=f"{learner.short_name} (sines and lines)")
    return learner, hist


def test_tasks(n_tasks: int = EVAL["n_tasks"], k_support: int = EVAL["k_support"], k_query: int = EVAL["k_query"],
               seed: int = EVAL["seed"]) -> Tuple[TaskBatch, SineLineParams]:
    """Seeded held-out tasks: ``(batch with x_s, y_s [T, k_support, 1] and noisy x_q, y_q [T, k_query, 1],
    their parameters)``."""
    family, gen = SineLine(noise_std=NOISE_STD), torch.Generator().manual_seed(seed)
    params = family.sample_params(n_tasks, gen)
    return family.make_batch(params, k_support, k_query, gen), params


def sample_curves(learner: Learner, x_s: Tensor, y_s: Tensor, x: Tensor, n_samples: int, seed: int = 0) -> Tensor:
    """``[S, n, 1]``: PLATIPUS's ``n_samples`` sampled functions (seeded), or MAML's one adapted function
    (``S = 1``), at ``x [n, 1]`` after learning from the support set ``x_s, y_s [k, 1]``."""
    if hasattr(learner, "sample_functions"):
        return learner.sample_functions(x_s, y_s, x, n_samples, generator=torch.Generator().manual_seed(seed))
    phi = learner.adapt(x_s, y_s, F.mse_loss)
    with torch.no_grad():
        return learner(phi, x)[None]


def calibration(learner: Learner, n_samples: int = EVAL["n_samples"], n_tasks: int = EVAL["n_tasks"],
                seed: int = EVAL["seed"]) -> Dict[str, float]:
    """On :func:`test_tasks`: ``log_likelihood`` (nats per held-out noisy point under the mixture of the sampled
    functions with noise std 0.3; MAML: its one function), ``coverage`` (fraction of the true function on a
    100-point grid inside the sampled band ± 0.6), ``mse`` (the mean sampled function's query MSE against the
    noisy targets), ``spread`` (mean std of the samples over the grid; 0 for MAML), each a mean over tasks."""
    batch, params = test_tasks(n_tasks, seed=seed)
    grid = torch.linspace(-5, 5, EVAL["grid"]).view(-1, 1)
    truth = SineLine.function(grid.expand(n_tasks, -1, -1), params)
    rows = {"log_likelihood": [], "coverage": [], "mse": [], "spread": []}
    for t in range(n_tasks):
        f = sample_curves(learner, batch.x_s[t], batch.y_s[t], torch.cat([batch.x_q[t], grid]), n_samples, seed=t)
        fq, fg = f[:, : batch.x_q.shape[1]], f[:, batch.x_q.shape[1]:]
        rows["log_likelihood"].append(mixture_log_likelihood(fq, batch.y_q[t], EVAL["noise_std"]))
        rows["coverage"].append(band_coverage(fg, truth[t], EVAL["margin"]))
        rows["mse"].append(((fq.mean(0) - batch.y_q[t]) ** 2).mean())
        rows["spread"].append(fg.std(0, unbiased=False).mean())
    return {k: round(float(torch.stack(v).mean()), 4) for k, v in rows.items()}


def info(kind: str) -> Dict:
    """The manifest entry of the shipped ``kind`` learner (command, minutes, recorded calibration)."""
    from ..pretrained import pretrained_info

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return pretrained_info(WEIGHTS[kind])


def load(kind: str) -> Learner:
    """The shipped ``kind`` learner (checksum verified)."""
    from ..pretrained import pretrained

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return pretrained(WEIGHTS[kind])


def ship(kind: str, iterations: int = AMBIGUOUS["iterations"], seed: int = 0, directory=None,
         lock: Optional[str] = None) -> Dict:
    """Train ``kind`` (:func:`train`), measure :func:`calibration` and save it as ``sineline-<kind>`` with its
    manifest entry (the learner's whole state: PLATIPUS's μ, σ, v_q, γ). ``lock``: a file held with ``flock``
    while the weights and the manifest are written."""
    from ..device import describe_device
    from ..pretrained import save_pretrained

    start = time.perf_counter()
    learner, hist = train(kind, iterations, seed, progress=False)
    minutes = (time.perf_counter() - start) / 60
    cal = calibration(learner)
    tail = hist.loss[-1000:]
    settings = dict(AMBIGUOUS, iterations=iterations)
    learner_settings = {"inner_lr": AMBIGUOUS["inner_lr"], "inner_steps": AMBIGUOUS["inner_steps"], "loss_fn": "mse_loss",
                        **{k: AMBIGUOUS[k] for k in EXTRA[kind]}}
    others = {k for extra in EXTRA.values() for k in extra} - set(EXTRA[kind])
    settings = {k: v for k, v in settings.items() if k not in others}
    info = {
        "description": f"{learner.short_name} on PLATIPUS's ambiguous regression (sinusoids and lines, 5 support "
                       "points, noise 0.3; 1-40-40-1 ReLU MLP)",
        "command": f"python -m metalib.course.generative_lab ship --kinds {kind} --iterations {iterations} --seed {seed}",
        "seed": seed, "iterations": iterations, "settings": settings,
        "learner": {"algorithm": kind, "settings": learner_settings},
        "device": describe_device("cpu"), "torch": torch.__version__, "minutes": round(minutes, 2),
        "final_training_loss": round(sum(tail) / max(len(tail), 1), 4),
        "metrics": {"calibration": cal, "eval": dict(EVAL),
                    "how": "metalib.course.generative_lab.calibration: 200 seeded held-out SineLine tasks (seed 2018), "
                           "5 support points; log-likelihood of 50 noisy held-out points per task under the mixture of "
                           "10 sampled functions with noise std 0.3 (MAML: its one function); coverage of the noiseless "
                           "truth on a 100-point grid by the band [min, max] of the samples ± 0.6; mse of the mean "
                           "function; spread = mean std of the samples",
                    "measured_by": f"python -m metalib.course.generative_lab calibrate --kinds {kind}"},
    }
    kw = {} if directory is None else {"directory": directory}
    with exclusive_lock(lock):
        return save_pretrained(WEIGHTS[kind], learner, info=info, overwrite=True, **kw)


METAGAN_WEIGHTS: Dict[str, str] = {"with": "metagan-omniglot-5w1s", "without": "metagan-nogen-omniglot-5w1s"}
"""The shipped MetaGAN-on-MAML pair, Omniglot 5-way 1-shot, trained at an equal CPU budget (RESULTS.md): with the
generator, and the same learner with the generator off (``use_generator=False``)."""


def metagan_view(learner: Learner, x_s: Tensor, y_s: Tensor, x: Tensor, seed: int = 0,
                 steps: Optional[int] = None) -> Dict[str, Tensor]:
    """One task through a MetaGAN learner (:meth:`metalib.algorithms.metagan.MetaGAN.discriminate`) in float64 (a
    copy of the learner; so that printed probabilities do not depend on the CPU's float32 kernels): ``fakes [m, C,
    H, W]`` drawn with ``seed``, and the adapted discriminator-classifier's (N+1)-way probabilities (last: fake)
    for ``x [n, C, H, W]`` (``p_x [n, N+1]``) and for the fakes (``p_fake [m, N+1]``)."""
    import copy

    if not hasattr(learner, "discriminate"):
        raise ValueError(f"metagan_view needs a MetaGAN learner, got {type(learner).__name__}")
    twin = copy.deepcopy(learner).double()
    fakes, p_x, p_fake = twin.discriminate(x_s.double(), y_s, x.double(), steps=steps,
                                           generator=torch.Generator().manual_seed(seed))
    return {"fakes": fakes, "p_x": p_x, "p_fake": p_fake}


def _main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="PLATIPUS vs MAML on ambiguous regression: ship or calibrate")
    ap.add_argument("what", choices=("ship", "calibrate"))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--iterations", type=int, default=AMBIGUOUS["iterations"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lock", default=None, help="a file to flock while writing the weights and the manifest")
    ap.add_argument("--directory", default=None, help="write the weights and manifest entry here (default: metalib/weights)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for kind in args.kinds:
        if args.what == "ship":
            entry = ship(kind, args.iterations, args.seed, directory=args.directory, lock=args.lock)
            print(kind, entry["minutes"], "min", entry["metrics"]["calibration"])
        else:
            print(kind, calibration(load(kind)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main())
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        sys.exit(2)
