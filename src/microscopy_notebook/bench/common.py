"""What the benchmarks share: the file set, a seeded data folder, measuring a command, a table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from microscopy_notebook.cloud import samples
from microscopy_notebook.paths import WORKFLOW

BUCKET = "nexuslims_example-bench"
OUT_BUCKET = "nexuslims_example-bench-out"


# -- the file set ---------------------------------------------------------------------------------
def file_set(n: int) -> tuple[list[str], dict[str, list[str]]]:
    """``n`` previewable object names cycling through the samples, and each one's companions."""
    from thumbnails import formats  # the job's library: installed editable, like ours

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
            os.link(src / relative, dest) if _same_fs(src, root) else shutil.copy(
                src / relative, dest
            )
    (root / OUT_BUCKET).mkdir(exist_ok=True)
    return names, companions


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


# -- where it was measured -------------------------------------------------------------------------
def machine() -> dict:
    """The facts a figure needs beside it: when, on what, with which versions, and whether the
    environment's modules were compiled to bytecode (as a user's install is) or not."""
    import datetime
    import importlib.metadata
    import platform
    import sysconfig

    memory = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    site = Path(sysconfig.get_paths()["purelib"])
    snakemake_init = site / "snakemake" / "__init__.py"
    compiled = any((snakemake_init.parent / "__pycache__").glob("__init__.*.pyc"))
    return {
        "date": datetime.date.today().isoformat(),
        "cores": os.cpu_count(),
        "memory_mib": memory,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "snakemake": importlib.metadata.version("snakemake"),
        "bytecode_compiled": compiled,
    }


def job_command(work: Path, output: str, *extra: str) -> list[str]:
    """The thumbnail job as users run it locally, on the benchmark's input, two cores."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(WORKFLOW / "Snakefile"),
        "--profile",
        str(WORKFLOW / "profiles" / "local"),
        "--cores",
        "2",
        "--quiet",
        "all",
        "--directory",
        str(work),
        "--config",
        f"input=gs://{BUCKET}/in",
        f"output={output}",
        *extra,
    ]


# -- measuring ----------------------------------------------------------------------------------
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
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], env=env, cwd=cwd, capture_output=True, text=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr}")
    return result


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
