"""The lazy recipe of notebooks/open-from-bucket.md reads only what it uses.

The page opens an ``.hspy`` file straight from a bucket (``blob.open``, RosettaSciIO's reader,
``dict2signal``) and says that a calculation downloads only the parts it reads, a few MiB at a
time. Here the same calls open a file of many chunks in the storage emulator: opening it and one
frame download a small part of it, the mean of all frames reads it all (the bytes counted as the
client library receives them).
"""

from __future__ import annotations

import numpy as np
import pytest

CHUNK = 1024 * 1024  # the reader's download size (the page sets 4 MiB)
FRAMES, SIDE = 64, 512  # 64 frames of 512 x 512 float32: 64 MiB, one HDF5 chunk per frame


@pytest.fixture
def stack(gcs, tmp_path):
    import hyperspy.api as hs

    data = np.random.default_rng(0).random((FRAMES, SIDE, SIDE), dtype=np.float32)
    local = tmp_path / "stack.hspy"
    hs.signals.Signal2D(data).save(local, chunks=(1, SIDE, SIDE), compression=None)
    bucket = gcs.lookup_bucket("lazy-recipe") or gcs.create_bucket("lazy-recipe")
    blob = bucket.blob("stack.hspy")
    blob.upload_from_filename(local)
    yield blob, data, local.stat().st_size
    blob.delete()


@pytest.fixture
def received(monkeypatch) -> list[int]:
    """The size of every download the client library makes, as it receives them."""
    from google.cloud.storage import Blob

    sizes: list[int] = []
    download = Blob.download_as_bytes

    def counted(self, *args, **kwargs):
        data = download(self, *args, **kwargs)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(Blob, "download_as_bytes", counted)
    return sizes


def test_one_frame_downloads_a_small_part_and_the_mean_reads_it_all(gcs, stack, received) -> None:
    from hyperspy.io import dict2signal
    from rsciio.hspy import file_reader

    blob, data, size = stack
    with gcs.bucket(blob.bucket.name).blob(blob.name).open("rb", chunk_size=CHUNK) as remote:
        signal = dict2signal(file_reader(remote, lazy=True)[0], lazy=True)
        frame = signal.inav[7].data.compute()
        one_frame = sum(received)
        np.testing.assert_array_equal(frame, data[7])
        assert one_frame < size / 4, (one_frame, size)

        mean = signal.mean(axis=0).data.compute()
        np.testing.assert_allclose(mean, data.mean(axis=0), rtol=1e-5)
        assert sum(received) >= size * 0.95  # nearly every byte, this time
