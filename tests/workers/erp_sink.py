"""A real HTTP ERP endpoint for the ERP transfer tests: records what it receives, fails on purpose.

``ErpSink`` runs a ``ThreadingHTTPServer`` on 127.0.0.1 (a free port). Like a well-behaved ERP, it
takes each batch once per ``Idempotency-Key`` and answers a repeated key from its record. Faults are
queued per key with :meth:`ErpSink.inject` and used up in order, one per request:

- ``"500"``: answer 500 without taking the batch;
- ``"400"``: refuse the batch with a JSON error body;
- ``"timeout"``: say nothing for longer than the client waits, take nothing;
- ``"drop"``: take the batch, then drop the connection without answering;
- ``"echo"``: refuse the batch with a long body that repeats every request header (a careless ERP);
- ``"redirect:<url>"``: answer 307 with ``Location: <url>``, take nothing.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REFUSAL = {"error": "record rejected: unknown customer in ERP"}


@dataclass(frozen=True, kw_only=True)
class Received:
    """One request as the sink saw it."""

    key: str
    headers: dict[str, str]
    body: bytes
    fault: str | None
    accepted: bool

    @property
    def records(self) -> list[dict[str, Any]]:
        if self.headers.get("Content-Type", "").startswith("text/csv"):
            return list(csv.DictReader(io.StringIO(self.body.decode())))
        return list(json.loads(self.body)["records"])

    @property
    def document(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[Received] = field(default_factory=list)
    accepted: dict[str, Received] = field(default_factory=dict)
    faults: dict[str, deque[str]] = field(default_factory=dict)
    token: str | None = None
    stall_seconds: float = 1.0
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Idempotency-Key") or ""
        headers = dict(self.headers.items())
        with state.lock:
            queued = state.faults.get(key)
            fault = queued.popleft() if queued else None
            refused_auth = state.token is not None and headers.get("Authorization") != f"Bearer {state.token}"
            take = fault in (None, "drop") and not refused_auth and key not in state.accepted
            received = Received(key=key, headers=headers, body=body, fault=fault, accepted=take)
            state.requests.append(received)
            if take:
                state.accepted[key] = received
        if fault == "timeout":
            state.stopping.wait(state.stall_seconds)
            self.close_connection = True
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.startswith("redirect:"):
            self._answer(307, {"moved": True}, location=fault.removeprefix("redirect:"))
        elif fault == "echo":
            self._answer(400, {"error": "cannot parse", "your_headers": headers, "padding": "x" * 5000})
        elif refused_auth:
            self._answer(401, {"error": "bad token"})
        elif fault == "500":
            self._answer(500, {"error": "ERP database busy"})
        elif fault == "400":
            self._answer(400, REFUSAL)
        else:
            self._answer(200, {"status": "accepted" if take else "duplicate", "key": key})

    def _answer(self, status: int, document: dict[str, Any], location: str | None = None) -> None:
        payload = json.dumps(document).encode()
        try:
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class ErpSink:
    """Start with ``with ErpSink() as sink:``; ``sink.url`` takes POSTs."""

    def __init__(self, *, token: str | None = None, stall_seconds: float = 1.0) -> None:
        self.state = _State(token=token, stall_seconds=stall_seconds)
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.state = self.state
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ErpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/erp/batches"

    def inject(self, key: str, *faults: str) -> None:
        with self.state.lock:
            self.state.faults.setdefault(key, deque()).extend(faults)

    @property
    def requests(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def accepted(self) -> dict[str, Received]:
        with self.state.lock:
            return dict(self.state.accepted)

    def accepted_ids(self) -> list[str]:
        """Every record id the ERP took, once per taking (a duplicate shows up twice)."""
        return [str(record["id"]) for batch in self.accepted.values() for record in batch.records]
