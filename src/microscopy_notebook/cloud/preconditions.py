"""Cloud Storage's generation preconditions where fake-gcs-server ignores them, for the front.

fake-gcs-server (1.54) enforces ``ifGenerationMatch`` on uploads, but not on the other calls that
take one: it composes, deletes and patches whatever the precondition says, and a compose keeps the
destination's generation (Cloud Storage makes a new one), and a patch never raises the
metageneration. Code that relies on those preconditions (the thumbnail job's report, its
relabelled previews) would pass every test and still race on Cloud Storage. `Preconditions` sits
in the front (`front.Front`) and makes those calls behave as Cloud Storage documents them
(https://cloud.google.com/storage/docs/request-preconditions):

* ``compose`` is done here: the destination's ``ifGenerationMatch``/``ifMetagenerationMatch`` and
  each source's ``objectPreconditions.ifGenerationMatch`` (and ``generation``) are checked, the
  sources are read and the result is written as a new generation with an upload that carries the
  destination's precondition, which fake-gcs-server checks atomically; the answer has
  ``componentCount``, as Cloud Storage's does.
* ``DELETE``, ``PATCH`` and media ``GET`` with ``ifGenerationMatch``, ``ifGenerationNotMatch``,
  ``ifMetagenerationMatch`` or ``ifMetagenerationNotMatch`` answer 412 when the object does not
  match; a missing object answers 404 (and ``ifGenerationMatch=0`` on an existing one 412).
* metagenerations are counted here (1 for a new generation, one more per successful ``PATCH``) and
  written into every object resource the front returns, so ``ifMetagenerationMatch`` means what it
  means on Cloud Storage.

The checks and the call they guard run under one lock per object, so two of these calls on the
same object never interleave. An upload from elsewhere between the check and a ``DELETE`` or
``PATCH`` is not covered (the front cannot tell which object a resumable upload's last request
names); the job's code never races its own uploads that way.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Callable

Answer = tuple[int, list[tuple[str, str]], bytes]
CONDITIONS = (
    "ifGenerationMatch",
    "ifGenerationNotMatch",
    "ifMetagenerationMatch",
    "ifMetagenerationNotMatch",
)
_JSON = [("Content-Type", "application/json; charset=UTF-8")]


def _error(code: int, message: str) -> Answer:
    reason = {404: "notFound", 412: "conditionNotMet"}.get(code, "invalid")
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }
    return code, list(_JSON), json.dumps(body).encode()


def _object_path(path: str) -> tuple[str, str, str, dict[str, str]] | None:
    """(bucket, object, verb, query) of a JSON API object URL; verb is "" or "compose"."""
    url = urllib.parse.urlsplit(path)
    parts = url.path.removeprefix("/download").split("/")
    # [/download]/storage/v1/b/BUCKET/o/OBJECT[/compose]
    if len(parts) < 7 or parts[1:4] != ["storage", "v1", "b"] or parts[5] != "o":
        return None
    verb = ""
    if len(parts) == 8 and parts[7] == "compose":
        verb = "compose"
    elif len(parts) != 7:
        return None
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    return parts[4], urllib.parse.unquote(parts[6]), verb, query


class Preconditions:
    """Generation and metageneration preconditions for the front (see the module's docstring)."""

    def __init__(self, backend: tuple[str, int]) -> None:
        self.backend = backend
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._metagenerations: dict[tuple[str, str, int], int] = {}
        self._components: dict[tuple[str, str, int], int] = {}

    # -- the front's entry point --------------------------------------------------------------
    def serve(self, method: str, path: str, body: bytes, forward: Callable[[], Answer]) -> Answer:
        """Answer the request: checked here, or ``forward()``-ed to fake-gcs-server unchanged
        when Cloud Storage would not check anything on it; object resources in the answer carry
        the metageneration (and a composite's componentCount) counted here."""
        target = _object_path(path)
        if target is not None:
            bucket, name, verb, query = target
            if verb == "compose" and method == "POST":
                with self._lock(bucket, name):
                    return self._compose(bucket, name, query, body)
            conditional = method == "PATCH" or any(c in query for c in CONDITIONS)
            media = method == "GET" and query.get("alt") == "media"
            if conditional and (method in ("DELETE", "PATCH") or media):
                with self._lock(bucket, name):
                    return self._guarded(method, bucket, name, query, forward)
        return self._annotate(forward())

    # -- checks -------------------------------------------------------------------------------
    def _lock(self, bucket: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks[(bucket, name)]

    def _current(self, bucket: str, name: str) -> dict | None:
        status, _, data = self._backend("GET", f"/storage/v1/b/{bucket}/o/{_quote(name)}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"fake-gcs-server answered {status} for {bucket}/{name}")
        resource = json.loads(data)
        resource["metageneration"] = str(self._metageneration(bucket, name, resource))
        return resource

    def _metageneration(self, bucket: str, name: str, resource: dict) -> int:
        key = (bucket, name, int(resource.get("generation") or 0))
        with self._guard:
            return self._metagenerations.get(key, 1)

    def _unmet(self, current: dict | None, query: dict[str, str]) -> Answer | None:
        """The 412 (or 404) Cloud Storage answers when ``current`` (None: no such object) fails
        ``query``'s conditions; the object's absence comes first, as for any call on an object."""
        if current is None:
            return _error(404, "No such object.")
        generation = int(current["generation"])
        if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != generation:
            return _error(412, "At least one of the pre-conditions you specified did not hold.")
        if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == generation:
            return _error(412, "At least one of the pre-conditions you specified did not hold.")
        metageneration = int(current["metageneration"])
        if (
            "ifMetagenerationMatch" in query
            and int(query["ifMetagenerationMatch"]) != metageneration
        ):
            return _error(412, "At least one of the pre-conditions you specified did not hold.")
        if (
            "ifMetagenerationNotMatch" in query
            and int(query["ifMetagenerationNotMatch"]) == metageneration
        ):
            return _error(412, "At least one of the pre-conditions you specified did not hold.")
        return None

    def _guarded(
        self,
        method: str,
        bucket: str,
        name: str,
        query: dict[str, str],
        forward: Callable[[], Answer],
    ) -> Answer:
        current = self._current(bucket, name)
        unmet = self._unmet(current, query)
        if unmet is not None:
            return unmet
        status, headers, data = forward()
        if method == "PATCH" and status == 200 and current is not None:
            key = (bucket, name, int(current["generation"]))
            with self._guard:
                self._metagenerations[key] = self._metagenerations.get(key, 1) + 1
        return self._annotate((status, headers, data))

    # -- compose ------------------------------------------------------------------------------
    def _compose(self, bucket: str, name: str, query: dict[str, str], body: bytes) -> Answer:
        request = json.loads(body or b"{}")
        sources = request.get("sourceObjects") or []
        if not sources or len(sources) > 32:
            return _error(400, "A compose request takes 1 to 32 source objects.")
        parts: list[bytes] = []
        components = 0
        for source in sources:
            current = self._current(bucket, source["name"])
            if current is None:
                return _error(404, f"Source object {source['name']} not found.")
            wanted = dict(source.get("objectPreconditions") or {})
            if "generation" in source:  # a specific generation: only the live one exists here
                wanted.setdefault("ifGenerationMatch", source["generation"])
            unmet = self._unmet(current, {k: str(v) for k, v in wanted.items()})
            if unmet is not None:
                return unmet
            status, _, data = self._backend(
                "GET",
                f"/storage/v1/b/{bucket}/o/{_quote(source['name'])}"
                f"?alt=media&generation={current['generation']}",
            )
            if status != 200:
                return _error(404, f"Source object {source['name']} not found.")
            parts.append(data)
            components += self._component_count(bucket, source["name"], current)
        destination = self._current(bucket, name)
        unmet = self._unmet(destination, query) if destination is not None else None
        if destination is None and query.get("ifGenerationMatch", "0") != "0":
            unmet = _error(412, "At least one of the pre-conditions you specified did not hold.")
        if unmet is not None:
            return unmet
        if components > 1024:
            return _error(400, "The number of source components provided exceeds 1024.")
        meta = {"name": name, **(request.get("destination") or {})}
        meta["name"] = name
        status, headers, data = self._upload(
            bucket, meta, b"".join(parts), int(destination["generation"]) if destination else 0
        )
        if status != 200:
            return status, headers, data
        resource = json.loads(data)
        key = (bucket, name, int(resource["generation"]))
        with self._guard:
            self._components[key] = components
        return self._annotate((200, list(_JSON), json.dumps(resource).encode()))

    def _component_count(self, bucket: str, name: str, resource: dict) -> int:
        key = (bucket, name, int(resource.get("generation") or 0))
        with self._guard:
            return self._components.get(key, 1)

    def _upload(self, bucket: str, meta: dict, data: bytes, generation: int) -> Answer:
        boundary = f"compose-{uuid.uuid4().hex}"
        payload = (
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{json.dumps(meta)}\r\n--{boundary}\r\n"
                f"Content-Type: {meta.get('contentType') or 'application/octet-stream'}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self._backend(
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?uploadType=multipart&ifGenerationMatch={generation}",
            payload,
            {"Content-Type": f"multipart/related; boundary={boundary}"},
        )

    # -- answers ------------------------------------------------------------------------------
    def _annotate(self, answer: Answer) -> Answer:
        """The counted metageneration and componentCount in each object resource of an answer."""
        status, headers, data = answer
        with self._guard:
            counted = bool(self._metagenerations or self._components)
        if not counted or status != 200 or data[:1] != b"{":  # nothing to write into it
            return answer
        try:
            document = json.loads(data)
        except ValueError:
            return answer
        changed = False
        for resource in [document, *(document.get("items") or [])]:
            if not isinstance(resource, dict) or resource.get("kind", "storage#object") != (
                "storage#object"
            ):
                continue
            key = (resource.get("bucket", ""), resource.get("name", ""))
            generation = int(resource.get("generation") or 0)
            with self._guard:
                metageneration = self._metagenerations.get((*key, generation))
                components = self._components.get((*key, generation))
            if metageneration is not None or (generation and "metageneration" not in resource):
                resource["metageneration"] = str(metageneration or 1)
                changed = True
            if components is not None:
                resource["componentCount"] = components
                changed = True
        if not changed:
            return answer
        fixed = [(k, v) for k, v in headers if k.lower() != "content-length"]
        return status, fixed, json.dumps(document).encode()

    def _backend(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> Answer:
        conn = http.client.HTTPConnection(*self.backend, timeout=120)
        try:
            conn.request(
                method,
                path,
                body=body,
                headers={"Content-Length": str(len(body)), **(headers or {})},
            )
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
