"""Command line: ``python -m metalib.data {info,verify,download,prepare}``.

    python -m metalib.data info                 # what is where: files, sizes, sha256, cache
    python -m metalib.data verify [omniglot|mini-imagenet]   # complete? published bytes?
    python -m metalib.data download omniglot    # fetch + MD5-check the two Omniglot archives
    python -m metalib.data prepare omniglot     # decode into the cache now (else on first use)
    python -m metalib.data prepare mini-imagenet --split test [--allow-pickle]

Every command takes ``--root`` (default ``$METALIB_DATA``, else ``<project>/data``).
Exit status: 0 ok, 1 data missing or corrupt / a check failed, 2 usage error (a bad option, a
cache folder that cannot be written, any other failure). Every error is one line on stderr, never
a traceback (set ``METALIB_TRACEBACK=1`` to get one); warnings are one line each too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, NoReturn

from .download import DownloadError
from .miniimagenet import SPLITS, MiniImageNet, how_to_get_miniimagenet, miniimagenet_dir
from .omniglot import Omniglot, download_omniglot
from .paths import ENV_CACHE, ENV_DATA, CorruptDataError, DataNotFoundError, project_dir
from .pickles import PickleNotAllowedError
from .report import DATASETS, format_info, format_verify, info, verify, verify_summary

# Failures that are a verdict about the data (documented exit status 1); anything else is 2.
DATA_ERRORS = (DataNotFoundError, CorruptDataError, DownloadError, PickleNotAllowedError)

DESCRIPTION = (
    "Omniglot and miniImageNet for metalib: show what is where (info), check the files (verify), "
    "fetch Omniglot (download), decode into the cache now instead of on first use (prepare)."
)
EPILOG = (
    "exit status: 0 ok; 1 data missing or corrupt, or a check failed; 2 usage error (bad option, "
    "a cache folder that cannot be written, any other failure). Errors are one line; set "
    "METALIB_TRACEBACK=1 for a traceback. See docs/data.md."
)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the message and where to look), exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.HelpFormatter  # wraps the descriptions to the terminal width
    p = _Parser(prog="python -m metalib.data", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR",
                        help=f"data root holding omniglot/ and mini-imagenet/ (default: ${ENV_DATA} if set, "
                             f"else the default data folder {project_dir() / 'data'})")
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument("--cache-dir", metavar="DIR",
                       help=f"folder for the decoded caches (default: ${ENV_CACHE} if set, else <root>/cache "
                            f"when the data root is your own and writable, else the per-user cache folder)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text (default: text)")
    sub = p.add_subparsers(dest="command", required=True, metavar="{info,verify,download,prepare}")

    sub.add_parser(
        "info", parents=[common, cache, as_json], formatter_class=fmt,
        help="what is present, sizes, checksums, where, cache location",
        description="List the data root (and why it was chosen), each dataset file with its size "
                    "and sha256, and the cache folder (and why) with its entries.",
    ).add_argument("--no-checksums", action="store_true",
                   help="skip the sha256 of each file (default: compute them; a few seconds for miniImageNet)")

    v = sub.add_parser(
        "verify", parents=[common, as_json], formatter_class=fmt,
        help="check that the datasets are complete (one, or every one present)",
        description="Check the contents of a dataset: Omniglot's two archives (alphabets, "
                    "characters, 20 drawings each, zip CRCs, published MD5) and miniImageNet's "
                    "splits (classes, images per class, listed images present). Without a name, "
                    "every dataset present is checked and the absent ones are listed; exit status "
                    "0 if everything present verified. With a name, that dataset must be present.",
    )
    v.add_argument("dataset", nargs="?", choices=DATASETS,
                   help="the dataset to check (default: every dataset present; absent ones are only listed)")

    d = sub.add_parser(
        "download", parents=[common], formatter_class=fmt,
        help="download a dataset (Omniglot only: miniImageNet has no public host)",
        description="Download Omniglot's two archives, each checked against its published MD5 "
                    "before it replaces anything. For miniImageNet, print where to put the files "
                    "by hand (exit status 1).",
    )
    d.add_argument("dataset", choices=DATASETS, help="the dataset to download (required, no default)")
    d.add_argument("--force", action="store_true",
                   help="download even if a complete copy is present (default: skip complete parts)")

    r = sub.add_parser(
        "prepare", parents=[common, cache], formatter_class=fmt,
        help="decode a dataset into the cache now",
        description="Decode a dataset into the uint8 tensor cache now, instead of on first use. "
                    "Omniglot's splits here are its archives: train = images_background, "
                    "test = images_evaluation.",
    )
    r.add_argument("dataset", choices=DATASETS, help="the dataset to decode (required, no default)")
    r.add_argument("--split", action="append", metavar="SPLIT",
                   help="a split to prepare, repeat for several (default: all: Omniglot train and test, "
                        "miniImageNet train, val and test)")
    r.add_argument("--image-size", type=_positive_int, metavar="S",
                   help="side of the square images in pixels, at most the stored size "
                        "(default: 28 for Omniglot, 84 for miniImageNet)")
    r.add_argument("--allow-pickle", action="store_true",
                   help="convert learn2learn/Gidaris pickles, which can execute code: only for files you "
                        "trust (default: refuse pickles)")
    return p


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    print(f"warning: {_one_line(message)}", file=sys.stderr)


def _verify(args: argparse.Namespace) -> int:
    names = [args.dataset] if args.dataset else list(DATASETS)
    report = verify(args.root, names)
    summary = verify_summary(report, args.root)
    if args.json:
        print(json.dumps(dict(report, summary={k: v["verdict"] for k, v in summary.items()}), indent=1))
    else:
        print(format_verify(report, summary))
    verdicts = [s["verdict"] for s in summary.values()]
    if args.dataset:
        return 0 if verdicts == ["ok"] else 1
    if "failed" in verdicts or all(v == "absent" for v in verdicts):
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "info":
        rep = info(args.root, args.cache_dir, checksums=not args.no_checksums)
        print(json.dumps(rep, indent=1) if args.json else format_info(rep))
        return 0
    if args.command == "verify":
        return _verify(args)
    if args.command == "download":
        if args.dataset == "mini-imagenet":
            print(how_to_get_miniimagenet(miniimagenet_dir(args.root)), file=sys.stderr)
            return 1
        for part, status in download_omniglot(args.root, force=args.force, progress=sys.stderr.isatty()).items():
            print(f"omniglot {part}: {status}")
        return 0
    # prepare
    progress = sys.stderr.isatty()  # no progress bars in logs and pipes
    if args.dataset == "omniglot":
        size = 28 if args.image_size is None else args.image_size
        for split in args.split or ["train", "test"]:
            ds = Omniglot(split, splits="background", image_size=size, root=args.root,
                          rotations=False, cache_dir=args.cache_dir, progress=progress)
            print(f"omniglot {split}: {tuple(ds.images.shape)} -> {', '.join(map(str, ds.cache_paths))}")
    else:
        size = 84 if args.image_size is None else args.image_size
        for split in args.split or list(SPLITS):
            ds = MiniImageNet(split, root=args.root, image_size=size, allow_pickle=args.allow_pickle,
                              cache_dir=args.cache_dir, progress=progress)
            print(f"mini-imagenet {split}: {tuple(ds.images.shape)} -> {ds.cache_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (never raises, except with METALIB_TRACEBACK=1)."""
    debug = os.environ.get("METALIB_TRACEBACK", "").strip().lower() not in ("", "0", "false", "no")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed as one line)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _run(args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except DATA_ERRORS as e:
            if debug:
                raise
            print(f"error: {_one_line(e)}", file=sys.stderr)
            return 1
        except Exception as e:  # noqa: BLE001 - the CLI's promise: one line, never a traceback
            if debug:
                raise
            plain = isinstance(e, (PermissionError, ValueError, TypeError))
            print(f"error: {'' if plain else type(e).__name__ + ': '}{_one_line(e)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
