"""`nox -s bench`: the command line of the benchmarks (see `compare` and `scale`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from microscopy_notebook.paths import ARTIFACTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark the thumbnail job")
    parser.add_argument("--files", type=int, default=200, help="N, the larger run's file count")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--scale", type=int, default=0, help="archive-scale mode with N objects")
    parser.add_argument(
        "--archive",
        type=int,
        default=0,
        help="fixed costs on an archive of N objects, nearly all done",
    )
    parser.add_argument(
        "--latency-archive",
        type=int,
        default=10_000,
        help="with --archive: the archive size for the one-new-file latency",
    )
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="the renderer on files of real sizes, against the floor",
    )
    parser.add_argument(
        "--size-scale", type=int, default=1, help="with --sizes: divide each file's sides by N"
    )
    parser.add_argument(
        "--scratch", type=Path, default=None, help="with --sizes: where the files are made"
    )
    parser.add_argument("--no-book", action="store_true", help="skip timing the book build")
    parser.add_argument("--book-only", action="store_true", help="time only the book build")
    parser.add_argument(
        "--book", type=Path, default=None, help="time this book's folder instead of the guide's"
    )
    parser.add_argument(
        "--book-edit",
        default=None,
        help="the notebook, in the book's folder, that the third build finds one cell longer "
        "(default: the guide's storage tutorial)",
    )
    parser.add_argument(
        "--original-through-storage",
        action="store_true",
        help="the original reads and writes through the gcs storage plugin, as "
        "it did (slow: quadratic in N); default: its inputs staged on disk",
    )
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "bench" / "results.json")
    args = parser.parse_args(argv)
    if args.sizes:
        from microscopy_notebook.bench import sizes

        return sizes.main(args)
    if args.scale:
        from microscopy_notebook.bench import scale

        return scale.main(args)
    if args.archive:
        from microscopy_notebook.bench import archive

        return archive.main(args)
    from microscopy_notebook.bench import compare

    return compare.run(args)


if __name__ == "__main__":
    sys.exit(main())
