"""Schemathesis against the published OpenAPI, in-process (ASGI), on SQLite and PostgreSQL with a real Redis.

The run is Schemathesis' own engine, as its command line runs it: examples, coverage (boundary and
invalid values of every parameter), fuzzing, positive and negative, then stateful sequences that
follow the document's links (create a job, run it, act on the run, revoke a key …). The checks: no
answer is a server error, and every answer has a documented status and matches its documented
schema. The app has the four real job types, so their property models are fuzzed too, and a few
jobs and runs exist from the start so ids in paths reach real rows. Every request carries an admin
key; its id is far outside what is generated, so fuzzed revocations cannot lock the run out.

``FUZZ_SCALE=long`` (``make fuzz``) runs many more examples per operation.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.engine.statistic import Statistic
from sqlalchemy import Engine
from test_api_support import TestClient, live_dispatcher_fixture, move_run  # noqa: F401  (fixtures by name)

from scheduler import auth
from scheduler.api.app import create_app
from scheduler.clock import FrozenClock
from scheduler.db import make_session_factory
from scheduler.dispatch import Dispatcher
from scheduler.jobtypes import load_registry
from scheduler.models import ApiKey, ApiRole, RunStatus
from scheduler.settings import Settings

log = logging.getLogger(__name__)

LONG = os.environ.get("FUZZ_SCALE") == "long"
MAX_EXAMPLES = 300 if LONG else 12
SEED = 20261202
ADMIN_KEY_ID = 7_777_777
CHECKS = ("not_a_server_error", "response_schema_conformance", "status_code_conformance", "unsupported_method",
          "allow_header_conformance")

JOBS: list[dict[str, Any]] = [
    {"name": "Dunning nightly", "job_type": "dunning", "cron": "0 2 * * *"},
    {"name": "Usage hourly", "job_type": "usage_mediation", "cron": "0 * * * *",
     "properties": {"source_dir": "usage/in", "meters": [{"meter": "api_calls", "unit": "call",
                                                          "price_per_unit": "0.001"}]}},
    {"name": "ERP daily", "job_type": "erp_transfer", "cron": "30 3 * * *",
     "properties": {"dataset": "invoices", "target": {"kind": "file", "directory": "erp/out"}}},
    {"name": "GL month end", "job_type": "gl_collector", "cron": "0 23 L * ?", "requires_review": True},
]


def _seed(app: Any, engine: Engine, clock: FrozenClock) -> dict[str, str]:
    """An admin key, a job of each type with a run; one run waits at PREVIEW, one FAILED. Returns the auth header."""
    token = f"{auth.TOKEN_SCHEME}_fuzzfuzz_{'x' * 43}"
    with make_session_factory(engine)() as session:
        session.add(ApiKey(id=ADMIN_KEY_ID, name="fuzz-admin", prefix="fuzzfuzz", token_hash=auth.hash_token(token),
                           role=ApiRole.ADMIN, created_at=clock.now()))
        session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    run_ids = []
    with TestClient(app) as client:
        for job in JOBS:
            created = client.post("/api/v1/jobs", json=job, headers=headers)
            assert created.status_code == 201, created.text
            run = client.post("/api/v1/runs", json={"job_id": created.json()["id"]}, headers=headers)
            assert run.status_code == 201, run.text
            run_ids.append(run.json()["id"])
    move_run(engine, run_ids[0], RunStatus.PROCESSING, RunStatus.PREVIEW)
    move_run(engine, run_ids[1], RunStatus.PROCESSING, RunStatus.FAILED)
    return headers


def _config(headers: dict[str, str]) -> Any:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "headers": headers,
        "workers": 1,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "with-security-parameters": False,
                       "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": True}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })


@pytest.mark.timeout(3600 if LONG else 600)
def test_every_operation_answers_within_its_contract(
    settings: Settings, engine: Engine, clock: FrozenClock, live_dispatcher: Dispatcher
) -> None:
    # Given the API with the real job types, some jobs and runs, and an admin key
    app = create_app(settings, engine=engine, registry=load_registry(settings), dispatcher=live_dispatcher,
                     clock=clock)
    headers = _seed(app, engine, clock)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(headers))
    # When Schemathesis runs every phase against every operation
    statistic = Statistic()
    cases: Counter[str] = Counter()
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            statistic.on_scenario_finished(event.recorder)
            cases[str(event.phase.value)] += len(event.recorder.cases)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
    failures = [
        f"{label}: {failure.title}: {failure.message}"
        for label, groups in statistic.failures.items()
        for group in groups.values()
        for failure in group.failures
    ]
    log.info("schemathesis on %s: %d cases %s, %d operations tested, %d failures", engine.dialect.name,
             statistic.total_cases, dict(cases), len(statistic.tested_operations), len(failures))
    # Then every operation was reached, and no answer was a server error or off its contract
    assert not errors, errors
    assert not failures, "\n\n".join(failures)
    assert statistic.tested_operations == {result.ok().label for result in schema.get_all_operations()}
    assert cases["coverage"] and cases["fuzzing"] and cases["stateful"], cases
