"""A sample file of every format the thumbnail job reads (``thumbnails.formats.FORMATS``).

The formats page of the book shows the job's preview of each, and the tests read each. Real files
come from the pinned hyperspy 1.7.6 wheel, whose test suite has DM, TIA, TIFF, EMSA, Velox EMD,
Bruker and ASTAR blockfile files. No package on PyPI ships an EDAX ``.spc``, an MRC, a Merlin
``.mib``, a Panta Rhei ``.prz``, a zipped ``.zspy`` or an exported picture, so those (and a
``.hspy`` worth showing) are written here from the data of a real sample: by the format's own
writer where there is one (HyperSpy's for ``.hspy``, ``.zspy`` and ``.prz``, mrcfile for MRC,
Pillow for pictures), otherwise in the layout RosettaSciIO reads (``.spc``: its own header
description; ``.mib``: Merlin frame headers and the ``.hdr`` beside them). Nothing is committed:
the files are made in the cache folder, once.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microscopy_notebook.cloud import pinned, samples

VERSION = 1  # of the files written here: raise it when a maker changes, to make them anew
_IO = "hyperspy/tests/io/"


@dataclass(frozen=True)
class FormatSample:
    name: str  # path under files(); its extension is the format's
    source: str  # where it comes from, as the formats page says it
    make: Callable[[Path, Path], None]  # (the folder of all samples, where to write it)
    companions: tuple[str, ...] = ()  # made with it, beside it


def _from_bucket(name: str) -> Callable[[Path, Path], None]:
    """One of the real files seeded to the example bucket (`cloud.samples`)."""

    def make(_root: Path, dest: Path) -> None:
        shutil.copyfile(samples.files() / name, dest)

    return make


def _from_wheel(member: str, inner: str | None = None) -> Callable[[Path, Path], None]:
    """A real file from the hyperspy 1.7.6 wheel (``inner``: from a zip inside it)."""

    def make(_root: Path, dest: Path) -> None:
        with zipfile.ZipFile(pinned.wheel(pinned.HYPERSPY_SAMPLES)) as zf:
            data = zf.read(_IO + member)
        if inner is not None:
            data = zipfile.ZipFile(io.BytesIO(data)).read(inner)
        dest.write_bytes(data)

    return make


def _read(path: Path) -> dict:
    """The largest signal of a real sample, as its RosettaSciIO reader gives it."""
    from thumbnails.formats import READERS
    from thumbnails.signals import import_reader

    dicts = import_reader(READERS[path.suffix.lower()]).file_reader(str(path))
    return max(dicts, key=lambda d: np.asarray(d["data"]).size)


def _save(source: str, title: str, zipped: bool = False) -> Callable[[Path, Path], None]:
    """A real sample loaded and saved by HyperSpy, whose writers make .hspy, .zspy and .prz;
    ``zipped``: a .zspy folder packed as zarr's zip store reads it (one object, not a folder)."""

    def make(root: Path, dest: Path) -> None:
        import hyperspy.api as hs

        signal = hs.load(root / source)
        if isinstance(signal, list):
            signal = max(signal, key=lambda s: s.data.size)
        signal.metadata.General.title = title
        if not zipped:
            signal.save(dest, overwrite=True)
            return
        folder = dest.with_name("folder" + dest.suffix)
        with warnings.catch_warnings():  # zarr 2's store is deprecated in favour of zarr 3's
            warnings.simplefilter("ignore", FutureWarning)
            signal.save(folder, overwrite=True, show_progressbar=False)
        with zipfile.ZipFile(dest, "w") as zf:  # uncompressed: zarr compressed the chunks
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                zf.write(path, path.relative_to(folder).as_posix())

    return make


def _mrc(root: Path, dest: Path) -> None:
    """The TIA stack of five 64x64 TEM images as an MRC2014 stack, pixel size in the header."""
    import mrcfile

    signal = _read(root / "tia/64x64x5_TEM_preview_1.ser")
    with mrcfile.new(str(dest), overwrite=True) as mrc:
        mrc.set_data(np.asarray(signal["data"], dtype=np.float32))
        nm = abs(float(signal["axes"][-1]["scale"]))
        mrc.voxel_size = nm * 10  # MRC states it in ångström
        mrc.header.ispg = 0  # image stack, not a volume


def _spc(root: Path, dest: Path) -> None:
    """The EDS spectrum of bruker_nano.spx in an EDAX .spc: the header laid out by
    RosettaSciIO's own description of it (``get_spc_dtype_list``), the counts at 3840."""
    from rsciio.edax._api import get_spc_dtype_list

    signal = _read(root / "bruker/bruker_nano.spx")
    axis = signal["axes"][-1]
    # EDAX states whole eV per channel: channels summed in pairs, threes... to about 5 eV
    k = max(1, round(0.005 / axis["scale"]))
    counts = np.asarray(signal["data"], dtype=float)
    counts = counts[: len(counts) // k * k].reshape(-1, k).sum(axis=1)
    counts = np.clip(np.rint(counts), 0, None).astype("<u4")[:4096]
    ev = round(axis["scale"] * k * 1000)
    header = np.zeros(1, dtype=get_spc_dtype_list(load_all=True, version=0.7))
    fields = {
        "fVersion": 0.7,
        "aVersion": 0.7,
        "dataStart": 3840,
        "numPts": len(counts),
        "evPerChan": ev,
        "startEnergy": axis["offset"],
        "endEnergy": axis["offset"] + ev / 1000 * len(counts),
        "liveTime": 60.0,
        "detReso": 130.0,
        "kV": 200.0,
        "elevation": 20.0,
    }
    for key, value in fields.items():
        header[key] = value
    header["s"][0, : len(counts)] = counts
    dest.write_bytes(header.tobytes())


def _mib(root: Path, dest: Path) -> None:
    """The ASTAR scan of test1.blo as Merlin writes it: one 384-byte header a frame (12-bit
    counts, big-endian U16), and the .hdr that gives the scan's shape."""
    signal = _read(root / "astar/test1.blo")
    data = np.asarray(signal["data"])
    ny, nx, h, w = data.shape
    frames = np.clip(data, 0, 4095).astype(">u2")[:, :, ::-1]  # Merlin's rows run upwards
    with dest.open("wb") as fh:
        for i, frame in enumerate(frames.reshape(ny * nx, h, w)):
            seconds = 0.001 * i + 0.002 * (i // nx)  # a line's first frame waits for the flyback
            stamp = f"2024-05-18T16:51:{49 + seconds:09.6f}Z"
            head = (
                f"MQ1,{i + 1:06d},00384,01,{w:04d},{h:04d},U16,   1x1,01,"
                f"2024-05-18 16:51:49.971626,0.001000,0,0,0,1.200000E+2,5.110000E+2,"
                f"0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,"
                f"3RX,175,511,000,000,000,000,000,000,125,255,125,125,100,100,082,100,087,030,"
                f"128,004,255,129,128,176,168,511,511,MQ1A,{stamp},1000000ns,12,"
            )
            fh.write(head.encode().ljust(384, b"\0"))
            fh.write(frame.tobytes())
    dest.with_suffix(".hdr").write_text(
        "HDR,\t\n"
        "Time and Date Stamp (day, mnth, yr, hr, min, s):\t18/05/2024 16:51:49\n"
        "Chip ID:\tW529_F5,-,-,-\n"
        "Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX):\tMedipix 3RX\n"
        "Assembly Size (NX1, 2X2):\t   1x1\n"
        "Chip Mode  (SPM, CSM, CM, CSCM):\tSPM\n"
        "Counter Depth (number):\t12\n"
        f"Frames in Acquisition (Number):\t{ny * nx}\n"
        f"Frames per Trigger (Number):\t{nx}\n"
        "End\t\n"
    )


def _picture(source: str, colour: str | None, dest_format: str) -> Callable[[Path, Path], None]:
    """A real image exported as a picture: in grey, or in a matplotlib colour map."""

    def make(root: Path, dest: Path) -> None:
        from PIL import Image

        data = np.asarray(_read(root / source)["data"], dtype=np.float64)
        lo, hi = np.percentile(data, (0.5, 99.5))
        level = np.clip((data - lo) / ((hi - lo) or 1.0), 0, 1)
        if colour is None:
            image = Image.fromarray(np.rint(level * 255).astype(np.uint8), "L")
        else:
            from matplotlib import colormaps

            rgb = colormaps[colour](level)[..., :3]
            image = Image.fromarray(np.rint(rgb * 255).astype(np.uint8), "RGB")
        image.save(dest, dest_format, **({"quality": 90} if dest_format == "JPEG" else {}))

    return make


SAMPLES: tuple[FormatSample, ...] = (
    FormatSample(
        "dm3/multi_signal.dm3", "real, from HyperSpy's tests", _from_bucket("dm3/multi_signal.dm3")
    ),
    FormatSample(
        "tia/64x64x5_TEM_preview_1.ser",
        "real, from HyperSpy's tests",
        _from_bucket("tia/64x64x5_TEM_preview_1.ser"),
        ("tia/64x64x5_TEM_preview.emi",),
    ),
    FormatSample(
        "tia/64x64x5_TEM_preview.emi",
        "real, from HyperSpy's tests",
        _from_bucket("tia/64x64x5_TEM_preview.emi"),
    ),
    FormatSample(
        "sem/Zeiss_SEM_512pix.tif",
        "real, from HyperSpy's tests",
        _from_bucket("sem/Zeiss_SEM_512pix.tif"),
    ),
    FormatSample(
        "eds/example1.msa", "real, from HyperSpy's tests", _from_bucket("eds/example1.msa")
    ),
    FormatSample(
        "emd/fei_emd_si.emd",
        "real, from HyperSpy's tests",
        _from_wheel("emd_files/fei_emd_files.zip", "fei_emd_si.emd"),
    ),
    FormatSample(
        "bruker/P45_the_default_job.bcf",
        "real, from HyperSpy's tests",
        _from_wheel("bruker_data/P45_the_default_job.bcf"),
    ),
    FormatSample(
        "bruker/bruker_nano.spx",
        "real, from HyperSpy's tests",
        _from_wheel("bruker_data/bruker_nano.spx"),
    ),
    FormatSample(
        "astar/test1.blo", "real, from HyperSpy's tests", _from_wheel("blockfile_data/test1.blo")
    ),
    # real files that the written ones below are made from
    FormatSample(
        "dm3/test_diffraction_pattern.dm3",
        "real, from HyperSpy's tests",
        _from_wheel("dm3_2D_data/test_diffraction_pattern.dm3"),
    ),
    FormatSample(
        "dm4/MonoCL_linescan.dm4",
        "real, from HyperSpy's tests",
        _from_wheel("dm4_2D_data/test-MonoCL_spectrum-SI.dm4"),
    ),
    # written from the real files above
    FormatSample(
        "edax/EDS_spectrum.spc",
        "written here, in RosettaSciIO's layout of it, from the spectrum of bruker_nano.spx",
        _spc,
    ),
    FormatSample(
        "mrc/TEM_stack.mrc", "written by mrcfile from the TIA stack 64x64x5_TEM_preview_1.ser", _mrc
    ),
    FormatSample(
        "hyperspy/diffraction_pattern.hspy",
        "written by HyperSpy from the diffraction pattern test_diffraction_pattern.dm3",
        _save("dm3/test_diffraction_pattern.dm3", "Diffraction pattern"),
    ),
    FormatSample(
        "hyperspy/CL_linescan.zspy",
        "written by HyperSpy (zip store) from the Gatan MonoCL line scan of HyperSpy's tests",
        _save(
            "dm4/MonoCL_linescan.dm4",
            "CL line scan",
            zipped=True,
        ),
    ),
    FormatSample(
        "merlin/diffraction_scan.mib",
        "written here, as Merlin writes frames, from the ASTAR scan test1.blo",
        _mib,
        ("merlin/diffraction_scan.hdr",),
    ),
    FormatSample(
        "pantarhei/HAADF.prz",
        "written by HyperSpy from the HAADF image of multi_signal.dm3",
        _save("dm3/multi_signal.dm3", "HAADF"),
    ),
    FormatSample(
        "pictures/HAADF_inferno.png",
        "written by Pillow: the HAADF image of multi_signal.dm3 in a colour map",
        _picture("dm3/multi_signal.dm3", "inferno", "PNG"),
    ),
    FormatSample(
        "pictures/Zeiss_SEM.jpg",
        "written by Pillow from the SEM image Zeiss_SEM_512pix.tif",
        _picture("sem/Zeiss_SEM_512pix.tif", None, "JPEG"),
    ),
)
BY_NAME = {s.name: s for s in SAMPLES}


def files() -> Path:
    """The folder holding every sample under its name; made once, then reused."""
    root = pinned.cache_dir() / "samples" / f"formats-{VERSION}"
    for sample in SAMPLES:  # in order: the written ones read the real ones before them
        if all((root / n).exists() for n in (sample.name, *sample.companions)):
            continue
        dest = root / sample.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            made = Path(tmp) / dest.name
            sample.make(root, made)
            for companion in sample.companions:  # written beside it, or made on their own
                beside = Path(tmp) / Path(companion).name
                if beside.exists():
                    beside.replace(root / companion)
            made.replace(dest)
    return root


def preview_samples() -> dict[str, str]:
    """The sample the formats page shows for each format: its first extension -> sample name."""
    from thumbnails.formats import FORMATS

    shown = {}
    for fmt in FORMATS:
        names = [s.name for s in SAMPLES if Path(s.name).suffix.lower() in fmt.extensions]
        if names:
            shown[fmt.extensions[0]] = names[0]
    return shown
