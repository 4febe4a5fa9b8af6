"""The emulator's front enforces the generation preconditions Cloud Storage enforces and
fake-gcs-server ignores (compose, DELETE, PATCH, media GET), so code that relies on them is tested
against what Cloud Storage does, not against a laxer server."""

from __future__ import annotations

import uuid

import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed


@pytest.fixture
def bucket(gcs):
    return gcs.create_bucket(f"pre-{uuid.uuid4().hex[:10]}")


def test_compose_checks_its_destination_and_sources_and_makes_a_new_generation(bucket) -> None:
    head = bucket.blob("report.csv")
    head.upload_from_string(b"a\n")
    part = bucket.blob("part")
    part.upload_from_string(b"b\n")
    head.reload()
    first = head.generation
    with pytest.raises(PreconditionFailed):
        head.compose([head, part], if_generation_match=first + 1)
    with pytest.raises(PreconditionFailed):
        head.compose([head, part], if_source_generation_match=[first + 1, part.generation])
    assert bucket.blob("report.csv").download_as_bytes() == b"a\n"  # neither took effect

    head.compose([head, part], if_generation_match=first)
    composed = bucket.get_blob("report.csv")
    assert composed.download_as_bytes() == b"a\nb\n"
    assert composed.generation != first  # a compose writes a new generation, as Cloud Storage's
    assert composed.component_count == 2
    with pytest.raises(PreconditionFailed):  # the generation read before is stale now
        head.compose([head, part], if_generation_match=first)


def test_delete_and_patch_check_generation_and_metageneration(bucket) -> None:
    blob = bucket.blob("preview.png")
    blob.upload_from_string(b"png")
    blob = bucket.get_blob("preview.png")
    with pytest.raises(PreconditionFailed):
        bucket.blob("preview.png").delete(if_generation_match=blob.generation + 1)
    assert bucket.get_blob("preview.png") is not None  # not deleted

    assert blob.metageneration == 1
    blob.metadata = {"owner": "a"}
    blob.patch(if_generation_match=blob.generation, if_metageneration_match=1)
    assert bucket.get_blob("preview.png").metageneration == 2  # each patch counts
    stale = bucket.get_blob("preview.png")
    stale.metadata = {"owner": "b"}
    blob.metadata = {"owner": "c"}
    with pytest.raises(PreconditionFailed):  # a patch made from what was read before the last one
        blob.patch(if_metageneration_match=1)
    stale.patch(if_metageneration_match=2)
    assert bucket.get_blob("preview.png").metadata == {"owner": "b"}

    with pytest.raises(PreconditionFailed):
        bucket.blob("preview.png").download_as_bytes(if_generation_match=blob.generation + 1)
    bucket.blob("preview.png").delete(if_generation_match=blob.generation)
    with pytest.raises(NotFound):
        bucket.blob("preview.png").delete(if_generation_match=blob.generation)
