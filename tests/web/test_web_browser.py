"""The Scheduler page in a real headless Chromium against the real app on a SQLite file.

A user creates a system job through the form, sees it in Setup with its next fire times, creates
a job run in Run Manager, reviews a preview and deletes it, and reads the API's words when the
cron expression is wrong. One screenshot per main view goes to /tmp for a human look.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scheduler import auth
from scheduler.cron import CronSchedule
from scheduler.cron_hash import job_hash_seed
from scheduler.errors import InvalidCron
from scheduler.lifecycle import transition
from scheduler.models import ItemOutcome, Job, JobRun, RunItem, RunStatus

if not os.environ.get("CI"):  # in CI a missing selenium fails at the import below instead
    pytest.importorskip("selenium", reason="the page tests drive Chromium with selenium (pip install 'selenium>=4.20')")

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

MakeJob = Callable[..., int]
MakeRun = Callable[..., int]
SignIn = Callable[[str], str]

SHOTS = Path("/tmp")
README_SHOTS = {"run-manager", "run-manager-phone", "run-items", "setup"}
"""Shown in the README: ``SCHEDULER_SCREENSHOTS=docs/screenshots pytest tests/web`` refreshes them there."""
WAIT = 10


# ---------------------------------------------------------------- helpers


def wait(browser: Any, condition: Any, timeout: float = WAIT) -> Any:
    try:
        # The Run Manager re-renders its list when runs change: an element found a moment ago may be gone.
        return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        text = browser.find_element(By.TAG_NAME, "main").text
        raise AssertionError(f"timed out; the page shows:\n{text}") from None


def heading(browser: Any, text: str) -> WebElement:
    """Wait for the view whose h1 starts with ``text``."""
    return wait(browser, ec.visibility_of_element_located(
        (By.XPATH, f"//main//h1[starts-with(normalize-space(), {xpath_str(text)})]")))


def xpath_str(text: str) -> str:
    return f'"{text}"' if "'" in text else f"'{text}'"


def field(scope: Any, label: str) -> WebElement:
    """The input labelled ``label`` (a trailing required mark is ignored) inside ``scope``."""
    element = wait(scope, lambda s: s.find_element(
        By.XPATH, f".//label[normalize-space()={xpath_str(label)} or normalize-space()={xpath_str(label + ' *')}]"))
    target = element.get_attribute("for")
    return scope.find_element(By.XPATH, f"//*[@id={xpath_str(target)}]")


def click_button(scope: Any, text: str) -> None:
    button = wait(scope, lambda s: s.find_element(
        By.XPATH, f".//*[self::button or self::a][normalize-space()={xpath_str(text)}]"))
    button.click()


def fill(element: WebElement, value: str) -> None:
    element.clear()
    element.send_keys(value)


def shoot(browser: Any, name: str, *, width: int = 1366) -> None:
    """A full-page screenshot to /tmp/scheduler-web-<name>.png, for a human to look at (README ones: see above)."""
    mobile = width < 700
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 768, "deviceScaleFactor": 1, "mobile": mobile})
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": width, "height": min(max(height, 768), 4000), "deviceScaleFactor": 1, "mobile": mobile}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    readme = os.environ.get("SCHEDULER_SCREENSHOTS")
    try:
        if readme and name in README_SHOTS:
            browser.save_screenshot(str(Path(readme) / f"{name}.png"))
        browser.save_screenshot(str(SHOTS / f"scheduler-web-{name}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def run_row(browser: Any, run_id: int) -> WebElement:
    return wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, f"tr[data-run-id='{run_id}']")))


def action_buttons(browser: Any) -> list[str]:
    buttons = browser.find_elements(By.CSS_SELECTOR, "#run-actions [data-action]")
    return [b.get_attribute("data-action") for b in buttons]


def fill_job_form(browser: Any, *, name: str, cron: str, timezone: str = "UTC") -> None:
    """Fill the Create System Job form: name, Type (which shows the custom fields), properties, schedule."""
    fill(field(browser, "Name"), name)
    Select(field(browser, "Type")).select_by_visible_text("Fake dunning")
    custom = wait(browser, ec.visibility_of_element_located((By.ID, "custom-fields")))
    fill(field(custom, "Minimum account due"), "12.50")
    Select(field(custom, "Strategy")).select_by_visible_text("Largest invoice")
    tier = custom.find_element(By.XPATH, ".//fieldset[legend[normalize-space()='Fake tier 1']]")
    fill(field(tier, "Code"), "1")
    fill(field(tier, "Name"), "Reminder")
    fill(field(tier, "Min days past due"), "10")
    field(tier, "Notice").click()
    fill(field(browser, "Cron expression"), cron)
    fill(field(browser, "Time zone"), timezone)


# ---------------------------------------------------------------- tests


def test_create_job_see_fires_create_run_and_read_its_audit_trail(
    browser: Any, live_url: str, web_sessions: sessionmaker[Session], sign_in: SignIn
) -> None:
    # Given an empty scheduler, and an admin logged in
    sign_in("admin")
    browser.get(live_url + "/")
    heading(browser, "Setup")
    assert "No system jobs yet" in browser.find_element(By.TAG_NAME, "main").text
    shoot(browser, "setup-empty")

    # When a user creates a system job through the form
    click_button(browser, "Create System Job")
    heading(browser, "Create System Job")
    assert not browser.find_elements(By.XPATH, "//label[starts-with(normalize-space(), 'Minimum account due')]")
    fill_job_form(browser, name="Nightly dunning", cron="0 2 * * *", timezone="Europe/London")
    fill(field(browser, "Email recipients"), "ops@example.com, billing@example.com")
    field(browser, "Preview ready").click()
    field(browser, "Review empty previews").click()
    shoot(browser, "create-job")
    click_button(browser, "Create")

    # Then its detail shows the definition and the next fire times in UTC and local time
    heading(browser, "Nightly dunning")
    main = browser.find_element(By.TAG_NAME, "main")
    assert "created" in main.text
    description = CronSchedule.parse("0 2 * * *", "Europe/London").describe()
    assert description in main.text
    fires = main.find_elements(By.XPATH, "//section[h2='Next fire times']//tbody/tr")
    assert len(fires) == 10
    assert "+01:00" in fires[0].text or "+00:00" in fires[0].text
    assert "Reminder" in main.text and "12.50" in main.text
    assert [b.text for b in main.find_elements(By.CSS_SELECTOR, ".title-row button")] == ["Pause", "Archive"]
    shoot(browser, "job-detail")
    with web_sessions() as session:
        job = session.query(Job).one()
        assert job.properties["strategy"] == "largest_invoice"
        assert job.properties["tiers"][0] == {"code": 1, "name": "Reminder", "min_days_past_due": 10,
                                              "actions": ["notice"], "late_fee": None}
        assert job.notify_emails == ["ops@example.com", "billing@example.com"]
        assert job.notify_on == ["preview_ready"]
        assert job.review_empty_previews and not job.requires_review

    # And "Create from this job" prefills the create form
    click_button(browser, "Create from this job")
    heading(browser, "Create System Job")
    assert field(browser, "Name").get_attribute("value") == "Nightly dunning (copy)"
    custom = browser.find_element(By.ID, "custom-fields")
    assert field(custom, "Minimum account due").get_attribute("value") == "12.50"

    # And Setup lists the job with its schedule, zone and next fire
    browser.find_element(By.LINK_TEXT, "Setup").click()
    heading(browser, "Setup")
    row = wait(browser, ec.visibility_of_element_located((By.XPATH, "//tr[td/a='Nightly dunning']")))
    assert "Fake dunning" in row.text and "Europe/London" in row.text and "ACTIVE" in row.text
    assert "UTC" in row.find_elements(By.TAG_NAME, "td")[5].text
    shoot(browser, "setup")

    # When the user creates a job run in Run Manager
    browser.find_element(By.LINK_TEXT, "Run Manager").click()
    heading(browser, "Run Manager")
    click_button(browser, "Create Job Run")
    heading(browser, "Create Job Run")
    Select(field(browser, "Job")).select_by_visible_text("Nightly dunning (Fake dunning)")
    as_of = field(browser, "As of")
    browser.execute_script("arguments[0].value = '2026-06-01'", as_of)
    fill(field(browser, "Note"), "month-end check")
    shoot(browser, "create-run")
    click_button(browser, "Create Job Run")

    # Then the run's detail shows it CREATED with its audit trail
    heading(browser, "Run 1")
    main = browser.find_element(By.TAG_NAME, "main")
    assert "CREATED" in browser.find_element(By.TAG_NAME, "h1").text
    trail = main.find_elements(By.XPATH, "//section[h2='Audit trail']//tbody/tr")
    assert len(trail) == 1 and "manual run" in trail[0].text and "key:web-admin" in trail[0].text
    assert action_buttons(browser) == ["cancel"]
    assert "2026-06-01" in main.text and "month-end check" in main.text

    # And Run Manager lists it as CREATED with the common columns
    click_button(browser, "Back to Run Manager")
    heading(browser, "Run Manager")
    row = run_row(browser, 1)
    assert "Nightly dunning" in row.text and "CREATED" in row.text and "Manual" in row.text
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers == ["RUN", "STATUS", "TIMES (UTC)", "PROGRESS", "ITEMS", "AMOUNTS", "OUTCOME"]
    assert "updates itself every few seconds" in browser.find_element(By.TAG_NAME, "main").text
    shoot(browser, "run-manager-new")

    # And while the run is active the list follows it without a reload
    with web_sessions() as session:
        assert transition(session, 1, RunStatus.PROCESSING, actor="worker:test",
                          values={"chunks_total": 4, "chunks_done": 1})
        session.commit()
    wait(browser, lambda b: "PROCESSING" in run_row(b, 1).text and "25%" in run_row(b, 1).text)

    # And its detail opens from the list
    run_row(browser, 1).find_element(By.LINK_TEXT, "Run 1").click()
    heading(browser, "Run 1")
    wait(browser, ec.visibility_of_element_located((By.XPATH, "//section[h2='Audit trail']//tbody/tr")))
    shoot(browser, "run-detail")


def test_preview_run_offers_submit_and_delete_and_delete_marks_it_deleted(
    browser: Any, live_url: str, web_sessions: sessionmaker[Session], make_job: MakeJob, make_run: MakeRun,
    sign_in: SignIn,
) -> None:
    # Given an operator, and a run that a worker staged for review
    sign_in("operator")
    job_id = make_job("Reviewed dunning", requires_review=True)
    run_id = make_run(job_id, preview=True)
    with web_sessions() as session:
        assert transition(session, run_id, RunStatus.PROCESSING, actor="worker:test")
        session.add_all([
            RunItem(run_id=run_id, item_key="ACC-1001", detail={"to_tier": 1, "amount_due": "42.00"}),
            RunItem(run_id=run_id, item_key="ACC-1002", detail={"to_tier": 2, "amount_due": "310.50"}),
            RunItem(run_id=run_id, item_key="ACC-1003", outcome=ItemOutcome.SKIPPED, detail={"reason": "paid"}),
        ])
        assert transition(session, run_id, RunStatus.PREVIEW, actor="worker:test", note="3 accounts staged",
                          values={"chunks_total": 2, "chunks_done": 2, "summary": {"escalated": 2, "unchanged": 1}})
        session.commit()

    # When the user opens it
    browser.get(f"{live_url}/#/runs/{run_id}")
    heading(browser, f"Run {run_id}")

    # Then exactly Submit and Delete are offered
    assert action_buttons(browser) == ["submit", "delete"]
    assert "PREVIEW" in browser.find_element(By.TAG_NAME, "h1").text
    main = browser.find_element(By.TAG_NAME, "main")
    assert "100%" in main.text
    assert "Escalated" in main.text

    # And the type's details: each item's key, outcome and detail fields, filterable by outcome
    items = browser.find_elements(By.XPATH, "//section[h2='Details']//tbody/tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in items] == ["ACC-1001", "ACC-1002", "ACC-1003"]
    assert "USD 310.50" in items[1].text and "planned" in items[1].text
    headers = [th.text for th in browser.find_elements(By.XPATH, "//section[h2='Details']//thead//th")]
    assert headers == ["KEY", "OUTCOME", "APPLIED", "TO TIER", "AMOUNT DUE", "REASON"]
    shoot(browser, "run-preview")
    Select(field(browser, "Outcome")).select_by_visible_text("Skipped (1)")
    wait(browser, lambda b: len(b.find_elements(By.XPATH, "//section[h2='Details']//tbody/tr")) == 1)
    assert "paid" in browser.find_element(By.XPATH, "//section[h2='Details']//tbody/tr").text

    # When they delete it (and confirm)
    click_button(browser, "Delete")
    click_button(browser, "Confirm delete")

    # Then it is DELETED, no action is left, and the audit trail says so
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "DELETED"))
    assert action_buttons(browser) == []
    trail = browser.find_elements(By.XPATH, "//section[h2='Audit trail']//tbody/tr")
    assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in trail] == [
        "CREATED", "PROCESSING", "PREVIEW", "DELETED"]
    with web_sessions() as session:
        assert session.get(JobRun, run_id).status == RunStatus.DELETED  # type: ignore[union-attr]

    # And the Run Manager's status chips filter on it
    browser.get(f"{live_url}/#/runs")
    heading(browser, "Run Manager")
    run_row(browser, run_id)
    click_button(browser, "Preview")
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "No runs match these filters."))
    csv = browser.find_element(By.ID, "csv-export").get_attribute("href")
    assert "status=PREVIEW" in csv and "format=csv" in csv
    click_button(browser, "Deleted")
    assert "DELETED" in run_row(browser, run_id).text


def test_invalid_cron_shows_the_apis_message_next_to_the_form(browser: Any, live_url: str, sign_in: SignIn) -> None:
    # Given the create form filled in with a cron expression that cannot fire
    sign_in("admin")
    browser.get(f"{live_url}/#/setup/new")
    heading(browser, "Create System Job")
    fill_job_form(browser, name="Broken schedule", cron="61 * * * *")

    # When the user presses Create
    click_button(browser, "Create")

    # Then the API's message is shown in plain words and nothing was created
    with pytest.raises(InvalidCron) as refused:
        CronSchedule.parse("61 * * * *")
    box = wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, ".form-error")))
    assert refused.value.message in box.text
    assert box.get_attribute("role") == "alert"
    heading(browser, "Create System Job")
    # And it is repeated under the cron field, which is marked invalid
    cron = field(browser, "Cron expression")
    assert cron.get_attribute("aria-invalid") == "true"
    under = cron.find_element(By.XPATH, "./ancestor::div[contains(@class, 'field')][1]"
                                        "//p[contains(@class, 'from-api')]")
    assert under.text == refused.value.message
    shoot(browser, "invalid-cron")


def test_login_with_an_api_key_then_act_with_the_csrf_cookie(
    browser: Any, live_url: str, web_sessions: sessionmaker[Session], make_job: MakeJob
) -> None:
    # Given a job, and an admin key
    job_id = make_job("Guarded job")
    with web_sessions() as session:
        _, token = auth.create_key(session, "finance-ops", "admin", actor="test")

    # When the user opens the page, they are asked for a key
    browser.get(live_url + "/")
    heading(browser, "Log in")
    fill(field(browser, "API key"), "sch_wrong_key")
    click_button(browser, "Log in")
    box = wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, ".form-error")))
    assert "unknown or revoked" in box.text
    shoot(browser, "login")
    fill(field(browser, "API key"), token)
    click_button(browser, "Log in")

    # Then they see Setup and can pause the job (a change that needs the CSRF header)
    heading(browser, "Setup")
    assert "finance-ops (admin)" in browser.find_element(By.ID, "session").text
    browser.find_element(By.LINK_TEXT, "Guarded job").click()
    heading(browser, "Guarded job")
    click_button(browser, "Pause")
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "PAUSED"))
    history = browser.find_elements(By.XPATH, "//section[h2='Status history']//tbody/tr")
    assert "key:finance-ops" in history[-1].text and "PAUSED" in history[-1].text
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, ".title-row button")] == ["Resume", "Archive"]

    with web_sessions() as session:
        assert session.get(Job, job_id).status == "PAUSED"  # type: ignore[union-attr]

    # And archiving, once confirmed, hides the job from Setup
    click_button(browser, "Archive")
    click_button(browser, "Confirm archive")
    wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "ARCHIVED"))
    assert browser.find_elements(By.CSS_SELECTOR, ".title-row button") == []
    browser.find_element(By.LINK_TEXT, "Setup").click()
    heading(browser, "Setup")
    assert "Guarded job" not in browser.find_element(By.TAG_NAME, "main").text

    # And logging out brings the key prompt back
    click_button(browser, "Log out")
    heading(browser, "Log in")


def test_next_fire_times_flag_daylight_saving_changes(
    browser: Any, live_url: str, make_job: MakeJob, sign_in: SignIn
) -> None:
    # Given a viewer, and a monthly job in London: ten monthly fires always cross a clock change
    sign_in("viewer")
    job_id = make_job("Month start", cron="0 2 1 * *", timezone="Europe/London")

    # When its detail is opened
    browser.get(f"{live_url}/#/jobs/{job_id}")
    heading(browser, "Month start")

    # Then fires are listed in UTC and local time, and a change of UTC offset is flagged
    rows = wait(browser, lambda b: b.find_elements(By.XPATH, "//section[h2='Next fire times']//tbody/tr"))
    assert len(rows) == 10
    flagged = [r for r in rows if "dst" in (r.get_attribute("class") or "")]
    assert flagged and all("Clock changed" in r.text for r in flagged)
    offsets = {r.find_elements(By.TAG_NAME, "td")[2].text[-8:] for r in rows}
    assert offsets == {"(+00:00)", "(+01:00)"}
    shoot(browser, "job-dst")


def test_a_hashed_job_shows_where_its_h_fields_landed(
    browser: Any, live_url: str, make_job: MakeJob, sign_in: SignIn
) -> None:
    # Given a viewer, and a job "daily in the 02:00 hour" whose minute is spread by its name
    sign_in("viewer")
    job_id = make_job("Spread nightly", cron="H 2 * * *")
    expanded = CronSchedule.parse("H 2 * * *", seed=job_hash_seed("Spread nightly")).expanded

    # When its detail is opened
    browser.get(f"{live_url}/#/jobs/{job_id}")
    heading(browser, "Spread nightly")

    # Then the cron as written and the minute it landed on are both shown, and the fires follow the latter
    main = browser.find_element(By.TAG_NAME, "main")
    assert "H 2 * * *" in main.text
    row = main.find_element(By.XPATH, "//dt[normalize-space()='Spread by H']/following-sibling::dd[1]")
    assert expanded in row.text
    minute = int(expanded.split()[0])
    rows = wait(browser, lambda b: b.find_elements(By.XPATH, "//section[h2='Next fire times']//tbody/tr"))
    assert f"02:{minute:02d}" in rows[0].text
    shoot(browser, "job-hashed")


# ---------------------------------------------------------------- roles

OFFERED = {
    # role: (Create System Job, job actions, Create from this job, Create Job Run, run actions of a preview)
    "viewer": (False, [], False, False, []),
    "operator": (False, [], False, True, ["submit", "delete"]),
    "admin": (True, ["Pause", "Archive"], True, True, ["submit", "delete"]),
}


def texts(browser: Any, xpath: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.XPATH, xpath)]


@pytest.mark.parametrize("role", list(OFFERED))
def test_each_role_sees_only_the_actions_it_may_take(
    browser: Any, live_url: str, web_sessions: sessionmaker[Session], make_job: MakeJob, make_run: MakeRun,
    sign_in: SignIn, role: str,
) -> None:
    create_job, job_actions, create_from, create_run, run_actions = OFFERED[role]
    # Given a job with a preview waiting for review, and a user of this role logged in
    job_id = make_job("Month-end dunning", requires_review=True)
    run_id = make_run(job_id, preview=True)
    with web_sessions() as session:
        assert transition(session, run_id, RunStatus.PROCESSING, actor="worker:test")
        assert transition(session, run_id, RunStatus.PREVIEW, actor="worker:test")
        session.commit()
    name = sign_in(role)

    # Setup offers job creation to admins only, and says who is logged in
    browser.get(live_url + "/#/setup")
    heading(browser, "Setup")
    assert f"{name} ({role})" in browser.find_element(By.ID, "session").text
    assert bool(texts(browser, "//main//a[normalize-space()='Create System Job']")) is create_job

    # The job's page offers pause/archive and "create from" to admins, a run to operators and admins
    browser.get(f"{live_url}/#/jobs/{job_id}")
    heading(browser, "Month-end dunning")
    assert texts(browser, "//div[contains(@class, 'title-row')]//button") == job_actions
    assert bool(texts(browser, "//main//a[normalize-space()='Create from this job']")) is create_from
    assert bool(texts(browser, "//main//a[normalize-space()='Create Job Run']")) is create_run

    # Run Manager and the run's page offer runs and review actions to operators and admins
    browser.get(f"{live_url}/#/runs")
    heading(browser, "Run Manager")
    run_row(browser, run_id)
    assert bool(texts(browser, "//main//a[normalize-space()='Create Job Run']")) is create_run
    browser.get(f"{live_url}/#/runs/{run_id}")
    heading(browser, f"Run {run_id}")
    assert action_buttons(browser) == run_actions
    if not run_actions:
        assert f"Your role ({role}) cannot act on runs." in browser.find_element(By.TAG_NAME, "main").text

    # And a form the role may not use, reached by its address, says so instead of offering it
    if not create_job:
        browser.get(f"{live_url}/#/setup/new")
        heading(browser, "Create System Job")
        assert "cannot create jobs" in browser.find_element(By.TAG_NAME, "main").text
        assert not browser.find_elements(By.XPATH, "//main//form")
    shoot(browser, f"role-{role}")
