"""``python -m workers.runtime.pool``: Dramatiq's command line with our logging set up first.

``scheduler worker`` runs this rather than ``python -m dramatiq`` (with ``--skip-logging``), so the pool's
main process — which starts, stops and supervises the worker processes — logs JSON lines too.
"""

from __future__ import annotations

import sys

from dramatiq.cli import main as dramatiq_main

from scheduler.logs import configure_logging
from scheduler.settings import Settings

if __name__ == "__main__":
    configure_logging(Settings(), service="worker")
    sys.exit(dramatiq_main())  # type: ignore[no-untyped-call]
