#!/usr/bin/env python
"""The cost of one meta-iteration of a few-shot config, measured in a fresh Python process.

On CPU the only peak-memory measure is the process's peak resident set size, which earlier work in
the same process raises; in a fresh process, the increase over the peak just before the first step
is the meta-iteration's own memory. :func:`isolated_cost` runs this script as a subprocess and
returns its :class:`metalib.course.compare.Cost`.

    python benchmarks/costs.py --config '<FewShotConfig as JSON>' [--repeats 3 --warmup 1 --threads 1]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from metalib import fewshot  # noqa: E402
from metalib.course.compare import Cost, meta_iteration_cost  # noqa: E402


def isolated_cost(config: fewshot.FewShotConfig, repeats: int = 3, warmup: int = 1,
                  device: Optional[str] = None, threads: int = 1, timeout: float = 600) -> Cost:
    """:func:`metalib.course.compare.meta_iteration_cost` in a fresh Python process with ``threads``
    torch threads, so that the CPU peak RSS belongs to this measurement alone."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--config", json.dumps(config.to_dict()),
           "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    if device is not None:
        cmd += ["--device", str(device)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {config.describe()} in a fresh process failed:\n{proc.stderr[-2000:]}")
    return Cost(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Time one meta-iteration of a few-shot config; print a JSON Cost.")
    p.add_argument("--config", required=True, help="a FewShotConfig as JSON")
    p.add_argument("--repeats", type=int, default=3, help="timed iterations (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: the best available)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    config = fewshot.FewShotConfig.from_dict(json.loads(a.config))
    print(json.dumps(meta_iteration_cost(config, a.repeats, a.warmup, a.device).as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
