"""The Google Batch and Cloud Logging stand-in: a service on 127.0.0.1 that answers every process
of a test run, for the tests only.

Google Batch has no emulator, so this is the one place where a Google service is answered by
something else. It is a small HTTP service started by the test (`BatchService`), with the IAM of
the run in force; the Batch and Logging clients of each process that talks to it (the submitting
Snakemake, `workflow/googlebatch.py`, a coordinator's Snakemake inside a Job's container) are
replaced by `batch_standin`'s, which send it the calls. Storage stays the real emulator.

As strict as Batch, as far as one machine can be:

- every call is made by an identity (``MNB_BATCH_STANDIN_AS``; a Job's tasks are its service
  account) and checked against that identity's grants (`iam.Policy`): ``batch.jobs.create`` on the
  project, ``iam.serviceAccounts.actAs`` on the Job's service account (Batch's own wording when it
  is missing), ``batch.jobs.get``/``.delete``, ``logging.logEntries.list``;
- a Job that names no service account runs as the project's Compute Engine default account, which
  is given no roles here (as in projects with ``iam.automaticIamGrantsForDefaultServiceAccounts``);
- each task runs as its Job's account: its VM's agent reports state (``batch.states.report``), its
  output reaches Cloud Logging (``logging.logEntries.create``), its container image is pulled
  (``artifactregistry.repositories.downloadArtifacts`` on the image's repository), its storage
  calls are refused outside its grants (the emulator's front, given the account's policy). A VM
  whose agent cannot report leaves the Job SCHEDULED on Batch, for ever; here the Job fails with
  an event that says why, so that the run ends;
- runnables in order, each task up to ``maxRetryCount`` retries, scripts with ``bash -c`` as root,
  the container's entrypoint and commands as the image's user (uid 1000, gid 100) with the
  `batch-task` venv's Python first on PATH (no container engine: what the image has); every path
  under ``/tmp/`` in a runnable is the VM's own (a folder per VM attempt), as two VMs never share
  a disk; installers first on PATH are tripwires (``installs.log``), as on a VM with no route out;
- Cloud Logging's read quota: ``log_quota`` reads (``entries.list`` pages) per minute per project,
  refused past it with ResourceExhausted in Google's words. Its minute runs on the stand-in's clock,
  which moves only when a client sleeps (the executor plugin's 60 s wait after ResourceExhausted,
  recorded and skipped): what the quota costs a run is the waiting it causes, counted exactly;
- ``preempt=RULE`` kills the first attempt of the first Job of that rule while it runs, as a spot
  VM's preemption does (exit code 50001, as Batch reports it).

Every Job received is written as JSON to ``<out>/jobs/<job id>.json``, every checked call to
`BatchService.calls`, every wait to `BatchService.slept`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

IMAGE_UID, IMAGE_GID = 1000, 100  # NB_UID, NB_GID of quay.io/jupyter images
PREEMPTED = 50001  # the exit code Batch gives a task whose spot VM was preempted
PROJECT_NUMBER = "123456789012"  # the example project's number, for the default account's name
DEFAULT_ACCOUNT = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
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
STANDIN = Path(__file__).with_name("batch_standin.py")
# https://cloud.google.com/logging/quotas: read requests per minute per project; the wording of
# the refusal is Google's, as users quote it (e.g. github.com/snarfed/bridgy-fed/issues/620).
QUOTA_MESSAGE = (
    "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of "
    f"service 'logging.googleapis.com' for consumer 'project_number:{PROJECT_NUMBER}'."
)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Identity:
    who: str  # how the emulator's front and the tests name it (iam.yaml's person)
    member: str  # how Google names it in messages (an email)
    policy: object  # iam.Policy, or None: no grants at all


@dataclass
class Call:
    who: str
    permission: str
    resource: str
    allowed: bool


@dataclass
class _Run:
    job: dict
    account: Identity
    thread: threading.Thread | None = None
    proc: subprocess.Popen | None = None
    cancelled: bool = False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def repository_of(image_uri: str) -> str:
    """``projects/P/locations/R/repositories/REPO`` of an Artifact Registry image name."""
    match = re.match(r"^([a-z0-9-]+)-docker\.pkg\.dev/([^/]+)/([^/]+)/", image_uri)
    if not match:
        return f"(not in Artifact Registry) {image_uri}"
    region, project, repository = match.groups()
    return f"projects/{project}/locations/{region}/repositories/{repository}"


@dataclass
class BatchService:
    """Start with ``with BatchService(...) as service:``; `env` is what a process needs to be
    answered by it as one identity."""

    out: Path
    task_python: str
    identities: dict[str, Identity]  # who -> identity
    project: str
    emulator: object = None  # its front enforces the identities' storage grants
    log_quota: int | None = None  # entries.list per minute per project, or no limit
    preempt: str | None = None
    calls: list[Call] = field(default_factory=list)
    slept: list[tuple[str, float]] = field(default_factory=list)  # (who, seconds)
    refused_reads: int = 0
    clock: float = 0.0  # seconds; moves only when a client sleeps
    problems: list[str] = field(default_factory=list)  # what Batch would show, for the tests

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, dict] = {}
        self._runs: dict[str, _Run] = {}
        self._logs: dict[str, list[str]] = {}  # job uid -> lines in Cloud Logging
        self._reads: list[float] = []  # clock times of the quota's reads
        self._preempted = False
        self._server: ThreadingHTTPServer | None = None
        self.by_email = {i.member: i for i in self.identities.values()}

    # -- life cycle -----------------------------------------------------------------------
    def __enter__(self) -> BatchService:
        if os.geteuid() != 0:
            raise RuntimeError(
                "the Batch stand-in must run as root: it runs scripts as root and the "
                f"container's commands as uid {IMAGE_UID}, as Batch and the image do"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        self.out.chmod(0o755)  # the image's user reaches its VM folders inside
        (self.out / "jobs").mkdir(exist_ok=True)
        self._tripwires()
        self._site()
        self._saved = {}
        if self.emulator is not None:
            for identity in self.identities.values():
                if identity.policy is not None:
                    self._saved[identity.who] = self.emulator.policies.get(identity.who)
                    self.emulator.policies[identity.who] = identity.policy
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                try:
                    answer = service.answer(urlsplit(self.path).path, body)
                    status, data = 200, json.dumps(answer).encode()
                except Refused as refused:
                    status = refused.status
                    data = json.dumps({"message": str(refused)}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for run in list(self._runs.values()):
            self._cancel(run)
        for run in list(self._runs.values()):
            if run.thread is not None:
                run.thread.join(timeout=30)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for who, before in self._saved.items():
            if before is None:
                self.emulator.policies.pop(who, None)
            else:
                self.emulator.policies[who] = before

    @property
    def url(self) -> str:
        assert self._server is not None, "enter the service first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def site(self) -> Path:
        return self.out / "site"

    def env(self, who: str, environ: dict) -> dict:
        """``environ`` for a process answered by this service as ``who``, its storage calls
        recorded (and checked) as ``who``'s."""
        env = dict(environ)
        env["MNB_BATCH_STANDIN_URL"] = self.url
        env["MNB_BATCH_STANDIN_AS"] = who
        env["MNB_BATCH_STANDIN"] = str(self.out)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.site), environ.get("PYTHONPATH", "")) if p
        )
        if "STORAGE_EMULATOR_HOST" in env:
            host = env["STORAGE_EMULATOR_HOST"].split("/as/")[0]
            env["STORAGE_EMULATOR_HOST"] = f"{host}/as/{who}"
        return env

    # -- what the tests read --------------------------------------------------------------
    def jobs(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.out / "jobs").glob("*.json"))]

    def installs(self) -> str:
        return (self.out / "installs.log").read_text()

    def needs(self, who: str) -> set[tuple[str, str]]:
        """(permission, resource) of ``who``'s allowed calls, as permissions.recorded_needs."""
        with self._lock:
            return {(c.permission, c.resource) for c in self.calls if c.who == who and c.allowed}

    def state(self, name: str) -> str:
        with self._lock:
            return self._jobs[name]["status"]["state"]

    # -- the API --------------------------------------------------------------------------
    def answer(self, path: str, body: dict):
        caller = self.identities.get(body.get("caller", ""))
        if caller is None:
            raise Refused(401, f"the stand-in knows no caller {body.get('caller')!r}")
        if path == "/batch/create":
            return self._create(caller, body)
        if path == "/batch/get":
            self._check(caller, "batch.jobs.get", f"projects/{self.project}")
            with self._lock:
                if body["name"] not in self._jobs:
                    raise Refused(404, f"Job {body['name']} not found")
                return self._jobs[body["name"]]
        if path == "/batch/list":
            self._check(caller, "batch.jobs.list", f"projects/{self.project}")
            with self._lock:
                return [j for n, j in self._jobs.items() if n.startswith(body["parent"])]
        if path == "/batch/delete":
            self._check(caller, "batch.jobs.delete", f"projects/{self.project}")
            with self._lock:
                run = self._runs[body["name"]]
            self._cancel(run)
            self._set(run, "DELETION_IN_PROGRESS", "Job is being deleted.")
            return {}
        if path == "/logging/list":
            return self._read_logs(caller, body)
        if path == "/clock/sleep":
            with self._lock:
                self.slept.append((caller.who, float(body["seconds"])))
                self.clock += float(body["seconds"])
            return {}
        raise Refused(404, f"no such call: {path}")

    def _check(self, identity: Identity, permission: str, resource: str) -> bool:
        allowed = identity.policy is not None and identity.policy.allows(permission, resource)
        with self._lock:
            self.calls.append(Call(identity.who, permission, resource, allowed))
        return allowed

    def _require(self, identity: Identity, permission: str, resource: str) -> None:
        if not self._check(identity, permission, resource):
            raise Refused(
                403,
                f"Permission '{permission}' denied on '{resource}' (or it may not exist) for "
                f"{identity.member}",
            )

    def _create(self, caller: Identity, body: dict) -> dict:
        parent, job_id, job = body["parent"], body["job_id"], body["job"]
        self._require(caller, "batch.jobs.create", f"projects/{self.project}")
        email = job.get("allocationPolicy", {}).get("serviceAccount", {}).get("email") or ""
        email = email or DEFAULT_ACCOUNT
        if not self._check(caller, "iam.serviceAccounts.actAs", f"serviceAccounts/{email}"):
            # Batch's own words (github.com/GoogleCloudPlatform/batch-samples/issues/22)
            raise Refused(
                403,
                f'caller does not have access to act as the specified service account: "{email}"',
            )
        account = self.by_email.get(email) or Identity("compute-default", email, None)
        name = f"{parent}/jobs/{job_id}"
        job = {
            **job,
            "name": name,
            "uid": f"{job_id}-{uuid.uuid4().hex[:8]}",
            "createTime": _now(),
            "status": {"state": "QUEUED", "statusEvents": []},
        }
        (self.out / "jobs" / f"{job_id}.json").write_text(
            json.dumps({"parent": parent, "job_id": job_id, "job": body["job"]}, indent=1)
        )
        run = _Run(job, account)
        with self._lock:
            self._jobs[name] = job
            self._runs[name] = run
        run.thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        run.thread.start()
        return job

    def _read_logs(self, caller: Identity, body: dict) -> dict:
        self._require(caller, "logging.logEntries.list", f"projects/{self.project}")
        with self._lock:
            if self.log_quota is not None:
                recent = [t for t in self._reads if t > self.clock - 60]
                if len(recent) >= self.log_quota:
                    self.refused_reads += 1
                    raise Refused(429, QUOTA_MESSAGE)
                self._reads.append(self.clock)
            uid = body["filter"].split("labels.job_uid=", 1)[1].strip()
            lines = self._logs.get(uid, [])
            start = int(body.get("page_token") or 0)
            size = int(body.get("page_size") or 1000)
            page = lines[start : start + size]
            following = start + size if start + size < len(lines) else None
        return {"entries": page, "next_page_token": following}

    # -- running a Job --------------------------------------------------------------------
    def _set(self, run: _Run, state: str, text: str) -> None:
        with self._lock:
            run.job["status"]["state"] = state
            run.job["status"]["statusEvents"].append(
                {"type": "STATUS_CHANGED", "description": text, "eventTime": _now()}
            )

    def _log(self, run: _Run, line: str) -> None:
        with self._lock:
            self._logs.setdefault(run.job["uid"], []).append(line)

    def _cancel(self, run: _Run) -> None:
        run.cancelled = True
        if run.proc is not None and run.proc.poll() is None:
            _kill_vm(run.proc)

    def _run(self, run: _Run) -> None:
        group = run.job["taskGroups"][0]
        spec = group["taskSpec"]
        account = run.account
        self._set(run, "SCHEDULED", "Job state is set from QUEUED to SCHEDULED.")
        if not self._check(account, "batch.states.report", f"projects/{self.project}"):
            text = (
                f"The job's VMs run as {account.member}, which may not report to Batch "
                f"(batch.states.report, role Batch Agent Reporter, on projects/{self.project}). "
                f"On Google Batch the job stays SCHEDULED and never runs; the stand-in fails it."
            )
            with self._lock:
                self.problems.append(text)
            self._set(run, "FAILED", text)
            return
        self._set(run, "RUNNING", "Job state is set from SCHEDULED to RUNNING.")
        code = 0
        for index in range(int(group.get("taskCount") or 1)):
            for attempt in range(int(spec.get("maxRetryCount") or 0) + 1):
                code = self._attempt(run, spec, index, attempt)
                if code == 0 or run.cancelled:
                    break
                self._log(run, f"task {index} attempt {attempt} exited with code {code}")
                with self._lock:
                    run.job["status"]["statusEvents"].append(
                        {
                            "type": "STATUS_CHANGED",
                            "description": f"Task state is updated from RUNNING to FAILED on "
                            f"task {index} with exit code {code}.",
                            "eventTime": _now(),
                        }
                    )
            if code != 0:
                self._set(
                    run,
                    "FAILED",
                    f"Job state is set from RUNNING to FAILED: task {index} failed with exit "
                    f"code {code}.",
                )
                return
        self._set(run, "SUCCEEDED", "Job state is set from RUNNING to SUCCEEDED.")

    def _attempt(self, run: _Run, spec: dict, index: int, attempt: int) -> int:
        """One attempt of one task on a fresh VM: every runnable in order, the first failure
        ends it (a barrier with one task has nothing to wait for)."""
        vm = Path(tempfile.mkdtemp(prefix=f"vm-{run.job['uid']}-{attempt}-", dir=self.out))
        vm.chmod(0o755)  # the container's user must reach the mapped /tmp/workdir inside
        tmp = vm / "tmp"  # the VM's own /tmp
        tmp.mkdir()
        tmp.chmod(0o1777)
        base = {
            "BATCH_TASK_INDEX": str(index),
            "BATCH_TASK_COUNT": "1",
            "PATH": f"{self.out / 'tripwires'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
            "/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
        }

        def local(text: str) -> str:
            return text.replace("/tmp/", f"{tmp}/")

        for number, runnable in enumerate(spec["runnables"]):
            env = {**base, **runnable.get("environment", {}).get("variables", {})}
            if "barrier" in runnable:
                continue
            if "script" in runnable:
                argv = ["/bin/bash", "-c", local(runnable["script"]["text"])]
                code = self._process(
                    run, argv, env, cwd=vm, user=None, name=f"runnable {number}", logs=vm
                )
            elif "container" in runnable:
                container = runnable["container"]
                image = container["imageUri"]
                repository = repository_of(image)
                account = run.account
                pull = "artifactregistry.repositories.downloadArtifacts"
                if not self._check(account, pull, repository):
                    host, _, rest = image.partition("/")
                    path, _, tag = rest.rpartition(":")
                    self._output(
                        run,
                        f'docker: Error response from daemon: Head "https://{host}/v2/{path}/'
                        f'manifests/{tag}": denied: Permission "{pull}" denied on resource '
                        f'"{repository}" (or it may not exist).',
                    )
                    return 125
                home = vm / "home"
                home.mkdir()
                os.chown(home, IMAGE_UID, IMAGE_GID)
                env.update(self._container_env(home, account))
                entry = container.get("entrypoint")
                argv = [entry, *container.get("commands", [])] if entry else container["commands"]
                workdir = tmp / "workdir"  # the plugin's volume and --workdir
                workdir.mkdir(exist_ok=True)
                preempt = attempt == 0 and self._take_preemption(run)
                code = self._process(
                    run,
                    [local(a) for a in argv],
                    env,
                    cwd=workdir,
                    user=IMAGE_UID,
                    name=f"container {image}",
                    logs=vm,
                    preempt=preempt,
                )
            else:
                raise NotImplementedError(f"runnable {number}: {runnable}")
            if code != 0:
                return code
        return 0

    def _take_preemption(self, run: _Run) -> bool:
        if not self.preempt or run.job.get("labels", {}).get("snakemake-job") != self.preempt:
            return False
        with self._lock:
            if self._preempted:
                return False
            self._preempted = True
            return True

    def _container_env(self, home: Path, account: Identity) -> dict[str, str]:
        """What the image and the VM give the container: the image's user and Python (here the
        batch-task venv's), and the VM's credentials, which are its service account's (here the
        emulator's settings, the calls recorded and checked as that account's)."""
        env = {
            "HOME": str(home),
            "USER": "jovyan",
            "NB_UID": str(IMAGE_UID),
            "PYTHONUNBUFFERED": "1",  # the plugin's `-e PYTHONUNBUFFERED=1`
            "PATH": f"{self.out / 'tripwires'}:{Path(self.task_python).parent}:/usr/bin:/bin",
            "MNB_BATCH_STANDIN_URL": self.url,
            "MNB_BATCH_STANDIN_AS": account.who,
            "MNB_BATCH_STANDIN": str(self.out),
            "PYTHONPATH": str(self.site),  # a Snakemake in the container is answered here too
        }
        settings = getattr(self.emulator, "env", None) or os.environ
        for key in (
            "STORAGE_EMULATOR_HOST",
            "GOOGLE_CLOUD_PROJECT",
            "NO_GCE_CHECK",
            "GCE_METADATA_HOST",
            "GCE_METADATA_IP",
        ):
            if key in settings:
                env[key] = settings[key]
        if "STORAGE_EMULATOR_HOST" in env:
            host = env["STORAGE_EMULATOR_HOST"].split("/as/")[0]
            env["STORAGE_EMULATOR_HOST"] = f"{host}/as/{account.who}"
        return env

    def _output(self, run: _Run, line: str) -> None:
        """A line of the task's output: in Cloud Logging if its account may write there."""
        if self._check(run.account, "logging.logEntries.create", f"projects/{self.project}"):
            self._log(run, line)
        else:
            with self._lock:
                if not run.job.get("_logs_lost"):
                    run.job["_logs_lost"] = True
                    self.problems.append(
                        f"{run.job['name']}: its output never reached Cloud Logging: "
                        f"{run.account.member} lacks logging.logEntries.create"
                    )

    def _process(
        self,
        run: _Run,
        argv: list[str],
        env: dict,
        cwd: Path,
        user: int | None,
        name: str,
        logs: Path,
        preempt: bool = False,
    ) -> int:
        if run.cancelled:
            return 1
        log = logs / f"{name.split()[0]}-{uuid.uuid4().hex[:6]}.log"
        with log.open("w") as out:
            kwargs = {"user": user, "group": IMAGE_GID, "extra_groups": []} if user else {}
            run.proc = subprocess.Popen(
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
                _kill_vm(run.proc)
                code = PREEMPTED
            else:
                code = run.proc.wait()
        for line in log.read_text(errors="replace").splitlines():
            self._output(run, line)
        return code

    # -- set-up ---------------------------------------------------------------------------
    def _tripwires(self) -> None:
        wires = self.out / "tripwires"
        wires.mkdir(exist_ok=True)
        record = self.out / "installs.log"
        record.touch()
        record.chmod(0o666)  # written by the container's user too
        for name in INSTALLERS:
            tool = wires / name
            tool.write_text(
                f'#!/bin/sh\necho "{name} $*" >> {record}\n'
                f'echo "{name}: no installs at run time (batch stand-in)" >&2\nexit 1\n'
            )
            tool.chmod(0o755)

    def _site(self) -> None:
        """A sitecustomize that gives every Python started with this folder on PYTHONPATH the
        stand-in's clients (copied here: the image's user may not reach the checkout)."""
        self.site.mkdir(exist_ok=True)
        shutil.copy(STANDIN, self.site / "batch_standin.py")
        (self.site / "sitecustomize.py").write_text(
            "import os\n"
            "if os.environ.get('MNB_BATCH_STANDIN_URL'):\n"
            "    import batch_standin\n"
            "    batch_standin.install_when_imported()\n"
        )
        for path in (self.site, *self.site.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)


def _kill_vm(proc: subprocess.Popen) -> None:
    """Everything the runnable started dies with it, as when its VM goes: its process group
    (Popen's start_new_session), not only the bash at its top."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
