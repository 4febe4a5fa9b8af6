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

from mnb import samples
from mnb.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "nexuslims_example-bench"
OUT_BUCKET = "nexuslims_example-bench-out"


# -- the file set ---------------------------------------------------------------------------------
def file_set(n: int) -> tuple[list[str], dict[str, list[str]]]:
    """``n`` previewable object names cycling through the samples, and each one's companions."""
    sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
    from thumbnails import formats

    kinds = [s.name for s in samples.SAMPLES if formats.is_previewable(s.name)]
    names, companions = [], {}
    for i in range(n):
        base = kinds[i % len(kinds)]
        folder, _, leaf = base.rpartition("/")
        name = f"copy{i // len(kinds):05d}/{folder}/{leaf}"
        names.append(name)
        copy = f"copy{i // len(kinds):05d}"
        companions[name] = [f"{copy}/{c}" for c in formats.companion_names(base)]
    return sorted(names), companions  # listing order: the job's max_files takes these first


def seed_folder(root: Path, n: int) -> tuple[list[str], dict[str, list[str]]]:
    """A fake-gcs-server ``-data`` folder holding ``n`` files (and companions) under in/."""
    names, companions = file_set(n)
    src = samples.files()
    for name in names + [c for cs in companions.values() for c in cs]:
        relative = name.split("/", 1)[1]
        dest = root / BUCKET / "in" / name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(src / relative, dest) if _same_fs(src, root) else shutil.copy(src / relative,
                                                                                  dest)
    (root / OUT_BUCKET).mkdir(exist_ok=True)
    return names, companions


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


# -- running and measuring ------------------------------------------------------------------------
def measured(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Wall time and the peak RSS (MiB) of the largest process ``cmd`` started."""
    wrapper = (
        "import resource, subprocess, sys, json, time;"
        "t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE);"
        "w = time.perf_counter() - t;"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        "sys.stderr.write(p.stderr.decode(errors='replace')[-4000:] if p.returncode else '');"
        "print(json.dumps({'wall': w, 'rss_mib': r / 1024, 'rc': p.returncode}))"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, cwd=cwd,
                          capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr}")
    return result


def run_original(names, companions, env, work: Path, staged: Path | None) -> dict:
    """The original job shape; with ``staged``, its inputs are read from that folder on disk.

    Through the gcs storage plugin, Snakemake asks the storage for every input's size at every
    scheduling round (one request per object, serially), so the original's cost grows with the
    square of the file count: 200 files take tens of minutes. Staged on disk, the original skips
    all storage traffic, which makes it faster than it really was: the ratios are conservative.
    """
    run = f"original-{uuid.uuid4().hex[:8]}"
    config = work / f"{run}.json"
    config.write_text(json.dumps({
        "run": run, "files": names,
        "companions": {n: [f"in/{c}" for c in cs] for n, cs in companions.items() if cs},
    }))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "bench" / "original" / "Snakefile"),
           "--configfile", str(config), "--cores", "2", "--quiet", "all",
           "--directory", str(work / run)]
    (work / run).mkdir()
    if staged is not None:
        (work / run / "in").symlink_to(staged)
    else:
        cmd += ["--default-storage-provider", "gcs",
                "--default-storage-prefix", f"gs://{BUCKET}",  # the old --default-remote-prefix
                "--storage-gcs-project", env["GOOGLE_CLOUD_PROJECT"]]
    return measured(cmd, env, work)


def run_ours(n: int, env, work: Path) -> dict:
    run = f"ours-{uuid.uuid4().hex[:8]}"
    (work / run).mkdir()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
           "--profile", str(ROOT / "workflow" / "profiles" / "local"), "--cores", "2",
           "--quiet", "all", "--directory", str(work / run),
           "--config", f"input=gs://{BUCKET}/in", f"output=gs://{OUT_BUCKET}/{run}",
           f"max_files={n}"]
    return measured(cmd, env, work)


def run_render(paths: list[Path]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "mnb.bench_floor",
                           str(ROOT / "workflow" / "scripts"), *map(str, paths)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(small: float, large: float, n_small: int, n_large: int) -> float:
    """Marginal seconds per file between two sizes: the fixed start-up cost cancels out."""
    return (large - small) / (n_large - n_small)


# -- the book -------------------------------------------------------------------------------------
def book_times() -> dict:
    """Cold build, no-change rebuild, one notebook edited: in a copy, with its own seeded emulator
    (the notebooks read the guide's example buckets, not the benchmark's)."""
    from mnb import book
    from mnb.emulator import _env

    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp, Emulator() as emu:
        with _env(emu.env):
            samples.seed()
        env = emu.apply()
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        # Every tracked file, as a fresh clone has them: pages include files from all over.
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                 check=True).stdout.decode().split("\0")
        for name in filter(None, tracked):
            dest = Path(tmp) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest)
        copy = Path(tmp) / "book"

        def build() -> float:
            t = time.perf_counter()
            proc = subprocess.run(book.build_command(copy), env=env, capture_output=True,
                                  text=True)
            if proc.returncode:
                raise RuntimeError(f"the book did not build:\n{proc.stdout[-3000:]}")
            return time.perf_counter() - t

        cold = build()
        unchanged = build()
        notebook = copy / "notebooks" / "cloud-storage.md"
        notebook.write_text(notebook.read_text().replace('print("project:", client.project)',
                                                         'print("project: ", client.project)'))
        one_edited = build()
    return {"cold_s": cold, "no_change_s": unchanged, "one_notebook_edited_s": one_edited}


# -- the report -----------------------------------------------------------------------------------
def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark the thumbnail job")
    parser.add_argument("--files", type=int, default=200, help="N, the larger run's file count")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--scale", type=int, default=0, help="archive-scale mode with N objects")
    parser.add_argument("--no-book", action="store_true", help="skip timing the book build")
    parser.add_argument("--book-only", action="store_true", help="time only the book build")
    parser.add_argument("--original-through-storage", action="store_true",
                        help="the original reads and writes through the gcs storage plugin, as "
                             "it did (slow: quadratic in N); default: its inputs staged on disk")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "results.json")
    args = parser.parse_args(argv)
    if args.scale:
        from mnb import bench_scale

        return bench_scale.main(args)
    if args.book_only:
        times = book_times()
        print(f"book build: cold {times['cold_s']:.1f} s, no change {times['no_change_s']:.1f} s, "
              f"one notebook edited {times['one_notebook_edited_s']:.1f} s")
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
                        run_original(names[:n], companions, env, work,
                                     None if args.original_through_storage else local))
                    print(f"round {r + 1}/{args.rounds}, {n} files: ours", flush=True)
                    results["ours"].setdefault(n, []).append(run_ours(n, env, work))
            render = [run_render([local / n for n in names]) for _ in range(args.rounds)]
            report = summarize(results, render, None, n_small, n_large, args.rounds)
            report["original_inputs"] = ("gcs storage plugin" if args.original_through_storage
                                         else "staged on local disk (conservative)")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))  # kept if the book step fails
    if not args.no_book:
        print("book builds: cold, no change, one notebook edited", flush=True)
        report["book"] = book_times()

    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


def summarize(results, render, books, n_small, n_large, rounds) -> dict:
    report: dict = {"files": n_large, "small_files": n_small, "rounds": rounds, "variants": {}}
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
        "marginal_original_over_ours": (o["marginal_s_per_file"] / u["marginal_s_per_file"]
                                        if u["marginal_s_per_file"] > 0 else None),
        "throughput_ours_over_original": u["files_per_s"] / o["files_per_s"],
        "render_ours_over_floor": ours_render / floor,
    }
    if books:
        report["book"] = books
    return report


def print_report(report: dict) -> None:
    v = report["variants"]
    rows = [("variant", "wall N", "wall N/4", "files/s", "marginal s/file", "peak RSS MiB",
             "render s/file")]
    for name in ("original", "ours", "floor"):
        d = v[name]
        rows.append((
            name,
            f"{d['wall_s']:.2f}" if "wall_s" in d else "-",
            f"{d['wall_small_s']:.2f}" if "wall_small_s" in d else "-",
            f"{d['files_per_s']:.1f}" if "files_per_s" in d else "-",
            f"{d['marginal_s_per_file']:.4f}" if "marginal_s_per_file" in d else "-",
            f"{d['peak_rss_mib']:.0f}" if "peak_rss_mib" in d else "-",
            f"{d['render_s_per_file'] * 1000:.1f} ms" if "render_s_per_file" in d else "-",
        ))
    print(f"\nN = {report['files']} files (and N/4 = {report['small_files']}), "
          f"medians of {report['rounds']} interleaved rounds; original's inputs: "
          f"{report.get('original_inputs', '?')}")
    print(table(rows))
    r = report["ratios"]
    marginal = r["marginal_original_over_ours"]
    print("marginal cost per file, original / ours: "
          + (f"{marginal:.1f}x" if marginal else "n/a (N too small to separate start-up)"))
    print(f"throughput at N, ours / original: {r['throughput_ours_over_original']:.1f}x")
    print(f"per-file render, ours / floor: {r['render_ours_over_floor']:.2f}x")
    if "book" in report:
        b = report["book"]
        print(f"book build: cold {b['cold_s']:.1f} s, no change {b['no_change_s']:.1f} s, "
              f"one notebook edited {b['one_notebook_edited_s']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
