"""A local stand-in for the Google Batch service, for the tests only.

Google Batch has no emulator, so this is the one place where a Google service is answered by
something else: run this file with the Python of the image's environment instead of ``python -m
snakemake`` and it is Snakemake, with the real executor plugin, the real profile and Snakefile,
except that ``google.cloud.batch_v1.BatchServiceClient`` (and the Cloud Logging client the plugin
reads task logs with) are answered here. Storage stays the real emulator.

Each created Job runs as Batch runs it, as far as one machine can:

- runnables in order, for each task up to ``max_retry_count`` retries;
- script runnables with ``bash -c`` as root, in a fresh folder that stands for the VM; the
  plugin's ``/tmp/workdir`` is mapped into that folder (two jobs at once must not share one);
- the container runnable's entrypoint and commands as the image's user (uid 1000, gid 100, as
  NB_UID/NB_GID of the Jupyter images), with the plugin's volume (the same mapped folder) as the
  working directory and the runnable's environment. There is no container engine, so the
  container's ``python`` is the Batch-task venv's (``MNB_BATCH_TASK_PYTHON``, first on PATH:
  what the image has, from a Python uid 1000 can run) and the VM's credentials are the
  emulator's settings, with its storage calls recorded as ``batch-job``'s;
- installers (pip, conda, apt-get, wget, curl, ...) first on every runnable's PATH are
  tripwires: a call is written to ``installs.log`` and fails, as on a VM with no internet route;
- the Job's state from the exit codes, its events, and each task's output as Cloud Logging
  entries labelled with the Job's uid, which is where the plugin reads them.

Every Job received is written as JSON to ``$MNB_BATCH_STANDIN/jobs/<job id>.json`` for the tests
to check, and the IAM permission of every Batch and Logging call to ``api-permissions.log``.
``MNB_BATCH_STANDIN_PREEMPT=<rule>`` kills the first attempt of the first Job of that rule while
it runs, as a spot VM's preemption does (exit code 50001, as Batch reports it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from google.cloud import batch_v1
from google.protobuf import timestamp_pb2

IMAGE_UID, IMAGE_GID = 1000, 100  # NB_UID, NB_GID of quay.io/jupyter images
WORKDIR = "/tmp/workdir"  # the plugin's host folder and container volume
PREEMPTED = 50001  # the exit code Batch gives a task whose spot VM was preempted
STATE = batch_v1.JobStatus.State
OUT = Path(os.environ.get("MNB_BATCH_STANDIN") or tempfile.mkdtemp(prefix="batch-standin-"))
# The image's Python: a venv of the image's lines for what a task runs (nox makes it) from an
# interpreter the image's user can run, as the image's conda Python is.
TASK_PYTHON = os.environ.get("MNB_BATCH_TASK_PYTHON", sys.executable)
# Installers and downloaders on PATH ahead of the real ones: a runnable that calls one is recorded
# in installs.log and fails, as it would on a VM with no route to the internet.
INSTALLERS = (
    "pip",
    "pip3",
    "conda",
    "mamba",
    "micromamba",
    "apt",
    "apt-get",
    "yum",
    "dnf",
    "wget",
    "curl",
)
TRIPWIRES = OUT / "tripwires"
TASK_IDENTITY = "batch-job"  # who the emulator's front records the tasks' storage calls as
LOG_ENTRIES: dict[str, list[str]] = {}  # job uid -> lines, for the Logging stand-in
_lock = threading.Lock()


def _permission(name: str) -> None:
    """Record the IAM permission a call to Batch or Logging needs (the names are Google's: see
    https://cloud.google.com/iam/docs/roles-permissions/batch and .../logging)."""
    with _lock, (OUT / "api-permissions.log").open("a") as log:
        log.write(name + "\n")


class _Done:
    """What ``delete_job`` returns: an operation whose ``result()`` the plugin waits on."""

    def result(self, timeout: float | None = None) -> str:
        return "deleted"


class StandinBatchClient:
    """Answers the calls snakemake-executor-plugin-googlebatch 0.5.1 makes."""

    def __init__(self, *args, **kwargs) -> None:
        self.jobs: dict[str, batch_v1.Job] = {}
        self.runs: dict[str, _JobRun] = {}

    def create_job(self, request: batch_v1.CreateJobRequest) -> batch_v1.Job:
        _permission("batch.jobs.create")
        # Batch checks that the submitter may act as the job's service account (the Compute
        # Engine default one when none is named).
        _permission("iam.serviceAccounts.actAs")
        job = batch_v1.Job(request.job)
        job.name = f"{request.parent}/jobs/{request.job_id}"
        job.uid = f"{request.job_id}-{uuid.uuid4().hex[:8]}"
        job.status.state = STATE.QUEUED
        (OUT / "jobs").mkdir(parents=True, exist_ok=True)
        (OUT / "jobs" / f"{request.job_id}.json").write_text(
            json.dumps(
                {
                    "parent": request.parent,
                    "job_id": request.job_id,
                    "job": json.loads(batch_v1.Job.to_json(request.job)),
                },
                indent=1,
            )
        )
        self.jobs[job.name] = job
        self.runs[job.name] = _JobRun(job)
        self.runs[job.name].start()
        return batch_v1.Job(job)

    def get_job(self, request: batch_v1.GetJobRequest | None = None, *, name: str = ""):
        name = request.name if request is not None else name
        _permission("batch.jobs.get")
        with _lock:
            return batch_v1.Job(self.jobs[name])

    def list_jobs(self, request: batch_v1.ListJobsRequest | None = None, **kwargs):
        parent = request.parent if request is not None else kwargs.get("parent", "")
        _permission("batch.jobs.list")
        with _lock:
            return [batch_v1.Job(j) for n, j in self.jobs.items() if n.startswith(parent)]

    def delete_job(self, request: batch_v1.DeleteJobRequest | None = None, **kwargs) -> _Done:
        name = request.name if request is not None else kwargs["name"]
        _permission("batch.jobs.delete")
        self.runs[name].cancel()
        with _lock:
            self.jobs[name].status.state = STATE.DELETION_IN_PROGRESS
        return _Done()


def _event(job: batch_v1.Job, text: str) -> None:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    job.status.status_events.append(
        batch_v1.StatusEvent(type_="STATUS_CHANGED", description=text, event_time=stamp)
    )


_preempt_lock = threading.Lock()
_preempted: set[str] = set()


def _take_preemption(job: batch_v1.Job) -> bool:
    rule = os.environ.get("MNB_BATCH_STANDIN_PREEMPT")
    if not rule or job.labels.get("snakemake-job") != rule:
        return False
    with _preempt_lock:
        if rule in _preempted:
            return False
        _preempted.add(rule)
        return True


class _JobRun(threading.Thread):
    def __init__(self, job: batch_v1.Job) -> None:
        super().__init__(daemon=True)
        self.job = job
        self.proc: subprocess.Popen | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.proc is not None and self.proc.poll() is None:
            _kill_vm(self.proc)

    def _set(self, state, text: str) -> None:
        with _lock:
            self.job.status.state = state
            _event(self.job, text)

    def run(self) -> None:
        group = self.job.task_groups[0]
        spec = group.task_spec
        self._set(STATE.SCHEDULED, "Job state is set from QUEUED to SCHEDULED.")
        self._set(STATE.RUNNING, "Job state is set from SCHEDULED to RUNNING.")
        for index in range(group.task_count or 1):
            for attempt in range(spec.max_retry_count + 1):
                code = self._attempt(spec, index, attempt)
                if code == 0 or self.cancelled:
                    break
                self._log(f"task {index} attempt {attempt} exited with code {code}")
                with _lock:
                    _event(
                        self.job,
                        f"Task state is updated from RUNNING to FAILED on task "
                        f"{index} with exit code {code}.",
                    )
            if code != 0:
                self._set(
                    STATE.FAILED,
                    f"Job state is set from RUNNING to FAILED: task {index} "
                    f"failed with exit code {code}.",
                )
                return
        self._set(STATE.SUCCEEDED, "Job state is set from RUNNING to SUCCEEDED.")

    def _log(self, line: str) -> None:
        with _lock:
            LOG_ENTRIES.setdefault(self.job.uid, []).append(line)

    def _attempt(self, spec: batch_v1.TaskSpec, index: int, attempt: int) -> int:
        """One attempt of one task on a fresh VM: every runnable in order, the first failure ends
        it (a barrier with one task has nothing to wait for)."""
        vm = Path(tempfile.mkdtemp(prefix=f"vm-{self.job.uid}-{attempt}-", dir=OUT))
        vm.chmod(0o755)  # the container's user must reach the mapped /tmp/workdir inside
        workdir = str(vm / "tmp-workdir")
        base = {
            "BATCH_TASK_INDEX": str(index),
            "BATCH_TASK_COUNT": "1",
            "PATH": f"{TRIPWIRES}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
        }
        for number, runnable in enumerate(spec.runnables):
            env = {**base, **runnable.environment.variables}
            if "barrier" in runnable:
                continue
            if "script" in runnable:
                argv = ["/bin/bash", "-c", runnable.script.text.replace(WORKDIR, workdir)]
                code = self._run(argv, env, cwd=vm, user=None, name=f"runnable {number}")
            elif "container" in runnable:
                c = runnable.container
                home = vm / "home"
                home.mkdir()
                os.chown(home, IMAGE_UID, IMAGE_GID)
                env.update(self._container_env(home))
                argv = [c.entrypoint, *c.commands] if c.entrypoint else list(c.commands)
                argv = [a.replace(WORKDIR, workdir) for a in argv]
                # --workdir /tmp/workdir: the plugin's volume is the working directory
                code = self._run(
                    argv,
                    env,
                    cwd=Path(workdir),
                    user=IMAGE_UID,
                    name=f"container {c.image_uri}",
                    preempt=attempt == 0 and _take_preemption(self.job),
                )
            else:
                raise NotImplementedError(f"runnable {number}: {runnable}")
            if code != 0:
                return code
        return 0

    @staticmethod
    def _container_env(home: Path) -> dict[str, str]:
        """What the image and the VM give the container: the image's user and Python (here the
        Batch-task venv's), and storage credentials (here the emulator's settings)."""
        env = {
            "HOME": str(home),
            "USER": "jovyan",
            "NB_UID": str(IMAGE_UID),
            "PYTHONUNBUFFERED": "1",  # the plugin's `-e PYTHONUNBUFFERED=1`
            "PATH": f"{TRIPWIRES}:{Path(TASK_PYTHON).parent}:/usr/bin:/bin",
        }
        for key, value in os.environ.items():
            if key in (
                "STORAGE_EMULATOR_HOST",
                "GOOGLE_CLOUD_PROJECT",
                "NO_GCE_CHECK",
                "GCE_METADATA_HOST",
                "GCE_METADATA_IP",
            ):
                env[key] = value
        if "STORAGE_EMULATOR_HOST" in env:  # the emulator records these calls as the job's SA
            env["STORAGE_EMULATOR_HOST"] = (
                env["STORAGE_EMULATOR_HOST"].split("/as/")[0] + "/as/" + TASK_IDENTITY
            )
        return env

    def _run(
        self,
        argv: list[str],
        env: dict,
        cwd: Path,
        user: int | None,
        name: str,
        preempt: bool = False,
    ) -> int:
        if not cwd.is_dir():
            self._log(f"{name}: the working directory {cwd} does not exist")
            return 127
        log = cwd.parent / f"{name.split()[0]}-{uuid.uuid4().hex[:6]}.log"
        with log.open("w") as out:
            kwargs = {"user": user, "group": IMAGE_GID, "extra_groups": []} if user else {}
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
            if preempt:
                time.sleep(1.0)  # the VM goes away while the task runs
                _kill_vm(self.proc)
                code = PREEMPTED
            else:
                code = self.proc.wait()
        for line in log.read_text(errors="replace").splitlines():
            self._log(line)
        return code


def _kill_vm(proc: subprocess.Popen) -> None:
    """Everything the runnable started dies with it, as when its VM goes: its process group
    (Popen's start_new_session), not only the bash at its top, whose Snakemake would otherwise
    run on and race the retry."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _Entry:
    def __init__(self, payload: str) -> None:
        self.payload = payload


class _Logger:
    def list_entries(self, filter_: str = "", page_size: int | None = None):
        uid = filter_.split("labels.job_uid=", 1)[1].strip()
        _permission("logging.logEntries.list")
        with _lock:
            return [_Entry(line) for line in LOG_ENTRIES.get(uid, [])]


class StandinLoggingClient:
    """Cloud Logging, as far as the plugin reads it: ``logger("batch_task_logs").list_entries``
    with ``labels.job_uid=<uid>``."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def logger(self, name: str) -> _Logger:
        return _Logger()


def _tripwires() -> None:
    TRIPWIRES.mkdir(parents=True, exist_ok=True)
    record = OUT / "installs.log"
    record.touch()
    record.chmod(0o666)  # written by the container's user too
    for name in INSTALLERS:
        tool = TRIPWIRES / name
        tool.write_text(
            f'#!/bin/sh\necho "{name} $*" >> {record}\n'
            f'echo "{name}: no installs at run time (batch stand-in)" >&2\nexit 1\n'
        )
        tool.chmod(0o755)
    OUT.chmod(0o755)


def install() -> None:
    """Answer the plugin's two Google clients here; the plugin itself is not touched."""
    _tripwires()
    import snakemake_executor_plugin_googlebatch.executor as executor

    batch_v1.BatchServiceClient = StandinBatchClient
    executor.batch_v1.BatchServiceClient = StandinBatchClient
    executor.logging.Client = StandinLoggingClient


def main() -> None:
    # Batch runs script runnables as root and the container as the image's user: standing in for
    # both needs root here (as CI has).
    if os.geteuid() != 0:
        sys.exit(
            "the Batch stand-in must run as root: it runs the container's commands as uid "
            f"{IMAGE_UID}, as the image does"
        )
    install()
    from snakemake.cli import main as snakemake_main

    # Snakemake asks a remote executor for its jobs' states every 10 s, which suits a VM that
    # boots in a minute; jobs here start at once, and the tests would mostly wait. A command that
    # sets its own interval keeps it.
    poll = (
        []
        if "--seconds-between-status-checks" in sys.argv
        else ["--seconds-between-status-checks", "1"]
    )
    sys.argv = ["snakemake", *sys.argv[1:], *poll]
    snakemake_main()


if __name__ == "__main__":
    main()
