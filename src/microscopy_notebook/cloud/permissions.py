"""The IAM permission each Cloud Storage JSON API call needs, for the calls the front records.

From Google's per-method table, https://cloud.google.com/storage/docs/json_api/v1 (each method's
"Authorization" section) and https://cloud.google.com/storage/docs/access-control/iam-json. An
upload that may replace an object needs ``storage.objects.delete`` as well as ``create``; one
with ``ifGenerationMatch=0`` can only create, and is counted as such. A call this table does not
know raises, so a new kind of call cannot slip past the roles check unnoticed. A call that names a
billing project (``userProject``, which Snakemake's gcs storage plugin adds to every call) needs
``serviceusage.services.use`` on that project (Requester Pays rules: counted whether or not the
bucket has it on, to be safe).

Each permission is needed on a resource: the bucket the path names (``buckets/NAME``), or for
listing and creating buckets and for the billing project the project (``projects/ID``, from the
call's ``project`` or ``userProject``). `needs` gives both; `needed` the permissions alone.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

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


def resource(path: str) -> str:
    """The resource a call acts on: ``buckets/NAME``, or ``projects/ID`` for the bucket list and
    bucket creation (``""`` when the call names neither)."""
    url = urlsplit(path)
    match = PREFIX.match(url.path)
    rest = (match.group(1) or "") if match else ""
    bucket = re.match(r"^/b/([^/]+)", rest)
    if bucket:
        return f"buckets/{unquote(bucket.group(1))}"
    project = parse_qs(url.query).get("project")
    return f"projects/{project[0]}" if project else ""


def needs(method: str, path: str) -> set[tuple[str, str]]:
    """The (permission, resource) pairs one call needs."""
    url = urlsplit(path)
    match = PREFIX.match(url.path)
    if not match:
        raise UnknownCall(f"not a Cloud Storage JSON API call: {method} {path}")
    rest = match.group(1) or ""
    query = parse_qs(url.query)
    on = resource(path)
    for rule_method, pattern, permissions in RULES:
        if rule_method == method and re.fullmatch(pattern, rest):
            found = set(permissions)
            creates = "storage.objects.create" in found and method in ("POST", "PUT")
            if creates and query.get("ifGenerationMatch") != ["0"] and "upload_id" not in query:
                found.add("storage.objects.delete")  # it may replace an object
            out = {(p, on) for p in found}
            if "userProject" in query:
                out.add(("serviceusage.services.use", f"projects/{query['userProject'][0]}"))
            return out
    raise UnknownCall(f"no permission known for {method} {path}")


def needed(method: str, path: str) -> set[str]:
    """The permissions one call needs."""
    return {permission for permission, _ in needs(method, path)}


def recorded_needs(calls, who: str | None = None) -> set[tuple[str, str]]:
    """The (permission, resource) pairs of every recorded call (of ``who`` only, if given) that
    was served: a call refused under a policy (the client went on without it) needs nothing."""
    return set().union(
        *(
            needs(c.method, c.path)
            for c in calls
            if (who is None or c.who == who) and not getattr(c, "refused", False)
        )
    )


def recorded(calls, who: str | None = None) -> set[str]:
    """The permissions of every recorded call (of ``who`` only, if given)."""
    return {permission for permission, _ in recorded_needs(calls, who)}


def refusal(policy, method: str, path: str) -> tuple[int, bytes] | None:
    """Cloud Storage's answer to a call ``policy`` (`iam.Policy`) does not allow, or None: 403
    with the message Google words it with, for the first permission missing."""
    import json

    try:
        wanted = needs(method, path)
    except UnknownCall as err:  # what cannot be checked is refused, never let through
        wanted = {(f"(unknown: {err})", "")}
    for permission, on in sorted(wanted):
        if policy.allows(permission, on):
            continue
        if on.startswith("projects/"):
            what = "the Google Cloud project"
        elif "/o/" in urlsplit(path).path or re.search(r"/o(\?|$)", urlsplit(path).path):
            what = "the Google Cloud Storage object"
        else:
            what = "the Google Cloud Storage bucket"
        message = (
            f"{policy.member} does not have {permission} access to {what}. Permission "
            f"'{permission}' denied on resource (or it may not exist)."
        )
        error = {
            "code": 403,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "forbidden"}],
        }
        return 403, json.dumps({"error": error}).encode()
    return None
