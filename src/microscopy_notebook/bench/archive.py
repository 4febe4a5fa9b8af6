"""`nox -s bench -- --archive N`: the job's fixed costs on an archive of N objects, nearly all done.

What a facility meets every day: a bucket of N files previewed long ago, and a few new ones. The
input holds N small objects (planning reads names, not bytes); the output holds, for each, a
preview written by the job (its batch in the object's metadata), the batches' records, the CSV
report and the summary, as N files previewed in batches of 200 leave them. Then, each a fresh
Snakemake process with the local profile:

plan          a dry run: the listing of input and output, the plan, the DAG;
nothing new   a rerun with everything done;
1% new        a rerun after N/100 real sample files were added (they are rendered);
latency       one new real file in an archive of ``--latency-archive`` objects (default 10,000):
              seconds from the command's start until its preview exists in the bucket.

It also reports what the 1%-new run wrote to the report (the new records, the CSV's growth, the
summary) against the size of the whole CSV: a run writes in proportion to what it adds.

The emulator keeps these objects in files (`Emulator(root=...)`): its in-memory store slows down
with every object already there (5,000 uploads: 330/s into an empty bucket, 52/s past 15,000),
which would make seeding 100,000 objects take hours; the files store stays near 600/s.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from microscopy_notebook.bench.common import (
    BUCKET,
    OUT_BUCKET,
    job_command,
    machine,
    measured,
    table,
)
from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator, _env

BATCH = 200  # the job's default batch_size: how the done output is laid out
SEED_THREADS = 32  # uploads at once while seeding; the emulator's front is the bottleneck
OUTPUT = f"gs://{OUT_BUCKET}/previews"
# DigitalMicrograph's first bytes: planning goes by name, but a stray render would see a DM file
TINY = b"\x00\x00\x00\x04" + b"\x00" * 60


def _names(n: int) -> list[str]:
    return [f"arch/{i // 1000:03d}/{i:06d}.dm3" for i in range(n)]


def _put_all(bucket, jobs: list[tuple[str, bytes, str, dict | None]]) -> None:
    """Upload (name, bytes, content type, metadata) objects, many at once, never overwriting."""

    def put(job: tuple[str, bytes, str, dict | None]) -> None:
        name, data, content_type, metadata = job
        blob = bucket.blob(name)
        blob.metadata = metadata
        blob.upload_from_string(data, content_type=content_type, if_generation_match=0)

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        for i, _ in enumerate(pool.map(put, jobs), 1):
            if i % 25000 == 0:
                print(f"  {i} of {len(jobs)} objects", flush=True)


def seed_input(n: int) -> list[str]:
    """N tiny objects under in/, uploaded through the real client."""
    from google.cloud import storage

    client = storage.Client()
    client.create_bucket(BUCKET)
    client.create_bucket(OUT_BUCKET)
    names = _names(n)
    _put_all(
        client.bucket(BUCKET),
        [(f"in/{name}", TINY, "application/octet-stream", None) for name in names],
    )
    return names


def seed_done(names: list[str]) -> dict:
    """The output as the job leaves it after previewing ``names``: previews carrying their batch,
    one record per batch, report.csv and report.json. Uploaded through the real client."""
    from google.cloud import storage

    from thumbnails import report, store
    from thumbnails.locations import parse_location, preview_name

    client = storage.Client()
    out = client.bucket(OUT_BUCKET)
    source = parse_location(f"gs://{BUCKET}/in", "input")
    target = parse_location(OUTPUT, "output")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24  # a preview's size does not matter to planning
    records = []
    for start in range(0, len(names), BATCH):
        chunk = names[start : start + BATCH]
        batch = hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:16]
        rows = [
            report.row(
                source,
                target,
                name,
                ok=True,
                kind="image",
                title=Path(name).stem,
                signals=1,
                shown="image (1024 x 1024)",
            )
            for name in chunk
        ]
        records.append(
            {
                "batch": batch,
                "rows": rows,
                "files": len(rows),
                "failed": 0,
                "kept": [],
                "seconds": 1.0,
                "peak_memory_mib": 150,
            }
        )

    jobs = [
        (f"previews/{preview_name(r['name'])}", png, "image/png", {store.BATCH_KEY: rec["batch"]})
        for rec in records
        for r in rec["rows"]
    ]
    jobs += [
        (
            f"previews/{report.record_name(rec['batch'])}",
            report.report_json(rec),
            "application/json",
            None,
        )
        for rec in records
    ]
    rows = [r for rec in records for r in rec["rows"]]
    summary = report.next_summary(
        report.parse_summary(None),
        source,
        target,
        records,
        {"plan": "seeded"},
        "2026-01-01T00:00:00+00:00",
    )
    jobs += [
        ("previews/report.csv", report.report_csv(rows), "text/csv; charset=utf-8", None),
        ("previews/report.json", report.report_json(summary), "application/json", None),
    ]
    _put_all(out, jobs)
    return {"objects": len(jobs)}


def add_real(count: int, tag: str) -> list[str]:
    """``count`` real sample files (a .dm3 that takes the DigitalMicrograph reader) under in/."""
    from google.cloud import storage

    sample = next(s for s in samples.SAMPLES if s.name.endswith(".dm3"))
    data = (samples.files() / sample.name).read_bytes()
    bucket = storage.Client().bucket(BUCKET)
    names = [f"in/new-{tag}/{i:05d}/{sample.name}" for i in range(count)]
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(lambda n: bucket.blob(n).upload_from_string(data), names))
    return names


def report_sizes() -> dict[str, int]:
    """Bytes of each report object under the output, by name."""
    from google.cloud import storage

    return {
        b.name: int(b.size)
        for b in storage.Client().list_blobs(
            OUT_BUCKET, prefix="previews/report", fields="items(name,size),nextPageToken"
        )
    }


def _job(env: dict[str, str], work: Path, *extra: str) -> list[str]:
    return job_command(work, OUTPUT, *extra)


def latency(env: dict[str, str], work: Path) -> float:
    """Seconds from starting the job until the preview of one newly added file exists."""
    from google.cloud import storage

    (name,) = add_real(1, f"one-{uuid.uuid4().hex[:6]}")
    preview = f"previews/{name.removeprefix('in/')}.png"
    bucket = storage.Client().bucket(OUT_BUCKET)
    seen: list[float] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        _job(env, work), env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )

    def watch() -> None:
        while proc.poll() is None and not seen:
            if bucket.get_blob(preview) is not None:
                seen.append(time.perf_counter() - start)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    if proc.returncode:
        raise RuntimeError(f"the job failed:\n{err.decode(errors='replace')[-3000:]}")
    if not seen and bucket.get_blob(preview) is not None:
        seen.append(time.perf_counter() - start)  # written between the last poll and the end
    return seen[0]


def _archive(n: int, tmp: Path) -> tuple[Emulator, dict[str, str], dict]:
    root = tmp / f"objects-{n}-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    print(f"seeding an archive of {n} objects", flush=True)
    emu = Emulator(root=root).start()
    env = emu.apply()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    t = time.perf_counter()
    with _env(emu.env):
        seed_input(n)
        seeded = seed_done(_names(n))
    seeded["seconds"] = round(time.perf_counter() - t, 1)
    print(
        f"  seeded: {n} objects and {seeded['objects']} in the output, in {seeded['seconds']} s",
        flush=True,
    )
    return emu, env, seeded


def main(args) -> int:
    n, m = args.archive, args.latency_archive
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        emu, env, seeded = _archive(n, Path(tmp))
        try:
            work = Path(tmp) / "work"
            work.mkdir()
            print("plan (dry run)", flush=True)
            plan = measured(_job(env, work, "--dry-run"), env, work)
            print("rerun, nothing new", flush=True)
            nothing = measured(_job(env, work), env, work)
            new = max(1, n // 100)
            with _env(emu.env):
                add_real(new, uuid.uuid4().hex[:6])
                before = report_sizes()
            print(f"rerun, {new} new", flush=True)
            some = measured(_job(env, work), env, work)
            with _env(emu.env):
                after = report_sizes()
        finally:
            emu.stop()
        written = sum(size for name, size in after.items() if name not in before)
        csv_name = "previews/report.csv"
        written += after[csv_name] - before[csv_name] + after["previews/report.json"]
        emu, env, _ = _archive(m, Path(tmp))
        try:
            work = Path(tmp) / "work-latency"
            work.mkdir()
            print(f"one new file in an archive of {m}", flush=True)
            with _env(emu.env):
                one_new = latency(env, work)
        finally:
            emu.stop()
    result = {
        "mode": "archive",
        "objects": n,
        "machine": machine(),
        "plan_s": plan["wall"],
        "nothing_new_s": nothing["wall"],
        "one_percent_new_s": some["wall"],
        "one_percent_new_files": new,
        "peak_rss_mib": max(r["rss_mib"] for r in (plan, nothing, some)),
        "report_bytes_written_one_percent": written,
        "report_csv_bytes": after[csv_name],
        "report_written_fraction": written / after[csv_name],
        "latency_archive": m,
        "latency_one_new_file_s": one_new,
        "seeding_s": seeded["seconds"],
    }
    rows = [
        (
            "N",
            "plan s",
            "nothing new s",
            "1% new s",
            "peak RSS MiB",
            "report written",
            f"1 new in {m}: preview after",
        )
    ]
    rows.append(
        (
            str(n),
            f"{plan['wall']:.1f}",
            f"{nothing['wall']:.1f}",
            f"{some['wall']:.1f}",
            f"{result['peak_rss_mib']:.0f}",
            (
                f"{written / 1024:.0f} KiB of {after[csv_name] / 2**20:.1f} MiB "
                f"({100 * result['report_written_fraction']:.2f}%)"
            ),
            f"{one_new:.1f} s",
        )
    )
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0
