"""The repository keeps its promises: CI runs the README's command; nothing fetched is committed."""

from __future__ import annotations

import re
import subprocess

from microscopy_notebook.paths import ROOT


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_commands_docs_and_lint_then_tests() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("nox -s docs")
    assert commands[1].endswith("nox -s lint tests"), "CI lints as well as tests"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert lines == [_readme_commands()[1]]


def test_no_fetched_or_built_file_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    binary_ext = (".dm3", ".dm4", ".ser", ".emi", ".tif", ".tiff", ".whl", ".msa", ".png", ".zip")
    assert not [f for f in tracked if f.lower().endswith(binary_ext)]
    assert not [f for f in tracked if f.startswith((".cache/", "book/_build/", ".nox/"))]
