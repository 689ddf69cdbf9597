"""The image's HEALTHCHECK: exit 0 when this container's role answers ``/healthz``, else 1.

One image serves every role and each role has its own port (the API ``SCHEDULER_API_PORT``, beat
``SCHEDULER_BEAT_METRICS_PORT``, a worker pool ``SCHEDULER_WORKER_METRICS_PORT``); a container runs one
role, so exactly one of these ports answers. Standard library only: the image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

ROLE_PORTS = {
    "api": ("SCHEDULER_API_PORT", 8000),
    "beat": ("SCHEDULER_BEAT_METRICS_PORT", 9192),
    "worker": ("SCHEDULER_WORKER_METRICS_PORT", 9191),
}


def health_ports(env: dict[str, str]) -> list[int]:
    """The ports to try, from the settings in ``env`` or their defaults; ``0`` (no endpoint) is left out."""
    ports = [int(env.get(name) or default) for name, default in ROLE_PORTS.values()]
    return [port for port in ports if port]


def answers(port: int, timeout: float = 3.0) -> bool:
    """Whether ``/healthz`` on this port of the loopback answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    ports = health_ports(dict(os.environ))
    if any(answers(port) for port in ports):
        return 0
    sys.stderr.write(f"no /healthz answered on ports {', '.join(map(str, ports))}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
