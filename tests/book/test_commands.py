"""The docs never lie: every shell block of every chapter runs, against the storage emulator.

Blocks fenced as ```` ```bash ```` are executed in order, one bash script per page, in a scratch
folder, with every client pointed at a freshly seeded emulator. Blocks that need a person at a
browser are ```` ```{code-block} bash ```` with ``:class: needs-google-login``; they are checked
offline: the caption says so on the page, and every flag they use exists in the installed CLI.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from microscopy_notebook.book import roles_table
from microscopy_notebook.cloud import permissions, samples
from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.paths import ROOT

CHAPTERS = sorted((ROOT / "book").glob("chapters/*.md")) + [ROOT / "book" / "intro.md"]
LOGIN_CLASS = "needs-google-login"
ENGINE_CLASS = "needs-container-engine"  # checked: each line is a session of our noxfile
# Directives that may appear in chapters. Code a reader sees is either run here (bash), checked
# here (needs-google-login), or included from a tested file (literalinclude): never pasted.
ALLOWED_DIRECTIVES = {"{important}", "{warning}", "{note}", "{tip}", "{literalinclude}",
                      "{package-table}", "{figure}", "{image}", "{admonition}",
                      "{nb-exec-table}",  # a table the build fills in; no code
                      "{roles-table}"}  # the roles a person needs, from iam.yaml


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
        found.append(Block(page, token.map[0] + 1, info, options, "\n".join(body).strip()))
    # MyST's ::: fences are not commonmark fences; they only hold prose admonitions here.
    return found


def _id(page: Path) -> str:
    return page.relative_to(ROOT / "book").as_posix()


def test_chapters_show_no_untested_code() -> None:
    for page in CHAPTERS:
        for block in blocks(page):
            if block.info == "bash":
                continue
            if block.info == "{code-block} bash" and block.options.get("class") in (
                    LOGIN_CLASS, ENGINE_CLASS):
                continue
            directive = block.info.split(maxsplit=1)[0] if block.info else ""  # not its argument
            assert directive in ALLOWED_DIRECTIVES, (
                f"{_id(page)}:{block.line}: a ```{block.info} block is neither run by the tests "
                "nor included from a tested file"
            )


@pytest.fixture
def seeded_emulator():
    """A fresh emulator per page, so a page's commands meet the state the page describes."""
    with Emulator() as emu:
        from google.cloud import storage

        client = storage.Client(project="nexuslims-example", client_options={
            "api_endpoint": emu.endpoint}, credentials=_anonymous())
        samples.seed(client=client)
        emu.calls.clear()  # from here on, every call is the page's
        yield emu


def _anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


RUNNABLE = [p for p in CHAPTERS if any(b.info == "bash" for b in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=_id)
def test_shell_blocks_run(page: Path, seeded_emulator: Emulator, tmp_path: Path) -> None:
    script = ["set -euo pipefail"]
    for block in blocks(page):
        if block.info == "bash":
            script.append(f"echo '### {_id(page)}:{block.line}' >&2")
            script.append(block.code)
    env = seeded_emulator.apply()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # this venv's snakemake first
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, (
        f"a command of {_id(page)} failed (the last ### line names its block):\n"
        f"{proc.stderr[-3000:]}\n--- stdout ---\n{proc.stdout[-2000:]}"
    )
    # The page's commands are what its reader runs: the roles the set-up chapter gives that
    # person must cover every Cloud Storage permission they needed here.
    _, people = roles_table.load()
    person = next((p for p in people.values() if _id(page) in p.pages), None)
    assert person is not None, f"{_id(page)}: name the person who runs it in iam.yaml's pages"
    needed = permissions.recorded(seeded_emulator.calls.list())
    print(_id(page), person.name, sorted(needed))
    assert needed <= set(person.needs), (
        f"{_id(page)} needed {sorted(needed - set(person.needs))}, which iam.yaml does not list "
        f"for {person.name}")


LOGIN_BLOCKS = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == LOGIN_CLASS]


def test_there_are_login_blocks_to_check() -> None:
    commands = {b.code for b in LOGIN_BLOCKS}
    assert "gcloud auth login --no-launch-browser" in commands
    assert "gcloud auth application-default login --no-launch-browser" in commands


@pytest.mark.parametrize("block", LOGIN_BLOCKS, ids=lambda b: f"{_id(b.page)}:{b.line}")
def test_login_blocks_are_marked_and_their_flags_exist(block: Block, tmp_path: Path) -> None:
    assert "Needs a live Google sign-in" in block.options.get("caption", ""), (
        f"{_id(block.page)}:{block.line}: a block that needs a browser must say so in its caption"
    )
    for line in block.code.splitlines():
        words = shlex.split(line)
        command = [w for w in words if not w.startswith("-")]
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        help_text = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", "CLOUDSDK_CONFIG": str(tmp_path), "HOME": str(tmp_path),
                 "PAGER": "cat"},
        )
        assert help_text.returncode == 0, help_text.stderr
        for flag in flags:
            assert re.search(rf"(^|\s){re.escape(flag)}\b", help_text.stdout), (
                f"{line!r}: {flag} is not in `{' '.join(command)} --help`"
            )


ENGINE_BLOCKS = [b for p in CHAPTERS for b in blocks(p) if b.options.get("class") == ENGINE_CLASS]


def _nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and any("session" in ast.unparse(d) for d in node.decorator_list)}


@pytest.mark.parametrize("block", ENGINE_BLOCKS, ids=lambda b: f"{_id(b.page)}:{b.line}")
def test_engine_blocks_are_marked_and_name_real_sessions(block: Block) -> None:
    assert "Needs a container engine" in block.options.get("caption", "")
    for line in block.code.splitlines():
        match = re.fullmatch(r"(?:python3 -m )?nox -s (\w+)(?: -- .*)?", line.strip())
        assert match, f"{line!r}: only `nox -s SESSION` lines may stand unrun here"
        assert match.group(1) in _nox_sessions(), f"{line!r}: no such nox session"
