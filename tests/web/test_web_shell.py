"""The page shell and its static files, over plain HTTP (no browser)."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from scheduler import auth

with warnings.catch_warnings():
    # Starlette 1.x warns at import that it prefers the httpx2 fork; httpx works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def client(web_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(web_app) as c:
        yield c


def test_shell_renders_with_the_product_enums_and_links_its_two_static_files(client: TestClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert '<script type="module" src="/static/app.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/app.css">' in html
    assert 'href="#/setup"' in html and 'href="#/runs"' in html
    match = re.search(r'<script type="application/json" id="page-config">(.*?)</script>', html, re.S)
    assert match is not None
    config = json.loads(match.group(1))
    assert config["api_base"] == "/api/v1"
    assert config["csrf_cookie"] == auth.CSRF_COOKIE and config["csrf_header"] == auth.CSRF_HEADER
    assert [s["value"] for s in config["run_statuses"]] == [
        "CREATED", "PROCESSING", "PREVIEW", "SUBMITTED", "COMPLETED", "INCOMPLETE", "FAILED", "CANCELLED", "DELETED"]
    preview = next(s for s in config["run_statuses"] if s["value"] == "PREVIEW")
    assert preview["help"] == "Staged effects wait for review: submit or delete."
    assert [p["value"] for p in config["misfire_policies"]] == ["SKIP", "ONCE", "ALL"]
    assert config["run_actions"] == ["submit", "delete", "cancel", "retry"]


def test_static_files_are_served_with_their_types_and_nothing_else(client: TestClient) -> None:
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "Create System Job" in script.text and "/login" in script.text
    style = client.get("/static/app.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    for name in ("../routes.py", "..%2Froutes.py", "index.html", "missing.js"):
        assert client.get(f"/static/{name}").status_code == 404
    assert client.get("/favicon.ico").status_code == 204


def test_the_page_uses_no_external_resources(client: TestClient) -> None:
    bodies = [client.get(path).text for path in ("/", "/static/app.js", "/static/app.css")]
    for body in bodies:
        assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", body)
        assert "@import" not in body and "fonts.googleapis" not in body


def test_shell_is_served_without_a_key_while_the_api_asks_for_one(client: TestClient) -> None:
    # Given no key at all: the page still loads (to show the login form) and hands out the login form's CSRF cookie
    shell = client.get("/")
    assert shell.status_code == 200
    assert "scheduler_csrf=" in shell.headers["set-cookie"] and "HttpOnly" not in shell.headers["set-cookie"]
    # But the data behind it needs a key
    refused = client.get("/api/v1/jobs")
    assert refused.status_code == 401
    assert refused.json()["code"] == "missing_credentials"


def test_the_shell_has_no_inline_script_or_style(client: TestClient) -> None:
    # The page runs under CSP default-src 'self': an inline script or style would be blocked
    html = client.get("/").text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert all('src="' in attrs or 'type="application/json"' in attrs for attrs, _ in scripts), scripts
    assert "<style" not in html and " style=" not in html and 'href="data:' not in html
    script = client.get("/static/app.js").text
    assert not re.search(r"\bstyle\s*:|setAttribute\(\s*[\"']style|innerHTML", script)


def test_the_page_is_not_part_of_the_api_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/static/{name}" not in paths
