"""The reader's JupyterLab, for the tests: the repository as a hub serves it, a server, its UI.

- `origin`: the checkout *as it is* (committed or not, untracked files too, ignored ones not) as a
  bare repository named like the real one, with the branch the launch button names. nbgitpuller
  and ``git clone`` take it by a ``file://`` URL, so no test needs GitHub.
- `clone`, `seeded_emulator`: a reader's clone of it; the example buckets, freshly seeded.
- `Lab`: ``python -m jupyterlab`` on 127.0.0.1 in a throwaway home, with the image's
  ``image/overrides.json`` as the application settings (where the Dockerfile puts it) and the
  given environment (the storage emulator's settings) inherited by every kernel it starts.
- `Files`: a snapshot of a folder, to tell what running a notebook wrote.
- `open_path`, `run_all`, `outputs`: what a reader does in the page, through the UI only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page

from microscopy_notebook.cloud import samples
from microscopy_notebook.cloud.emulator import Emulator
from microscopy_notebook.paths import IMAGE, ROOT
from tests.book.page_outputs import PIXEL_SPREAD_JS

# The folder nbgitpuller clones into: the last part of the repository URL (its `targetpath`
# default), so the bare repository the tests serve is named like the real one, not "*.git".
REPO_NAME = "microscopy-notebook"
NOTEBOOK_VIEWER = "Jupytext Notebook"  # what image/overrides.json makes the default for .md


def _git(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def origin(parent: Path, branch: str) -> Path:
    """A bare repository ``parent/microscopy-notebook`` whose ``branch`` is the checkout as it is.

    A clone of HEAD would test the last commit, not the notebook being edited; so the work tree
    is added to a copy of the index (``git add -A`` honours .gitignore) and written as a commit
    whose parent is HEAD. The new objects go to a throwaway object folder (the checkout's own
    are read through it), so the checkout's index, refs and .git are left as they were.
    """
    bare = parent / REPO_NAME
    _git("init", "--quiet", "--bare", str(bare))
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        real_index = Path(_git("rev-parse", "--path-format=absolute", "--git-path", "index"))
        if real_index.exists():
            shutil.copy(real_index, index)  # only what changed is hashed again
        objects = _git("rev-parse", "--path-format=absolute", "--git-path", "objects")
        (Path(tmp) / "objects").mkdir()  # git takes a missing one for "not a repository"
        env = {
            **os.environ,
            "GIT_INDEX_FILE": str(index),
            "GIT_OBJECT_DIRECTORY": str(Path(tmp) / "objects"),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": objects,
            "GIT_AUTHOR_NAME": "tests",
            "GIT_AUTHOR_EMAIL": "tests@localhost",
            "GIT_COMMITTER_NAME": "tests",
            "GIT_COMMITTER_EMAIL": "tests@localhost",
        }
        _git("add", "-A", env=env)
        tree = _git("write-tree", env=env)
        commit = _git("commit-tree", tree, "-p", "HEAD", "-m", "the checkout under test", env=env)
        _git("push", "--quiet", str(bare), f"{commit}:refs/heads/{branch}", env=env)
    _git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=bare)
    return bare


def clone(parent: Path, branch: str) -> Path:
    """``parent/microscopy-notebook``: a clone of the checkout as it is, on ``branch``."""
    bare = origin(parent / "origin", branch)
    path = parent / REPO_NAME
    _git("clone", "--quiet", "--branch", branch, bare.as_uri(), str(path))
    return path


@contextlib.contextmanager
def seeded_emulator() -> Iterator[Emulator]:
    """A storage emulator of its own, seeded: the example buckets as a reader first finds them."""
    with Emulator() as emu, pytest.MonkeyPatch.context() as patch:
        for key, value in emu.env.items():
            patch.setenv(key, value)  # samples.seed's client, in this process, talks to it
        samples.seed()
        yield emu


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A JupyterLab server whose root (and HOME) is ``home``; ``with Lab(home, env) as lab:``.

    Jupyter's own state (its config, runtime files, workspaces, user settings) goes to a folder
    beside the home: it is the server's, not something a notebook wrote, and the config there
    turns off what would reach the internet. Everything a kernel does, it does in ``home``.
    """

    def __init__(
        self, home: Path, env: dict[str, str], overrides: Path | None = IMAGE / "overrides.json"
    ) -> None:
        self.home = home
        self.jupyter = home.parent / "jupyter-state"
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = env
        self._overrides = overrides  # None: a lab without the image's settings
        self._proc: subprocess.Popen | None = None

    def _environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTER", "IPYTHON", "XDG_", "MPL"))
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the image does not set it; readers write .pyc
        state = self.jupyter
        env.update(self._env)
        env.update(
            {
                "HOME": str(self.home),
                "JUPYTER_CONFIG_DIR": str(state / "config"),
                "JUPYTER_DATA_DIR": str(state / "data"),
                "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(state / "user-settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
                "JUPYTER_PLATFORM_DIRS": "1",  # no deprecation warning in every kernel's stderr
                # The notebooks' scratch folders (tempfile) go where the test removes them.
                "TMPDIR": str(state / "tmp"),
            }
        )
        return env

    def _configure(self) -> list[str]:
        app_settings = self.jupyter / "app-settings"
        app_settings.mkdir(parents=True, exist_ok=True)
        if self._overrides is not None:  # the image puts it in <prefix>/share/jupyter/lab/settings
            shutil.copy(self._overrides, app_settings / "overrides.json")
        config = self.jupyter / "config"
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        (config / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "LabApp": {
                        "news_url": None,  # the announcements feed is on jupyter.org
                        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",  # and PyPI
                    },
                    # nbdime comes with pytest-notebook into the test venv; the image has no nbdime.
                    "ServerApp": {"jpserver_extensions": {"nbdime": False}},
                }
            )
        )
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"nbdime-jupyterlab": True}})
        )
        # No "get notified about Jupyter news?" toast over the screenshots: the reader's answer,
        # saved in the user settings (the server's news feed is off above in any case).
        notification = self.jupyter / "user-settings" / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True, exist_ok=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false"})
        )
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.allow_root=True",  # CI runs as root; the image's user is not root
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.home}",
            f"--LabApp.app_settings_dir={app_settings}",
            # window.jupyterapp, as for JupyterLab's own UI tests (Galata): an error output is
            # drawn like any stderr text, so the tests tell errors by the notebook's model.
            "--LabApp.expose_app_in_browser=True",
        ]

    def start(self) -> Lab:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.jupyter / "tmp").mkdir(parents=True, exist_ok=True)
        command = self._configure()
        self.log_path = self.jupyter / "server.log"
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            command,
            cwd=self.home,
            env=self._environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(deadline=time.monotonic() + 60)
        except BaseException:
            self.stop()  # a server that never answered is not left running
            raise
        return self

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"jupyterlab exited:\n{self.log()}")
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyterlab did not answer:\n{self.log()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
            self._log.close()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def link(self, path: str) -> str:
        """``path`` on the server, with the token (the browser keeps a cookie afterwards)."""
        sep = "&" if "?" in path else "?"
        return f"{self.url}/{path.lstrip('/')}{sep}token={self.token}"

    def wait_for_kernel(self, path: str, page: Page, timeout: float = 60) -> None:
        """Until the notebook at ``path`` (relative to the home) has a started, idle kernel.

        It waits with the ``page``'s clock: Playwright's sync API handles the page's events (and
        the tests' request routing) only while it is called, so a plain sleep would stall it.
        """
        deadline = time.monotonic() + timeout
        while True:
            sessions = [s for s in self.api("GET", "/api/sessions") if s["path"] == path]
            if sessions and (sessions[0].get("kernel") or {}).get("execution_state") == "idle":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no idle kernel for {path}: {sessions}\n{self.log()}")
            page.wait_for_timeout(250)

    def close_sessions(self) -> None:
        """End every notebook's session and its kernel, as File > Close and Shut Down does.

        Shutting down only the kernel would leave the session, and the next opening of that
        notebook would ask which kernel to start instead of starting one.
        """
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")


# --- what a notebook wrote -----------------------------------------------------------------------
@dataclass(frozen=True)
class Files:
    """Every file under ``root`` with its size and modification time."""

    root: Path
    stat: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, root: Path) -> Files:
        stat = {}
        for path in root.rglob("*"):
            if path.is_file() or path.is_symlink():
                info = path.lstat()
                stat[path.relative_to(root).as_posix()] = (info.st_size, info.st_mtime_ns)
        return cls(root, stat)

    def changed_since(self, before: Files) -> list[str]:
        """Files added, changed or removed since ``before``, as "+ name", "~ name", "- name"."""
        added = [f"+ {n}" for n in self.stat.keys() - before.stat.keys()]
        removed = [f"- {n}" for n in before.stat.keys() - self.stat.keys()]
        changed = [
            f"~ {n}"
            for n in self.stat.keys() & before.stat.keys()
            if self.stat[n] != before.stat[n]
        ]
        return sorted(added + removed + changed, key=lambda s: s[2:])


# --- the reader's clicks -------------------------------------------------------------------------
def _listing_item(page: Page, name: str):
    exact = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator(".jp-DirListing-content .jp-DirListing-item").filter(has=exact)


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook of the current tab
# The error outputs of the current notebook, "ename: evalue", from its model.
_ERRORS_JS = """
    const errors = () => {
        const model = window.jupyterapp.shell.currentWidget.content.model;
        const found = [];
        for (let i = 0; i < model.cells.length; i++) {
            const cell = model.cells.get(i);
            if (cell.type !== "code") continue;
            for (const out of cell.toJSON().outputs) {
                if (out.output_type === "error") found.push(`${out.ename}: ${out.evalue}`);
            }
        }
        return found;
    };
"""


def open_path(page: Page, relative: str) -> None:
    """Double-click each folder of ``relative`` in the file browser, then the file itself."""
    for part in relative.split("/"):
        item = _listing_item(page, part)
        item.wait_for()
        item.dblclick()


def run_all(page: Page, timeout: float) -> None:
    """Run > Run All Cells, then wait for the kernel to be idle with every code cell run.

    A failing cell stops the run there (JupyterLab clears the queue), so an error shown and an
    idle kernel also end the wait: the caller's check of the errors reports it.
    """
    page.locator('.lm-MenuBar-itemLabel:text-is("Run")').click()
    page.locator('.lm-Menu-itemLabel:text-is("Run All Cells")').click()
    # A code cell that has not run shows "[ ]:", one that is running or queued "[*]:".
    page.wait_for_function(
        """(panel) => {
            ${ERRORS}
            const p = document.querySelector(panel);
            const prompts = [...p.querySelectorAll(".jp-CodeCell .jp-InputPrompt")]
                .map((e) => e.textContent);
            const idle = p.querySelector(".jp-Notebook-ExecutionIndicator")
                ?.dataset.status === "idle";
            return idle && prompts.length > 0 && !prompts.some((t) => t.includes("*"))
                && (errors().length > 0 || prompts.every((t) => /\\[\\d+\\]/.test(t)));
        }""".replace("${ERRORS}", _ERRORS_JS),
        arg=PANEL,
        timeout=timeout * 1000,
        polling=250,
    )


def outputs(page: Page) -> dict:
    """What the open notebook shows: its cells, its kernel, its error outputs, its images."""
    return page.evaluate(
        """async () => {
            const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
            ${ERRORS}
            const images = [...p.querySelectorAll(".jp-OutputArea-output img")];
            await Promise.all(images.map((img) => img.decode().catch(() => null)));
            return {
                cells: p.querySelectorAll(".jp-Notebook .jp-Cell").length,
                code: p.querySelectorAll(".jp-Notebook .jp-CodeCell").length,
                kernel: p.querySelector(".jp-KernelName, .jp-Toolbar-kernelName")?.textContent,
                errors: errors(),
                // A link with no text: MyST's [](target) is filled in by Sphinx, not JupyterLab.
                emptyLinks: [...p.querySelectorAll(".jp-MarkdownOutput a")]
                    .filter((a) => !a.textContent.trim()).map((a) => a.getAttribute("href")),
                images: images.map((img) => {
                    const spread = (${SPREAD})(img);  // how far from one flat colour
                    const box = img.getBoundingClientRect();
                    return {natural: img.naturalWidth, width: box.width, height: box.height,
                            spread: spread};
                }),
            };
        }""".replace("${ERRORS}", _ERRORS_JS).replace("${SPREAD}", PIXEL_SPREAD_JS)
    )


def screenshot(page: Page, path: Path) -> None:
    """The whole open notebook in one picture: the window made as tall as the notebook."""
    height = page.evaluate(
        """() => {
            // the notebook's scrolling box (JupyterLab 4's windowed list, or the notebook)
            const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
            const box = p.querySelector(".jp-WindowedPanel-outer")
                || p.querySelector(".jp-Notebook");
            return box.scrollHeight + (window.innerHeight - box.clientHeight);
        }"""
    )
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 16000)})
    page.wait_for_timeout(500)  # JupyterLab lays out the larger window
    page.evaluate("""() => {
        const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
        const box = p.querySelector(".jp-WindowedPanel-outer")
            || p.querySelector(".jp-Notebook");
        box.scrollTop = 0;
    }""")
    page.wait_for_timeout(300)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path)
    page.set_viewport_size(size)
