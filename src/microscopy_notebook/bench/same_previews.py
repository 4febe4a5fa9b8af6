"""Are the previews the same as at another commit? Renders every sample with both libraries.

    python -m microscopy_notebook.bench.same_previews --base REV

The thumbnail job's library at ``REV`` (``git archive REV workflow/scripts``, unpacked in a
temporary folder) and the one in this working tree each render every sample file (`cloud.samples`)
and, to reach the placeholder and truncation paths too, a copy of each data file cut to half its
length and an empty file. Each library runs in a subprocess of this Python, started in its
``scripts`` folder, which ``python -c`` puts first on the path: each imports its own modules. One
line per file gives both PNGs' md5 (and, when they differ, which of the preview's other fields
differ); the exit status is 1 on any difference. Works with both layouts of the library:
``previews.py`` beside the scripts (before issue 11) and the ``thumbnails`` package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from microscopy_notebook.cloud import samples
from microscopy_notebook.paths import ROOT

SCRIPTS = "workflow/scripts"
FIELDS = ("ok", "kind", "title", "signals", "shown", "error", "scalebar", "axis_label")

# Run in the library's scripts folder: `python -c` puts that folder first on the import path.
RENDER = f"""
import hashlib, json, os, sys
if os.path.isdir("thumbnails"):
    from thumbnails.preview import make_preview
else:
    from previews import make_preview
out = {{"": make_preview.__module__}}
for path, name in json.load(sys.stdin):
    p = make_preview(path, name)
    out[name] = {{"md5": hashlib.md5(p.png).hexdigest(),
                 "fields": {{f: getattr(p, f) for f in {FIELDS!r}}}}}
json.dump(out, sys.stdout)
"""


def cases(samples_dir: Path, names: list[str], work: Path) -> list[tuple[str, str]]:
    """(path, object name) of every sample, a half-length copy of each, and an empty file."""
    found = []
    for name in names:
        path = samples_dir / name
        found.append((str(path), name))
        cut = work / "truncated" / name
        cut.parent.mkdir(parents=True, exist_ok=True)
        if name.lower().endswith(".emi"):  # a companion: whole, so a cut .ser still finds it
            shutil.copy(path, cut)
            continue
        data = path.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        found.append((str(cut), f"truncated/{name}"))
    empty = work / "empty" / "empty.dm3"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")
    found.append((str(empty), "empty/empty.dm3"))
    return found


def render(scripts: Path, files: list[tuple[str, str]]) -> dict:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)  # only the library in `scripts`, never another copy of it
    proc = subprocess.run(
        [sys.executable, "-c", RENDER],
        cwd=scripts,
        env=env,
        input=json.dumps(files),
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"rendering with {scripts} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with, e.g. main")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same-previews-") as tmp:
        work = Path(tmp)
        base = work / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(args.repo), "archive", args.base, SCRIPTS],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        files = cases(samples.files(), [s.name for s in samples.SAMPLES], work / "files")
        before = render(base / SCRIPTS, files)
        after = render(args.repo / SCRIPTS, files)
    print(f"{args.base}: {before.pop('')}.make_preview; working tree: {after.pop('')}.make_preview")
    different = 0
    width = max(len(name) for _, name in files)
    for _, name in files:
        a, b = before[name], after[name]
        same = a == b
        different += not same
        line = f"{'same' if same else 'DIFF'}  {name:<{width}}  {a['md5']}  {b['md5']}"
        changed = [f for f in FIELDS if a["fields"][f] != b["fields"][f]]
        if changed:
            line += f"  fields: {', '.join(changed)}"
        print(line)
    print(
        f"{len(files) - different} of {len(files)} previews identical to {args.base}"
        + (f"; {different} differ" if different else "")
    )
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
