"""A small HTTP/1.1 load generator: N concurrent clients, each on one kept-alive connection, asyncio streams.

Hand-rolled rather than httpx so that the generator's own CPU — which counts against the same cores as the
server under test — stays small; it is measured and printed with every result.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchkit import percentile

Body = Callable[[int], tuple[dict[str, str], bytes]]
"""Given a request number: its extra headers and its body."""


@dataclass(kw_only=True)
class LoadResult:
    requests: int
    seconds: float
    client_cpu_seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sample_error: str = ""

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {"requests": self.requests, "seconds": round(self.seconds, 3), "per_second": round(self.per_second, 1),
                "p50_ms": round(1000 * percentile(self.latencies, 50), 2),
                "p99_ms": round(1000 * percentile(self.latencies, 99), 2),
                "statuses": self.statuses, "client_cpu_seconds": round(self.client_cpu_seconds, 2),
                "sample_error": self.sample_error}


async def _client(host: str, port: int, method: str, path: str, headers: dict[str, str], body: Body | None,
                   numbers: itertools.count[int], deadline: float, limit: int | None, result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        while time.perf_counter() < deadline:
            n = next(numbers)
            if limit is not None and n >= limit:
                return
            extra, payload = body(n) if body is not None else ({}, b"")
            head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{fixed}"
                    + "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                    + f"Content-Length: {len(payload)}\r\n\r\n")
            started = time.perf_counter()
            writer.write(head.encode() + payload)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length) if length else b""
            result.latencies.append(time.perf_counter() - started)
            status = int(status_line.split()[1]) if status_line else 0
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 300 and not result.sample_error:
                result.sample_error = f"{status}: {answer[:300].decode(errors='replace')}"
    finally:
        writer.close()


def load(*, host: str, port: int, method: str, path: str, headers: dict[str, str], clients: int, seconds: float,
         body: Body | None = None, limit: int | None = None) -> LoadResult:
    """``clients`` connections sending requests back to back for ``seconds`` (or ``limit`` requests in all)."""
    result = LoadResult(requests=0, seconds=0.0, client_cpu_seconds=0.0)
    numbers = itertools.count()

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_client(host, port, method, path, headers, body, numbers, deadline, limit, result)
                               for _ in range(clients)))

    cpu = time.process_time()
    started = time.perf_counter()
    asyncio.run(run())
    result.seconds = time.perf_counter() - started
    result.client_cpu_seconds = time.process_time() - cpu
    result.requests = len(result.latencies)
    return result


def json_body(make: Callable[[int], Any], key_prefix: str) -> Body:
    """Bodies from ``make(n)``, each request with its own ``Idempotency-Key``."""

    def body(n: int) -> tuple[dict[str, str], bytes]:
        return {"Idempotency-Key": f"{key_prefix}-{n}"}, json.dumps(make(n)).encode()

    return body
