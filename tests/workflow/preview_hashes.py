"""The stored table of the samples' previews, ``preview_hashes.json`` beside this file: for every
sample file (`microscopy_notebook.cloud.samples`, the guide's buckets), a copy of each cut to half
its length (the truncation and placeholder paths), every format's sample
(`microscopy_notebook.format_samples`, under ``formats/``) and an empty file, the hash of the
preview's pixels and what the preview says it shows. A change to the
job's library that changes a preview fails ``test_preview_hashes`` until the table is written
again, on purpose, in the same commit::

    python -m tests.workflow.preview_hashes          # compare, one line per preview that differs
    python -m tests.workflow.preview_hashes --write  # store the previews as they are now

The pixels are hashed, not the PNG bytes (zlib's output is not the picture). The table records
the versions of the libraries that draw and read, so a difference can be told from an upgrade.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

from microscopy_notebook import format_samples
from microscopy_notebook.cloud import samples
from thumbnails.preview import make_preview

TABLE = Path(__file__).with_name("preview_hashes.json")
FIELDS = ("ok", "kind", "title", "signals", "shown", "error", "scalebar", "axis_label")
LIBRARIES = ("pillow", "numpy", "rosettasciio", "matplotlib")  # what a preview's pixels depend on


def cases(work: Path) -> list[tuple[Path, str]]:
    """(path, object name) of every sample, a half-length copy of each, every format's sample
    and an empty file."""
    found = []
    source = samples.files()
    for sample in samples.SAMPLES:
        path = source / sample.name
        found.append((path, sample.name))
        cut = work / "truncated" / sample.name
        cut.parent.mkdir(parents=True, exist_ok=True)
        if sample.name.lower().endswith(".emi"):  # a companion: whole, so a cut .ser finds it
            shutil.copy(path, cut)
            continue
        data = path.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        found.append((cut, f"truncated/{sample.name}"))
    formats = format_samples.files()
    found += [(formats / s.name, f"formats/{s.name}") for s in format_samples.SAMPLES]
    empty = work / "empty" / "empty.dm3"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")
    found.append((empty, "empty/empty.dm3"))
    return found


def previews() -> dict[str, dict]:
    """Each case's entry of the table, as the job's library renders it now."""
    table = {}
    with tempfile.TemporaryDirectory(prefix="preview-hashes-") as tmp:
        for path, name in cases(Path(tmp)):
            preview = make_preview(path, name)
            with Image.open(io.BytesIO(preview.png)) as picture:
                pixels = picture.convert("RGB")
                digest = hashlib.sha256(pixels.tobytes()).hexdigest()
                size = list(pixels.size)
            table[name] = {
                "pixels_sha256": digest,
                "size": size,
                **{field: getattr(preview, field) for field in FIELDS},
            }
    return table


def libraries() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in LIBRARIES}


def stored() -> dict:
    return json.loads(TABLE.read_text())


def differences(now: dict[str, dict], then: dict[str, dict]) -> list[str]:
    """One line per preview that is not as stored: added, gone, or which parts changed."""
    lines = [f"new: {name}" for name in sorted(now.keys() - then.keys())]
    lines += [f"gone: {name}" for name in sorted(then.keys() - now.keys())]
    for name in sorted(now.keys() & then.keys()):
        changed = [key for key in now[name] if now[name][key] != then[name].get(key)]
        if changed:
            lines.append(f"differs: {name}: {', '.join(changed)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.workflow.preview_hashes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help="store the previews as they are")
    args = parser.parse_args(argv)
    now = previews()
    if args.write:
        TABLE.write_text(
            json.dumps({"libraries": libraries(), "previews": now}, indent=1, ensure_ascii=False)
            + "\n"
        )
        print(f"wrote {len(now)} previews to {TABLE}")
        return 0
    lines = differences(now, stored()["previews"])
    print("\n".join(lines) or f"all {len(now)} previews as stored")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
