"""Command line: ``python -m metalib.data {info,verify,download,prepare}``.

    python -m metalib.data info                 # what is where: files, sizes, sha256, cache
    python -m metalib.data verify               # are the datasets complete? published bytes?
    python -m metalib.data download omniglot    # fetch + MD5-check the two Omniglot archives
    python -m metalib.data prepare omniglot     # decode into the cache now (else on first use)
    python -m metalib.data prepare mini-imagenet --split test [--allow-pickle]

Every command takes ``--root`` (default ``$METALIB_DATA``, else ``<project>/data``).
Exit status: 0 ok, 1 a check failed / data missing or corrupt, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from .download import DownloadError
from .miniimagenet import SPLITS, MiniImageNet, how_to_get_miniimagenet, miniimagenet_dir
from .omniglot import Omniglot, download_omniglot
from .paths import CorruptDataError, DataNotFoundError
from .pickles import PickleNotAllowedError
from .report import format_info, format_verify, info, verify

DATASETS = ("omniglot", "mini-imagenet")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metalib.data", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="data root (default: $METALIB_DATA, else <project>/data)")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("info", parents=[common], help="what is present, sizes, checksums, where, cache location")
    i.add_argument("--cache-dir", help="cache folder (default: $METALIB_CACHE, ...)")
    i.add_argument("--no-checksums", action="store_true", help="skip the sha256 of each file")
    i.add_argument("--json", action="store_true", help="print JSON")
    v = sub.add_parser("verify", parents=[common], help="check completeness and checksums of every dataset")
    v.add_argument("--json", action="store_true", help="print JSON")
    d = sub.add_parser("download", parents=[common], help="download a dataset (Omniglot only: miniImageNet has no public host)")
    d.add_argument("dataset", choices=DATASETS)
    d.add_argument("--force", action="store_true", help="download even if a complete copy is present")
    r = sub.add_parser("prepare", parents=[common], help="decode a dataset into the cache now")
    r.add_argument("dataset", choices=DATASETS)
    r.add_argument("--split", action="append", help="split(s) to prepare (default: all)")
    r.add_argument("--image-size", type=int, help="image side (default 28 Omniglot, 84 miniImageNet)")
    r.add_argument("--cache-dir", help="cache folder")
    r.add_argument("--allow-pickle", action="store_true",
                   help="allow converting learn2learn/Gidaris pickles (they can execute code: only trusted files)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            rep = info(args.root, args.cache_dir, checksums=not args.no_checksums)
            print(json.dumps(rep, indent=1) if args.json else format_info(rep))
            return 0
        if args.command == "verify":
            rep = verify(args.root)
            print(json.dumps(rep, indent=1) if args.json else format_verify(rep))
            ok = all(r["complete"] for r in rep["omniglot"]) and all(
                r["status"].startswith("ok") for r in rep["mini-imagenet"])
            return 0 if ok else 1
        if args.command == "download":
            if args.dataset == "mini-imagenet":
                print(how_to_get_miniimagenet(miniimagenet_dir(args.root)), file=sys.stderr)
                return 1
            for part, status in download_omniglot(args.root, force=args.force).items():
                print(f"omniglot {part}: {status}")
            return 0
        if args.command == "prepare":
            if args.dataset == "omniglot":
                size = args.image_size or 28
                for split in args.split or ["train", "test"]:
                    ds = Omniglot(split, splits="background", image_size=size, root=args.root,
                                  rotations=False, cache_dir=args.cache_dir)
                    print(f"omniglot {split}: {tuple(ds.images.shape)} -> {', '.join(map(str, ds.cache_paths))}")
            else:
                size = args.image_size or 84
                for split in args.split or list(SPLITS):
                    ds = MiniImageNet(split, root=args.root, image_size=size,
                                      allow_pickle=args.allow_pickle, cache_dir=args.cache_dir)
                    print(f"mini-imagenet {split}: {tuple(ds.images.shape)} -> {ds.cache_path}")
            return 0
    except (DataNotFoundError, CorruptDataError, DownloadError, PickleNotAllowedError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
