"""The IAM permission each Cloud Storage JSON API call needs, for the calls the front records.

From Google's per-method table, https://cloud.google.com/storage/docs/json_api/v1 (each method's
"Authorization" section) and https://cloud.google.com/storage/docs/access-control/iam-json. An
upload that may replace an object needs ``storage.objects.delete`` as well as ``create``; one
with ``ifGenerationMatch=0`` can only create, and is counted as such. A call this table does not
know raises, so a new kind of call cannot slip past the roles check unnoticed. A call that names a
billing project (``userProject``, which Snakemake's gcs storage plugin adds to every call) needs
``serviceusage.services.use`` on that project (Requester Pays rules: counted whether or not the
bucket has it on, to be safe).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

BUCKET = r"/b/[^/]+"
OBJECT = BUCKET + r"/o/[^/]+"
# (method, path below /storage/v1 or /upload/storage/v1 or /download/storage/v1) -> permissions
RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("GET", r"/b", ("storage.buckets.list",)),
    ("POST", r"/b", ("storage.buckets.create",)),
    ("GET", BUCKET, ("storage.buckets.get",)),
    ("PATCH", BUCKET, ("storage.buckets.update",)),
    ("PUT", BUCKET, ("storage.buckets.update",)),
    ("DELETE", BUCKET, ("storage.buckets.delete",)),
    ("GET", BUCKET + "/iam", ("storage.buckets.getIamPolicy",)),
    ("PUT", BUCKET + "/iam", ("storage.buckets.setIamPolicy",)),
    ("GET", BUCKET + "/storageLayout", ("storage.objects.list",)),  # as Google's table says
    ("GET", BUCKET + "/o", ("storage.objects.list",)),
    ("GET", OBJECT, ("storage.objects.get",)),
    ("PATCH", OBJECT, ("storage.objects.update",)),
    ("PUT", OBJECT, ("storage.objects.update",)),
    ("DELETE", OBJECT, ("storage.objects.delete",)),
    ("POST", BUCKET + "/o", ("storage.objects.create",)),  # uploads (with the /upload prefix)
    ("PUT", BUCKET + "/o", ("storage.objects.create",)),  # a resumable upload's chunks
    (
        "POST",
        OBJECT + r"/(rewriteTo|copyTo)" + OBJECT,
        ("storage.objects.get", "storage.objects.create"),
    ),
    ("POST", OBJECT + "/compose", ("storage.objects.get", "storage.objects.create")),
]
PREFIX = re.compile(r"^/(?:upload/|download/)?storage/v1(/.*)?$")


class UnknownCall(ValueError):
    pass


def needed(method: str, path: str) -> set[str]:
    """The permissions one call needs."""
    url = urlsplit(path)
    match = PREFIX.match(url.path)
    if not match:
        raise UnknownCall(f"not a Cloud Storage JSON API call: {method} {path}")
    rest = match.group(1) or ""
    query = parse_qs(url.query)
    for rule_method, pattern, permissions in RULES:
        if rule_method == method and re.fullmatch(pattern, rest):
            found = set(permissions)
            creates = "storage.objects.create" in found and method in ("POST", "PUT")
            if creates and query.get("ifGenerationMatch") != ["0"] and "upload_id" not in query:
                found.add("storage.objects.delete")  # it may replace an object
            if "userProject" in query:
                found.add("serviceusage.services.use")
            return found
    raise UnknownCall(f"no permission known for {method} {path}")


def recorded(calls, who: str | None = None) -> set[str]:
    """The permissions of every recorded call (of ``who`` only, if given)."""
    return set().union(*(needed(c.method, c.path) for c in calls if who is None or c.who == who))
