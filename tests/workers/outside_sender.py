"""Another service, as the README shows it: sends ``request_run`` messages with nothing but dramatiq and redis.

``python outside_sender.py REDIS_URL MESSAGES_JSON`` — each message ``{"args": [...], "kwargs": {...}}``.
Prints one JSON line: how many were sent, and which of the scheduler's own packages (or its database
libraries) this process imported (none: the contract needs no code of ours).
"""

import json
import sys

import dramatiq
from dramatiq.brokers.redis import RedisBroker

OURS = {"scheduler", "workers", "beat", "cli", "sqlalchemy", "sqlmodel", "pydantic", "fastapi"}


def main() -> None:
    url, messages = sys.argv[1], json.loads(sys.argv[2])
    broker = RedisBroker(url=url)
    for message in messages:
        broker.enqueue(dramatiq.Message(
            queue_name="scheduler", actor_name="request_run",
            args=tuple(message.get("args", ())), kwargs=message.get("kwargs", {}), options={},
        ))
    broker.close()
    imported = sorted(name for name in sys.modules if name.split(".")[0] in OURS)
    sys.stdout.write(json.dumps({"sent": len(messages), "imported": imported}) + "\n")


if __name__ == "__main__":
    main()
