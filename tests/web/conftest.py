"""Fixtures of the page tests: a fake job type, the app on a real port, and a headless Chromium.

The browser tests skip only when no Chromium is installed and ``CI`` is unset; with ``CI`` set a
missing browser fails them.
"""

from __future__ import annotations

import enum
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from scheduler import auth, sessions
from scheduler.api.app import create_app
from scheduler.clock import SystemClock
from scheduler.db import make_session_factory
from scheduler.dispatch import Dispatcher, make_broker
from scheduler.jobs import JobCreate, create_job
from scheduler.jobtypes import JobType, JobTypeRegistry, RunContext
from scheduler.models import ApiKey
from scheduler.runs import RunCreate, create_manual_run
from scheduler.settings import Settings

IN_CI = bool(os.environ.get("CI"))


class TierAction(enum.StrEnum):
    NOTICE = "notice"
    LATE_FEE = "late_fee"
    SUSPEND = "suspend"


class Strategy(enum.StrEnum):
    OLDEST_OPEN_INVOICE = "oldest_open_invoice"
    LARGEST_INVOICE = "largest_invoice"


class FakeTier(BaseModel):
    code: int = Field(ge=0)
    name: str = Field(min_length=1)
    min_days_past_due: int = Field(ge=0)
    actions: list[TierAction] = Field(default_factory=list)
    late_fee: Decimal | None = None


class FakeProperties(BaseModel):
    """Shaped like dunning's: a decimal, an enum, an optional string and a repeatable group."""

    account_category: str | None = Field(default=None, description="Only accounts of this category")
    minimum_account_due: Decimal = Field(description="Accounts owing less are left alone")
    strategy: Strategy = Strategy.OLDEST_OPEN_INVOICE
    send_notices: bool = True
    tiers: list[FakeTier] = Field(min_length=1)


class FakeRunProperties(BaseModel):
    as_of: date | None = Field(default=None, description="Evaluate as of this date (default: today)")
    note: str = ""


class FakeType(JobType):
    """A job type the page can render; its runs are never executed in these tests."""

    name = "fake_dunning"
    label = "Fake dunning"
    queue = "fake_dunning"
    description = "A stand-in job type for the page tests."
    job_properties = FakeProperties
    run_properties = FakeRunProperties

    def plan(self, ctx: RunContext) -> list[dict[str, Any]]:
        return [{}]

    def evaluate(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> int:
        return 0

    def apply(self, ctx: RunContext, chunk_no: int, spec: dict[str, Any]) -> None:
        return None

    def summarize(self, ctx: RunContext) -> dict[str, Any]:
        return {}


class FakeLedgerType(FakeType):
    """A second type, so the page has types to tell apart."""

    name = "fake_ledger"
    label = "Fake ledger"
    queue = "fake_ledger"


REGISTRY = JobTypeRegistry([FakeType(), FakeLedgerType()])

FAKE_PROPERTIES: dict[str, Any] = {
    "minimum_account_due": "5.00",
    "tiers": [{"code": 1, "name": "Reminder", "min_days_past_due": 1, "actions": ["notice"]}],
}


@pytest.fixture
def web_settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=sqlite_url, files_root=tmp_path / "files")


@pytest.fixture
def web_app(web_settings: Settings, sqlite_engine: Engine, redis_url: str) -> FastAPI:
    """The real API app, with the page, one fake job type and a dispatcher on the test Redis."""
    dispatcher = Dispatcher(make_broker(redis_url), redis_url)
    return create_app(web_settings, engine=sqlite_engine, registry=REGISTRY,
                      dispatcher=dispatcher)


@pytest.fixture
def web_sessions(sqlite_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(sqlite_engine)


@pytest.fixture
def make_job(web_sessions: sessionmaker[Session]) -> Callable[..., int]:
    """Create a fake-type job through the data function; returns its id."""

    def make(name: str, *, cron: str = "0 3 * * *", job_type: str = FakeType.name, **extra: Any) -> int:
        job_in = JobCreate(name=name, job_type=job_type, cron=cron, properties=FAKE_PROPERTIES, **extra)
        with web_sessions() as session:
            job = create_job(session=session, registry=REGISTRY, actor="test",
                             clock=SystemClock(), job_in=job_in)
            assert job.id is not None
            return job.id

    return make


@pytest.fixture
def make_run(web_sessions: sessionmaker[Session]) -> Callable[..., int]:
    """Create a manual run of a job through the data function; returns its id."""

    def make(job_id: int, *, preview: bool = False) -> int:
        with web_sessions() as session:
            run, _ = create_manual_run(session=session, registry=REGISTRY, actor="test",
                                       clock=SystemClock(), run_in=RunCreate(job_id=job_id, preview=preview))
            assert run.id is not None
            return run.id

    return make


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_url(web_app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free localhost port, in a thread."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(web_app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-web-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@dataclass(frozen=True)
class BrowserPaths:
    chromium: str
    chromedriver: str


def _browser_paths() -> BrowserPaths | None:
    driver = shutil.which("chromedriver")
    # Debian's /usr/bin/chromium is a shell wrapper; the real binary sits next to the driver's default.
    candidates = ["/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                  shutil.which("google-chrome")]
    chromium = next((c for c in candidates if c and os.path.exists(c)), None)
    if driver is None or chromium is None:
        return None
    return BrowserPaths(chromium=chromium, chromedriver=driver)


@pytest.fixture(scope="session")
def browser_paths() -> BrowserPaths:
    paths = _browser_paths()
    if paths is None:
        message = "no Chromium + chromedriver installed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{message}, and CI is set: the page tests must run in CI")
        pytest.skip(message)
    return paths


@pytest.fixture(scope="session")
def _chrome(browser_paths: BrowserPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("selenium is not installed (pip install 'selenium>=4.20')")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_paths.chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1366,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=browser_paths.chromedriver))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def make_key(web_sessions: sessionmaker[Session]) -> Callable[[str, str], str]:
    """Create an API key of ``role`` named ``name``; returns its token."""

    def make(role: str, name: str) -> str:
        with web_sessions() as session:
            _, token = auth.create_key(session, name, role, actor="test")
        return token

    return make


@pytest.fixture
def sign_in(
    browser: Any, live_url: str, web_settings: Settings, web_sessions: sessionmaker[Session],
    make_key: Callable[[str, str], str],
) -> Callable[[str], str]:
    """Give the browser a page session of a new ``role`` key (as the login form would); returns the key's name.

    The login form itself is exercised by its own test; the others start logged in.
    """

    def sign(role: str) -> str:
        name = f"web-{role}"
        make_key(role, name)
        with web_sessions() as session:
            key = session.query(ApiKey).filter_by(name=name).one()
            started = sessions.start(session, key, now=SystemClock().now(), settings=web_settings)
        browser.get(live_url + "/static/app.css")
        browser.add_cookie({"name": auth.SESSION_COOKIE, "value": started.session_id, "path": "/", "httpOnly": True})
        browser.add_cookie({"name": auth.CSRF_COOKIE, "value": started.csrf_token, "path": "/"})
        return name

    return sign


@pytest.fixture
def browser(_chrome: Any, live_url: str) -> Iterator[Any]:
    """The session's Chromium, on a blank page with no cookies from an earlier test."""
    _chrome.get(live_url + "/static/app.css")  # cookies can only be cleared for the current origin
    _chrome.delete_all_cookies()
    _chrome.execute_script("window.sessionStorage.clear()")
    yield _chrome
    logs = []
    try:
        logs = [e for e in _chrome.get_log("browser") if e.get("level") == "SEVERE"]
    except Exception:
        logs = []
    _chrome.get("about:blank")
    # A script error on the page is a failure even when every assertion held.
    unexpected = [e["message"] for e in logs if "status of 401" not in e["message"]
                  and "status of 409" not in e["message"] and "status of 422" not in e["message"]]
    assert not unexpected, unexpected
