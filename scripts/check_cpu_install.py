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
itself is broken (it could not fail). What the dry runs cannot check: the size of a real CPU venv
(the CPU wheel in the requirements' range cannot be downloaded here) and the CPU wheel's own files.

``--size`` measures a real one instead, with a stand-in: a CPU wheel of torch found on disk (the folders in
``PIP_FIND_LINKS``, or ``--wheel-dir``; on the machines we measure on, ``torch-2.13.0+cpu``, outside the
requirements' range), installed with its own dependencies into a fresh venv, then the student requirements
without their torch line and without the project itself (``-e .``, which would ask for the 2.14 torch;
an editable install adds only a path file), with the stand-in pinned (``-c``, so pip cannot replace it).
It prints the venv's size on disk (as ``du``), its ten largest packages, and fails if any ``nvidia-*``
package is installed or the venv exceeds ``--max-mb``. No such wheel: it says so and skips. It installs
about 110 packages (68 s on our 2-core machine when quiet, 8-10 min when loaded), so CI does not run
it; the README's measured size comes from it.

    python scripts/check_cpu_install.py [--requirements requirements.txt] [--torch 2.14.1]
    python scripts/check_cpu_install.py --size [--max-mb 1600] [--wheel-dir DIR]

Needs PyPI (package metadata, a few seconds; ``--size``: the packages); prints one line per run and
exits 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
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


def venv_env() -> dict:
    """The environment for the throw-away venv's Python: ours without PYTHONPATH, which would show it the
    packages (and a checkout's ``metalib.egg-info``) of the environment running this script."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


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
                          check=True, capture_output=True, text=True, env=venv_env()).stdout.strip()
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
                               "-r", str(requirements)], cwd=ROOT, capture_output=True, text=True,
                              env=venv_env())
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"check_cpu_install: pip's dry run failed: {tail}")
        data = json.loads(report.read_text())
    return sorted(item["metadata"]["name"].lower() for item in data.get("install", []))


def unwanted(names: list[str]) -> list[str]:
    """What a CPU install must not pull in: torch itself (a replacement) and every ``nvidia-*`` package."""
    return [n for n in names if n == "torch" or n.startswith("nvidia-") or n.startswith("nvidia_")]


def find_cpu_wheel(dirs: list[Path]) -> Path | None:
    """The newest ``torch-*+cpu`` wheel for this Python in ``dirs`` (None: there is none)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = [w for d in dirs for w in Path(d).glob(f"torch-*+cpu-{tag}-{tag}-*.whl")]
    return max(found, key=lambda w: [int(x) for x in re.findall(r"\d+", w.name.split("-")[1].split("+")[0])],
               default=None)


def find_links_dirs() -> list[Path]:
    """The local folders pip is told to look in for wheels (``PIP_FIND_LINKS``)."""
    dirs = [s.removeprefix("file://") for s in os.environ.get("PIP_FIND_LINKS", "").split()]
    return [Path(d) for d in dirs if "://" not in d and Path(d).is_dir()]


def without_torch(requirements: Path, out: Path) -> Path:
    """``requirements`` minus its torch line and the project itself (``-e .``), written to ``out``."""
    keep = [ln for ln in requirements.read_text().splitlines()
            if not re.match(r"\s*torch\s*([<>=!~;#]|$)", ln) and not re.match(r"\s*(-e|--editable)\s+\.\s*$", ln)]
    out.write_text("\n".join(keep) + "\n")
    return out


def disk_mb(where: Path) -> float:
    """Space on disk under ``where`` in MiB, as ``du -sm`` counts it (allocated blocks, hard links once)."""
    seen, blocks = set(), 0
    for dirpath, dirnames, filenames in os.walk(where):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                blocks += st.st_blocks
    return (blocks + os.lstat(where).st_blocks) * 512 / 2**20


# run inside the measured venv: installed size per distribution from its RECORD, largest first
_SIZES = """
import importlib.metadata as md, json, os
rows = []
for d in md.distributions():
    size = 0
    for f in d.files or []:
        try:
            size += os.path.getsize(d.locate_file(f))
        except OSError:
            pass
    rows.append([d.metadata["Name"], d.version, size])
print(json.dumps(sorted(rows, key=lambda r: -r[2])))
"""


def measure_size(wheel: Path, requirements: Path, where: Path) -> tuple[float, list]:
    """A real CPU venv: ``wheel`` (with its dependencies), then the requirements without torch, torch pinned
    to the wheel's version. Returns (MiB on disk, [[name, version, bytes], ...] largest first)."""
    venv.EnvBuilder(with_pip=True, symlinks=True).create(where)
    py = str(where / "bin" / "python")
    version = wheel.name.split("-")[1]
    pins = where.parent / "torch-pin.txt"   # beside the venv, not in what is measured
    pins.write_text(f"torch=={version}\n")
    for cmd in ([py, "-m", "pip", "install", "--quiet", str(wheel)],
                [py, "-m", "pip", "install", "--quiet", "-r", str(without_torch(requirements, where.parent / "req.txt")),
                 "-c", str(pins)]):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=venv_env())
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"check_cpu_install: the install for --size failed: {tail}")
    rows = json.loads(subprocess.run([py, "-I", "-c", _SIZES], check=True, capture_output=True, text=True,
                                     env=venv_env()).stdout)
    return disk_mb(where), rows


def check_size(args) -> int:
    """``--size``: measure a real CPU venv with the stand-in wheel; 0 ok or skipped, 1 failed."""
    dirs = [args.wheel_dir] if args.wheel_dir else find_links_dirs()
    wheel = find_cpu_wheel(dirs)
    if wheel is None:
        print(f"skipped (size): no torch-*+cpu wheel for this Python in {[str(d) for d in dirs] or 'PIP_FIND_LINKS'}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        mb, rows = measure_size(wheel, args.requirements, Path(tmp) / "venv")
    names = [r[0].lower() for r in rows]
    nvidia = [n for n in unwanted(names) if n != "torch"]
    torch = [r[1] for r in rows if r[0].lower() == "torch"]
    print(f"size: {mb:,.0f} MiB on disk, {len(rows)} packages, torch {torch[0] if torch else 'missing'} "
          f"(stand-in: {wheel.name}), the requirements without torch and -e .")
    for name, version, size in rows[:10]:
        print(f"  {size / 2**20:8,.1f} MiB  {name} {version}")
    status = 0
    if nvidia or torch != [wheel.name.split("-")[1]]:
        print(f"FAIL (size): the CPU venv holds {', '.join(nvidia) or 'another torch: ' + str(torch)}")
        status = 1
    if mb > args.max_mb:
        print(f"FAIL (size): {mb:,.0f} MiB is over the bound of {args.max_mb:,} MiB")
        status = 1
    if status == 0:
        print(f"ok (size): no nvidia-* package, under the bound of {args.max_mb:,} MiB")
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt", help="default: requirements.txt")
    p.add_argument("--torch", default="2.14.1", help="the CPU torch the README's recipe installs (default: 2.14.1)")
    p.add_argument("--refused", default="2.13.0", help="a torch the requirements refuse, for the control run "
                   "(default: 2.13.0)")
    p.add_argument("--size", action="store_true", help="instead: install a real CPU venv with a torch CPU wheel "
                   "found on disk and check its size and that it holds no nvidia-* package (minutes)")
    p.add_argument("--max-mb", type=int, default=1600, help="--size: the bound in MiB (default: 1600)")
    p.add_argument("--wheel-dir", type=Path, help="--size: where to look for torch-*+cpu wheels "
                   "(default: the folders in PIP_FIND_LINKS)")
    args = p.parse_args(argv)
    if args.size:
        return check_size(args)
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
