"""The job reads DigitalMicrograph files as rsciio's reader does, only faster: its tag parser
(`signals._dm_reader`) gives the same tags, stops at the same byte with the same error on
damaged files, and `signals._dm_dicts` (tags parsed once, for the header) gives what
``file_reader`` does."""

from __future__ import annotations

import importlib
import random
from pathlib import Path

import numpy as np
import pytest

from microscopy_notebook.cloud import samples
from thumbnails import signals

DM = ["dm3/multi_signal.dm3", "dm3/EELS_spectrum.dm3", "dm3/EDS_spectrum.dm3", "dm4/EELS_SI.dm4"]


def _api():
    signals.import_reader("digitalmicrograph")
    return importlib.import_module("rsciio.digitalmicrograph._api")


def _same(a, b, where: str = "") -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where  # NaN tags equal themselves here


def _parse(cls, path: Path):
    with path.open("rb") as fh:
        dm = cls(fh)
        try:
            dm.parse_file()
            error = None
        except Exception as exc:  # noqa: BLE001 - the failure itself is compared
            error = repr(exc)
        return dm.tags_dict, error, fh.tell()


def _damaged(tmp_path: Path, count: int) -> list[Path]:
    """Samples cut short or with bytes changed, the same ones every run."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        name = DM[i % len(DM)]
        data = bytearray((samples.files() / name).read_bytes())
        if i % 3 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(min(len(data), 60_000))] = rng.randrange(256)
        path = tmp_path / f"d{i}{Path(name).suffix}"
        path.write_bytes(data)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    return [samples.files() / n for n in DM] + _damaged(tmp_path_factory.mktemp("dm"), 80)


def test_the_fast_tag_parser_gives_the_readers_tags_and_failures(files):
    api = _api()
    for path in files:
        ours, theirs = _parse(signals._dm_reader(), path), _parse(api.DigitalMicrographReader, path)
        assert ours[1:] == theirs[1:], path.name  # the same error, at the same byte
        _same(ours[0], theirs[0], path.name)


def test_signals_from_the_headers_parse_are_the_readers(files):
    api = _api()
    compared = 0
    for path in files:
        try:
            head = signals.header_of(path, "digitalmicrograph")
        except signals.Unreadable:
            continue
        if head.parsed is None:  # the parse failed: the reader itself is called, as before
            continue
        try:
            ours = signals._dm_dicts(path, head.parsed)
        except Exception as exc:  # noqa: BLE001
            ours = repr(exc)
        try:
            theirs = api.file_reader(str(path))
        except Exception as exc:  # noqa: BLE001
            theirs = repr(exc)
        if isinstance(theirs, str) or isinstance(ours, str):
            assert ours == theirs, path.name
            continue
        assert len(ours) == len(theirs)
        for o, t in zip(ours, theirs, strict=True):
            for key in ("data", "axes", "metadata", "original_metadata"):
                _same(o[key], t[key], f"{path.name}:{key}")
        compared += 1
    assert compared >= len(DM)
