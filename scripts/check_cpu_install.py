"""Check that the student install keeps a CPU build of torch: no CUDA packages, no torch replaced.

The README's laptop recipe installs torch's CPU build first, then ``requirements.txt``. If anything in
the requirements (or in what they pull in) refuses that torch, pip replaces it with PyPI's default
build, which brings ~3 GB of ``nvidia-*`` packages. This script asks pip what it *would* install:

1. a throw-away virtual environment (``python -m venv``, no packages but pip);
2. a stand-in for the CPU wheel in it: a ``torch-<VERSION>+cpu.dist-info`` folder whose metadata is
   the CPU wheel's (``Requires-Dist`` copied from the real ``torch-2.13.0+cpu`` wheel; no ``nvidia-*``
   line) — the CPU index (download.pytorch.org/whl/cpu) is not reachable from CI, PyPI is;
3. ``pip install --dry-run --report`` of the requirements against it: the report lists every package
   pip would install. The check fails if that list holds ``torch`` or any ``nvidia-*`` package.

A control run does the same with a torch the requirements refuse (``2.13.0+cpu``, the wheel the
machine image carries): there the report MUST list torch and ``nvidia-*`` packages, or the check
itself is broken (it could not fail). What this cannot check offline: the size of a real CPU venv
(the CPU wheel cannot be downloaded here) and the CPU wheel's own files — only its metadata.

    python scripts/check_cpu_install.py [--requirements requirements.txt] [--torch 2.14.1]

Needs PyPI (package metadata, a few seconds); prints one line per run and exits 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Requires-Dist of the real torch-2.13.0+cpu wheel (METADATA), minus the optional extras.
CPU_WHEEL_REQUIRES = [
    "filelock",
    "typing-extensions>=4.10.0",
    "setuptools>=77.0.3",
    "sympy>=1.13.3",
    "networkx>=2.5.1",
    "jinja2",
    "fsspec>=0.8.5",
]


def torch_pin(requirements: Path) -> str:
    """The ``torch`` specifier in a requirements file (``torch>=2.14,<2.15``), or a one-line error."""
    for line in requirements.read_text().splitlines():
        m = re.match(r"\s*torch\s*([<>=!~][^#;]*)", line)
        if m:
            return m.group(1).strip()
    raise SystemExit(f"check_cpu_install: no torch line in {requirements}")


def stand_in_venv(where: Path, version: str) -> Path:
    """A venv with pip and a metadata-only CPU torch ``version`` installed; returns its python."""
    venv.EnvBuilder(with_pip=True, symlinks=True).create(where)
    py = where / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    info = Path(site) / f"torch-{version}.dist-info"
    info.mkdir()
    meta = ["Metadata-Version: 2.1", "Name: torch", f"Version: {version}", "Requires-Python: >=3.10"]
    meta += [f"Requires-Dist: {r}" for r in CPU_WHEEL_REQUIRES]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    return py


def would_install(py: Path, requirements: Path) -> list[str]:
    """The names pip's dry run would install for ``-r requirements`` (run from the repository root)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--dry-run", "--report", str(report),
                               "-r", str(requirements)], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"check_cpu_install: pip's dry run failed: {tail}")
        data = json.loads(report.read_text())
    return sorted(item["metadata"]["name"].lower() for item in data.get("install", []))


def unwanted(names: list[str]) -> list[str]:
    """What a CPU install must not pull in: torch itself (a replacement) and every ``nvidia-*`` package."""
    return [n for n in names if n == "torch" or n.startswith("nvidia-") or n.startswith("nvidia_")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt", help="default: requirements.txt")
    p.add_argument("--torch", default="2.14.1", help="the CPU torch the README's recipe installs (default: 2.14.1)")
    p.add_argument("--refused", default="2.13.0", help="a torch the requirements refuse, for the control run "
                   "(default: 2.13.0)")
    args = p.parse_args(argv)
    print(f"requirements: {args.requirements.name}, torch{torch_pin(args.requirements)}")
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        good = unwanted(would_install(stand_in_venv(Path(tmp) / "cpu", f"{args.torch}+cpu"), args.requirements))
        if good:
            print(f"FAIL: after torch {args.torch}+cpu, the requirements pull in {', '.join(good)}")
            status = 1
        else:
            print(f"ok: after torch {args.torch}+cpu, the requirements keep it and pull in no nvidia-* package")
        control = unwanted(would_install(stand_in_venv(Path(tmp) / "old", f"{args.refused}+cpu"), args.requirements))
        if "torch" in control and any(n.startswith("nvidia") for n in control):
            print(f"ok (control): after torch {args.refused}+cpu the check sees torch replaced "
                  f"and {sum(n.startswith('nvidia') for n in control)} nvidia-* packages")
        else:
            print(f"FAIL (control): torch {args.refused}+cpu should be replaced by a CUDA build, "
                  f"the dry run shows {control or 'nothing'}: the check cannot fail")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
