"""The docs never lie: every command a chapter shows is run, or checked offline.

Commands are ```` ```{terminal} ```` blocks: the book's build runs them, once, in page order,
against the seeded storage emulator, and shows what they printed
(`microscopy_notebook.book.terminal`; a failing command fails the build, test_build.py).

Blocks that need a person at a browser are ```` ```{code-block} bash ```` with
``:class: needs-google-login``; they are checked offline: the caption says what the reader does
("Run this in ..."), and every flag they use exists in the installed CLI. Blocks with
``:class: needs-google-batch`` are Snakemake commands for Google Batch: every flag is in the
``snakemake --help`` of the environment with the Batch executor plugin, and their dry run plans
the job. The first job's is also run, as the page has it, through the Google Batch stand-in of
tests/workflow (as the thumbnail job's profile is in tests/workflow/test_googlebatch.py). The
page "How this guide stays true" lists every such block (`microscopy_notebook.book.unrun`).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from microscopy_notebook.book import terminal
from microscopy_notebook.cloud import iam, samples
from microscopy_notebook.image import registry
from microscopy_notebook.paths import ROOT
from tests.workflow.batchrun import (
    INSTALLS,
    JOBS,
    STANDIN,
    SUBMITTER,
    batch_service,
    needs,
    places,
    without_credentials,
)
from tests.workflow.jobrun import png_size

CHAPTERS = sorted((ROOT / "book").glob("chapters/*.md")) + [ROOT / "book" / "intro.md"]
LOGIN_CLASS = "needs-google-login"
BATCH_CLASS = "needs-google-batch"  # checked: flags in the Batch venv's snakemake, and a dry run
ENGINE_CLASS = "needs-container-engine"  # checked: each line is a session of our noxfile
SESSION_CLASS = "needs-your-session"  # a reader's placeholder (%pip install PACKAGE): a real magic
# Quoted tool messages (```{code-block} text```): provoked by tests/book/test_messages.py, where
# each is found by its :name:, or quoted from a source a `% source:` comment beside it names.
MESSAGE_CLASS = "tool-message"
QUOTED_CLASS = "tool-message-quoted"
# Directives that may appear in chapters. Code a reader sees is either run by the build
# (terminal), checked here (the classes above), or included from a tested file (literalinclude).
ALLOWED_DIRECTIVES = {
    "{terminal}",
    "{important}",
    "{warning}",
    "{note}",
    "{tip}",
    "{literalinclude}",
    "{package-table}",
    "{formats-table}",  # the job's table of formats and its previews; no code
    "{figure}",
    "{image}",
    "{admonition}",
    "{nb-exec-table}",  # a table the build fills in; no code
    "{roles-table}",  # the roles a person needs, from iam.yaml; no code
    "{screenshot}",  # a picture the build takes of JupyterLab; no code
    "{glossary}",
    "{unrun-commands}",  # the list of the blocks this file checks; no code
}


@dataclass
class Block:
    page: Path
    line: int
    info: str
    options: dict[str, str]
    code: str


def blocks(page: Path) -> list[Block]:
    found = []
    for token in MarkdownIt("commonmark").parse(page.read_text()):
        if token.type != "fence":
            continue
        info = token.info.strip()
        options, body = {}, []
        for line in token.content.splitlines():
            match = re.match(r"^:(\w[\w-]*):\s*(.*)$", line)
            if match and not body and info.startswith("{"):
                options[match.group(1)] = match.group(2)
            else:
                body.append(line)
        # A line that ends in a backslash goes on in the next, as in the reader's shell.
        code = re.sub(r"\\\n\s*", "", "\n".join(body).strip())
        found.append(Block(page, token.map[0] + 1, info, options, code))
    # MyST's ::: fences are not commonmark fences; they only hold prose admonitions here.
    return found


def _id(page: Path) -> str:
    return page.relative_to(ROOT / "book").as_posix()


def test_chapters_show_no_untested_code() -> None:
    for page in CHAPTERS:
        for block in blocks(page):
            if block.info == "{code-block} bash" and block.options.get("class") in (
                LOGIN_CLASS,
                ENGINE_CLASS,
                BATCH_CLASS,
            ):
                continue
            if block.info == "{code-block} ipython" and block.options.get("class") == SESSION_CLASS:
                continue
            if block.info == "{code-block} text" and block.options.get("class") in (
                MESSAGE_CLASS,
                QUOTED_CLASS,
            ):
                continue
            directive = block.info.split(maxsplit=1)[0] if block.info else ""  # not its argument
            assert directive in ALLOWED_DIRECTIVES, (
                f"{_id(page)}:{block.line}: a ```{block.info} block is neither run by the tests "
                "nor included from a tested file"
            )


def test_chapters_have_no_plain_bash_blocks() -> None:
    """A ```bash fence would be shown without being run: commands are {terminal} blocks."""
    for page in CHAPTERS:
        for block in blocks(page):
            assert block.info != "bash", f"{_id(page)}:{block.line}: use ```{{terminal}}"


LOGIN_BLOCKS = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == LOGIN_CLASS]


def test_there_are_login_blocks_to_check() -> None:
    commands = {b.code for b in LOGIN_BLOCKS}
    assert "gcloud auth login --no-launch-browser" in commands
    assert "gcloud auth application-default login --no-launch-browser" in commands


@pytest.mark.parametrize("block", LOGIN_BLOCKS, ids=lambda b: f"{_id(b.page)}:{b.line}")
def test_login_blocks_are_marked_and_their_flags_exist(block: Block, tmp_path: Path) -> None:
    assert block.options.get("caption", "").startswith("Run this"), (
        f"{_id(block.page)}:{block.line}: the caption says what the reader does: 'Run this in ...'"
    )
    for line in block.code.splitlines():
        words = shlex.split(line)
        command = [w for w in words if not w.startswith("-")]
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        help_text = _help(command, tmp_path)
        assert help_text.returncode == 0, help_text.stderr
        for flag in flags:
            assert re.search(rf"(^|\s){re.escape(flag)}\b", help_text.stdout), (
                f"{line!r}: {flag} is not in `{' '.join(command)} --help`"
            )


_HELP: dict[tuple[str, ...], subprocess.CompletedProcess] = {}


def _help(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`COMMAND --help`, once per command: the words that name a command, not the resources
    (buckets, accounts, projects) it is given, which do not change its help."""
    key = tuple(w for w in command if re.fullmatch(r"[a-z][a-z0-9-]*", w))
    if key not in _HELP:
        _HELP[key] = subprocess.run(
            [*command, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": "/usr/bin:/bin",
                "CLOUDSDK_CONFIG": str(tmp_path),
                "HOME": str(tmp_path),
                "PAGER": "cat",
            },
        )
    return _HELP[key]


ENGINE_BLOCKS = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == ENGINE_CLASS]


def _nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in node.decorator_list)
    }


@pytest.mark.parametrize("block", ENGINE_BLOCKS, ids=lambda b: f"{_id(b.page)}:{b.line}")
def test_engine_blocks_are_marked_and_name_real_sessions(block: Block) -> None:
    assert block.options.get("caption", "").startswith("Run this"), block.options
    for line in block.code.splitlines():
        match = re.fullmatch(r"(?:python3 -m )?nox -s (\w+)(?: -- .*)?", line.strip())
        assert match, f"{line!r}: only `nox -s SESSION` lines may stand unrun here"
        assert match.group(1) in _nox_sessions(), f"{line!r}: no such nox session"


BATCH_BLOCKS = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == BATCH_CLASS]


def test_there_are_batch_blocks_to_check() -> None:
    assert any(b.page.name == "first-job.md" for b in BATCH_BLOCKS)


LAUNCHER = "python workflow/googlebatch.py"  # its lines are rehearsed in test_googlebatch.py


@pytest.mark.parametrize(
    "block",
    [b for b in BATCH_BLOCKS if b.code.startswith(LAUNCHER)],
    ids=lambda b: f"{_id(b.page)}:{b.line}",
)
def test_launcher_blocks_flags_exist(block: Block, batch_python: str) -> None:
    """`python workflow/googlebatch.py ...`: its own flags and Snakemake's; the commands
    themselves are run, as the page has them, by tests/workflow/test_googlebatch.py."""
    assert block.options.get("caption", "").startswith("Run this"), block.options
    launcher = str(ROOT / "workflow" / "googlebatch.py")
    words = shlex.split(block.code)[2:]
    sub = ["watch"] if words[:1] == ["watch"] else []
    usage = " ".join(
        subprocess.run(
            [batch_python, *argv, "--help"], capture_output=True, text=True, timeout=120
        ).stdout
        for argv in ([launcher, *sub], ["-m", "snakemake"])
    )
    flags = {w.split("=")[0] for w in words if w.startswith("--")}
    assert flags <= set(re.findall(r"--[a-z][a-z0-9-]+", usage)), flags


@pytest.mark.parametrize(
    "block",
    [b for b in BATCH_BLOCKS if not b.code.startswith(LAUNCHER)],
    ids=lambda b: f"{_id(b.page)}:{b.line}",
)
def test_batch_blocks_flags_exist_and_dry_run_plans(
    block: Block, batch_python: str, gcs, storage_env: dict, tmp_path: Path
) -> None:
    assert block.options.get("caption", "").startswith("Run this"), block.options
    assert block.code.startswith("snakemake "), "only snakemake commands may stand unrun here"
    usage = subprocess.run(
        [batch_python, "-m", "snakemake", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    flags = {w.split("=")[0] for w in shlex.split(block.code) if w.startswith("--")}
    assert flags <= set(re.findall(r"--[a-z][a-z0-9-]+", usage)), flags - set(usage.split())

    # The dry run, in the folder the page's commands run in, against the seeded emulator; with
    # no Google credentials at all, so that nothing can be submitted.
    samples.seed(client=gcs)
    job = _page_folder(block.page, tmp_path / "job")
    env = without_credentials(dict(storage_env, HOME=str(tmp_path)), tmp_path)
    env["JUPYTERHUB_USER"] = "a-reader"  # set on the hub for every server
    command = block.code.replace("snakemake ", f"{shlex.quote(batch_python)} -m snakemake ", 1)
    dry = subprocess.run(
        ["bash", "-c", command + " -n"],
        cwd=job,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-3000:]
    assert "rule plot:" in dry.stdout + dry.stderr


def _page_folder(page: Path, where: Path) -> Path:
    """The folder a page's commands run in, as the build makes it: the copy its first terminal
    block asks for (`:copy: SRC [DEST]`). Returns the folder to run in."""
    first = terminal.blocks(page.read_text())[0]
    src, _, dest = first.options["copy"].partition(" ")
    shutil.copytree(
        page.parent / src,
        where / dest.strip(),
        ignore=shutil.ignore_patterns("__pycache__", ".snakemake"),
    )
    return where


FIRST_JOB = ROOT / "book" / "chapters" / "first-job.md"
FIRST_JOB_PROFILE = ROOT / "book" / "examples" / "first-job" / "googlebatch" / "config.yaml"


@pytest.mark.slow
def test_first_jobs_batch_command_runs_in_the_image_and_makes_the_local_runs_picture(
    batch_python: str, task_python: str, emulator, gcs, storage_env: dict, tmp_path: Path
) -> None:
    """The page's Google Batch command exactly as the reader types it, with `snakemake` run
    through the Batch stand-in (real executor plugin, the page's profile and files, storage in the
    emulator, no Google credentials, the submitter's and the jobs' account's grants in force): it
    makes the picture the page's local command makes, in one Batch job that runs the pinned image
    on Container-Optimized OS as the jobs' account and installs nothing.

    Each reader's picture and work files have names of their own: the reader here is a new one
    (JupyterHub names each server's user), so no other test's objects, and none the page names,
    are touched; the Batch machine names the reader's folder as the reader's JupyterLab does."""
    (block,) = [b for b in BATCH_BLOCKS if b.page == FIRST_JOB]
    samples.seed(client=gcs)  # the Snakefile reads its .dm3 from the example data bucket
    job = _page_folder(FIRST_JOB, tmp_path / "job")
    where = places(samples.BUCKET, samples.OUTPUT_BUCKET)
    reader = f"reader-{uuid.uuid4().hex[:8]}"
    with batch_service(emulator, task_python, where) as service:
        env = service.env(
            SUBMITTER, without_credentials(dict(storage_env, HOME=str(tmp_path)), tmp_path)
        )
        env["JUPYTERHUB_USER"] = reader
        command = block.code.replace(
            "snakemake ", f"{shlex.quote(batch_python)} {shlex.quote(str(STANDIN))} ", 1
        )
        proc = subprocess.run(
            ["bash", "-c", command], cwd=job, env=env, capture_output=True, text=True, timeout=600
        )
    print(proc.stdout[-20000:], proc.stderr[-20000:], sep="\n")  # shown when it fails
    assert proc.returncode == 0, "the run failed: its output is printed above"
    output = gcs.bucket(samples.OUTPUT_BUCKET)
    picture = output.blob(f"first-job/{reader}/multi_signal.png").download_as_bytes()
    assert png_size(picture) == (500, 500)  # plot.py: 5 x 5 inches at 100 dpi
    assert 10_000 < len(picture) < 1_000_000  # a drawn plot, neither blank nor raw

    # The page's first command, on another reader's JupyterLab (here: the tests' environment,
    # as the build runs it), in the same folder: the same picture, in that reader's folder.
    (local_line,) = [
        line
        for line in terminal.blocks(FIRST_JOB.read_text())[0].code.splitlines()
        if line.startswith("snakemake ")
    ]
    other = f"reader-{uuid.uuid4().hex[:8]}"
    local = subprocess.run(
        ["bash", "-c", local_line],
        cwd=job,
        env=dict(
            storage_env, HOME=str(tmp_path), PATH=terminal_path(storage_env), JUPYTERHUB_USER=other
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-3000:]
    assert output.blob(f"first-job/{other}/multi_signal.png").download_as_bytes() == picture

    # One Batch job, of the plot rule, in the pinned image on Container-Optimized OS, as the
    # jobs' account, as the page's profile says; nothing was installed on the VM.
    profile = yaml.safe_load(FIRST_JOB_PROFILE.read_text())
    (received,) = service.jobs()
    submitted = received["job"]
    assert submitted["labels"]["snakemake-job"] == "plot"
    (instances,) = submitted["allocationPolicy"]["instances"]
    assert "batch-cos" in profile["googlebatch-image-family"]
    assert instances["policy"]["bootDisk"]["image"] == (
        f"projects/{profile['googlebatch-image-project']}/global/images/family/"
        f"{profile['googlebatch-image-family']}"
    )
    model = iam.load()
    assert submitted["allocationPolicy"]["serviceAccount"]["email"] == model.email("jobs-account")
    runnables = submitted["taskGroups"][0]["taskSpec"]["runnables"]
    assert runnables[-1]["container"]["imageUri"] == registry.load().uri()
    for runnable in runnables:
        assert not INSTALLS.search(json.dumps(runnable)), runnable
    assert service.installs() == ""
    # Snakemake removed the workflow's files it sent to the VM from the reader's own work prefix.
    assert [b.name for b in gcs.list_blobs(samples.OUTPUT_BUCKET, prefix="snakemake-work/")] == []

    # The page sends the reader to the job submitter's roles: with them (and the jobs' account's)
    # in force the run went through, within what iam.yaml measured.
    for who in (SUBMITTER, JOBS):
        seen = needs(service, emulator, who, where)
        assert seen <= model.people[who].measured(), (who, seen - model.people[who].measured())


def terminal_path(env: dict) -> str:
    """PATH as the build's terminal blocks have it: this interpreter's environment first."""
    return f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"


SESSION_BLOCKS = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == SESSION_CLASS]


@pytest.mark.parametrize("block", SESSION_BLOCKS, ids=lambda b: f"{_id(b.page)}:{b.line}")
def test_session_blocks_are_magics_ipython_has(block: Block) -> None:
    """A cell a reader types with their own package name: each line is a line magic of IPython."""
    from IPython.core.interactiveshell import InteractiveShell

    assert block.options.get("caption", "").startswith("Run this"), block.options
    magics = InteractiveShell.instance().magics_manager.magics["line"]
    for line in block.code.splitlines():
        name = line.split()[0].removeprefix("%")
        assert line.startswith("%") and name in magics, f"{line!r}: not a line magic of IPython"


MESSAGE_BLOCKS = [
    b
    for p in CHAPTERS
    for b in blocks(p)
    if b.options.get("class") in (MESSAGE_CLASS, QUOTED_CLASS)
]


def test_every_quoted_message_is_provoked_or_carries_its_source() -> None:
    from tests.book.test_messages import PROVOKED

    assert MESSAGE_BLOCKS, "no quoted message to check"
    for block in MESSAGE_BLOCKS:
        where = f"{_id(block.page)}:{block.line}"
        if block.options["class"] == MESSAGE_CLASS:
            assert block.options.get("name") in PROVOKED, (
                f"{where}: a tool-message block needs a :name: that test_messages.py provokes"
            )
        else:
            lines = block.page.read_text().splitlines()
            near = lines[max(0, block.line - 4) : block.line + len(block.code.splitlines()) + 4]
            assert any(line.startswith("% source:") for line in near), (
                f"{where}: a quoted message needs its `% source:` beside it"
            )
