"""The repository keeps its promises: CI runs the README's command; nothing fetched is committed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from microscopy_notebook.paths import ROOT


def _commands_run(script: str, tmp_path: Path) -> list[list[str]]:
    """What ``script`` asks ``python3`` to do, run by bash with a ``python3`` that only records."""
    stub = tmp_path / "bin"
    stub.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "calls.jsonl"
    (stub / "python3").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    (stub / "python3").chmod(0o755)
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_ci_lints_tests_and_builds_the_site_with_sessions_nox_knows(tmp_path: Path) -> None:
    calls = _commands_run(f"bash {ROOT / '.ci' / 'run'}", tmp_path)
    nox_call = [c for c in calls if c[:2] == ["-m", "nox"]]
    assert nox_call == [["-m", "nox", "-s", "lint", "tests", "site"]]
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    sessions = {s["session"] for s in json.loads(listed.stdout)}
    assert sessions == {"lint", "tests", "site"}  # the defaults: `nox` alone runs what CI runs


def test_the_readme_command_is_what_ci_runs(tmp_path: Path) -> None:
    """Every bash block of the README, run with the recording python3: CI's calls are among them."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.+?)\n```", readme, flags=re.S)
    ci = _commands_run(f"bash {ROOT / '.ci' / 'run'}", tmp_path / "ci")
    readme_calls = [
        call for i, b in enumerate(blocks) for call in _commands_run(b, tmp_path / f"{i}")
    ]
    assert ci and all(call in readme_calls for call in ci)


def test_no_fetched_or_built_file_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    binary_ext = (".dm3", ".dm4", ".ser", ".emi", ".tif", ".tiff", ".whl", ".msa", ".png", ".zip")
    assert not [f for f in tracked if f.lower().endswith(binary_ext)]
    assert not [f for f in tracked if f.startswith((".cache/", "book/_build/", ".nox/"))]
