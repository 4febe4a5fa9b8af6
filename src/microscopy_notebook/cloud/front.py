"""A loopback HTTP(S) front for fake-gcs-server.

It exists for four reasons, each a wire-level gap rather than a client problem:

* gsutil only speaks https to the JSON API, and the Python client and gcloud are happiest on http;
  one backend serves both through this front.
* fake-gcs-server answers ``DELETE`` with ``200`` and a ``null`` body, which makes ``gcloud storage
  rm`` and ``gsutil rm`` delete the object and then exit 1; the real service answers ``204``.
* fake-gcs-server 1.54 lacks ``GET /storage/v1/b/BUCKET/storageLayout`` (added in 1.55), which
  ``gcloud storage rm -r`` asks for; the front answers it as the real service does for a bucket
  without hierarchical namespace.
* upload ``Location`` headers name the backend's own address; they are rewritten to the address the
  client actually used, whatever its scheme.
* fake-gcs-server ignores generation preconditions on compose, ``DELETE`` and ``PATCH`` and never
  raises a metageneration; `preconditions.Preconditions` enforces them as Cloud Storage does.

It also carries a fault table (`Faults`) so tests can make the storage misbehave on purpose, and
records every call it serves (`Calls`: who, method, path, the resource it acts on, the bearer
token sent), from which the tests derive the IAM permissions each person needs on each resource
(`microscopy_notebook.cloud.permissions`). The emulator checks no credentials, so "who" is told by
a path prefix: a client whose endpoint is ``http://127.0.0.1:PORT/as/NAME`` is recorded as NAME
(the prefix is removed before anything else). Cloud Storage checks IAM and the emulator does not:
a test may give an identity a policy (`Front.policies`, an `iam.Policy` per name), and the front
then refuses that identity's calls outside it with the 403 Cloud Storage would answer.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from microscopy_notebook.cloud import permissions
from microscopy_notebook.cloud.preconditions import Preconditions

_AS = re.compile(r"^/as/([A-Za-z0-9_-]+)(/.*)$")
_LAYOUT = re.compile(r"^/storage/v1/b/([^/?]+)/storageLayout(\?|$)")

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass
class Fault:
    """One scripted misbehaviour: while ``remaining`` > 0, matching requests get ``action``.

    ``action`` is ``"status:NNN"`` (answer NNN without forwarding), ``"drop-after"`` (forward, then
    close the connection without answering: the request took effect, the client never hears), or
    ``"reset"`` (close the connection before forwarding), ``"delay:SECONDS"`` (forward it that
    much later: a slow call, to widen a race's window) or ``"hold:NAME"`` (forward it once the
    test calls `Faults.release` with NAME: a call held up until the test has seen what it needs).
    """

    match: Callable[[str, str], bool]
    action: str
    remaining: int = 1
    hits: int = 0


@dataclass
class Faults:
    """Thread-safe list of faults consulted on every request."""

    _items: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _gates: dict[str, threading.Event] = field(default_factory=dict)

    def add(self, match: Callable[[str, str], bool], action: str, times: int = 1) -> Fault:
        fault = Fault(match, action, times)
        with self._lock:
            self._items.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            for gate in self._gates.values():  # nothing stays held up
                gate.set()
            self._gates.clear()

    def release(self, name: str) -> None:
        """Let the calls held by ``"hold:NAME"`` go on (and any that come later)."""
        self._gate(name).set()

    def wait(self, name: str) -> None:
        self._gate(name).wait()

    def _gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def take(self, method: str, path: str) -> str | None:
        with self._lock:
            for fault in self._items:
                if fault.remaining > 0 and fault.match(method, path):
                    fault.remaining -= 1
                    fault.hits += 1
                    return fault.action
        return None


@dataclass(frozen=True)
class Call:
    who: str  # "" unless the client's endpoint named someone (/as/NAME)
    method: str
    path: str
    bearer: str = ""  # the access token the client sent, if any: whose sign-in it used
    resource: str = ""  # buckets/NAME or projects/ID (permissions.resource)
    refused: bool = False  # outside the caller's policy: answered 403, as Cloud Storage would


@dataclass
class Calls:
    """Every request the front served, in order; thread-safe."""

    _items: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self._lock:
            self._items.append(call)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def list(self) -> list[Call]:
        with self._lock:
            return list(self._items)


_REASONS = {429: ("usageLimits", "rateLimitExceeded"), 503: ("global", "backendError")}


def _error_body(code: int) -> bytes:
    """An error as Cloud Storage words it, so clients classify an injected fault as the real one."""
    domain, reason = _REASONS.get(code, ("global", "injectedFault"))
    message = f"injected fault {code}"
    error = {
        "code": code,
        "message": message,
        "errors": [{"domain": domain, "reason": reason, "message": message}],
    }
    return json.dumps({"error": error}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _proxy(self) -> None:
        body = self._read_body()
        who = ""
        named = _AS.match(self.path)
        if named:
            who, self.path = named.group(1), named.group(2)
        auth = self.headers.get("Authorization", "")
        bearer = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        policy = self.server.policies.get(who)
        refused = permissions.refusal(policy, self.command, self.path) if policy else None
        resource = permissions.resource(self.path)
        self.server.calls.add(Call(who, self.command, self.path, bearer, resource, bool(refused)))
        if refused:  # Cloud Storage checks IAM; the emulator does not
            self._answer(refused[0], [("Content-Type", "application/json")], refused[1])
            return
        action = self.server.faults.take(self.command, self.path)
        if action == "reset":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if action and action.startswith("status:"):
            code = int(action.split(":", 1)[1])
            self._answer(code, [("Content-Type", "application/json")], _error_body(code))
            return

        layout = _LAYOUT.match(self.path) if self.command == "GET" else None
        if layout:
            self._storage_layout(layout.group(1))
            return

        if action and action.startswith("delay:"):  # a slow call: answered, but late
            time.sleep(float(action.split(":", 1)[1]))
        if action and action.startswith("hold:"):  # until the test lets it go
            self.server.faults.wait(action.split(":", 1)[1])
        status, out_headers, data = self.server.preconditions.serve(
            self.command, self.path, body, lambda: self._forward(body)
        )

        if action == "drop-after":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.command == "DELETE" and status == 200 and data.strip() in (b"", b"null"):
            status, data = 204, b""
        here = f"{self.server.scheme}://{self.headers.get('Host', self.server.public_host)}"
        if who:  # links the client follows (upload sessions) stay recorded as the same person
            here += f"/as/{who}"
        there = f"http://{self.server.backend[0]}:{self.server.backend[1]}"
        fixed = []
        for key, value in out_headers:
            if key.lower() in HOP_BY_HOP:
                continue
            if key.lower() == "location":
                value = value.replace(there, here)
            fixed.append((key, value))
        if there.encode() in data:
            data = data.replace(there.encode(), here.encode())
        self._answer(status, fixed, data)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        backend = http.client.HTTPConnection(*self.server.backend, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            backend.request(self.command, self.path, body=body, headers=headers)
            resp = backend.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            backend.close()

    def _storage_layout(self, bucket: str) -> None:
        probe = http.client.HTTPConnection(*self.server.backend, timeout=30)
        try:
            probe.request("GET", f"/storage/v1/b/{bucket}")
            resp = probe.getresponse()
            body = resp.read()
        finally:
            probe.close()
        if resp.status != 200:
            self._answer(resp.status, [("Content-Type", "application/json")], body)
            return
        layout = {
            "kind": "storage#storageLayout",
            "bucket": bucket,
            "location": json.loads(body).get("location", "US-CENTRAL1"),
            "locationType": "region",
            "hierarchicalNamespace": {"enabled": False},
        }
        self._answer(200, [("Content-Type", "application/json")], json.dumps(layout).encode())

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _proxy


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        backend: tuple[str, int],
        faults: Faults,
        scheme: str,
        ssl_context: ssl.SSLContext | None = None,
        calls: Calls | None = None,
        policies: dict | None = None,
        preconditions: Preconditions | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self.preconditions = preconditions or Preconditions(backend)
        self.faults = faults
        self.calls = calls if calls is not None else Calls()
        self.policies = policies if policies is not None else {}
        self.scheme = scheme
        self.public_host = f"127.0.0.1:{self.server_address[1]}"
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hang up on us all the time (and the faults make us hang up on them); a
        # traceback per reset would bury the output of the run that is being served.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)


class Front:
    """An http and an https listener on 127.0.0.1, both forwarding to ``backend``."""

    def __init__(self, backend: tuple[str, int], ssl_context: ssl.SSLContext) -> None:
        self.faults = Faults()
        self.calls = Calls()
        self.policies: dict = {}  # who -> iam.Policy: that identity's calls are checked
        shared = {
            "calls": self.calls,
            "policies": self.policies,
            # one count of metagenerations for both listeners
            "preconditions": Preconditions(backend),
        }
        self._servers = [
            _FrontServer(backend, self.faults, "http", **shared),
            _FrontServer(backend, self.faults, "https", ssl_context, **shared),
        ]
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers
        ]

    @property
    def http_port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def https_port(self) -> int:
        return self._servers[1].server_address[1]

    def start(self) -> Front:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
