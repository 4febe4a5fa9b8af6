"""`nox -s bench -- --scale N`: the thumbnail job at archive scale, against the emulated bucket.

Seeds N objects (copies of the small real samples under distinct names) and measures, each run a
fresh Snakemake process with the local profile:

plan          a dry run (``-n``): the one listing of input and output, the plan, the DAG;
full          every file previewed;
nothing new   a rerun with everything done (the job's fixed cost at this N);
1% new        a rerun after N/100 new objects were added.

Marginal seconds per file is (full - nothing new) / N: the fixed cost is what a run with nothing
to do costs at the same N. Peak RSS is the largest resident size of any process of a run; the
Snakemake process's own is reported separately from its log-free wrapper (see `bench.measured`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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


def _job(env: dict[str, str], work: Path, output: str, *extra: str) -> dict:
    return measured(job_command(work, output, *extra), env, work)


def _add_new(env: dict[str, str], count: int) -> None:
    """Upload ``count`` more objects through the real client, as an instrument would."""
    from google.cloud import storage

    src = samples.files()
    sample = next(s for s in samples.SAMPLES if s.name.endswith(".dm3"))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        bucket = storage.Client().bucket(BUCKET)
        tag = uuid.uuid4().hex[:6]
        for i in range(count):
            bucket.blob(f"in/new-{tag}/{i:05d}/{sample.name}").upload_from_filename(
                str(src / sample.name)
            )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(args) -> int:
    n = args.scale
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        data = Path(tmp) / "data"
        print(f"seeding {n} objects", flush=True)
        seed_folder(data, n)
        work = Path(tmp) / "work"
        work.mkdir()
        output = f"gs://{OUT_BUCKET}/scale-{uuid.uuid4().hex[:8]}"
        with Emulator(data=data) as emu:
            env = emu.apply()
            env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
            print("plan (dry run)", flush=True)
            plan = _job(env, work, output, "--dry-run")
            print("full run", flush=True)
            full = _job(env, work, output)
            print("rerun, nothing new", flush=True)
            nothing = _job(env, work, output)
            new = max(1, n // 100)
            _add_new(env, new)
            print(f"rerun, {new} new", flush=True)
            some = _job(env, work, output)
    report = {
        "mode": "scale",
        "scale": n,
        "machine": machine(),
        "plan_s": plan["wall"],
        "full_s": full["wall"],
        "nothing_new_s": nothing["wall"],
        "one_percent_new_s": some["wall"],
        "one_percent_new_files": new,
        "marginal_s_per_file": (full["wall"] - nothing["wall"]) / n,
        "peak_rss_mib": max(r["rss_mib"] for r in (plan, full, nothing, some)),
        "plan_peak_rss_mib": plan["rss_mib"],
    }
    rows = [
        ("N", "plan s", "full s", "nothing new s", "1% new s", "marginal s/file", "peak RSS MiB")
    ]
    rows.append(
        (
            str(n),
            f"{report['plan_s']:.1f}",
            f"{report['full_s']:.1f}",
            f"{report['nothing_new_s']:.1f}",
            f"{report['one_percent_new_s']:.1f}",
            f"{report['marginal_s_per_file']:.4f}",
            f"{report['peak_rss_mib']:.0f}",
        )
    )
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0
