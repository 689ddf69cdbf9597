"""The Scheduler page: Setup and Run Manager, a plain-JS page over the REST API under ``/api/v1``."""

from scheduler.web.routes import router

__all__ = ["router"]
