"""`nox -s bench`: the thumbnail job against the original guide's job shape, in the same run.

Three ways to make previews of the same N files in an emulated bucket, interleaved round by round:

original  the original guide's job shape (bench/original): one Snakemake job per file, each a fresh
          Python process running ``hs.load(); signal.plot(); fig.savefig()``, inputs and outputs
          through Snakemake's gcs storage plugin;
ours      workflow/Snakefile as users run it (local profile), into a fresh output prefix;
floor     read + decode + reduce + PNG encode of the same files, one process, nothing drawn.

Each runs at N and N/4 files, so the fixed start-up cost separates from the marginal cost per file
(the slope between the two). Peak RSS is the largest resident size of any process of the run.
The book's build is timed too (cold, no change, one notebook edited). ``--scale N`` seeds N objects
and measures the job at archive scale instead: planning, a full run, a rerun with nothing new and
one with 1% new files.

The report is a table and, as the last line, one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from microscopy_notebook.bench.common import (
    BUCKET,
    OUT_BUCKET,
    job_command,
    machine,
    measured,
    seed_folder,
    table,
)
from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.paths import ROOT


# -- running ------------------------------------------------------------------------------------
def run_original(names, companions, env, work: Path, staged: Path | None) -> dict:
    """The original job shape; with ``staged``, its inputs are read from that folder on disk.

    Through the gcs storage plugin, Snakemake asks the storage for every input's size at every
    scheduling round (one request per object, serially), so the original's cost grows with the
    square of the file count: 200 files take tens of minutes. Staged on disk, the original skips
    all storage traffic, which makes it faster than it really was: the ratios are conservative.
    """
    run = f"original-{uuid.uuid4().hex[:8]}"
    config = work / f"{run}.json"
    config.write_text(
        json.dumps(
            {
                "run": run,
                "files": names,
                "companions": {n: [f"in/{c}" for c in cs] for n, cs in companions.items() if cs},
            }
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "bench" / "original" / "Snakefile"),
        "--configfile",
        str(config),
        "--cores",
        "2",
        "--quiet",
        "all",
        "--directory",
        str(work / run),
    ]
    (work / run).mkdir()
    if staged is not None:
        (work / run / "in").symlink_to(staged)
    else:
        cmd += [
            "--default-storage-provider",
            "gcs",
            "--default-storage-prefix",
            f"gs://{BUCKET}",  # the old --default-remote-prefix
            "--storage-gcs-project",
            env["GOOGLE_CLOUD_PROJECT"],
        ]
    return measured(cmd, env, work)


def run_ours(n: int, env, work: Path) -> dict:
    run = f"ours-{uuid.uuid4().hex[:8]}"
    (work / run).mkdir()
    return measured(
        job_command(work / run, f"gs://{OUT_BUCKET}/{run}", f"max_files={n}"), env, work
    )


def run_render(paths: list[Path]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "microscopy_notebook.bench.floor", *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(small: float, large: float, n_small: int, n_large: int) -> float:
    """Marginal seconds per file between two sizes: the fixed start-up cost cancels out."""
    return (large - small) / (n_large - n_small)


# -- the book -------------------------------------------------------------------------------------
# The edit timed as "one notebook edited": one more code cell at the end of this page.
EDITED = "notebooks/cloud-storage.md"
EDIT = '\n```{code-cell} ipython3\nprint("one more cell")\n```\n'


def book_times(source: Path | None = None, edited: str | None = None) -> dict:
    """Cold build, no-change rebuild, one notebook edited: in a copy, with its own seeded emulator
    (the notebooks read the guide's example buckets, not the benchmark's). ``source``: another
    book's folder to time instead of the guide's, copied as it is."""
    from microscopy_notebook import book
    from microscopy_notebook.cloud.emulator import _env

    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp, Emulator() as emu:
        with _env(emu.env):
            samples.seed()
        env = emu.apply()
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        copy = Path(tmp) / "book"
        if source is not None:
            shutil.copytree(source, copy)
        else:  # every tracked file, as a fresh clone has them: pages include files from all over
            tracked = subprocess.run(
                ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
            ).stdout.decode()
            for name in filter(None, tracked.split("\0")):
                dest = Path(tmp) / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, dest)

        def build() -> float:
            t = time.perf_counter()
            proc = subprocess.run(book.build_command(copy), env=env, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"the book did not build:\n{proc.stdout[-3000:]}")
            return time.perf_counter() - t

        cold = build()
        unchanged = build()
        notebook = copy / (edited or EDITED)
        notebook.write_text(notebook.read_text() + EDIT)
        one_edited = build()
    return {"cold_s": cold, "no_change_s": unchanged, "one_notebook_edited_s": one_edited}


def summarize(results, render, books, n_small, n_large, rounds) -> dict:
    report: dict = {
        "mode": "compare",
        "machine": machine(),
        "files": n_large,
        "small_files": n_small,
        "rounds": rounds,
        "variants": {},
    }
    for variant, by_n in results.items():
        wall = {n: statistics.median(r["wall"] for r in runs) for n, runs in by_n.items()}
        rss = max(r["rss_mib"] for runs in by_n.values() for r in runs)
        report["variants"][variant] = {
            "wall_s": wall[n_large],
            "wall_small_s": wall[n_small],
            "files_per_s": n_large / wall[n_large],
            "marginal_s_per_file": slope(wall[n_small], wall[n_large], n_small, n_large),
            "peak_rss_mib": rss,
        }
    floor = statistics.median(r["floor"] for r in render)
    ours_render = statistics.median(r["ours_render"] for r in render)
    report["variants"]["floor"] = {"render_s_per_file": floor}
    report["variants"]["ours"]["render_s_per_file"] = ours_render
    o, u = report["variants"]["original"], report["variants"]["ours"]
    report["ratios"] = {
        # At a tiny N the slope drowns in noise and can come out <= 0: no ratio then.
        "marginal_original_over_ours": (
            o["marginal_s_per_file"] / u["marginal_s_per_file"]
            if u["marginal_s_per_file"] > 0
            else None
        ),
        "throughput_ours_over_original": u["files_per_s"] / o["files_per_s"],
        "render_ours_over_floor": ours_render / floor,
    }
    if books:
        report["book"] = books
    return report


def print_report(report: dict) -> None:
    v = report["variants"]
    rows = [
        (
            "variant",
            "wall N",
            "wall N/4",
            "files/s",
            "marginal s/file",
            "peak RSS MiB",
            "render s/file",
        )
    ]
    for name in ("original", "ours", "floor"):
        d = v[name]
        rows.append(
            (
                name,
                f"{d['wall_s']:.2f}" if "wall_s" in d else "-",
                f"{d['wall_small_s']:.2f}" if "wall_small_s" in d else "-",
                f"{d['files_per_s']:.1f}" if "files_per_s" in d else "-",
                f"{d['marginal_s_per_file']:.4f}" if "marginal_s_per_file" in d else "-",
                f"{d['peak_rss_mib']:.0f}" if "peak_rss_mib" in d else "-",
                f"{d['render_s_per_file'] * 1000:.1f} ms" if "render_s_per_file" in d else "-",
            )
        )
    m = report["machine"]
    print(
        f"\nmeasured {m['date']} on {m['cores']} cores, {m['memory_mib'] // 1024} GiB, Python "
        f"{m['python']}, Snakemake {m['snakemake']}, bytecode "
        f"{'compiled' if m['bytecode_compiled'] else 'NOT compiled'}"
    )
    print(
        f"N = {report['files']} files (and N/4 = {report['small_files']}), "
        f"medians of {report['rounds']} interleaved rounds; original's inputs: "
        f"{report.get('original_inputs', '?')}"
    )
    print(table(rows))
    r = report["ratios"]
    marginal = r["marginal_original_over_ours"]
    print(
        "marginal cost per file, original / ours: "
        + (f"{marginal:.1f}x" if marginal else "n/a (N too small to separate start-up)")
    )
    print(f"throughput at N, ours / original: {r['throughput_ours_over_original']:.1f}x")
    print(f"per-file render, ours / floor: {r['render_ours_over_floor']:.2f}x")
    if "book" in report:
        b = report["book"]
        print(
            f"book build: cold {b['cold_s']:.1f} s, no change {b['no_change_s']:.1f} s, "
            f"one notebook edited {b['one_notebook_edited_s']:.1f} s"
        )


def run(args: argparse.Namespace) -> int:
    """Original, ours and the floor at N and N/4, interleaved; then the book's build times."""
    if args.book_only:
        times = book_times(args.book, args.book_edit)
        print(
            f"book build: cold {times['cold_s']:.1f} s, no change {times['no_change_s']:.1f} s, "
            f"one notebook edited {times['one_notebook_edited_s']:.1f} s"
        )
        print(json.dumps({"book": times}))
        return 0

    n_large, n_small = args.files, max(1, args.files // 4)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        data = Path(tmp) / "data"
        names, companions = seed_folder(data, n_large)
        work = Path(tmp) / "work"
        work.mkdir()
        local = Path(tmp) / "local"
        for name in names:
            for n in [name, *companions[name]]:
                dest = local / n
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not dest.exists():
                    os.link(data / BUCKET / "in" / n, dest)
        results: dict[str, dict[int, list[dict]]] = {"original": {}, "ours": {}}
        with Emulator(data=data) as emu:
            env = emu.apply()
            env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
            for r in range(args.rounds):
                for n in (n_small, n_large):
                    print(f"round {r + 1}/{args.rounds}, {n} files: original", flush=True)
                    results["original"].setdefault(n, []).append(
                        run_original(
                            names[:n],
                            companions,
                            env,
                            work,
                            None if args.original_through_storage else local,
                        )
                    )
                    print(f"round {r + 1}/{args.rounds}, {n} files: ours", flush=True)
                    results["ours"].setdefault(n, []).append(run_ours(n, env, work))
            render = [run_render([local / n for n in names]) for _ in range(args.rounds)]
            report = summarize(results, render, None, n_small, n_large, args.rounds)
            report["original_inputs"] = (
                "gcs storage plugin"
                if args.original_through_storage
                else "staged on local disk (conservative)"
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))  # kept if the book step fails
    if not args.no_book:
        print("book builds: cold, no change, one notebook edited", flush=True)
        report["book"] = book_times(args.book, args.book_edit)

    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0
