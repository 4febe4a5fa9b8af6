"""The reader's JupyterLab: the repository as a hub serves it, a server, and the reader's clicks.

Used by the book's build (`microscopy_notebook.book.screenshots`, the pictures of the reader's
screen) and by the tests that run the tutorials as readers do (tests/book/test_jupyterlab.py).

- `origin`: the checkout *as it is* (committed or not, untracked files too, ignored ones not) as a
  bare repository named like the real one, with the branch the launch button names. nbgitpuller
  and ``git clone`` take it by a ``file://`` URL, so nothing needs GitHub.
- `Lab`: ``python -m jupyterlab`` on 127.0.0.1 in a throwaway home, with the image's
  ``image/overrides.json`` as the application settings (where the Dockerfile puts it) and the
  given environment (the storage emulator's settings) inherited by every kernel it starts.
- `launch`: the launch button's nbgitpuller link, followed to a lab as the hub would.
- `open_path`, `run_all`, `screenshot`: what a reader does in the page, through the UI only.
"""

from __future__ import annotations

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
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Page

from microscopy_notebook.paths import IMAGE, ROOT

# The folder nbgitpuller clones into: the last part of the repository URL (its `targetpath`
# default), so the bare repository the build and tests serve is named like the real one.
REPO_NAME = "microscopy-notebook"
NOTEBOOK_VIEWER = "Jupytext Notebook"  # what image/overrides.json makes the default for .md


def git(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
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
    git("init", "--quiet", "--bare", str(bare))
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        real_index = Path(git("rev-parse", "--path-format=absolute", "--git-path", "index"))
        if real_index.exists():
            shutil.copy(real_index, index)  # only what changed is hashed again
        objects = git("rev-parse", "--path-format=absolute", "--git-path", "objects")
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
        git("add", "-A", env=env)
        tree = git("write-tree", env=env)
        commit = git("commit-tree", tree, "-p", "HEAD", "-m", "the checkout under test", env=env)
        git("push", "--quiet", str(bare), f"{commit}:refs/heads/{branch}", env=env)
    git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=bare)
    return bare


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
        # The kernel's environment first on PATH, as the image's conda environment is: a
        # notebook's `!snakemake` and a terminal's `snakemake` are the kernel's own.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            {
                "HOME": str(self.home),
                # The image's shell (docker-stacks sets SHELL): a terminal opens bash, not sh,
                # wherever this runs (CI may have no SHELL at all).
                "SHELL": "/bin/bash",
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


def launch(page: Page, lab: Lab, query: dict[str, str], timeout: float = 120) -> str:
    """Follow a launch button's nbgitpuller link (its ``query``) to ``lab``, as the hub would.

    The hub's /hub/user-redirect/git-pull sends the reader to /user/<name>/git-pull with the same
    query; ``lab`` is that user server, at /. nbgitpuller's page streams the git output, then
    sends the browser on to ``urlpath``, where the tutorial opens and starts its kernel. Returns
    the URL the browser lands on, once the kernel is up: closing the page before that would leave
    a half-made session that hangs the next opening of the file.
    """
    page.goto(lab.link(f"git-pull?{urlencode(query)}"))
    page.wait_for_url(re.compile(rf"/{re.escape(query['urlpath'])}(\?|$)"), timeout=timeout * 1000)
    lab.wait_for_kernel(query["urlpath"].removeprefix("lab/tree/"), page)
    return page.url


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
