"""The Google Batch and Cloud Logging clients of a process answered by the stand-in service
(tests/workflow/batch_service.py), for the tests only.

Run this file with the Python of the image's environment instead of ``python -m snakemake`` and it
is Snakemake, with the real executor plugin, the real profile and Snakefile, except that
``google.cloud.batch_v1.BatchServiceClient`` and ``google.cloud.logging.Client`` send their
calls to the service at ``MNB_BATCH_STANDIN_URL``, as the identity ``MNB_BATCH_STANDIN_AS``. Any
other Python started with the service's ``site`` folder on PYTHONPATH (`workflow/googlebatch.py`
as a reader types it, a coordinator's Snakemake inside a Job's container) gets the same clients
through its sitecustomize, as soon as it imports the Google modules (`install_when_imported`).

Two more things of the executor plugin are the stand-in's: its ``time.sleep`` (the 60 s wait after
a ResourceExhausted from Logging) is told to the service, whose clock it moves, and lasts a tenth
of a second; and it asks for the jobs' states every second, not every 10 s (the stand-in's jobs
start at once; a VM takes a minute). The plugin is otherwise not touched.

Only the standard library is imported at the top: a render task's Python loads this file too.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
import time
import urllib.error
import urllib.request

POLL_SECONDS = 1


def _call(path: str, body: dict):
    body = {**body, "caller": os.environ.get("MNB_BATCH_STANDIN_AS", "")}
    request = urllib.request.Request(
        os.environ["MNB_BATCH_STANDIN_URL"] + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        from google.api_core import exceptions

        message = json.loads(err.read() or b"{}").get("message", str(err))
        if err.code == 429:  # what the gRPC clients raise on a used-up quota
            raise exceptions.ResourceExhausted(message) from None
        raise exceptions.from_http_status(err.code, message) from None


def _job(data: dict):
    from google.cloud import batch_v1

    return batch_v1.Job.from_json(json.dumps(data), ignore_unknown_fields=True)


class _Done:
    """What ``delete_job`` returns: an operation whose ``result()`` the plugin waits on."""

    def result(self, timeout: float | None = None) -> str:
        return "deleted"


class StandinBatchClient:
    """Answers the calls snakemake-executor-plugin-googlebatch 0.5.1 and googlebatch.py make."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def create_job(self, request=None, *, parent: str = "", job=None, job_id: str = ""):
        from google.cloud import batch_v1

        if request is not None:
            parent, job, job_id = request.parent, request.job, request.job_id
        body = {
            "parent": parent,
            "job_id": job_id,
            "job": json.loads(batch_v1.Job.to_json(job)),
        }
        return _job(_call("/batch/create", body))

    def get_job(self, request=None, *, name: str = ""):
        return _job(_call("/batch/get", {"name": request.name if request is not None else name}))

    def list_jobs(self, request=None, *, parent: str = "", **kwargs):
        parent = request.parent if request is not None else parent
        return [_job(j) for j in _call("/batch/list", {"parent": parent})]

    def delete_job(self, request=None, *, name: str = "", **kwargs) -> _Done:
        _call("/batch/delete", {"name": request.name if request is not None else name})
        return _Done()


class _Entry:
    def __init__(self, payload: str) -> None:
        self.payload = payload


class _Logger:
    def list_entries(self, filter_: str = "", page_size: int | None = None, **kwargs):
        """Page by page, as the real client: each page is one ``entries.list`` call."""
        token = None
        while True:
            page = _call(
                "/logging/list",
                # the API's own default page: 50 entries
                {"filter": filter_, "page_size": page_size or 50, "page_token": token},
            )
            for line in page["entries"]:
                yield _Entry(line)
            token = page["next_page_token"]
            if token is None:
                return


class StandinLoggingClient:
    """Cloud Logging, as far as the plugin and googlebatch.py read it: ``logger(NAME)
    .list_entries(filter_="labels.job_uid=UID", page_size=N)``."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def logger(self, name: str) -> _Logger:
        return _Logger()


class _Clock:
    """The executor module's ``time``: its sleeps move the stand-in's clock instead."""

    def sleep(self, seconds: float) -> None:
        _call("/clock/sleep", {"seconds": seconds})
        time.sleep(min(seconds, 0.1))

    def __getattr__(self, name: str):
        return getattr(time, name)


def _patch_batch(module) -> None:
    module.BatchServiceClient = StandinBatchClient


def _patch_logging(module) -> None:
    module.Client = StandinLoggingClient


def _patch_executor(module) -> None:
    module.time = _Clock()
    executor = module.GoogleBatchExecutor
    if getattr(executor, "_standin", False):
        return
    original = executor.__post_init__

    def __post_init__(self) -> None:
        original(self)
        self.next_seconds_between_status_checks = POLL_SECONDS

    executor.__post_init__ = __post_init__
    executor._standin = True


PATCHES = {
    "google.cloud.batch_v1": _patch_batch,
    "google.cloud.logging": _patch_logging,
    "snakemake_executor_plugin_googlebatch.executor": _patch_executor,
}


class _Hook(importlib.abc.MetaPathFinder):
    """Patches each module of PATCHES right after it is first imported."""

    mnb_standin = True  # one hook per process, whichever copy of this file installed it

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "mnb_standin", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


def install_when_imported() -> None:
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    if not any(getattr(f, "mnb_standin", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())


def install() -> None:
    """Patch now: the plugin is imported, and with it the two Google clients."""
    install_when_imported()
    import snakemake_executor_plugin_googlebatch.executor  # noqa: F401 - patched on import


def main() -> None:
    if not os.environ.get("MNB_BATCH_STANDIN_URL"):
        sys.exit("no Batch stand-in service: start one (tests/workflow/batchrun.py) first")
    install()
    from snakemake.cli import main as snakemake_main

    sys.argv = ["snakemake", *sys.argv[1:]]
    snakemake_main()


if __name__ == "__main__":
    main()
