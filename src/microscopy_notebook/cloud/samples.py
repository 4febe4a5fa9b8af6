"""Real microscope files from the hyperspy 1.7.6 wheel, unpacked to the cache, seeded to a bucket.

Object names follow the original guide (``nexuslims_example-datafiles/MockDataFiles/...``).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from microscopy_notebook.cloud import pinned

BUCKET = "nexuslims_example-datafiles"
PREFIX = "MockDataFiles/"
OUTPUT_BUCKET = "nexuslims_example-joboutput"
SCRATCH_BUCKET = "nexuslims_example-scratch"  # "your own bucket" in the storage chapter
_IO = "hyperspy/tests/io/"


@dataclass(frozen=True)
class Sample:
    name: str  # path under PREFIX
    member: str  # path in the wheel
    inner: str | None = None  # path inside a zip that is itself in the wheel
    what: str = ""


SAMPLES: tuple[Sample, ...] = (
    Sample(
        "dm3/multi_signal.dm3",
        _IO + "dm3_2D_data/multi_signal.dm3",
        what="Gatan DM3: a 512x512 HAADF image and an EELS spectrum in one file",
    ),
    Sample(
        "dm3/EELS_spectrum.dm3",
        _IO + "dm3_1D_data/test-EELS_spectrum.dm3",
        what="Gatan DM3: an EELS spectrum",
    ),
    Sample(
        "dm3/EDS_spectrum.dm3",
        _IO + "dm3_1D_data/test-EDS_spectrum.dm3",
        what="Gatan DM3: an EDS spectrum",
    ),
    Sample(
        "dm4/EELS_SI.dm4", _IO + "dm4_3D_data/EELS_SI.dm4", what="Gatan DM4: an EELS spectrum image"
    ),
    Sample(
        "tia/128x128-TEM_search.emi",
        _IO + "FEI_new/128x128-TEM_search.emi",
        what="FEI TIA: metadata of a 128x128 TEM image",
    ),
    Sample(
        "tia/128x128-TEM_search_1.ser",
        _IO + "FEI_new/128x128-TEM_search_1.ser",
        what="FEI TIA: data of a 128x128 TEM image",
    ),
    Sample(
        "tia/64x64x5_TEM_preview.emi",
        _IO + "FEI_old/64x64x5_TEM_preview.emi",
        what="FEI TIA: metadata of a stack of five 64x64 TEM images",
    ),
    Sample(
        "tia/64x64x5_TEM_preview_1.ser",
        _IO + "FEI_old/64x64x5_TEM_preview_1.ser",
        what="FEI TIA: data of a stack of five 64x64 TEM images",
    ),
    Sample(
        "sem/Zeiss_SEM_512pix.tif",
        _IO + "tiff_files/tiff_Zeiss_SEM.zip",
        inner="test_tiff_Zeiss_SEM_512pix.tif",
        what="Zeiss SEM TIFF with calibration tags",
    ),
    Sample(
        "sem/FEI_Helios_8bit.tif",
        _IO + "tiff_files/tiff_FEI_Helios.zip",
        inner="FEI-Helios-Ebeam-8bits.tif",
        what="FEI Helios SEM TIFF",
    ),
    Sample("eds/example1.msa", _IO + "msa_files/example1.msa", what="EMSA/MSA text spectrum"),
)


def files() -> Path:
    """The folder holding every sample under its object name; unpacked once, then reused."""
    root = pinned.cache_dir() / "samples" / "hyperspy-1.7.6"
    missing = [s for s in SAMPLES if not (root / s.name).exists()]
    if missing:
        with zipfile.ZipFile(pinned.wheel(pinned.HYPERSPY_SAMPLES)) as zf:
            for sample in missing:
                data = zf.read(sample.member)
                if sample.inner is not None:
                    data = zipfile.ZipFile(io.BytesIO(data)).read(sample.inner)
                dest = root / sample.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".part")
                tmp.write_bytes(data)
                tmp.replace(dest)
    return root


def seed(bucket: str = BUCKET, prefix: str = PREFIX, client=None) -> list[str]:
    """Create ``bucket`` (and the output and scratch buckets) and upload every sample.

    Returns the object names. Existing buckets are kept, so seeding twice is harmless.
    """
    from google.cloud import storage

    client = client or storage.Client()
    root = files()
    for name in (bucket, OUTPUT_BUCKET, SCRATCH_BUCKET):
        if client.lookup_bucket(name) is None:
            client.create_bucket(name)
    target = client.bucket(bucket)
    names = []
    for sample in SAMPLES:
        blob = target.blob(prefix + sample.name)
        blob.upload_from_filename(str(root / sample.name))
        names.append(blob.name)
    return names
