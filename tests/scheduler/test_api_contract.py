"""The published OpenAPI says what the API answers: every 4xx with the error model, enums as enums, links,
and ``OPTIONS``/``405`` name every method a path serves."""

from __future__ import annotations

from typing import Any

import pytest
from test_api_support import (  # noqa: F401  (fixtures are used by name)
    TestClient,
    assert_error,
    client_fixture,
    live_dispatcher_fixture,
)

from scheduler.jobs import NotifyEvent
from scheduler.models import ApiRole, ItemOutcome, JobStatus, MisfirePolicy, OverlapPolicy, RunStatus, RunTrigger

ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(name="spec")
def spec_fixture(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_every_error_answer_is_documented_with_the_error_model(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        responses = op["responses"]
        for status, answer in responses.items():
            if status.startswith(("4", "5")):
                assert answer["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (path, method, status)
        params = op.get("parameters", [])
        expected = set()
        if params or "requestBody" in op:
            expected.add("422")
        if any(p["in"] == "path" for p in params):
            expected.add("404")
        if any(p["name"] == "cursor" for p in params) or "requestBody" in op:
            expected.add("400")
        if "requestBody" in op:
            expected.add("413")
        if path.startswith("/api/v1/"):
            expected |= {"401", "403"}
        assert expected <= set(responses), (path, method, sorted(responses))
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def _enum(spec: dict[str, Any], schema: str, field: str) -> list[str]:
    prop = spec["components"]["schemas"][schema]["properties"][field]
    if "$ref" not in prop:
        prop = next(p for p in prop.get("anyOf", [prop]) if p.get("type") != "null")
    if "items" in prop:
        prop = prop["items"]
    if "$ref" in prop:
        prop = spec["components"]["schemas"][prop["$ref"].rsplit("/", 1)[1]]
    return list(prop["enum"])


@pytest.mark.parametrize(("schema", "field", "enum"), [
    ("RunPublic", "status", RunStatus), ("RunPublic", "trigger", RunTrigger), ("RunDetail", "status", RunStatus),
    ("JobPublic", "status", JobStatus), ("JobPublic", "misfire_policy", MisfirePolicy),
    ("JobPublic", "overlap_policy", OverlapPolicy), ("JobPublic", "notify_on", NotifyEvent),
    ("JobCreate", "misfire_policy", MisfirePolicy), ("RunItemPublic", "outcome", ItemOutcome),
    ("KeyCreate", "role", ApiRole), ("KeyPublic", "role", ApiRole),
])
def test_enums_are_published_as_enums(spec: dict[str, Any], schema: str, field: str, enum: Any) -> None:
    assert _enum(spec, schema, field) == [member.value for member in enum]


def test_list_filters_are_enums_and_bounded(spec: dict[str, Any]) -> None:
    params = {p["name"]: p["schema"] for p in spec["paths"]["/api/v1/runs"]["get"]["parameters"]}
    statuses = next(s for s in params["status"]["anyOf"] if s.get("type") == "array")["items"]
    assert spec["components"]["schemas"][statuses["$ref"].rsplit("/", 1)[1]]["enum"] == [s.value for s in RunStatus]
    assert params["limit"]["maximum"] == 1000 and params["limit"]["minimum"] == 1
    run_id = spec["paths"]["/api/v1/runs/{run_id}"]["get"]["parameters"][0]["schema"]
    assert run_id["maximum"] == 2**31 - 1


def test_created_resources_link_to_what_can_be_done_with_them(spec: dict[str, Any]) -> None:
    job_links = spec["paths"]["/api/v1/jobs"]["post"]["responses"]["201"]["links"]
    assert job_links["GetJob"] == {"operationId": "get_one_job", "parameters": {"job_id": "$response.body#/id"},
                                   "description": "the job just created"}
    assert job_links["CreateRun"]["requestBody"] == {"job_id": "$response.body#/id"}
    run_links = spec["paths"]["/api/v1/runs"]["post"]["responses"]["201"]["links"]
    assert {"GetRun", "CancelRun", "SubmitRun", "DeleteRun", "RetryRun", "GetRunItems"} <= set(run_links)
    operation_ids = {op["operationId"] for _, _, op in _operations(spec)}
    for links in (job_links, run_links):
        assert {link["operationId"] for link in links.values()} <= operation_ids


@pytest.mark.parametrize(("path", "allow"), [
    ("/api/v1/jobs", "GET, OPTIONS, POST"),
    ("/api/v1/runs/5", "GET, OPTIONS"),
    ("/api/v1/runs/5/submit", "OPTIONS, POST"),
])
def test_options_and_405_name_every_method_of_the_path(client: TestClient, path: str, allow: str) -> None:
    options = client.options(path)
    assert options.status_code == 204 and options.headers["allow"] == allow and not options.content
    refused = assert_error(client.delete(path), 405, "method_not_allowed")
    assert refused and client.delete(path).headers["allow"] == allow


def test_options_of_an_unknown_path_is_404(client: TestClient) -> None:
    assert_error(client.options("/api/v1/nothing"), 404, "not_found")
