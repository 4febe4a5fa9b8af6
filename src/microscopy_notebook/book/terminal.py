"""``terminal``: shell commands that run when the book is built, with what they printed under them.

A Sphinx extension (``book/_config.yml``, ``sphinx: extra_extensions``). In a MyST page::

    ```{terminal}
    gcloud storage ls gs://nexuslims_example-datafiles/MockDataFiles/
    ```

shows the commands as a ``bash`` block and, under it, what they printed (stdout and stderr as a
terminal shows them, interleaved). All ``terminal`` blocks of a page run once, in page order, as
one bash script (``set -euo pipefail``) in a scratch folder of their own, so a later block sees
the files and variables of an earlier one, as in one terminal session. The first block of a page
may start the scratch folder as a copy of a folder of the book (``:copy: ../examples/first-job``,
relative to the page), for pages whose commands run in a folder of files the page shows.

Like the notebooks (``execute_notebooks: cache``), a page's commands run again when they change,
or a file the first block copies does (`inputs_key`): a rebuild with nothing changed runs none,
and a clean build (``nox -s publish``, CI) runs them all.

A failing command is an error of the build, which ``-W`` turns into a failed build (a block
marked ``:exit: N`` shows a command that fails on purpose, as a troubleshooting page quotes an
error as the tool prints it: it must fail, with that status); so is a path
of the build machine (the checkout, the home folder, a temporary folder) in what a command
printed. Two paths are rewritten: the scratch folder's own, shown as ``.`` (it is the folder the
reader runs the commands in), and the folder of the build's Python environment, left out (Snakemake
prints the full path of its own program, where the reader typed ``snakemake``).

The book's build (``python -m microscopy_notebook.book``) runs with the storage emulator's
settings in its environment, so the commands reach the emulator; `run` is also what the tests
use to run a page's commands against an emulator of their own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from markdown_it import MarkdownIt
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from microscopy_notebook.paths import ROOT

DIRECTIVE = "terminal"
TIMEOUT = 900  # seconds for one page's commands
logger = logging.getLogger(__name__)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Block:
    options: dict[str, str]
    code: str

    @property
    def runnable(self) -> str:
        """The code as the page's script runs it. A block with ``:exit: N`` shows a command that
        fails on purpose (a troubleshooting page quotes the error it prints): it must end with
        exit status N, and the next block runs as usual."""
        status = int(self.options.get("exit", 0))
        if status == 0:
            return self.code
        return (
            "set +e\n"
            f"( set -e\n{self.code}\n)\n"
            "__terminal_status=$?\n"
            "set -e\n"
            f'[ "$__terminal_status" -eq {status} ] || {{ echo "the page expects exit status '
            f'{status}; the command exited with $__terminal_status"; exit 1; }}'
        )


def blocks(text: str) -> list[Block]:
    """Every ``terminal`` block of a MyST page, in order: its ``:key: value`` options, its code."""
    found = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.info.strip() != "{" + DIRECTIVE + "}":
            continue
        options, lines = {}, token.content.strip("\n").splitlines()
        while lines and (match := re.match(r"^:(\w[\w-]*):\s*(.*)$", lines[0])):
            options[match.group(1)] = match.group(2)
            lines.pop(0)
        found.append(Block(options, "\n".join(lines).strip("\n")))
    return found


def _copied(page: Path, found: list[Block]) -> Path | None:
    if found and "copy" in found[0].options:
        return page.parent / found[0].options["copy"].partition(" ")[0]
    return None


def inputs_key(page: Path) -> str:
    """What a page's commands depend on: the blocks (code and options) and the files the first
    block copies. When it changes, the page is read again and its commands run again."""
    found = blocks(page.read_text())
    digest = hashlib.sha256()
    for block in found:
        digest.update(repr(sorted(block.options.items())).encode())
        digest.update(block.code.encode() + b"\0")
    folder = _copied(page, found)
    if folder is not None and folder.is_dir():
        for path in sorted(folder.rglob("*")):
            parts = set(path.relative_to(folder).parts)
            if path.is_file() and not parts & {"__pycache__", ".snakemake", "results"}:
                digest.update(str(path.relative_to(folder)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def scratch(page: Path, found: list[Block]) -> Path:
    """A new scratch folder for a page's commands. ``:copy: SRC [DEST]`` on the first block puts
    a copy of the folder SRC (relative to the page) at DEST (default: the scratch folder itself)."""
    cwd = Path(tempfile.mkdtemp(prefix="terminal-"))
    if found and "copy" in found[0].options:
        src, _, dest = found[0].options["copy"].partition(" ")
        shutil.copytree(
            page.parent / src,
            cwd / dest.strip(),
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", ".snakemake", "results"),
        )
    return cwd


@dataclass
class Run:
    outputs: list[str]  # what each block printed; blocks after a failed one are ""
    returncode: int
    failed: int | None  # index of the block that failed, if one did

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def private_paths(text: str) -> list[str]:
    """Paths of the build machine in ``text``: the checkout, the home folder, a temporary folder."""
    found = [str(ROOT)] if str(ROOT) in text else []
    home = os.environ.get("HOME", "")
    if len(home) > 1 and re.search(re.escape(home) + r"(/|\b)", text):
        found.append(home)
    found += re.findall(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s'\"]+", text)
    return found


def run(codes: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run the blocks as one bash script in ``cwd``; split what it printed by block, with
    ``cwd`` itself shown as ``.``."""
    marker = f"@@terminal-{uuid.uuid4().hex}@@"
    script = ["set -euo pipefail", "exec 2>&1"]
    for i, code in enumerate(codes):
        script += [f"echo '{marker} {i}'", code]
    script.append(f"echo '{marker} end'")
    env = dict(os.environ if env is None else env)
    # This interpreter's environment first: its snakemake, its python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    outputs = [""] * len(codes)
    current, ended = None, False
    for line in proc.stdout.splitlines(keepends=True):
        if line.startswith(marker):
            tag = line[len(marker) :].strip()
            ended = tag == "end"
            current = None if ended else int(tag)
        elif current is not None:
            outputs[current] += line
    failed = None
    if proc.returncode != 0 or not ended:
        started = [i for i in range(len(codes)) if f"{marker} {i}\n" in proc.stdout]
        failed = started[-1] if started else 0
    for path in {str(cwd.resolve()), str(cwd)}:
        outputs = [o.replace(path, ".") for o in outputs]
    outputs = [o.replace(f"{Path(sys.executable).parent}/", "") for o in outputs]
    outputs = [ANSI.sub("", o) for o in outputs]  # bold and colour: a web page has its own
    return Run([o.rstrip("\n") for o in outputs], proc.returncode, failed)


class Terminal(SphinxDirective):
    has_content = True
    # Read from the page's source: `scratch` copies, and `:image: FILE` shows FILE, as the
    # commands left it in the scratch folder, under what they printed.
    option_spec = {
        "copy": directives.unchanged,
        "image": directives.unchanged,
        "exit": directives.nonnegative_int,
    }

    def run(self) -> list[nodes.Node]:
        data = self.env.temp_data
        if "terminal_run" not in data:  # the page's first block: run all of them, once
            source = Path(self.env.doc2path(self.env.docname))
            found = blocks(source.read_text())
            cwd = scratch(source, found)
            images = {}
            try:
                result = run([b.runnable for b in found], cwd)
                for i, block in enumerate(found):
                    if "image" in block.options and (cwd / block.options["image"]).is_file():
                        images[i] = (cwd / block.options["image"]).read_bytes()
                    elif "image" in block.options and result.ok:
                        logger.error(
                            "the commands left no %s to show",
                            block.options["image"],
                            location=(self.env.docname, None),
                        )
            finally:
                shutil.rmtree(cwd, ignore_errors=True)
            leaks = sorted({p for o in result.outputs for p in private_paths(o)})
            if not result.ok:
                logger.error(
                    "a command failed (exit status %s), in the block printed here:\n%s",
                    result.returncode,
                    result.outputs[result.failed][-3000:],
                    location=(self.env.docname, None),
                )
            for leak in leaks:
                logger.error(
                    "a command printed a path of the build machine (%s)",
                    leak,
                    location=(self.env.docname, None),
                )
            data["terminal_run"], data["terminal_next"] = result, 0
            data["terminal_images"] = images
            _keys(self.env)[self.env.docname] = inputs_key(source)
        result, index = data["terminal_run"], data["terminal_next"]
        data["terminal_next"] = index + 1
        code = "\n".join(line for line in self.content if not re.match(r"^:\w[\w-]*:", line))
        shown = nodes.literal_block(code, code, language="bash", classes=["terminal-command"])
        printed = result.outputs[index] if index < len(result.outputs) else ""
        output = nodes.literal_block(
            printed or "(no output)",
            printed or "(no output)",
            language="text",
            classes=["terminal-output"],
        )
        self.set_source_info(shown)
        self.set_source_info(output)
        box = nodes.container(classes=["terminal"])
        box += shown
        box += output
        if index in data["terminal_images"]:  # inline: the file exists only during the build
            png = base64.b64encode(data["terminal_images"][index]).decode()
            box += nodes.image(
                uri=f"data:image/png;base64,{png}",
                alt=self.options["image"],
                classes=["terminal-image"],
            )
        return [box]


def _keys(env) -> dict[str, str]:
    """docname -> `inputs_key` of the commands whose output the page holds (kept with the
    build's environment, like the rest of what Sphinx knows about a page)."""
    if not hasattr(env, "terminal_keys"):
        env.terminal_keys = {}
    return env.terminal_keys


def _changed_commands(app: Sphinx, env, added: set, changed: set, removed: set) -> list[str]:
    """Pages whose commands, or the files they copy, changed since their output was made."""
    keys = _keys(env)
    stale = []
    for doc in env.found_docs - added - changed:
        source = Path(env.doc2path(doc))
        if "{" + DIRECTIVE + "}" in source.read_text() and keys.get(doc) != inputs_key(source):
            stale.append(doc)
    return stale


def _purge(app: Sphinx, env, docname: str) -> None:
    _keys(env).pop(docname, None)


def _merge(app: Sphinx, env, docnames: set, other) -> None:
    _keys(env).update({d: k for d, k in _keys(other).items() if d in docnames})


def setup(app: Sphinx) -> dict:
    app.add_directive(DIRECTIVE, Terminal)
    app.connect("env-get-outdated", _changed_commands)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
