"""The set-up chapter's roles tables cannot promise too little: a person whose needed permission
none of their roles grants stops the build (the {roles-table} directive, iam.yaml)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from microscopy_notebook.book import roles_table, terminal
from microscopy_notebook.paths import ROOT
from tests.book.test_build import _build


def test_every_person_in_iam_yaml_is_granted_what_they_need() -> None:
    roles, people = roles_table.load()
    assert set(people) == {"reader", "job-submitter", "batch-job", "maintainer"}
    for person in people.values():
        assert roles_table.ungranted(roles, person) == [], person.name


@pytest.mark.slow
def test_a_person_whose_roles_miss_a_needed_permission_fails_the_build(tmp_path: Path) -> None:
    data = yaml.safe_load(roles_table.IAM.read_text())
    data["people"]["batch-job"]["roles"].remove("roles/storage.bucketViewer")
    short = tmp_path / "iam-short.yaml"
    short.write_text(yaml.safe_dump(data))
    page = f"# Roles\n\n```{{roles-table}} batch-job\n:iam: {short}\n```\n"
    proc = _build(tmp_path, {"intro": page})
    assert proc.returncode != 0
    assert "needed but granted by none of" in proc.stdout + proc.stderr
    assert "storage.buckets.get" in proc.stdout + proc.stderr
    # and the same page with the real file builds, with the role in its table
    (tmp_path / "good").mkdir()
    good = _build(tmp_path / "good", {"intro": "# Roles\n\n```{roles-table} batch-job\n```\n"})
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    html = (tmp_path / "good" / "book" / "_build" / "html" / "intro.html").read_text()
    assert "roles/storage.bucketViewer" in html and "storage.buckets.get" in html


def test_publishing_needs_only_what_the_maintainers_roles_grant(
    emulator, gcs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nox -s publish` measured: a first publish, then one that replaces a page, patches a
    header and removes a stale page, all recorded as the maintainer's calls."""
    from microscopy_notebook.book import publish
    from microscopy_notebook.cloud import permissions
    from tests.book.test_publish import _site_tree

    bucket = f"roles-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(bucket)
    root = tmp_path / "html"
    _site_tree(root)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint_as("maintainer"))
    publish.publish(root, f"gs://{bucket}", log=lambda _: None)
    (root / "chapters" / "old.html").unlink()
    (root / "chapters" / "one.html").write_text("<html><body>new</body></html>")
    publish.publish(root, f"gs://{bucket}", log=lambda _: None)
    needed = permissions.recorded(emulator.calls.list(), "maintainer")
    assert {"storage.objects.create", "storage.objects.delete"} <= needed  # it did publish
    roles, people = roles_table.load()
    maintainer = people["maintainer"]
    granted = {p for r in maintainer.roles for p in roles[r]["permissions"]}
    assert needed <= granted, sorted(needed - granted)
    assert needed <= set(maintainer.needs), sorted(needed - set(maintainer.needs))


@pytest.mark.slow
def test_the_storage_notebook_needs_only_what_the_readers_roles_grant(tmp_path: Path) -> None:
    """The tutorial a reader runs in JupyterLab, executed on a fresh seeded emulator (the build
    takes notebooks from its execution cache, so its own emulator cannot be relied on to see
    them): every call it makes must be among the reader's needs, granted by the reader's roles."""
    import shutil
    import subprocess
    import sys

    from microscopy_notebook.cloud import permissions, samples
    from microscopy_notebook.cloud.emulator import Emulator

    notebook = ROOT / "book" / "notebooks" / "cloud-storage.md"
    shutil.copy(notebook, tmp_path / notebook.name)
    with Emulator() as emu:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in emu.env.items():
                patch.setenv(key, value)
            samples.seed()
        emu.calls.clear()
        env = emu.apply()
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("jupytext")),
                "--to",
                "ipynb",
                "--execute",
                notebook.name,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        needed = permissions.recorded(emu.calls.list())
    print(sorted(needed))
    roles, people = roles_table.load()
    reader = people["reader"]
    assert needed <= set(reader.needs), sorted(needed - set(reader.needs))
    assert roles_table.ungranted(roles, reader) == []


TERMINAL_PAGES = sorted(
    p for p in (ROOT / "book" / "chapters").glob("*.md") if terminal.blocks(p.read_text())
)


@pytest.mark.slow
@pytest.mark.parametrize("page", TERMINAL_PAGES, ids=lambda p: p.name)
def test_a_chapters_commands_need_only_what_its_persons_roles_grant(page: Path) -> None:
    """Each chapter's {terminal} commands, run as the build runs them on a fresh seeded emulator:
    every call they make must be among the needs of the person iam.yaml says runs that page."""
    import shutil

    from microscopy_notebook.cloud import permissions, samples
    from microscopy_notebook.cloud.emulator import Emulator

    _, people = roles_table.load()
    name = f"chapters/{page.name}"
    person = next((p for p in people.values() if name in p.pages), None)
    assert person is not None, f"{name}: name the person who runs it in iam.yaml's pages"
    found = terminal.blocks(page.read_text())
    with Emulator() as emu, pytest.MonkeyPatch.context() as patch:
        for key, value in emu.env.items():
            patch.setenv(key, value)
        samples.seed()
        emu.calls.clear()  # from here on, every call is the page's
        cwd = terminal.scratch(page, found)
        try:
            result = terminal.run([b.runnable for b in found], cwd)
        finally:
            shutil.rmtree(cwd, ignore_errors=True)
        assert result.ok, result.outputs[result.failed or 0][-2000:]
        needed = permissions.recorded(emu.calls.list())
    print(name, person.name, sorted(needed))
    assert needed <= set(person.needs), (
        f"{name} needed {sorted(needed - set(person.needs))}, which iam.yaml does not list for "
        f"{person.name}"
    )
