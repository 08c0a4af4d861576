"""What is where: ``info()`` (files, sizes, checksums, cache) and ``verify()`` (content checks)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .cache import sha256_file
from .miniimagenet import miniimagenet_dir, verify_miniimagenet
from .omniglot import omniglot_dir, verify_omniglot
from .paths import cache_dir as resolve_cache_dir, data_root_origin

__all__ = ["DATASETS", "info", "verify", "verify_summary", "format_info", "format_verify"]

DATASETS = ("omniglot", "mini-imagenet")


def _entry(path: Path, checksums: bool) -> dict[str, Any]:
    if path.is_dir():
        n = size = 0
        for dirpath, _dirs, files in os.walk(path):
            for f in files:
                n += 1
                size += os.path.getsize(os.path.join(dirpath, f))
        return {"name": path.name + "/", "kind": "folder", "files": n, "bytes": size}
    out: dict[str, Any] = {"name": path.name, "kind": "file", "bytes": path.stat().st_size}
    if checksums:
        out["sha256"] = sha256_file(path)
    return out


def info(
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    checksums: bool = True,
) -> dict[str, Any]:
    """Describe the data root (and how it was chosen), each dataset folder's files with sizes
    (and sha256 when ``checksums``), and the cache folder (and why) with its entries."""
    droot, origin = data_root_origin(root)
    out: dict[str, Any] = {"data_root": str(droot), "data_root_origin": origin}
    for name, folder in (("omniglot", omniglot_dir(root)), ("mini-imagenet", miniimagenet_dir(root))):
        entries = []
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if not p.name.startswith("."):
                    entries.append(_entry(p, checksums))
        out[name] = {"folder": str(folder), "present": folder.is_dir(), "entries": entries}
    try:
        cdir, why = resolve_cache_dir(root, cache_dir)
    except PermissionError as e:
        out["cache"] = {"folder": None, "origin": str(e), "entries": []}
        return out
    caches = []
    # every cache file is listed, also one whose JSON sidecar is missing or damaged (the loaders check
    # the .pt itself: such a file is still used, or rebuilt if it is damaged too)
    for pt in sorted(cdir.glob("*.pt")):
        if not pt.is_file():
            continue
        side = pt.with_suffix(".json")
        entry: dict[str, Any] = {"file": pt.name, "bytes": pt.stat().st_size}
        try:
            meta = json.loads(side.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            entry["damaged"] = f"no sidecar {side.name}"
            meta = {}
        except (OSError, ValueError) as e:
            entry["damaged"] = f"sidecar {side.name} unreadable ({' '.join(str(e).split())[:80]})"
            meta = {}
        sources = meta.get("sources")
        entry.update({
            "dataset": meta.get("dataset"), "part": meta.get("part") or meta.get("split"),
            "image_size": meta.get("image_size"), "shape": meta.get("shape"),
            "sources": [s.get("path") for s in sources if isinstance(s, dict)] if isinstance(sources, list) else [],
        })
        caches.append(entry)
    out["cache"] = {"folder": str(cdir), "origin": why, "entries": caches}
    return out


def verify(
    root: str | os.PathLike[str] | None = None, datasets: list[str] | tuple[str, ...] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Run :func:`verify_omniglot` and/or :func:`verify_miniimagenet`: ``datasets`` names which
    (``"omniglot"``, ``"mini-imagenet"``; default both). Returns ``{name: rows}``."""
    names = list(DATASETS if datasets is None else datasets)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}; choose one of {', '.join(map(repr, DATASETS))}")
    checks = {"omniglot": verify_omniglot, "mini-imagenet": verify_miniimagenet}
    return {n: checks[n](root) for n in names}


def verify_summary(
    report: dict[str, list[dict[str, Any]]], root: str | os.PathLike[str] | None = None
) -> dict[str, dict[str, str]]:
    """``{name: {"verdict", "folder"}}`` for a :func:`verify` report. The verdict is ``"absent"``
    (nothing of the dataset found: not checked), ``"ok"`` (every part complete / every split ok)
    or ``"failed"`` (something present but missing parts, incomplete or corrupt)."""
    folders = {"omniglot": omniglot_dir(root), "mini-imagenet": miniimagenet_dir(root)}
    out = {}
    for name, rows in report.items():
        if name == "omniglot":
            present = any(r["present"] for r in rows)
            ok = all(r["complete"] for r in rows)
        else:
            present = any(r["status"] != "missing" for r in rows)
            ok = all(r["status"].startswith("ok") for r in rows)
        out[name] = {"verdict": "ok" if ok else "failed" if present else "absent", "folder": str(folders[name])}
    return out


def _mb(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def format_info(report: dict[str, Any]) -> str:
    """Human-readable text of :func:`info`'s dict."""
    exists = "" if Path(report["data_root"]).is_dir() else " - does not exist"
    lines = [f"data root : {report['data_root']}   ({report['data_root_origin']}){exists}"]
    for name in ("omniglot", "mini-imagenet"):
        ds = report[name]
        lines.append(f"{name:<10}: {ds['folder']}" + ("" if ds["present"] else "   (missing)"))
        for e in ds["entries"]:
            extra = f"{e['files']} files" if e["kind"] == "folder" else e.get("sha256", "")
            lines.append(f"    {e['name']:<40} {_mb(e['bytes'])}  {extra}")
    c = report["cache"]
    lines.append(f"cache     : {c['folder']}   ({c['origin']})")
    for e in c["entries"]:
        state = f"damaged: {e['damaged']}" if e.get("damaged") else f"shape={e['shape']}"
        lines.append(f"    {e['file']:<48} {_mb(e['bytes'])}  {state}")
    if not c["entries"]:
        lines.append("    (empty: caches are built on first use, or with `python -m metalib.data prepare`)")
    return "\n".join(lines)


def format_verify(report: dict[str, list[dict[str, Any]]], summary: dict[str, dict[str, str]] | None = None) -> str:
    """Human-readable text of :func:`verify`'s dict; with :func:`verify_summary`'s dict, absent
    datasets are one line each and a last line gives the verdict per dataset."""
    lines = []
    for name, rows in report.items():
        if summary is not None and summary[name]["verdict"] == "absent":
            lines.append(f"{name}: absent: nothing found in {summary[name]['folder']}/ (not checked)")
            continue
        lines.append(f"{name}:")
        for r in rows:
            lines.append(f"    {r['part' if name == 'omniglot' else 'split']:<11} {r['status']}")
            if name == "omniglot" and r["md5"]:
                lines.append(f"    {'':<11} {Path(r['path']).name}: md5 {r['md5']} (published {r['published_md5']})")
    if summary is not None:
        words = {"ok": "verified", "failed": "FAILED", "absent": "absent"}
        lines.append("verdict: " + "; ".join(f"{n} {words[s['verdict']]}" for n, s in summary.items()))
    return "\n".join(lines)
