"""ERP secrets stay where they are: allow-listed token names and hosts, no redirects, no token in any answer or log.

Against the real local HTTP sink: a job naming a scheduler setting as its token, or a host outside the
allow-list, is refused when created (422 naming the field) and sends nothing at run time.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from erp_sink import ErpSink
from erp_testkit import SINK_HOSTS, TOKEN, TOKEN_ENV, Ledger, http_target, items_of, make_job, run_row, seed_ledger
from erp_testkit import start_manual as start
from sqlalchemy import Engine, func, select
from workers_testkit import Drain, RecordingDispatcher

from scheduler import auth
from scheduler.api.app import create_app
from scheduler.clock import FrozenClock
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import Job, RunStatus
from scheduler.settings import Settings
from workers.erp import JOB_TYPE
from workers.erp.policy import TargetPolicy
from workers.runtime.env import WorkerEnv

with warnings.catch_warnings():
    # Starlette warns once, at import, that it prefers the httpx2 fork; httpx works.
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MAY = {"date_from": "2026-05-01", "date_to": "2026-05-31"}


@pytest.fixture
def registry() -> JobTypeRegistry:
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def allowed_hosts() -> list[str]:
    """``SCHEDULER_ERP_ALLOWED_HOSTS`` of the test; a test narrows it by parametrizing this name."""
    return SINK_HOSTS


@pytest.fixture
def worker_settings(settings: Settings, allowed_hosts: list[str]) -> Settings:
    return settings.model_copy(update={"chunk_size": 3, "erp_allowed_hosts": allowed_hosts})


@pytest.fixture
def ledger(billing_engine: Engine) -> Ledger:
    return seed_ledger(billing_engine)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[ErpSink]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", "postgresql://scheduler:db-password-42@db/scheduler")
    with ErpSink(token=TOKEN) as running:
        yield running


@pytest.fixture
def api(env: WorkerEnv, worker_settings: Settings, clock: FrozenClock, dispatcher: RecordingDispatcher) -> TestClient:
    """The API on the same database and settings, with a viewer's key (it reads runs, items and exports)."""
    with env.factory() as session:
        _, admin = auth.create_key(session, "admin", "admin", actor="test")
        _, viewer = auth.create_key(session, "viewer", "viewer", actor="test")
    app = create_app(worker_settings, engine=env.engine, registry=env.registry, dispatcher=dispatcher, clock=clock)
    client = TestClient(app, headers={"Authorization": f"Bearer {viewer}"})
    client.admin = {"Authorization": f"Bearer {admin}"}  # type: ignore[attr-defined]
    return client


def erp_job(target: dict[str, Any], name: str = "ERP invoices") -> dict[str, Any]:
    return {"name": name, "job_type": "erp_transfer", "properties": {"dataset": "invoices", "target": target}}


def jobs(env: WorkerEnv) -> int:
    with env.factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def refusal(response: Any) -> tuple[list[str], str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_properties"
    first = body["details"]["errors"][0]
    return [str(p) for p in first["loc"]], str(first["msg"])


# ---------------------------------------------------------------- at job creation


@pytest.mark.parametrize("name", ["SCHEDULER_DATABASE_URL", "SCHEDULER_REDIS_URL", "SCHEDULER_SMTP_URL", "HOME",
                                  "AWS_SECRET_ACCESS_KEY"])
def test_a_job_naming_a_secret_outside_the_allow_list_is_refused(
    api: TestClient, env: WorkerEnv, sink: ErpSink, name: str,
) -> None:
    response = api.post("/api/v1/jobs", json=erp_job(http_target(sink.url, token_env=name)),
                        headers=api.admin)  # type: ignore[attr-defined]
    loc, message = refusal(response)
    assert loc == ["target", "http", "token_env"] and "SCHEDULER_ERP_SECRET_" in message
    assert jobs(env) == 0 and sink.requests == []


def test_secret_names_listed_by_the_operator_are_accepted_but_never_a_scheduler_setting(
    env: WorkerEnv, worker_settings: Settings,
) -> None:
    policy = TargetPolicy.of(worker_settings.model_copy(
        update={"erp_secret_names": ["ERP_TOKEN", "SCHEDULER_DATABASE_URL"]}))
    assert policy.token_env_problem("ERP_TOKEN") is None
    assert policy.token_env_problem("SCHEDULER_ERP_SECRET_NETSUITE") is None
    assert "never sent" in (policy.token_env_problem("SCHEDULER_DATABASE_URL") or "")
    assert policy.token_env_problem("SCHEDULER_ERP_SECRET_") is not None
    assert policy.token_env_problem("OTHER_TOKEN") is not None


def test_a_host_outside_the_allow_list_is_refused(api: TestClient, env: WorkerEnv, sink: ErpSink) -> None:
    for url in ("https://collector.attacker.example/steal", "http://127.0.0.1.attacker.example/x",
                "http://localhost:8000/api/v1/keys"):
        loc, message = refusal(api.post("/api/v1/jobs", json=erp_job(http_target(url)),
                                        headers=api.admin))  # type: ignore[attr-defined]
        assert loc == ["target", "http", "url"] and "SCHEDULER_ERP_ALLOWED_HOSTS" in message, url
    assert jobs(env) == 0
    # The sink itself is allowed (127.0.0.1, any port): the job is created
    created = api.post("/api/v1/jobs", json=erp_job(http_target(sink.url)), headers=api.admin)  # type: ignore
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("allowed_hosts", [[]])
def test_with_no_allowed_host_no_http_target_is_accepted(api: TestClient, env: WorkerEnv, sink: ErpSink) -> None:
    loc, message = refusal(api.post("/api/v1/jobs", json=erp_job(http_target(sink.url)),
                                    headers=api.admin))  # type: ignore[attr-defined]
    assert loc == ["target", "http", "url"] and "no ERP host is allowed" in message
    file_target = {"kind": "file", "directory": "erp/outbox"}
    assert api.post("/api/v1/jobs", json=erp_job(file_target), headers=api.admin).status_code == 201  # type: ignore


@pytest.mark.parametrize(
    ("patterns", "url", "allowed"),
    [
        (["erp.example.com"], "https://erp.example.com/batches", True),
        (["erp.example.com"], "https://ERP.Example.com./batches", True),
        (["erp.example.com"], "https://erp.example.com:8443/batches", False),
        (["erp.example.com:8443"], "https://erp.example.com:8443/batches", True),
        (["erp.example.com:*"], "http://erp.example.com:9999/batches", True),
        (["erp.example.com"], "https://erp.example.com.attacker.example/", False),
        (["erp.example.com"], "https://api.erp.example.com/", False),
        (["*.erp.example.com"], "https://api.erp.example.com/", True),
        (["*.erp.example.com"], "https://erp.example.com/", False),
        (["*.erp.example.com"], "https://apierp.example.com/", False),
        (["[::1]:*"], "http://[::1]:8080/x", True),
        (["127.0.0.1:*"], "http://localhost:8080/x", False),
        ([], "https://erp.example.com/", False),
    ],
)
def test_host_patterns(patterns: list[str], url: str, allowed: bool) -> None:
    policy = TargetPolicy.of(Settings(erp_allowed_hosts=patterns))
    assert (policy.url_problem(url) is None) is allowed


# ---------------------------------------------------------------- at run time


@pytest.mark.parametrize("allowed_hosts", [[]])
def test_a_host_no_longer_allowed_at_run_time_sends_nothing(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    # Given a job created while the host was allowed, and an allow-list narrowed since (here: empty)
    job = make_job(env, clock, target=http_target(sink.url))
    # When it runs
    run_id = start(env, clock, job, **MAY)
    drain()
    # Then nothing reached the host, and every item says why
    assert sink.requests == []
    assert run_row(env, run_id).status == RunStatus.FAILED
    items = items_of(env, run_id)
    assert items and {i.outcome for i in items.values()} == {"error"}
    assert all("no ERP host is allowed" in i.detail["error"] for i in items.values())


def test_a_job_naming_a_scheduler_setting_sends_nothing_at_run_time(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
) -> None:
    # Given a job stored before the allow-list existed, naming the database URL as its token
    job = make_job(env, clock, target=http_target(sink.url, token_env="SCHEDULER_DATABASE_URL"))
    run_id = start(env, clock, job, **MAY)
    drain()
    # Then no request left, and the database URL appears nowhere
    assert sink.requests == []
    items = items_of(env, run_id)
    assert {i.outcome for i in items.values()} == {"error"}
    assert all("not an ERP secret" in i.detail["error"] for i in items.values())
    assert "db-password-42" not in str([i.detail for i in items.values()]) + str(run_row(env, run_id))


@pytest.mark.parametrize("same_host", [False, True])
def test_redirects_are_not_followed(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain, same_host: bool,
) -> None:
    with ErpSink(token=TOKEN) as elsewhere:
        # Given an ERP that answers the first batch with a redirect (to another server, or to itself)
        job = make_job(env, clock, target=http_target(sink.url), batch_size=100)
        run_id = start(env, clock, job, **MAY)
        target = f"{sink.url}?moved=1" if same_host else elsewhere.url
        sink.inject(f"{run_id}:1", f"redirect:{target}")
        drain()
    # Then the redirect is not followed: one request, to the configured URL only; the batch errs
    assert len(sink.requests) == 1 and elsewhere.requests == []
    assert sink.accepted == {}
    items = items_of(env, run_id)
    assert {i.outcome for i in items.values()} == {"error"}
    detail = next(iter(items.values())).detail
    assert detail["http_status"] == 307 and "redirects are not followed" in detail["error"]


def test_the_token_never_appears_in_items_answers_or_logs(
    api: TestClient, env: WorkerEnv, clock: FrozenClock, ledger: Ledger, sink: ErpSink, drain: Drain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an ERP that refuses a batch with a long answer repeating every request header, the token's too
    job = make_job(env, clock, target=http_target(sink.url), batch_size=100)
    with caplog.at_level(logging.DEBUG):
        run_id = start(env, clock, job, **MAY)
        sink.inject(f"{run_id}:1", "echo")
        drain()
    assert sink.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # the target did get it
    # Then the answer kept on the items is truncated, and the token in it is blanked out
    items = items_of(env, run_id)
    response = next(iter(items.values())).detail["response"]
    assert len(response) <= 500 and "[redacted]" in response and TOKEN not in response
    # And no answer of the API (run, items, CSV export) and no log line carries the token
    answers = [api.get(f"/api/v1/runs/{run_id}").text, api.get(f"/api/v1/runs/{run_id}/items").text,
               api.get("/api/v1/runs", params={"format": "csv"}).text, api.get(f"/api/v1/jobs/{job.id}").text]
    assert all(TOKEN not in answer for answer in answers)
    assert "[redacted]" in answers[1]
    assert all(TOKEN not in record.getMessage() and TOKEN not in str(vars(record)) for record in caplog.records)
