"""Publishing the site: the planning rules on their own, then real publishes to the emulator."""

from __future__ import annotations

import base64
import hashlib
import posixpath
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bs4 import BeautifulSoup

from microscopy_notebook import book
from microscopy_notebook.book import publish
from microscopy_notebook.cloud.emulator import Emulator

PNG = base64.b64decode(  # a real 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
IMAGE = "_images/" + hashlib.sha256(PNG).hexdigest() + ".png"
PAGE = """<!DOCTYPE html><html><head>
<link rel="stylesheet" href="{up}_static/style.css?v=1a2b3c4d">
<script src="{up}_static/search.js"></script></head>
<body><a href="{up}index.html">home</a><img src="{up}{image}"></body></html>"""

# What a build leaves next to the site: none of it is published.
BUILD_INTERNALS = {
    ".buildinfo": "# Sphinx build info version 1\n",
    ".doctrees/environment.pickle": "pickle",
    ".jupyter_cache/global.db": "sqlite",
    "jupyter_execute/notebooks/demo.ipynb": "{}",
    "_static/locales/de/LC_MESSAGES/booktheme.mo": "catalogue",
    "_static/locales/de/LC_MESSAGES/booktheme.po": "catalogue",
    "_static/webpack-macros.html": "{% macro x() %}{% endmacro %}",
    "chapters/.DS_Store": "finder",
}


def _site_tree(root: Path) -> dict[str, bytes]:
    """A small built site: pages, a versioned and an unversioned asset, an image, sources."""
    files = {
        "index.html": PAGE.format(up="", image=IMAGE),
        "chapters/one.html": PAGE.format(up="../", image=IMAGE),
        "chapters/old.html": PAGE.format(up="../", image=IMAGE),
        "_static/style.css": "body { color: #222; }",
        "_static/search.js": "console.log('search');",
        "_sources/chapters/one.md": "# One\n",
        "_sources/notebooks/demo.ipynb": '{"cells": [], "nbformat": 4, "nbformat_minor": 5}',
        "searchindex.js": "Search.setIndex({});",
        "objects.inv": "# Sphinx inventory version 2\n",
        **BUILD_INTERNALS,
    }
    out = {}
    for name, text in files.items():
        data = text.encode()
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        out[name] = data
    (root / IMAGE).parent.mkdir(parents=True, exist_ok=True)
    (root / IMAGE).write_bytes(PNG)
    out[IMAGE] = PNG
    return {k: v for k, v in out.items() if k not in BUILD_INTERNALS}


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "html"
    return root, _site_tree(root)


@pytest.fixture
def bucket(gcs) -> str:
    name = f"site-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(name)
    return name


def _objects(gcs, bucket: str, prefix: str = "") -> dict[str, object]:
    return {b.name[len(prefix) :]: b for b in gcs.list_blobs(bucket, prefix=prefix or None)}


def _quiet(_: str) -> None:
    pass


# --- the rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("gs://nexuslims_example-guide", ("nexuslims_example-guide", "")),
        ("gs://nexuslims_example-guide/", ("nexuslims_example-guide", "")),
        ("gs://guide.example.org/2026/", ("guide.example.org", "2026/")),
        ("gs://b1b/a/b", ("b1b", "a/b/")),
    ],
)
def test_targets(target: str, expected: tuple[str, str]) -> None:
    assert publish.parse_target(target) == expected


@pytest.mark.parametrize(
    "target",
    ["nexuslims_example-guide", "s3://b/x", "gs://B", "gs://b1b/a//b", "gs://b1b/../x", "gs://"],
)
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(ValueError):
        publish.parse_target(target)


def test_build_internals_are_excluded_and_the_site_is_not() -> None:
    for path in BUILD_INTERNALS:
        assert publish.excluded(path), path
    for path in (
        "index.html",
        "_sources/notebooks/cloud-storage.ipynb",
        "_static/copybutton.js",
        "_static/vendor/fontawesome/webfonts/fa-solid-900.woff2",
        "objects.inv",
        IMAGE,
    ):
        assert publish.excluded(path) is None, path


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("index.html", "text/html; charset=utf-8", publish.REVALIDATE),
        ("chapters/one.html", "text/html; charset=utf-8", publish.REVALIDATE),
        ("searchindex.js", "text/javascript; charset=utf-8", publish.REVALIDATE),
        ("_sources/notebooks/demo.ipynb", "application/x-ipynb+json", publish.REVALIDATE),
        ("_sources/chapters/one.md", "text/markdown; charset=utf-8", publish.REVALIDATE),
        (IMAGE, "image/png", publish.IMMUTABLE),
        (
            "_static/mystnb.11b39860a7a0cbfd473a3ad8a317855267ff0bd372.css",
            "text/css; charset=utf-8",
            publish.IMMUTABLE,
        ),
        ("_static/style.css", "text/css; charset=utf-8", publish.ASSET),
        ("_static/vendor/fontawesome/webfonts/fa-solid-900.woff2", "font/woff2", publish.ASSET),
        ("_static/images/logo_jupyterhub.svg", "image/svg+xml", publish.ASSET),
    ],
)
def test_headers_by_kind_of_file(path: str, content_type: str, cache: str) -> None:
    headers = publish.headers_for(path)
    assert (headers.content_type, headers.cache_control) == (content_type, cache)
    assert (headers.content_disposition is not None) == path.startswith("_sources/")


def test_an_asset_every_page_links_with_a_version_is_cached_for_a_year(site) -> None:
    root, _ = site
    assert publish.versioned_assets(root, ["index.html", "chapters/one.html"]) == {
        "_static/style.css"
    }
    (root / "chapters" / "two.html").write_text('<link href="../_static/style.css">')
    assert publish.versioned_assets(root, ["index.html", "chapters/two.html"]) == set()


def test_plan_compares_md5_and_headers_and_keeps_what_it_did_not_upload() -> None:
    headers = publish.headers_for("a.html")
    local = [
        publish.LocalFile("a.html", "md5-a", 1, headers),
        publish.LocalFile("b.html", "md5-b", 1, headers),
        publish.LocalFile("c.html", "md5-c", 1, headers),
    ]
    ours = {publish.MARKER[0]: publish.MARKER[1]}
    remote = [
        publish.RemoteObject("p/a.html", "md5-a", 1, 1, headers, ours),
        publish.RemoteObject("p/b.html", "old", 1, 1, headers, ours),
        publish.RemoteObject("p/c.html", "md5-c", 1, 1, publish.headers_for("c.css"), ours),
        publish.RemoteObject("p/gone.html", "x", 1, 1, headers, ours),
        publish.RemoteObject("p/notes.txt", "x", 1, 1, headers, {}),
    ]
    plan = publish.plan(local, remote, "b", "p/")
    assert [f.path for f in plan.unchanged] == ["a.html"]
    assert [f.path for f, _ in plan.upload] == ["b.html"]
    assert [f.path for f, _ in plan.update] == ["c.html"]
    assert [o.name for o in plan.remove] == ["p/gone.html"]
    assert [o.name for o in plan.foreign] == ["p/notes.txt"]


# --- real publishes, to the emulator -------------------------------------------------------------
def test_the_bucket_holds_the_site_served_right(site, gcs, bucket: str) -> None:
    root, files = site
    lines: list[str] = []
    plan = publish.publish(root, f"gs://{bucket}", log=lines.append)
    objects = _objects(gcs, bucket)
    assert set(objects) == set(files)  # and nothing a build keeps for itself
    for name, blob in objects.items():
        assert blob.download_as_bytes() == files[name], name
        expected = publish.headers_for(name, {"_static/style.css"})
        assert blob.content_type == expected.content_type, name
        assert blob.cache_control == expected.cache_control, name
        assert blob.content_disposition == expected.content_disposition, name
    assert objects["_static/style.css"].cache_control == publish.IMMUTABLE  # linked with ?v=
    assert objects["_static/search.js"].cache_control == publish.ASSET
    assert objects["_sources/notebooks/demo.ipynb"].content_disposition == (
        'attachment; filename="demo.ipynb"'
    )
    assert len(plan.upload) == len(files)
    assert lines[0].startswith(f"gs://{bucket}/: {len(files)} uploaded, 0 updated")


def test_a_second_publish_uploads_nothing(site, gcs, bucket: str) -> None:
    root, files = site
    publish.publish(root, f"gs://{bucket}", log=_quiet)
    before = {n: (b.generation, b.metageneration) for n, b in _objects(gcs, bucket).items()}
    lines: list[str] = []
    plan = publish.publish(root, f"gs://{bucket}", log=lines.append)
    assert (plan.upload, plan.update, plan.remove) == ([], [], [])
    assert len(plan.unchanged) == len(files)
    assert lines == [
        f"gs://{bucket}/: 0 uploaded, 0 updated (headers only), {len(files)} unchanged, 0 removed"
    ]
    after = {n: (b.generation, b.metageneration) for n, b in _objects(gcs, bucket).items()}
    assert after == before  # the server agrees: no object was written


def test_a_stale_page_is_removed_and_a_changed_one_replaced(site, gcs, bucket: str) -> None:
    root, files = site
    publish.publish(root, f"gs://{bucket}/guide", log=_quiet)
    (root / "chapters" / "old.html").unlink()
    (root / "chapters" / "one.html").write_text("<html><body>new</body></html>")
    lines: list[str] = []
    plan = publish.publish(root, f"gs://{bucket}/guide", log=lines.append)
    assert [f.path for f, _ in plan.upload] == ["chapters/one.html"]
    assert [o.name for o in plan.remove] == ["guide/chapters/old.html"]
    objects = _objects(gcs, bucket, "guide/")
    assert set(objects) == set(files) - {"chapters/old.html"}
    assert objects["chapters/one.html"].download_as_bytes() == b"<html><body>new</body></html>"
    assert "  remove  guide/chapters/old.html" in lines[0].splitlines()


def test_only_the_target_prefix_and_only_our_objects_are_touched(site, gcs, bucket: str) -> None:
    root, files = site
    publish.publish(root, f"gs://{bucket}/guide-2025", log=_quiet)  # a neighbour: same start
    gcs.bucket(bucket).blob("guide/notes.txt").upload_from_string(b"kept")  # someone else's
    plan = publish.publish(root, f"gs://{bucket}/guide", log=_quiet)
    assert [o.name for o in plan.foreign] == ["guide/notes.txt"]
    assert set(_objects(gcs, bucket, "guide/")) == set(files) | {"notes.txt"}
    assert set(_objects(gcs, bucket, "guide-2025/")) == set(files)


def test_changed_headers_are_patched_without_an_upload(site, gcs, bucket: str) -> None:
    root, _ = site
    publish.publish(root, f"gs://{bucket}", log=_quiet)
    blob = gcs.bucket(bucket).get_blob("index.html")
    generation = blob.generation
    blob.cache_control = "public, max-age=86400"  # as an earlier publish or a person left it
    blob.patch()
    plan = publish.publish(root, f"gs://{bucket}", log=_quiet)
    assert ([f.path for f, _ in plan.update], plan.upload) == (["index.html"], [])
    blob = gcs.bucket(bucket).get_blob("index.html")
    assert (blob.cache_control, blob.generation) == (publish.REVALIDATE, generation)


def test_a_dry_run_changes_nothing(site, gcs, bucket: str) -> None:
    root, files = site
    lines: list[str] = []
    plan = publish.publish(root, f"gs://{bucket}", dry_run=True, log=lines.append)
    assert len(plan.upload) == len(files)
    assert lines[0].startswith(f"gs://{bucket}/: {len(files)} would be uploaded")
    assert _objects(gcs, bucket) == {}


def test_a_failed_upload_fails_the_publish_and_removes_nothing(
    site, gcs, bucket: str, emulator: Emulator
) -> None:
    root, _ = site
    publish.publish(root, f"gs://{bucket}", log=_quiet)
    (root / "chapters" / "old.html").unlink()
    (root / "chapters" / "one.html").write_text("<html><body>new</body></html>")
    emulator.faults.add(
        lambda method, path: method == "POST" and path.startswith("/upload/"), "status:403"
    )  # not retried: the client gives up at once
    with pytest.raises(RuntimeError, match="chapters/one.html: Forbidden"):
        publish.publish(root, f"gs://{bucket}", log=_quiet)
    assert "chapters/old.html" in _objects(gcs, bucket)  # still linked by the old pages


def test_the_command_line(site, gcs, bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    root, files = site
    assert publish.main([f"gs://{bucket}", "--site", str(root)]) == 0
    assert capsys.readouterr().out.startswith(f"gs://{bucket}/: {len(files)} uploaded")
    with pytest.raises(SystemExit) as exit_:
        publish.main(["not-a-bucket", "--site", str(root)])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        publish.main([f"gs://{bucket}", "--site", str(root / "chapters")])  # no index.html


# --- the real site -------------------------------------------------------------------------------
def test_publishing_the_built_site(gcs, bucket: str) -> None:
    site = book.HTML
    if not (site / "index.html").exists():
        pytest.skip("no built site: `nox -s site` builds it before its tests")
    files = {f.path: f for f in publish.site_files(site)}
    plan = publish.publish(site, f"gs://{bucket}", log=_quiet)
    objects = _objects(gcs, bucket)
    assert set(objects) == set(files)
    for name, blob in objects.items():
        assert blob.md5_hash == files[name].md5, name
        assert (blob.content_type, blob.cache_control) == (
            files[name].headers.content_type,
            files[name].headers.cache_control,
        ), name
    # Every file the site is made of has a real type; only objects.inv is opaque data.
    assert [n for n, f in files.items() if f.headers.content_type == publish.FALLBACK_TYPE] == [
        "objects.inv"
    ]
    # The pages and the downloads a reader needs are there, and the build's own files are not.
    for needed in (
        "index.html",
        "intro.html",
        "search.html",
        "searchindex.js",
        "404.html",
        "_sources/notebooks/cloud-storage.ipynb",
        "_sources/intro.md",
    ):
        assert needed in objects, needed
    everything = [p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()]
    assert {p for p in everything if publish.excluded(p)} == set(everything) - set(files)
    assert not [n for n in objects if n.startswith(".") or "/." in n]
    linked = set()  # and no page links to a file that is left out
    for page in (n for n in files if n.endswith(".html")):
        soup = BeautifulSoup((site / page).read_text(), "html.parser")
        for tag in soup.find_all(["a", "link", "script", "img"]):
            url = urlsplit(tag.get("href") or tag.get("src") or "")
            if url.path and not (url.scheme or url.netloc or url.path.startswith("/")):
                linked.add(posixpath.normpath(posixpath.join(posixpath.dirname(page), url.path)))
    assert linked <= set(files), linked - set(files)
    # The pages are revalidated; the theme's versioned files are kept for a year.
    assert all(
        f.headers.cache_control == publish.REVALIDATE
        for n, f in files.items()
        if n.endswith(".html")
    )
    assert files["_static/scripts/pydata-sphinx-theme.js"].headers.cache_control == (
        publish.IMMUTABLE
    )
    assert len(plan.upload) == len(files)
    again = publish.publish(site, f"gs://{bucket}", log=_quiet)
    assert (again.upload, again.update, again.remove) == ([], [], [])
