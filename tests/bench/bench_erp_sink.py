"""A local ERP endpoint for the ERP benchmark, in a process of its own: ``python bench_erp_sink.py PORT``.

HTTP/1.1 with kept-alive connections; it reads each batch whole, decodes it and counts its records, and
answers ``200`` with the batch's ``Idempotency-Key``, like a well-behaved ERP.
``GET /count`` answers the records taken so far.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TAKEN = {"records": 0, "batches": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with LOCK:
            TAKEN["records"] += len(json.loads(body)["records"])
            TAKEN["batches"] += 1
        self._answer({"status": "accepted", "key": self.headers.get("Idempotency-Key") or ""})

    def do_GET(self) -> None:
        with LOCK:
            self._answer(dict(TAKEN))

    def _answer(self, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Server(ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
