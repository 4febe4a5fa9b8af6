"""Every sample's preview is the one stored in preview_hashes.json (pixels and what it says it
shows), and so are the truncated copies' and an empty file's placeholders: a change to the job's
library that changes a picture shows here, and the table is rewritten on purpose with it."""

from __future__ import annotations

import copy

from tests.workflow import preview_hashes


def test_every_preview_is_as_stored() -> None:
    table = preview_hashes.stored()
    differences = preview_hashes.differences(preview_hashes.previews(), table["previews"])
    assert not differences, (
        f"{differences}: if the change is meant, run `python -m tests.workflow.preview_hashes "
        f"--write` and commit the table. Stored with {table['libraries']}, "
        f"drawn now with {preview_hashes.libraries()}"
    )


def test_a_changed_picture_a_new_sample_and_a_lost_one_are_named() -> None:
    then = preview_hashes.stored()["previews"]
    now = copy.deepcopy(then)
    name = next(iter(now))
    now[name]["pixels_sha256"] = "0" * 64
    now["dm3/new.dm3"] = now.pop(next(n for n in now if n != name))
    lines = preview_hashes.differences(now, then)
    assert f"differs: {name}: pixels_sha256" in lines
    assert "new: dm3/new.dm3" in lines
    assert sum(line.startswith("gone: ") for line in lines) == 1
    assert len(then) >= 10  # every sample, its truncated copy and the empty file
