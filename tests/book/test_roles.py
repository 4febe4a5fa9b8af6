"""The roles tables promise neither too little nor too much, and each person's code runs with
exactly their grants: the {roles-table} directive fails the build on a need no grant covers, on a
grant wider than the measured calls (unless iam.yaml says why), and on a grant that breaks the
guide's rules; and the tests run the chapters, the storage tutorial and `nox -s publish` with the
storage emulator's front refusing every call outside the person's grants, as Cloud Storage would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from microscopy_notebook.book import terminal
from microscopy_notebook.cloud import iam, permissions, samples
from microscopy_notebook.cloud.emulator import PROJECT, Emulator
from microscopy_notebook.paths import ROOT
from tests.book.test_build import _build

# The seeded emulator's buckets, by iam.yaml's kinds: what the book's commands name.
SEEDED = {
    "project": f"projects/{PROJECT}",
    "raw-data": f"buckets/{samples.BUCKET}",
    "output": f"buckets/{samples.OUTPUT_BUCKET}",
    "scratch": f"buckets/{samples.SCRATCH_BUCKET}",
    "site": "buckets/nexuslims_example-guide",
}


def as_person(emu: Emulator, name: str, places: dict[str, str] = SEEDED) -> iam.Person:
    """From now on the emulator's anonymous calls (gcloud's, gsutil's, the Python client's) are
    ``name``'s: refused outside their grants on ``places``."""
    model = iam.load()
    person = model.people[name]
    emu.policies[""] = iam.policy(model, person, places, f"{name}@example.org")
    return person


def test_every_person_is_granted_what_they_need_and_no_more() -> None:
    model = iam.load()
    assert {"reader", "uploader", "job-submitter", "batch-job", "coordinator"} <= set(model.people)
    for person in model.people.values():
        assert iam.problems(model, person) == [], person.name


def test_the_rules_hold_whatever_the_measurements() -> None:
    """No storage role project-wide and no Storage Admin but the maintainer's; read-only raw
    data for everyone but the uploader; Service Account User on one account only."""
    model = iam.load()
    for person in model.people.values():
        for grant in person.grants:
            storage = any(p.startswith("storage.") for p in model.permissions(grant.role))
            if person.name != "maintainer":
                assert grant.role != "roles/storage.admin", person.name
                assert not (grant.at == "project" and storage), (person.name, grant)
            if grant.role == "roles/iam.serviceAccountUser":
                assert model.resources[grant.at]["type"] == "service-account", person.name
            if grant.at == "raw-data" and person.name != "uploader":
                assert grant.role in ("roles/storage.objectViewer", "roles/storage.bucketViewer")
    reader = model.people["reader"]
    wider = iam.Person(
        reader.name,
        reader.title,
        (*reader.grants, iam.Grant("raw-data", "roles/storage.objectUser")),
        reader.needs,
    )
    assert any("read-only" in p for p in iam.rule_breaks(model, wider))
    submitter = model.people["job-submitter"]
    old = iam.Person(  # the old guide: Service Account User in the project
        submitter.name,
        submitter.title,
        (*submitter.grants, iam.Grant("project", "roles/iam.serviceAccountUser")),
        submitter.needs,
    )
    assert any("every service account" in p for p in iam.rule_breaks(model, old))


@pytest.mark.slow
def test_a_table_that_promises_too_little_or_too_much_fails_the_build(tmp_path: Path) -> None:
    data = yaml.safe_load(iam.IAM.read_text())
    grants = data["people"]["batch-job"]["grants"]
    grants.remove(
        next(g for g in grants if g["role"] == "roles/storage.bucketViewer" and g["at"] == "output")
    )
    short = tmp_path / "iam-short.yaml"
    short.write_text(yaml.safe_dump(data))
    data = yaml.safe_load(iam.IAM.read_text())
    data["people"]["reader"]["grants"].append({"at": "output", "role": "roles/storage.admin"})
    wide = tmp_path / "iam-wide.yaml"
    wide.write_text(yaml.safe_dump(data))
    page = (
        f"# Roles\n\n```{{roles-table}} batch-job\n:iam: {short}\n```\n\n"
        f"```{{roles-table}} reader\n:iam: {wide}\n```\n"
    )
    proc = _build(tmp_path, {"intro": page})
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "storage.buckets.get on output" in said  # too little
    assert re.search(
        r"roles/storage.admin on output also grants [\w., ]*storage.buckets.delete", said
    )
    assert "only the site's maintainer may hold Storage Admin" in said
    # and the same page with the real file builds, with the grants in its table
    (tmp_path / "good").mkdir()
    good = _build(tmp_path / "good", {"intro": "# Roles\n\n```{roles-table} batch-job\n```\n"})
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    html = (tmp_path / "good" / "book" / "_build" / "html" / "intro.html").read_text()
    assert "roles/storage.bucketViewer" in html and "storage.buckets.get" in html
    assert "the output bucket" in html and "gs://nexuslims_example-joboutput" in html


def test_publishing_runs_with_exactly_the_maintainers_grants(
    emulator, gcs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nox -s publish` measured: a first publish, then one that replaces a page, patches a
    header and removes a stale page, all as the maintainer, with their grants in force."""
    from microscopy_notebook.book import publish
    from tests.book.test_publish import _site_tree

    bucket = f"roles-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(bucket)
    root = tmp_path / "html"
    _site_tree(root)
    model = iam.load()
    maintainer = model.people["maintainer"]
    where = {"project": f"projects/{PROJECT}", "site": f"buckets/{bucket}"}
    emulator.policies["maintainer"] = iam.policy(model, maintainer, where, "maintainer@example.org")
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint_as("maintainer"))
        publish.publish(root, f"gs://{bucket}", log=lambda _: None)
        (root / "chapters" / "old.html").unlink()
        (root / "chapters" / "one.html").write_text("<html><body>new</body></html>")
        # A header that is not the one publish gives (an older release's, say): patched, not
        # uploaded again. Changed by `gcs`, made before the maintainer's endpoint was set.
        stale = gcs.bucket(bucket).get_blob("index.html")
        stale.cache_control = "public, max-age=60"
        stale.patch()
        plan = publish.publish(root, f"gs://{bucket}", log=lambda _: None)
        assert [f.path for f, _ in plan.update] == ["index.html"]
    finally:
        emulator.policies.pop("maintainer", None)
    calls = [c for c in emulator.calls.list() if c.who == "maintainer"]
    assert not [c for c in calls if c.refused and c.resource == f"buckets/{bucket}"]
    needed = iam.by_kind(
        {n for n in permissions.recorded_needs(calls) if n[1] in where.values()}, where
    )
    assert {("site", "storage.objects.create"), ("site", "storage.objects.delete")} <= needed
    assert ("site", "storage.objects.update") in needed  # the header's patch
    assert needed <= maintainer.measured(), sorted(needed - maintainer.measured())


def _executed_outputs(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    # What the reader reads: printed text, errors, plain-text results. A cell's outputs are
    # joined as they are shown: one print may arrive as two stream outputs on a busy machine.
    return "\n".join(
        "".join(
            "".join(o.get("text", ""))
            + "".join(o.get("data", {}).get("text/plain", ""))
            + "\n".join(o.get("traceback", []))
            for o in c.get("outputs", [])
        )
        for c in cells
    )


@pytest.mark.slow
def test_the_storage_notebook_runs_as_a_reader_with_object_roles_on_one_bucket(
    tmp_path: Path,
) -> None:
    """The tutorial a reader runs in JupyterLab, executed on a fresh seeded emulator as exactly
    that reader: read roles on the data bucket, object roles on their own bucket, nothing on the
    project that makes a bucket. Every call outside those grants is refused as Cloud Storage
    would (403), and the notebook, its `!gcloud` and `!gsutil` lines included, still does all it
    shows; what it did is within the reader's measured needs."""
    notebook = ROOT / "book" / "notebooks" / "cloud-storage.md"
    shutil.copy(notebook, tmp_path / notebook.name)
    with Emulator() as emu:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in emu.env.items():
                patch.setenv(key, value)
            samples.seed()
        emu.calls.clear()
        reader = as_person(emu, "reader")
        granted = emu.policies[""]
        assert not granted.allows("storage.buckets.create", SEEDED["project"])
        assert granted.allows("storage.objects.delete", SEEDED["scratch"])
        assert not granted.allows("storage.objects.delete", SEEDED["raw-data"])
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
        calls = emu.calls.list()
    shown = _executed_outputs(tmp_path / "cloud-storage.ipynb")
    for refusal in ("403", "AccessDenied", "does not have storage", "Forbidden"):
        assert refusal not in shown, refusal  # the `!` lines would print it and go on
    assert "refused:" in shown and "deleted 1 object(s) of this run" in shown
    needed = iam.by_kind(permissions.recorded_needs(calls), SEEDED)
    print(sorted(needed), [c.path for c in calls if c.refused])
    assert needed <= reader.measured(), sorted(needed - reader.measured())
    assert {kind for kind, _ in needed} == {"raw-data", "scratch"}


TERMINAL_PAGES = sorted(
    p for p in (ROOT / "book" / "chapters").glob("*.md") if terminal.blocks(p.read_text())
)


@pytest.mark.slow
@pytest.mark.parametrize("page", TERMINAL_PAGES, ids=lambda p: p.name)
def test_a_chapters_commands_run_with_exactly_its_persons_grants(page: Path) -> None:
    """Each chapter's {terminal} commands, run as the build runs them on a fresh seeded emulator,
    as the person iam.yaml says runs that page, with their grants in force: every command still
    succeeds, and what it did is within that person's measured needs."""
    model = iam.load()
    name = f"chapters/{page.name}"
    person = next((p for p in model.people.values() if name in p.pages), None)
    assert person is not None, f"{name}: name the person who runs it in iam.yaml's pages"
    found = terminal.blocks(page.read_text())
    with Emulator() as emu, pytest.MonkeyPatch.context() as patch:
        for key, value in emu.env.items():
            patch.setenv(key, value)
        samples.seed()
        emu.calls.clear()  # from here on, every call is the page's
        as_person(emu, person.name)
        cwd = terminal.scratch(page, found)
        try:
            result = terminal.run([b.runnable for b in found], cwd)
        finally:
            shutil.rmtree(cwd, ignore_errors=True)
        assert result.ok, result.outputs[result.failed or 0][-2000:]
        calls = emu.calls.list()
    needed = iam.by_kind(permissions.recorded_needs(calls), SEEDED)
    print(name, person.name, sorted(needed), [c.path for c in calls if c.refused])
    assert needed <= person.measured(), (
        f"{name} needed {sorted(needed - person.measured())}, which iam.yaml does not list "
        f"for {person.name}"
    )


UPLOADER_BLOCK = "gcloud storage cp --no-clobber"


def test_the_uploaders_command_adds_raw_data_and_can_never_replace_it(tmp_path: Path) -> None:
    """The raw-data bucket's one writer: the command gcloud-setup.md gives the uploader adds
    files; run again over a changed file, it replaces nothing (its grants could not)."""
    page = (ROOT / "book" / "chapters" / "gcloud-setup.md").read_text()
    (line,) = [
        line.strip()
        for line in page.splitlines()
        if line.strip().startswith(UPLOADER_BLOCK) and samples.BUCKET in line
    ]
    session = tmp_path / "session-2026-12-01"
    session.mkdir()
    (session / "a.dm3").write_bytes(b"new raw data")
    with Emulator() as emu, pytest.MonkeyPatch.context() as patch:
        for key, value in emu.env.items():
            patch.setenv(key, value)
        samples.seed()
        emu.calls.clear()
        uploader = as_person(emu, "uploader")
        env = emu.apply()
        first = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        (session / "a.dm3").write_bytes(b"changed")
        again = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        calls = emu.calls.list()
        from google.cloud import storage

        emu.policies.pop("")
        names = {
            b.name: b.download_as_bytes()
            for b in storage.Client().list_blobs(samples.BUCKET, prefix="session-")
        }
    print(first.stderr, again.stderr, sep="\n")
    assert first.returncode == 0, first.stderr
    assert names == {"session-2026-12-01/a.dm3": b"new raw data"}  # never replaced
    refused = [c for c in calls if c.refused]
    needed = iam.by_kind(permissions.recorded_needs(calls), SEEDED)
    print(sorted(needed), [(c.method, c.path) for c in refused])
    assert needed <= uploader.measured(), sorted(needed - uploader.measured())


MAINTAINERS = ROOT / "book" / "chapters" / "maintainers-setup.md"


def _granted_by_commands(page: Path, model: iam.Model) -> set[tuple[str, str, str]]:
    """(member, role, kind) of every `... add-iam-policy-binding` command on the page."""
    import shlex

    examples = {r["example"]: kind for kind, r in model.resources.items()}
    examples.update({f"projects/{PROJECT}": "project"})
    out = set()
    for line in page.read_text().splitlines():
        if "add-iam-policy-binding" not in line:
            continue
        words = shlex.split(line)
        flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
        target = words[words.index("add-iam-policy-binding") + 1]
        if words[1] == "projects":
            kind = examples[f"projects/{target}"]
        elif words[1] == "artifacts":
            region = flags["location"]
            kind = examples[f"{region}-docker.pkg.dev/{PROJECT}/{target}"]
        else:
            kind = examples[target]
        out.add((flags["member"], flags["role"], kind))
    return out


def test_the_maintainers_commands_grant_exactly_the_tables_rows() -> None:
    """chapters/maintainers-setup.md's grants, command by command, are iam.yaml's: every row of
    every table but the maintainer's own (an Owner), nothing more, each on its resource."""
    model = iam.load()
    expected = {
        (person.member, grant.role, grant.at)
        for person in model.people.values()
        if person.name != "maintainer"
        for grant in person.grants
    }
    assert _granted_by_commands(MAINTAINERS, model) == expected
