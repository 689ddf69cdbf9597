"""The REST API, health probes and metrics of the scheduler (FastAPI)."""
