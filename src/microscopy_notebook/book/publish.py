"""Publish the built site to a Cloud Storage bucket: ``nox -s publish -- gs://BUCKET[/prefix]``.

The bucket (or the prefix in it) ends up holding exactly the site's files, each with the
``Content-Type`` a browser needs and a ``Cache-Control`` that suits it: pages are revalidated on
every visit, so readers see a new version at once; assets whose address changes when their content
does are cached for a year. What the build keeps for itself (Sphinx's environment, the execution
cache, hidden files, translation catalogues) is never uploaded.

Planning is pure (`site_files`, `plan`): files and a bucket listing in, a `Plan` out. `publish`
lists the bucket, plans, and carries the plan out with ``google-cloud-storage``:

* a file whose MD5 and headers match its object is left alone, so publishing twice uploads nothing;
* assets first, then pages, then removals, so a reader never meets a page whose assets are missing;
* every write is conditional on the generation it listed (or on the object not existing), which
  makes retries safe and stops two publishes from overwriting each other unnoticed;
* only objects that a publish uploaded (they carry `MARKER`) are ever removed: anything else under
  the target is reported and left alone.

Run ``python -m microscopy_notebook.book.publish --help`` for the command line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import mimetypes
import re
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from microscopy_notebook import book

MARKER = ("published-by", "microscopy-notebook")  # custom metadata on every object we upload
WORKERS = 8  # parallel requests: a site is a few hundred small files

# --- what is uploaded --------------------------------------------------------------------------
# A path is left out when one of its parts matches; each rule says why.
EXCLUDED: tuple[tuple[str, str], ...] = (
    (".*", "hidden: .buildinfo, .doctrees, .jupyter_cache, OS files"),
    ("jupyter_execute", "executed notebooks; the site's are in _sources/"),
    ("locales", "the theme's translations, read while building"),
    ("*.po", "a translation catalogue, read while building"),
    ("*.mo", "a translation catalogue, read while building"),
    ("*webpack-macros.html", "a template of the theme, read while building"),
    ("__pycache__", "Python bytecode"),
)

# --- how each file is served -------------------------------------------------------------------
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json; charset=utf-8",  # source maps, fetched by browser dev tools
    ".json": "application/json; charset=utf-8",
    ".ipynb": "application/x-ipynb+json",  # the "download .ipynb" button
    ".md": "text/markdown; charset=utf-8",  # the "download .md" button
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/vnd.microsoft.icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".pdf": "application/pdf",
    ".inv": "application/octet-stream",  # objects.inv: zlib data, read by other books' intersphinx
}
FALLBACK_TYPE = "application/octet-stream"

# Cache-Control, by kind of file (see `cache_kind`).
# Pages: kept, but checked with the server (a quick 304) before every use.
REVALIDATE = "no-cache"
# Files whose address changes with their content: a year.
IMMUTABLE = "public, max-age=31536000, immutable"
# Files named the same from one version to the next, rarely changed: an hour.
ASSET = "public, max-age=3600"
# Files that keep their name while their content follows the pages: as pages.
FOLLOW_PAGES = {"searchindex.js", "objects.inv", "sitemap.xml", "robots.txt"}
SOURCES = "_sources/"  # the download buttons' .md and .ipynb files
# Names holding a content hash: _images/<sha256>.png, mystnb.<hash>.css
HASHED_NAME = re.compile(r"(^|[._-])[0-9a-f]{16,}([._-]|$)")
VERSION_QUERY = re.compile(r"(^|&)(v|digest)=[0-9A-Za-z]+")  # Sphinx's ?v=<crc>, the theme's digest


@dataclass(frozen=True)
class Headers:
    content_type: str
    cache_control: str
    content_disposition: str | None = None


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative to the site, with "/"
    md5: str  # base64, as Cloud Storage reports md5Hash
    size: int
    headers: Headers


@dataclass(frozen=True)
class RemoteObject:
    name: str
    md5: str | None
    generation: int
    metageneration: int
    headers: Headers
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return self.metadata.get(MARKER[0]) == MARKER[1]


@dataclass
class Plan:
    """What a publish does; every list is sorted by object name."""

    bucket: str
    prefix: str  # "" or ending with "/"
    upload: list[tuple[LocalFile, RemoteObject | None]] = field(default_factory=list)
    update: list[tuple[LocalFile, RemoteObject]] = field(default_factory=list)  # headers only
    unchanged: list[LocalFile] = field(default_factory=list)
    remove: list[RemoteObject] = field(default_factory=list)
    foreign: list[RemoteObject] = field(default_factory=list)  # not ours, not in the site: kept

    def name(self, path: str) -> str:
        return self.prefix + path

    @property
    def changes(self) -> int:
        return len(self.upload) + len(self.update) + len(self.remove)


def parse_target(target: str) -> tuple[str, str]:
    """``gs://BUCKET[/prefix]`` as (bucket, prefix), the prefix empty or ending with ``/``."""
    match = re.fullmatch(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/.*)?", target)
    if not match:
        raise ValueError(f"not a bucket address: {target!r} (expected gs://BUCKET[/prefix])")
    prefix = (match.group(2) or "").strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"not a clean prefix: {prefix!r}")
    return match.group(1), prefix + "/" if prefix else ""


def excluded(path: str) -> str | None:
    """Why ``path`` (relative to the site) is not uploaded, or None when it is."""
    for part in PurePosixPath(path).parts:
        for pattern, why in EXCLUDED:
            if PurePosixPath(part).match(pattern):
                return why
    return None


def content_type(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or FALLBACK_TYPE


def cache_kind(path: str, versioned: set[str] = frozenset()) -> str:
    """``page``, ``immutable`` or ``asset``: how long a browser or CDN may keep ``path``.

    ``versioned`` holds the files that every page links with a content version in the query
    (Sphinx's ``?v=``, the theme's ``?digest=``): a new version gets a new address, as a hashed
    name does.
    """
    name = PurePosixPath(path).name
    if path.endswith(".html") or path in FOLLOW_PAGES or path.startswith(SOURCES):
        return "page"
    if HASHED_NAME.search(PurePosixPath(name).stem) or path in versioned:
        return "immutable"
    return "asset"


CACHE_CONTROL = {"page": REVALIDATE, "immutable": IMMUTABLE, "asset": ASSET}


def headers_for(path: str, versioned: set[str] = frozenset()) -> Headers:
    disposition = None
    if path.startswith(SOURCES):  # the download buttons: save the file, do not show it
        disposition = f'attachment; filename="{PurePosixPath(path).name}"'
    return Headers(content_type(path), CACHE_CONTROL[cache_kind(path, versioned)], disposition)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.urls.append(value)


def versioned_assets(site: Path, pages: Iterable[str]) -> set[str]:
    """The files that every reference in ``pages`` links with a version query."""
    with_version: set[str] = set()
    without: set[str] = set()
    for page in pages:
        parser = _Links()
        parser.feed((site / page).read_text(encoding="utf-8", errors="replace"))
        base = PurePosixPath(page).parent
        for url in parser.urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or not parts.path:
                continue
            target = _normalise(base / parts.path)
            if target is None:
                continue
            (with_version if VERSION_QUERY.search(parts.query) else without).add(target)
    return with_version - without


def _normalise(path: PurePosixPath) -> str | None:
    out: list[str] = []
    for part in path.parts:
        if part == "..":
            if not out:
                return None
            out.pop()
        elif part not in (".", ""):
            out.append(part)
    return "/".join(out)


def md5_base64(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def site_files(site: Path) -> list[LocalFile]:
    """Every file of ``site`` that is published, with its MD5 and the headers it is served with."""
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site} holds no built site (no index.html): build it first")
    paths = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    paths = [p for p in paths if excluded(p) is None]
    versioned = versioned_assets(site, [p for p in paths if p.endswith(".html")])
    return [
        LocalFile(p, md5_base64(site / p), (site / p).stat().st_size, headers_for(p, versioned))
        for p in paths
    ]


def plan(
    files: Iterable[LocalFile], remote: Iterable[RemoteObject], bucket: str, prefix: str = ""
) -> Plan:
    """What to upload, update, leave and remove so that ``gs://bucket/prefix`` holds ``files``."""
    result = Plan(bucket, prefix)
    existing = {o.name: o for o in remote}
    wanted = set()
    for f in sorted(files, key=lambda f: f.path):
        name = result.name(f.path)
        wanted.add(name)
        there = existing.get(name)
        if there is None or there.md5 != f.md5:
            result.upload.append((f, there))
        elif there.headers != f.headers or not there.ours:
            result.update.append((f, there))
        else:
            result.unchanged.append(f)
    for name in sorted(set(existing) - wanted):
        (result.remove if existing[name].ours else result.foreign).append(existing[name])
    return result


# --- carrying it out ---------------------------------------------------------------------------
def list_remote(client, bucket: str, prefix: str) -> list[RemoteObject]:
    return [
        RemoteObject(
            name=blob.name,
            md5=blob.md5_hash,
            generation=int(blob.generation),
            metageneration=int(blob.metageneration or 1),
            headers=Headers(
                blob.content_type or "", blob.cache_control or "", blob.content_disposition or None
            ),
            metadata=dict(blob.metadata or {}),
        )
        for blob in client.list_blobs(bucket, prefix=prefix or None)
    ]


def _blob(bucket, name: str, headers: Headers):
    blob = bucket.blob(name)
    blob.cache_control = headers.cache_control
    blob.content_disposition = headers.content_disposition
    blob.metadata = {MARKER[0]: MARKER[1]}
    return blob


def execute(the_plan: Plan, site: Path, client, workers: int = WORKERS) -> list[str]:
    """Carry out ``the_plan``; returns the errors (empty when every step worked)."""
    bucket = client.bucket(the_plan.bucket)
    errors: list[str] = []

    def upload(item: tuple[LocalFile, RemoteObject | None]) -> None:
        f, there = item
        blob = _blob(bucket, the_plan.name(f.path), f.headers)
        blob.upload_from_filename(
            str(site / f.path),
            content_type=f.headers.content_type,
            if_generation_match=there.generation if there else 0,
        )

    def update(item: tuple[LocalFile, RemoteObject]) -> None:
        f, there = item
        blob = _blob(bucket, there.name, f.headers)
        blob.content_type = f.headers.content_type
        blob.patch(
            if_generation_match=there.generation, if_metageneration_match=there.metageneration
        )

    def remove(there: RemoteObject) -> None:
        bucket.blob(there.name).delete(if_generation_match=there.generation)

    assets = [i for i in the_plan.upload if not i[0].path.endswith(".html")]
    pages = [i for i in the_plan.upload if i[0].path.endswith(".html")]
    # Assets before the pages that use them; removals last, once no new page links them.
    steps: list[tuple[Callable, list, Callable[[object], str]]] = [
        (upload, assets, lambda i: i[0].path),
        (update, the_plan.update, lambda i: i[0].path),
        (upload, pages, lambda i: i[0].path),
        (remove, the_plan.remove, lambda o: o.name),
    ]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for action, items, label in steps:
            futures = [(label(item), pool.submit(action, item)) for item in items]
            for what, future in futures:
                try:
                    future.result()
                # any failure is reported with its object, and the publish then fails
                except Exception as err:  # noqa: BLE001
                    errors.append(f"{what}: {type(err).__name__}: {err}")
            if errors:
                break  # never remove anything after a failed upload
    return errors


def summary(the_plan: Plan, dry_run: bool = False) -> str:
    target = f"gs://{the_plan.bucket}/{the_plan.prefix}"
    verb = "would be " if dry_run else ""
    lines = [
        (
            f"{target}: {len(the_plan.upload)} {verb}uploaded, {len(the_plan.update)} "
            f"{verb}updated (headers only), {len(the_plan.unchanged)} unchanged, "
            f"{len(the_plan.remove)} {verb}removed"
        )
    ]
    lines += [
        f"  upload  {f.path}  ({f.headers.content_type}; {f.headers.cache_control})"
        for f, _ in the_plan.upload
    ]
    lines += [
        f"  update  {f.path}  ({f.headers.content_type}; {f.headers.cache_control})"
        for f, _ in the_plan.update
    ]
    lines += [f"  remove  {o.name}" for o in the_plan.remove]
    lines += [
        f"  kept    {o.name}  (not uploaded by a publish: left alone)" for o in the_plan.foreign
    ]
    return "\n".join(lines)


def publish(
    site: Path, target: str, client=None, dry_run: bool = False, log: Callable[[str], None] = print
) -> Plan:
    """Make ``target`` hold the site at ``site``; raises RuntimeError if any step failed."""
    bucket, prefix = parse_target(target)
    files = site_files(site)
    if client is None:
        from google.cloud import storage

        client = storage.Client()
    the_plan = plan(files, list_remote(client, bucket, prefix), bucket, prefix)
    if not dry_run and the_plan.changes:
        errors = execute(the_plan, site, client)
        if errors:
            log(summary(the_plan))
            raise RuntimeError(
                "publish failed, the bucket holds part of the new site:\n  " + "\n  ".join(errors)
            )
    log(summary(the_plan, dry_run))
    return the_plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="gs://BUCKET or gs://BUCKET/prefix")
    parser.add_argument(
        "--site", type=Path, default=book.HTML, help=f"the built site (default: {book.HTML})"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)
    try:
        publish(args.site, args.target, dry_run=args.dry_run)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
