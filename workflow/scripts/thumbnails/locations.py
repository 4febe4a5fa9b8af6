"""Where the thumbnail job reads and writes: locations, preview names, the config's checks.

Pure functions only (no storage, no Snakemake), so the tests call them directly and the Snakefile
stays a list of rules. A ``Location`` is ``gs://bucket/prefix`` or a local directory; the preview of
``a/x.dm3`` is ``a/x.dm3.png`` under the output. ``JobConfigError`` is configuration the job
refuses, with a message saying what to fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Bucket names as Cloud Storage accepts them (3-222 characters; dots allowed).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
PREVIEW_SUFFIX = ".png"


class JobConfigError(ValueError):
    """Configuration the job refuses; the message is one paragraph saying what to fix."""


@dataclass(frozen=True)
class Location:
    """``gs://bucket/prefix`` or a local directory, normalised so that two spellings compare equal.

    ``path`` is the object-name prefix without leading or trailing slash (``""`` for a whole
    bucket) for ``gs``, and an absolute POSIX path without trailing slash for ``file``.
    """

    scheme: str  # "gs" or "file"
    bucket: str
    path: str

    @property
    def url(self) -> str:
        if self.scheme == "gs":
            return f"gs://{self.bucket}/{self.path}" if self.path else f"gs://{self.bucket}"
        return self.path

    def child(self, name: str) -> str:
        """Where the object ``name`` (relative to this location) lives, as a URL or a path."""
        return f"{self.url.rstrip('/')}/{name}"

    def under(self, name: str) -> Location:
        """The location of the folder (prefix) ``name`` under this one."""
        return Location(
            self.scheme,
            self.bucket,
            self.key(name)
            if self.scheme == "file"
            else (f"{self.path}/{name}" if self.path else name),
        )

    def key(self, name: str) -> str:
        """The object name in the bucket (gs) or the absolute path (file) of ``name``."""
        if self.scheme == "gs":
            return f"{self.path}/{name}" if self.path else name
        return os.path.join(self.path, *name.split("/"))

    def contains(self, other: Location) -> bool:
        """True when ``other`` is this location or lies anywhere under it."""
        if (self.scheme, self.bucket) != (other.scheme, other.bucket):
            return False
        if self.scheme == "gs" and not self.path:
            return True  # a whole bucket holds every prefix in it
        return other.path == self.path or other.path.startswith(self.path.rstrip("/") + "/")

    def __str__(self) -> str:
        return self.url


def parse_location(text: object, what: str, base: Path | None = None) -> Location:
    """Parse a config value; a relative local path is taken relative to ``base`` (default: cwd)."""
    if not isinstance(text, str) or not text.strip():
        raise JobConfigError(
            f"The thumbnail job needs `{what}` to be a location, `gs://bucket/prefix` or a local "
            f"directory, but got {text!r}. Set it in workflow/config/config.yaml or on the command "
            f"line, e.g. `--config {what}=gs://my-bucket/my-prefix`."
        )
    text = text.strip()
    if text.startswith("gs://"):
        bucket, _, prefix = text[len("gs://") :].partition("/")
        parts = [p for p in prefix.split("/") if p]
        if not _BUCKET.match(bucket) or any(p in (".", "..") for p in parts):
            raise JobConfigError(
                f"The thumbnail job cannot use {text!r} as `{what}`: a Cloud Storage location is "
                f"`gs://` followed by a bucket name (3-222 lower-case letters, digits, dots, "
                f"dashes or underscores) and an optional prefix without `.` or `..` parts, e.g. "
                f"`gs://nexuslims_example-datafiles/MockDataFiles`."
            )
        return Location("gs", bucket, "/".join(parts))
    if "://" in text:
        raise JobConfigError(
            f"The thumbnail job cannot use {text!r} as `{what}`: only `gs://bucket/prefix` "
            f"locations and local directories are supported."
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    # resolve() follows symlinks, so a link from the output into the input is still caught.
    return Location("file", "", Path(os.path.normpath(path)).resolve().as_posix())


def check_locations(source: Location, target: Location) -> None:
    """Refuse an output that is, or lies under, the input (and the reverse)."""
    if source == target:
        relation = "is the same location as"
    elif source.contains(target):
        relation = "lies inside"
    elif target.contains(source):
        relation = "contains"
    else:
        return
    raise JobConfigError(
        f"The thumbnail job refuses this configuration: the output {target} {relation} the input "
        f"{source}. The job never writes where it reads, so that source files stay untouched and "
        f"previews are never taken for new microscope files on the next run. Choose an output "
        f"that does not overlap the input, e.g. `--config output=gs://my-bucket/previews` next to "
        f"`input=gs://my-bucket/raw`, or sibling local folders."
    )


def work_location(work_prefix: str | None) -> Location | None:
    """Where Snakemake keeps the job's work files on the cloud path (``--default-storage-prefix``,
    with or without ``gs://``), or None (no prefix, or another storage than Cloud Storage)."""
    if not work_prefix:
        return None
    text = work_prefix if "://" in work_prefix else f"gs://{work_prefix}"
    if not text.startswith("gs://"):
        return None  # another storage provider
    return parse_location(text, "default-storage-prefix")


def check_work_prefix(source: Location, work_prefix: str | None) -> None:
    """Refuse a ``--default-storage-prefix`` (where the job's own files go) under the input."""
    work = work_location(work_prefix)
    if work is not None and source.contains(work):
        raise JobConfigError(
            f"The thumbnail job refuses --default-storage-prefix {work_prefix}: it lies inside the "
            f"input {source}, and Snakemake would write the job's work files among the source "
            f"files. Point it at a prefix of its own, e.g. `gs://my-bucket/snakemake-work`."
        )


def check_config_file(path: Path) -> None:
    """Refuse a config file that is not YAML, saying where, before Snakemake reads it (its own
    message names neither the file nor the line)."""
    import yaml

    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise JobConfigError(
            f"The thumbnail job's configuration file {path} is not valid YAML{where}: {what}. "
            f"Each setting is `key: value` on a line of its own, indented with spaces, never "
            f"tabs; compare with the file in the repository (`git diff {path.name}` in its "
            f"folder shows your changes), or leave the file alone and give settings on the "
            f"command line with `--config KEY=VALUE`."
        ) from None


def config_problem(error: BaseException) -> str:
    """One paragraph from a failed schema validation (Snakemake wraps jsonschema's error)."""
    cause: BaseException | None = error
    while cause is not None and not hasattr(cause, "absolute_path"):
        cause = cause.__cause__ or cause.__context__  # Snakemake raises it from jsonschema's
    cause = cause or error
    where = "/".join(str(p) for p in getattr(cause, "absolute_path", ()))
    what = getattr(cause, "message", str(cause))
    return (
        f"The thumbnail job's configuration is malformed{f' at `{where}`' if where else ''}: "
        f"{what}. The keys are "
        f"`input` and `output` (each `gs://bucket/prefix` or a local directory), `batch_size` (a "
        f"whole number of files per job, at least 1), `max_files` (a whole number, or null for "
        f"all; `max_files=` on the command line), `strict` (`strict=True` on the command line) "
        f"and `redo` (`placeholders` or `older-than=VERSION`); see "
        f"workflow/schemas/config.schema.yaml."
    )


def preview_name(name: str) -> str:
    """The preview of ``a/x.dm3`` is ``a/x.dm3.png``: the source extension is kept, so ``x.dm3``
    and ``x.dm4`` never share a preview."""
    return name + PREVIEW_SUFFIX


def source_of(preview: str) -> str | None:
    """The source name a preview name belongs to, or None if it is not a preview name."""
    if preview.endswith(PREVIEW_SUFFIX) and len(preview) > len(PREVIEW_SUFFIX):
        return preview[: -len(PREVIEW_SUFFIX)]
    return None


# -- where a preview can go -----------------------------------------------------------------------
NO_PLACE = "no preview written: "  # the start of the reason of a file whose name cannot have one
OBJECT_NAME_BYTES = 1024  # Cloud Storage's limit on an object name, in UTF-8 bytes
PATH_BYTES = 4096  # Linux's PATH_MAX


def preview_place(target: Location, name: str) -> str | None:
    """Why the preview of ``name`` cannot be written under ``target`` (a reason starting with
    `NO_PLACE`), or None when it can. An object's name is data: in a folder, a name with a
    leading ``/``, an empty, ``.`` or ``..`` part, a NUL byte, or a part longer than the file
    system allows has no place inside the output folder, and nothing is written for it."""
    preview = preview_name(name)
    if target.scheme == "gs":
        size = len(target.key(preview).encode())
        if size > OBJECT_NAME_BYTES:
            return (
                f"{NO_PLACE}the preview's object name would be {size} bytes, more than the "
                f"{OBJECT_NAME_BYTES} Cloud Storage allows; shorten the file's name or the "
                f"output prefix"
            )
        return None
    if "\0" in name:
        return f"{NO_PLACE}the name holds a NUL byte, which no file name can"
    if name.startswith("/"):
        return (
            f"{NO_PLACE}the name begins with '/', so its preview would lie outside the output "
            f"folder"
        )
    parts = preview.split("/")
    for bad, what in (("..", "a '..' part"), (".", "a '.' part"), ("", "an empty part ('//')")):
        if bad in parts:
            return (
                f"{NO_PLACE}the name has {what}, so its preview would not be the file's own "
                f"place in the output folder"
            )
    limit = name_max(target.path)
    longest = max(len(p.encode()) for p in parts)
    if longest > limit:
        return (
            f"{NO_PLACE}a part of the preview's file name would be {longest} bytes, more than "
            f"the {limit} the output folder's file system allows"
        )
    size = len(target.key(preview).encode())
    if size > PATH_BYTES - 1:
        return f"{NO_PLACE}the preview's path would be {size} bytes, more than Linux allows"
    return None


def name_max(folder: str) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing
    parent) allows; 255 on the usual ones."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return os.pathconf(path, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255
