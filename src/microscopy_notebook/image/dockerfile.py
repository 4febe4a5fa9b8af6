"""image/Dockerfile as docker reads it: its instructions, and what its RUN lines install.

A reader for checks, not a full parser: continuations are joined and comment lines dropped (as
docker does), each RUN is split into commands at ``&&``, ``||``, ``;`` and ``|``, and the commands
that install packages (apt-get, mamba, conda, micromamba, pip) are read for their arguments.
"""

from __future__ import annotations

import re
import shlex

# How a RUN line chains commands; a quote spanning a separator is rare enough for `words`.
SEPARATORS = re.compile(r"&&|\|\||;|\|")
INSTALLERS = {"mamba", "conda", "micromamba", "pip", "pip3"}
FILE_OPTIONS = {"--file", "-f", "-r", "--requirement"}  # the next word is a package list
VALUE_OPTIONS = {"--channel", "-c", "--name", "-n", "--prefix", "-p"}  # the next word is no package
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comment lines dropped, as docker
    reads the file."""
    out, current = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = current.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            current = ""
    return out


def stages(steps: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, FROM first, by its ``AS`` name; the unnamed last stage,
    the image itself, under "". ARGs before the first FROM belong to none."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, args in steps:
        if keyword == "FROM":
            named = re.split(r"\s+AS\s+", args, flags=re.I)
            current = out.setdefault(named[1].strip() if len(named) > 1 else "", [])
        if current is not None:
            current.append((keyword, args))
    return out


def words(command: str) -> list[str]:
    """One shell command as words, quotes honoured when they can be."""
    try:
        return shlex.split(command)
    except ValueError:  # a quote split by the && / | split: plain words will do
        return command.split()


def _run_commands(text: str) -> list[list[str]]:
    """Every command of every RUN instruction, as words."""
    return [
        words(command)
        for keyword, args in instructions(text)
        if keyword == "RUN"
        for command in SEPARATORS.split(args)
    ]


def install_requests(text: str) -> tuple[list[str], list[str]]:
    """Package arguments of every mamba/conda/micromamba/pip install, and every --file they read."""
    names, files = [], []
    for command in _run_commands(text):
        while command and ASSIGNMENT.match(command[0]):
            command.pop(0)  # VAR=value before the command
        if command[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
            command = command[2:]
        if len(command) < 2 or command[0] not in INSTALLERS or "install" not in command[1:3]:
            continue
        rest = command[command.index("install") + 1 :]
        skip_next = False
        for i, word in enumerate(rest):
            if skip_next:
                skip_next = False
                continue
            if word in FILE_OPTIONS:
                files.append(rest[i + 1])
                skip_next = True
            elif word in VALUE_OPTIONS:
                skip_next = True
            elif not word.startswith("-"):
                names.append(word)
    return names, files


def apt_packages(text: str) -> list[str]:
    """The packages of every ``apt-get install`` in a RUN instruction, options left out."""
    return [
        word
        for command in _run_commands(text)
        if command[:2] == ["apt-get", "install"]
        for word in command[2:]
        if not word.startswith("-")
    ]
