"""The renderer's own process: `preview.make_preview` for one batch, one file after another.

A file can kill the process that reads it: the kernel's OOM killer ends it when a file needs more
memory than the machine (or the Batch task's container) has, and a reader can crash on a hostile
file. So the batch's process (``render_batch``: storage, report rows) does not render; it starts
this process once per batch and hands it the files over a pipe, the next one before it takes the
last one's answer. When this process dies, the batch's process knows which file it was on (the
oldest one unanswered), starts a new one, gives that file a placeholder saying the renderer was
stopped, and goes on with the rest. This process asks the kernel to pick it first when memory
runs out (``oom_score_adj``), so the batch's process survives to say so.

Protocol (pickles on stdin and on the stdout the process was started with; the readers' own
prints go to stderr, the batch's log): first {"ready", "import_seconds"}; then for each request
{"op": "render", "path", "name"} or {"op": "placeholder", "name", "reason"} one answer, in the
order asked, the fields of a `preview.Preview`; {"op": "bye"} gets {"peak_memory_mib"} and the
process exits.
"""

from __future__ import annotations

import os
import pickle
import resource
import sys
import time
from pathlib import Path, PurePosixPath

FIELDS = ("png", "ok", "kind", "title", "signals", "shown", "error")


def peak_memory_mib() -> float:
    """The most memory this process has held (its peak resident set), in MiB."""
    try:
        with open("/proc/self/status") as status:  # Linux: this process only, not its parent
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve() -> None:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a reader's print() must not end up in the answers
    requests = sys.stdin.buffer
    try:  # the OOM killer's first choice: this process, not the batch's or Snakemake's
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")
    except OSError:
        pass

    def send(message: dict) -> None:
        pickle.dump(message, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()

    start = time.perf_counter()
    from thumbnails import preview  # the heavy import, paid once per batch

    send({"ready": True, "import_seconds": time.perf_counter() - start})
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        if request["op"] == "bye":
            send({"peak_memory_mib": peak_memory_mib()})
            return
        if request["op"] == "placeholder":
            name = request["name"]
            made = preview._placeholder(name, PurePosixPath(name).name, request["reason"])
        else:
            made = preview.make_preview(Path(request["path"]), request["name"])
        send({field: getattr(made, field) for field in FIELDS})


if __name__ == "__main__":
    serve()
