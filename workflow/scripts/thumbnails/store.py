"""Every storage call of the thumbnail job, for ``gs://`` locations and local directories alike.

google-cloud-storage honours ``STORAGE_EMULATOR_HOST``, so the same calls run against the emulator
in the tests and the book. Every call has a bounded retry and timeout: an unreachable storage is an
error within a minute, never a hang. Nothing here ever overwrites a preview: new objects are
created with ``if_generation_match=0`` (locally: written aside, then hard-linked into place).

Every preview the job writes to a bucket carries the id of the batch that made it (custom metadata
`BATCH_KEY`), the renderer's version (`RENDERER_KEY`) and its kind (`KIND_KEY`), so that one
listing of the output tells the job's own previews, and whether their batch's report record
exists, from anything else at those names, and which of them a `redo:` run may replace.

Local files are never named after an object: a file is written as a short temporary name in its
folder and linked into place, and a preview must lie inside the output folder (`NotInside`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .locations import Location

# Transient errors (429, 5xx, resets, timeouts) are retried with backoff; no attempt starts after
# RETRY_SECONDS. An attempt may take CONNECT_TIMEOUT to connect and READ_TIMEOUT between bytes, so
# a storage that cannot be reached, or stops answering, is an error after at most about
# RETRY_SECONDS + CONNECT_TIMEOUT + READ_TIMEOUT = 40 s, under a minute
# (tests/workflow/test_faults.py).
RETRY_SECONDS = 20.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
BATCH_KEY = "thumbnail-batch"  # custom metadata of every preview this job writes to a bucket
RENDERER_KEY = "thumbnail-renderer"  # ... the version of the renderer that made it
KIND_KEY = "thumbnail-kind"  # ... what it shows ("placeholder" for a file that could not be read)
TEMPORARY = ".thumbnail-job-"  # local temporary files: this, a random hex, ".part"
COMPOSE_LIMIT = 1000  # Cloud Storage allows 1,024 components in a composite object


class StoreError(RuntimeError):
    """A storage problem the user must fix (missing bucket, no access, no credentials)."""


class NotInside(ValueError):
    """A local preview's path would leave the output folder (through a symbolic link in it)."""


@functools.lru_cache(maxsize=1)
def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_SECONDS).with_delay(initial=0.5, maximum=5.0)


@functools.lru_cache(maxsize=1)
def client():
    """One client per process; a missing login is a clear message, not a traceback."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    try:
        return storage.Client()
    except DefaultCredentialsError as exc:
        raise StoreError(
            "The thumbnail job found no Google credentials. In your JupyterLab terminal run "
            "`gcloud auth application-default login --no-launch-browser` and try again "
            f"(details: {exc})."
        ) from exc


def _explain(exc: Exception, loc: Location, what: str) -> StoreError:
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.NotFound):
        return StoreError(
            f"The thumbnail job cannot {what} {loc}: the bucket `{loc.bucket}` does not exist. "
            "Check the spelling in the job's config, or create the bucket first "
            f"(`gcloud storage buckets create gs://{loc.bucket}`)."
        )
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return StoreError(
            f"The thumbnail job is not allowed to {what} {loc} ({exc.code}). Check that you are "
            "signed in (`gcloud auth application-default login`), that the project is right, and "
            "that your account holds a Storage role on the bucket."
        )
    from requests import exceptions as rexc

    if isinstance(exc, gexc.RetryError | rexc.ConnectionError | rexc.Timeout):
        return StoreError(
            f"The thumbnail job could not reach Cloud Storage to {what} {loc}: no answer within "
            f"{RETRY_SECONDS:.0f} s of retries. Check the network connection (and, when testing, "
            f"that the emulator at STORAGE_EMULATOR_HOST is running), then run the job again. "
            f"Last error: {getattr(exc, 'cause', None) or exc}"
        )
    return StoreError(f"The thumbnail job could not {what} {loc}: {exc}")


def _storage_errors():
    from google.api_core.exceptions import GoogleAPIError
    from requests.exceptions import RequestException

    return (GoogleAPIError, RequestException)


def list_names(loc: Location, missing_ok: bool = False) -> Iterator[str]:
    """Names of every object under ``loc``, relative to it; one paged listing, streamed.

    ``missing_ok``: a local directory that does not exist yet lists as empty (an output folder
    before the first run). A missing bucket is always an error.
    """
    if loc.scheme == "file":
        if not os.path.isdir(loc.path):
            if missing_ok and not os.path.exists(loc.path):
                return
            raise StoreError(f"The thumbnail job cannot list {loc}: it is not a directory.")
        for top, dirs, files in os.walk(loc.path):
            dirs.sort()
            rel = os.path.relpath(top, loc.path)
            for f in sorted(files):
                yield f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
        return
    prefix = f"{loc.path}/" if loc.path else ""
    try:
        # fields=: names only, which keeps each page of 1,000 small at archive scale.
        blobs = client().list_blobs(
            loc.bucket,
            prefix=prefix,
            fields="items(name),nextPageToken",
            retry=_retry(),
            timeout=TIMEOUT,
        )
        for blob in blobs:
            if not blob.name.endswith("/"):  # "folder" placeholders some tools create
                yield blob.name[len(prefix) :]
    except _storage_errors() as exc:
        raise _explain(exc, loc, "list") from exc


@dataclass(frozen=True)
class Listed:
    """What one listing of the output says about an object: the batch that wrote it (None: not
    written by this job), the renderer and kind it recorded; with ``detail``, its generation and
    MD5 (for `redo`)."""

    batch: str | None = None
    renderer: str | None = None
    kind: str | None = None
    generation: int = 0
    md5: str | None = None


def list_output(loc: Location, detail: bool = False) -> Iterator[tuple[str, Listed]]:
    """Every object under ``loc`` with what the job recorded on it (`Listed`; empty for objects
    the job did not write, and for every file of a local folder); one paged listing, streamed.
    ``detail`` adds each object's generation and MD5 to the listing (a few more bytes each)."""
    if loc.scheme == "file":
        for name in list_names(loc, missing_ok=True):
            if not name.rpartition("/")[2].startswith(TEMPORARY):
                yield name, Listed()
        return
    prefix = f"{loc.path}/" if loc.path else ""
    fields = "items(name,metadata,generation,md5Hash)" if detail else "items(name,metadata)"
    try:
        blobs = client().list_blobs(
            loc.bucket,
            prefix=prefix,
            fields=f"{fields},nextPageToken",
            retry=_retry(),
            timeout=TIMEOUT,
        )
        for blob in blobs:
            if not blob.name.endswith("/"):
                meta = blob.metadata or {}
                yield (
                    blob.name[len(prefix) :],
                    Listed(
                        meta.get(BATCH_KEY),
                        meta.get(RENDERER_KEY),
                        meta.get(KIND_KEY),
                        int(blob.generation or 0),
                        blob.md5_hash,
                    ),
                )
    except _storage_errors() as exc:
        raise _explain(exc, loc, "list") from exc


def local_path(loc: Location, name: str) -> Path:
    return Path(loc.key(name))


def fetch(loc: Location, name: str, dest: Path) -> Path:
    """A readable local copy of ``name``: the file itself for a local location (read in place,
    never opened for writing), else a download to ``dest``. FileNotFoundError if it is gone."""
    if loc.scheme == "file":
        path = local_path(loc, name)
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return path
    from google.api_core.exceptions import NotFound

    dest.parent.mkdir(parents=True, exist_ok=True)
    blob = client().bucket(loc.bucket).blob(loc.key(name))
    try:
        blob.download_to_filename(str(dest), retry=_retry(), timeout=TIMEOUT)
    except NotFound as exc:
        raise FileNotFoundError(loc.child(name)) from exc
    except _storage_errors() as exc:
        raise _explain(exc, loc, f"download {name} from") from exc
    return dest


def read(loc: Location, name: str) -> tuple[bytes | None, int]:
    """Content and generation of ``name`` (None and 0 if absent). Local files have generation 0."""
    if loc.scheme == "file":
        path = local_path(loc, name)
        return (path.read_bytes(), 0) if path.is_file() else (None, 0)
    from google.api_core.exceptions import NotFound

    blob = client().bucket(loc.bucket).blob(loc.key(name))
    try:
        data = blob.download_as_bytes(retry=_retry(), timeout=TIMEOUT)
    except NotFound:
        return None, 0
    except _storage_errors() as exc:
        raise _explain(exc, loc, "read") from exc
    return data, int(blob.generation or 0)


def md5_of(data: bytes) -> str:
    """An MD5 as Cloud Storage gives it (base64), for comparing a local file with a record."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def md5_of_file(loc: Location, name: str) -> str | None:
    """The MD5 (as `md5_of`) of the local file ``name`` under ``loc``; None if there is none."""
    try:
        with open(local_path(loc, name), "rb") as f:
            return base64.b64encode(hashlib.file_digest(f, "md5").digest()).decode()
    except OSError:
        return None


def _temporary(folder: Path) -> Path:
    """A fresh temporary file name in ``folder``: never taken from an object's name, so that it
    fits whatever the name's length."""
    return folder / f"{TEMPORARY}{uuid.uuid4().hex}.part"


def _inside(loc: Location, path: Path) -> None:
    """Make the folders of ``path``, checking that it lies inside the local output ``loc`` even
    through symbolic links; `NotInside` if it would not (nothing is made then)."""
    root = os.path.realpath(loc.path)

    def check(folder: Path) -> None:
        real = os.path.realpath(folder)
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            raise NotInside(f"{path} would be written in {real}, outside the output folder")

    Path(loc.path).mkdir(parents=True, exist_ok=True)  # the output folder itself, as configured
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check(existing)
    path.parent.mkdir(parents=True, exist_ok=True)
    check(path.parent)


def _preview_metadata(batch: str | None, renderer: str | None, kind: str | None) -> dict | None:
    meta = {
        k: v
        for k, v in ((BATCH_KEY, batch), (RENDERER_KEY, renderer), (KIND_KEY, kind))
        if v is not None
    }
    return meta or None


def create(
    loc: Location,
    name: str,
    data: bytes,
    content_type: str,
    batch: str | None = None,
    renderer: str | None = None,
    kind: str | None = None,
) -> bool:
    """Write ``name`` only if nothing is there yet; True if written, False if it already existed.
    ``batch``, ``renderer``, ``kind``: the batch that makes it, the renderer's version and what it
    shows, kept with the object in a bucket (`BATCH_KEY`, `RENDERER_KEY`, `KIND_KEY`).

    Either the whole object appears or none: a killed run never leaves half a preview behind.
    """
    if loc.scheme == "file":
        path = local_path(loc, name)
        _inside(loc, path)
        tmp = _temporary(path.parent)
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # atomic, and fails rather than replace an existing file
            return True
        except FileExistsError:
            return False
        except OSError:
            # A file system without hard links: check, then rename (atomic, not exclusive).
            if path.exists():
                return False
            os.replace(tmp, path)
            return True
        finally:
            tmp.unlink(missing_ok=True)
    # Generation 0 means "only if absent"; that also makes the retry safe: if a lost response hid
    # a successful upload, the retry meets the object and gets 412.
    return _upload(
        loc, name, data, content_type, 0, metadata=_preview_metadata(batch, renderer, kind)
    )


def matches(loc: Location, name: str, data: bytes, batch: str | None = None) -> bool:
    """Whether the object ``name`` holds exactly ``data`` and, in a bucket, was written by this
    job. After `create` found something there, this tells this job's own upload (a retry whose
    first answer was lost, a rerun) from another object at that name, which is kept as it is.

    One of the job's own previews whose batch is not ``batch`` (a batch that was killed before it
    wrote its report record, or another run's batch of the same file) is relabelled to ``batch``,
    whose record will report it: only its metadata changes, under generation preconditions,
    never its bytes.
    """
    if loc.scheme == "file":
        path = local_path(loc, name)
        try:
            return path.stat().st_size == len(data) and path.read_bytes() == data
        except OSError:
            return False
    from google.api_core.exceptions import PreconditionFailed

    try:
        blob = client().bucket(loc.bucket).get_blob(loc.key(name), retry=_retry(), timeout=TIMEOUT)
        if blob is None or blob.size != len(data):
            return False
        if blob.md5_hash:  # every object but composed ones has an MD5; compared, not downloaded
            same = blob.md5_hash == md5_of(data)
        else:
            same = blob.download_as_bytes(retry=_retry(), timeout=TIMEOUT) == data
        written_by = (blob.metadata or {}).get(BATCH_KEY)
        if not same or written_by is None:
            return False
        if batch and written_by != batch:
            blob.metadata = {**blob.metadata, BATCH_KEY: batch}
            try:
                blob.patch(
                    if_generation_match=blob.generation,
                    if_metageneration_match=blob.metageneration,
                    retry=_retry(),
                    timeout=TIMEOUT,
                )
            except PreconditionFailed:  # changed meanwhile: no longer known to be ours
                return False
        return True
    except _storage_errors() as exc:
        raise _explain(exc, loc, f"read {name} in") from exc


def swap(
    loc: Location,
    name: str,
    data: bytes,
    content_type: str,
    generation: int,
    md5: str,
    batch: str,
    renderer: str,
    kind: str,
) -> bool:
    """Replace one of the job's own previews, the version listed with ``generation`` and ``md5``,
    with ``data`` (a `redo`); False, and nothing changed, when the object there is no longer that
    version (someone else wrote it meanwhile), so an object the job did not make is never
    replaced. In a bucket the upload carries ``ifGenerationMatch``; in a folder the file is moved
    aside, checked, and only then replaced (or moved back)."""
    if loc.scheme == "gs":
        return _upload(
            loc, name, data, content_type, generation, _preview_metadata(batch, renderer, kind)
        )
    path = local_path(loc, name)
    _inside(loc, path)
    aside = _temporary(path.parent)
    try:
        os.rename(path, aside)  # atomic: from here on no one else can change what is checked
    except FileNotFoundError:
        return False
    if md5_of(aside.read_bytes()) != md5:
        with contextlib.suppress(FileExistsError):  # (if someone wrote one meanwhile, both stay)
            os.link(aside, path)  # not ours: back as it was
            aside.unlink()
        return False
    fresh = _temporary(path.parent)
    try:
        fresh.write_bytes(data)
        os.link(fresh, path)  # fails if someone wrote one meanwhile: theirs stays
        return True
    except FileExistsError:
        return False
    finally:
        fresh.unlink(missing_ok=True)
        aside.unlink(missing_ok=True)  # the old version, which was ours


def replace(
    loc: Location, name: str, data: bytes, content_type: str, generation: int | None = None
) -> bool:
    """Write ``name`` over the version read at ``generation`` (0: none; None: whatever is there);
    False if someone else wrote it meanwhile, so the caller can merge again, not lose an update.
    A local file is replaced whole (written aside, then renamed); the report's writers take
    `locked` around it."""
    if loc.scheme == "file":
        path = local_path(loc, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path.parent)
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True
    return _upload(loc, name, data, content_type, generation)


@contextlib.contextmanager
def locked(loc: Location, name: str) -> Iterator[None]:
    """Around a read-modify-write of the report: in a local folder an exclusive lock on the file
    ``name`` (the kernel drops it when its process dies, so a killed run never leaves it held);
    in a bucket nothing, since every write there carries a generation precondition instead."""
    if loc.scheme != "file":
        yield
        return
    import fcntl

    path = local_path(loc, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def append(
    loc: Location,
    name: str,
    data: bytes,
    first: bytes,
    content_type: str,
    generation: int,
    parts: str = "parts",
) -> bool:
    """Add ``data`` at the end of ``name`` as read at ``generation`` (0: absent, then it is made
    as ``first + data``), writing only ``data``; False, and nothing added, when ``name`` changed
    since (another run appended): read it again and retry. In a bucket the append is a
    server-side compose of the object and a part object made for it (removed afterwards), under
    preconditions on both generations, so a run uploads what it adds, not the whole report. The
    part is made in the folder ``parts``, where the report step removes those a killed run left.
    Either the whole append is there or none of it. A local file is rewritten aside and renamed
    into place; the caller holds `locked`."""
    if loc.scheme == "file":
        path = local_path(loc, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path.parent)
        with tmp.open("wb") as out:
            if path.is_file():
                with path.open("rb") as old:
                    while chunk := old.read(1 << 20):
                        out.write(chunk)
            else:
                out.write(first)
            out.write(data)
        os.replace(tmp, path)
        return True
    from google.api_core.exceptions import NotFound, PreconditionFailed

    if not generation:
        return _upload(loc, name, first + data, content_type, 0)
    bucket = client().bucket(loc.bucket)
    try:
        blob = bucket.get_blob(loc.key(name), retry=_retry(), timeout=TIMEOUT)
        if blob is None or blob.generation != generation:
            return False
        if (blob.component_count or 0) >= COMPOSE_LIMIT:  # rare: start a new composite
            try:
                whole = blob.download_as_bytes(
                    if_generation_match=generation, retry=_retry(), timeout=TIMEOUT
                )
            except PreconditionFailed:
                return False
            return _upload(loc, name, whole + data, content_type, generation)
        part = bucket.blob(loc.key(f"{parts}/{uuid.uuid4().hex}"))
        part.upload_from_string(
            data, content_type=content_type, if_generation_match=0, retry=_retry(), timeout=TIMEOUT
        )
        try:
            blob.content_type = content_type
            blob.compose(
                [blob, part],
                if_generation_match=generation,
                if_source_generation_match=[generation, part.generation],
                retry=_retry(),
                timeout=TIMEOUT,
            )
            return True
        except (PreconditionFailed, NotFound):  # NotFound: its part removed by another run
            return False
        finally:
            with contextlib.suppress(NotFound):  # made by this call: removed, whatever happened
                part.delete(if_generation_match=part.generation, retry=_retry(), timeout=TIMEOUT)
    except _storage_errors() as exc:
        raise _explain(exc, loc, f"append to {name} in") from exc


def remove(loc: Location, name: str) -> None:
    """Remove one of the job's own work files (a manifest, a batch's marker), if it is there."""
    if loc.scheme == "file":
        local_path(loc, name).unlink(missing_ok=True)
        return
    from google.api_core.exceptions import NotFound

    try:
        client().bucket(loc.bucket).blob(loc.key(name)).delete(retry=_retry(), timeout=TIMEOUT)
    except NotFound:
        pass
    except _storage_errors() as exc:
        raise _explain(exc, loc, f"remove {name} from") from exc


def _upload(
    loc: Location,
    name: str,
    data: bytes,
    content_type: str,
    generation: int | None,
    metadata: dict | None = None,
) -> bool:
    """One upload under a generation precondition; False when the precondition failed (412)."""
    from google.api_core.exceptions import PreconditionFailed

    blob = client().bucket(loc.bucket).blob(loc.key(name))
    blob.metadata = metadata
    try:
        blob.upload_from_string(
            data,
            content_type=content_type,
            if_generation_match=generation,
            retry=_retry(),
            timeout=TIMEOUT,
        )
    except PreconditionFailed:
        return False
    except _storage_errors() as exc:
        raise _explain(exc, loc, f"write {name} to") from exc
    return True
