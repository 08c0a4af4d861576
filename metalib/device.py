"""Device choice, seeding, timing and memory: the measurements the notebooks and benchmarks show."""
from __future__ import annotations

import contextlib
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Union

import torch

DeviceLike = Union[str, torch.device, None]

CPU_THREADS = 1
"""The CPU thread policy (``docs/threads.md``): metalib's models are small (a Conv-4 on 28×28 episodes, a
1-40-40-1 MLP), so a second torch thread only adds synchronisation — measured 4–25× slower on a busy
2-core machine (``benchmarks/README.md``, ``bench_threads``). ``evaluate`` and ``FewShotTrainer.fit`` run
with this many threads unless told otherwise, and restore the caller's setting afterwards."""


@contextlib.contextmanager
def cpu_threads(n: Optional[int]) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op CPU threads, then restore the previous count.
    ``None``: leave torch's setting as it is (the caller's own choice)."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an int >= 1 or None (torch's current setting), got {n!r}")
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def default_device(prefer: DeviceLike = None) -> torch.device:
    """The device to run on: ``prefer`` if given, else ``$METALIB_DEVICE``, else CUDA, Apple MPS, CPU."""
    choice = prefer if prefer is not None else os.environ.get("METALIB_DEVICE")
    if choice is not None:
        try:
            dev = torch.device(choice)
        except (RuntimeError, TypeError, ValueError):  # torch's message lists twenty device types
            raise ValueError(f"{str(choice)[:60]!r} is not a device: use cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was asked for, but CUDA is not available here")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {choice!r} was asked for, but Apple MPS is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded likewise.

    ``deterministic=True`` also asks torch for deterministic kernels (slower on GPU; some ops then
    warn). Sampling in metalib takes explicit generators, so experiments are reproducible without it.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the core
        pass
    torch.manual_seed(seed)
    if deterministic:
        globals()["deterministic"](True)  # the class below; the argument shadows its name here
    return torch.Generator().manual_seed(seed)


class deterministic:
    """Switch torch's deterministic-algorithm mode on (default) or off.

    ``deterministic()`` switches it for the rest of the session; ``with deterministic(): ...``
    switches it for the block and restores the previous settings afterwards. On: torch uses
    deterministic kernels where it has them (and warns where it has not), cuDNN stops choosing
    kernels by timing (``cudnn.benchmark = False``) and uses deterministic ones, and cuBLAS gets a
    fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when CUDA starts). GPU runs are then
    repeatable, usually a little slower; on CPU torch's kernels are deterministic anyway.
    """

    def __init__(self, enabled: bool = True) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True or False, got {enabled!r}")
        self._saved = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
        )
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(enabled, warn_only=True)
        torch.backends.cudnn.deterministic = enabled

    def __enter__(self) -> "deterministic":
        return self

    def __exit__(self, *exc) -> None:
        algorithms, warn_only, benchmark, cudnn_det = self._saved
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_det


def is_deterministic() -> bool:
    """Whether torch's deterministic-algorithm mode is on (see :class:`deterministic`)."""
    return torch.are_deterministic_algorithms_enabled()


def to_device(data, device: DeviceLike = None, non_blocking: bool = False):
    """Put a dataset (or an episode, a batch, a tensor) on ``device`` in one line.

    * a tensor: ``data.to(device)``;
    * a dataset with an ``images`` tensor (:class:`~metalib.data.Omniglot`,
      :class:`~metalib.data.MiniImageNet`: uint8 ``[classes, per_class, ch, H, W]``): a shallow copy
      whose ``images`` live on ``device`` (the original is left as it is). The images stay uint8 —
      1 byte a pixel, e.g. ~13 MB for Omniglot's background set, ~0.9 GB for miniImageNet's full
      train split — and an :class:`~metalib.data.EpisodeSampler` built on the copy samples episodes
      on that device with no host-to-device copy per episode;
    * a tuple/NamedTuple (e.g. :class:`~metalib.TaskBatch`, an ``Episode``), list or dict: the same
      container with every tensor moved.

    ``device`` defaults to :func:`default_device`. Raises ``TypeError`` for anything else.
    """
    import copy

    dev = default_device(device)
    if isinstance(data, torch.Tensor):
        return data.to(dev, non_blocking=non_blocking)
    if isinstance(getattr(data, "images", None), torch.Tensor):
        out = copy.copy(data)
        out.images = data.images.to(dev, non_blocking=non_blocking)
        return out
    if isinstance(data, tuple):
        moved = [to_device(x, dev, non_blocking) if isinstance(x, torch.Tensor) else x for x in data]
        return type(data)(*moved) if hasattr(data, "_fields") else tuple(moved)
    if isinstance(data, list):
        return [to_device(x, dev, non_blocking) if isinstance(x, torch.Tensor) else x for x in data]
    if isinstance(data, dict):
        return {k: to_device(v, dev, non_blocking) if isinstance(v, torch.Tensor) else v for k, v in data.items()}
    raise TypeError(
        f"to_device needs a tensor, a dataset with an .images tensor, or a tuple/list/dict of tensors; "
        f"got {type(data).__name__}"
    )


def synchronize(device: DeviceLike = None) -> None:
    """Wait for queued GPU work, so a timer measures the work and not just its launch."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


class Timer:
    """``with Timer(device) as t: ...`` then ``t.seconds``; synchronises the device on entry and exit."""

    def __init__(self, device: DeviceLike = "cpu") -> None:
        self.device = device
        self.seconds = float("nan")

    def __enter__(self) -> "Timer":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


@dataclass
class Timing:
    """Wall-clock statistics of repeated calls, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (median of {self.repeats} after {self.warmup} warm-up; min {self.min_ms:.2f}, max {self.max_ms:.2f})"


def time_it(fn: Callable[[], object], repeats: int = 10, warmup: int = 3, device: DeviceLike = "cpu") -> Timing:
    """Median/min/max wall time of ``fn()`` after ``warmup`` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        with Timer(device) as t:
            fn()
        times.append(t.seconds * 1e3)
    return Timing(statistics.median(times), min(times), max(times), repeats, warmup)


def current_memory_mb(device: DeviceLike = None) -> float:
    """Memory in use now, in MiB: allocated tensor memory on CUDA / MPS; on CPU the process's
    resident set size (everything the process holds, not only tensors)."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        return torch.cuda.memory_allocated(dev) / 2**20
    if dev.type == "mps":
        return torch.mps.current_allocated_memory() / 2**20
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: fall back to the peak
        return peak_memory_mb(dev)


def _status_mb(field: str) -> float:
    """A ``kB`` line of ``/proc/self/status`` (Linux), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    raise OSError(f"no {field} in /proc/self/status")


def reset_peak_memory(device: DeviceLike = None) -> None:
    """Start a new peak: CUDA's peak allocated memory; on Linux, the process's peak resident set
    size (``VmHWM``, reset to the current RSS through ``/proc/self/clear_refs``). Elsewhere on CPU
    the peak cannot be reset (measure in a fresh process)."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    elif dev.type == "cpu" and sys.platform.startswith("linux"):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def peak_memory_mb(device: DeviceLike = None) -> float:
    """Peak memory in MiB: allocated tensor memory on CUDA (since the last reset); on CPU the
    process's peak resident set size — on Linux ``VmHWM`` (since the last :func:`reset_peak_memory`
    or the start of the program), elsewhere ``ru_maxrss`` (since the process started; on Linux that
    one would also carry the peak of a parent that started this process, hence ``VmHWM``); NaN
    where neither exists (Windows)."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    if sys.platform.startswith("linux"):
        try:
            return _status_mb("VmHWM")
        except (OSError, ValueError, IndexError):
            pass
    try:
        import resource  # POSIX only: absent on Windows, where this returns NaN
    except ImportError:
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameter numbers (malloc.h)
_ALLOCATOR: Dict[str, int] = {}


def tune_cpu_allocator(threshold_mb: int = 1024) -> bool:
    """Let the process keep and reuse freed CPU tensor memory instead of handing it back to the OS.

    On CPU, PyTorch gets tensor memory straight from the C library's ``malloc``. With glibc's
    defaults, large blocks are ``mmap``-ed and returned to the OS when freed, and the top
    of the heap is trimmed; a training step that frees its activations then pays for page faults to
    get the same memory back in the next task or iteration. This sets glibc's ``M_MMAP_THRESHOLD``
    and ``M_TRIM_THRESHOLD`` to ``threshold_mb`` (the process-wide equivalent of the environment
    variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``): blocks up to that size come
    from the heap and freed memory stays there for reuse. Results are bit-identical; only time and
    memory change: Conv-4 meta-iterations get faster on CPU (measured in ``benchmarks/README.md``).
    The cost: the process's resident memory stays near its peak until it exits.

    :class:`metalib.fewshot.FewShotTrainer`, :func:`metalib.fewshot.evaluate` and
    :func:`metalib.training.meta_train` call this when they run on the CPU. Set the environment variable
    ``METALIB_CPU_ALLOCATOR=system`` to keep the C library's defaults. Elsewhere than Linux with
    glibc (macOS, Windows, musl) it does nothing.

    Returns:
        whether the setting is in effect.
    """
    if isinstance(threshold_mb, bool) or not isinstance(threshold_mb, int) or not 1 <= threshold_mb <= 2047:
        raise ValueError(f"threshold_mb must be an int in [1, 2047] (mallopt takes a C int of bytes), got {threshold_mb!r}")
    if os.environ.get("METALIB_CPU_ALLOCATOR", "").lower() == "system":
        return False
    if _ALLOCATOR.get("threshold_mb") == threshold_mb:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    value = threshold_mb << 20
    if mallopt(_M_MMAP_THRESHOLD, value) != 1 or mallopt(_M_TRIM_THRESHOLD, value) != 1:
        return False
    _ALLOCATOR["threshold_mb"] = threshold_mb
    return True


def release_freed_cpu_memory() -> None:
    """Hand the memory that the process has freed but still holds back to the OS (glibc's
    ``malloc_trim``), e.g. before taking a memory baseline: otherwise a step measured after the
    setup reuses the setup's freed blocks without growing the resident set, and looks free."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def cpu_allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` is in effect in this process (for reports)."""
    return bool(_ALLOCATOR)


def describe_device(device: DeviceLike = None) -> str:
    """A one-line, human-readable name of the device, for every number we print."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def environment_report() -> Dict[str, str]:
    """Versions and devices, as the welcome notebook shows them."""
    from .version import __version__

    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "metalib": __version__,
        "device": str(default_device()),
        "device name": describe_device(),
        "cuda available": str(torch.cuda.is_available()),
    }
    for name in ("torchvision", "numpy", "matplotlib", "ipywidgets"):
        try:
            report[name] = __import__(name).__version__
        except ImportError:
            report[name] = "not installed"
    return report


def interactive() -> bool:
    """Whether someone is watching: a progress bar's default (``evaluate(progress=None)``).

    ``METALIB_PROGRESS=1`` / ``0`` decides when set (the notebook builds and the test suite set ``0``, so
    that stored notebook outputs never hold a bar). Otherwise off under pytest, on in a Jupyter kernel
    and when stderr is a terminal, off elsewhere (a log file, a pipe, ``nohup``).
    """
    env = os.environ.get("METALIB_PROGRESS")
    if env is not None:
        return env.strip().lower() not in ("", "0", "false", "no", "off")
    if "PYTEST_CURRENT_TEST" in os.environ or "pytest" in sys.modules:
        return False
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int, enabled: Optional[bool], desc: str, initial: int = 0, leave: bool = False):
    """A ``tqdm.auto`` bar (a widget in Jupyter, text elsewhere), or None when not ``enabled``
    (``None``: :func:`interactive`)."""
    if enabled is None:
        enabled = interactive()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=leave, dynamic_ncols=True)
