"""Run Manager for daily use, in a real headless Chromium: the list fits 1366 px and a phone, filters narrow it,
it follows a run's progress in records by itself, money reads as money, and a run's items filter and export.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from scheduler.lifecycle import transition
from scheduler.models import JobRun, RunChunk, RunItem, RunStatus
from scheduler.review_blocks import record_skipped_ticks

if not os.environ.get("CI"):
    pytest.importorskip("selenium", reason="the page tests drive Chromium with selenium (pip install 'selenium>=4.20')")

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from test_web_browser import heading, shoot, wait

MakeJob = Callable[..., int]
MakeRun = Callable[..., int]
SignIn = Callable[[str], str]

LONG_NAME = "Month-end dunning of residential accounts past due, all regions"
ERROR = ("3 of 1,204 items failed; first: Cannot reach the ERP target at erp.example:8443: connection refused "
         "(check the target's address and that it accepts connections)")
MAY_1 = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def sideways(browser: Any) -> list[str]:
    """What sticks out sideways: empty when neither the page nor the list's table scrolls sideways."""
    return list(browser.execute_script(
        "const s = document.scrollingElement; const w = document.querySelector('main .table-wrap');"
        "if (s.scrollWidth <= s.clientWidth && (!w || w.scrollWidth <= w.clientWidth)) return [];"
        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > s.clientWidth)"
        ".slice(0, 8).map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"
        ".concat([`page ${s.scrollWidth} > ${s.clientWidth}`]);"))


def shown_runs(browser: Any) -> list[int]:
    """The runs listed, read at once (the list re-renders itself every few seconds)."""
    ids = browser.execute_script("return [...document.querySelectorAll('tr[data-run-id]')].map(r => r.dataset.runId)")
    return [int(i) for i in ids]


def row_text(browser: Any, run_id: int) -> str:
    return str(browser.execute_script(
        "const r = document.querySelector(`tr[data-run-id='${arguments[0]}']`); return r ? r.innerText : '';", run_id))


def wait_runs(browser: Any, expected: list[int]) -> None:
    wait(browser, lambda b: shown_runs(b) == expected)


@pytest.fixture
def day_of_runs(web_sessions: sessionmaker[Session], make_job: MakeJob, make_run: MakeRun) -> dict[str, int]:
    """An INCOMPLETE dunning run of May 1st with money and items, a ledger run staging, a preview waiting."""
    dunning = make_job(LONG_NAME)
    ledger = make_job("Ledger close", job_type="fake_ledger")
    finished, staging, waiting = make_run(dunning), make_run(ledger), make_run(dunning, preview=True)
    with web_sessions() as session:
        for run_id in (finished, waiting):
            assert transition(session, run_id, RunStatus.PROCESSING, actor="worker:test")
        assert transition(session, staging, RunStatus.PROCESSING, actor="worker:test", values={"chunks_total": 2})
        assert transition(session, waiting, RunStatus.PREVIEW, actor="worker:test")
        assert transition(session, finished, RunStatus.SUBMITTED, actor="worker:test")
        assert transition(session, finished, RunStatus.INCOMPLETE, actor="worker:test", values={
            "error": ERROR, "finished_at": MAY_1 + timedelta(minutes=4), "summary": {
                "accounts_evaluated": 1204, "fees_total": "2500.000000", "written_off_total": "1234567.891",
                "money": {"USD": {"late_fees": "2500.00", "write_offs": "1234567.891"}},
                "by_tier": {"1": 900, "2": 301}, "items": {"ok": 1201, "error": 3},
                "retry_unavailable": "its 3 failed items were refused for their data"}})
        session.execute(update(JobRun).where(col(JobRun.id) == finished).values(created_at=MAY_1))
        items = [("ACC-0001", "ok", {"to_tier": 1, "fee_amount": "25.00"}),
                 ("ACC-0002", "error", {"to_tier": 2, "fee_amount": "1250.5", "error": "=account locked"}),
                 ("ACC-0003", "ok", {"to_tier": 2, "fee_amount": "2224.50"})]
        session.add_all(RunItem(run_id=finished, item_key=k, outcome=o, detail=d) for k, o, d in items)
        session.add_all(RunChunk(run_id=staging, chunk_no=n, items=0) for n in range(2))
        session.commit()
        ticks = [datetime(2026, 6, 2, 2, tzinfo=UTC), datetime(2026, 6, 3, 2, tzinfo=UTC)]
        assert record_skipped_ticks(session, dunning, count=2, ticks=ticks, at=ticks[-1], actor="beat:test")
        session.commit()
    return {"finished": finished, "staging": staging, "waiting": waiting, "dunning": dunning}


def test_the_list_fits_1366_px_and_a_phone_filters_and_follows_a_run(
    browser: Any, live_url: str, web_sessions: sessionmaker[Session], day_of_runs: dict[str, int], sign_in: SignIn,
) -> None:
    finished, staging, waiting = day_of_runs["finished"], day_of_runs["staging"], day_of_runs["waiting"]
    # Given an operator at 1366 px
    sign_in("operator")
    browser.set_window_size(1366, 900)
    browser.get(f"{live_url}/#/runs")
    heading(browser, "Run Manager")
    wait_runs(browser, [waiting, staging, finished])

    # Then every run fits without sideways scrolling, with its counts, money and error line
    assert sideways(browser) == []
    row = row_text(browser, finished)
    assert LONG_NAME in row and "INCOMPLETE" in row and "Fake dunning" in row
    assert "1,201 ok" in row and "3 error" in row and "1,204 of 1,204 records" in row
    assert "Late fees\nUSD 2,500.00" in row and "Write offs\nUSD 1,234,567.89" in row and "Fees total" not in row
    assert "applied 1,201 items, 3 failed" in row and "erp.example:8443: connection refused" in row
    assert "2026-05-01 09:30:00" in row
    assert "holding up its job: 2 scheduled ticks skipped" in row_text(browser, waiting)
    shoot(browser, "run-manager")

    # And it follows the staging run by itself, in records
    assert "0%" in row_text(browser, staging)
    with web_sessions() as session:
        session.execute(update(RunChunk).where(col(RunChunk.run_id) == staging, col(RunChunk.chunk_no) == 0)
                        .values(items=1000, evaluated_at=datetime.now(UTC)))
        session.execute(update(JobRun).where(col(JobRun.id) == staging).values(chunks_done=1))
        session.commit()
    wait(browser, lambda b: "1,000 records staged so far" in row_text(b, staging))
    with web_sessions() as session:
        session.execute(update(RunChunk).where(col(RunChunk.run_id) == staging, col(RunChunk.chunk_no) == 1)
                        .values(items=1500, evaluated_at=datetime.now(UTC)))
        session.execute(update(JobRun).where(col(JobRun.id) == staging).values(chunks_done=2))
        assert transition(session, staging, RunStatus.PREVIEW, actor="worker:test")
        session.commit()
    wait(browser, lambda b: "PREVIEW" in row_text(b, staging) and "2,500 of 2,500 records" in row_text(b, staging))

    # When they filter by type, job, status and creation date, the list and its CSV link follow
    Select(browser.find_element(By.ID, "type-filter")).select_by_visible_text("Fake ledger")
    wait_runs(browser, [staging])
    assert "job_type=fake_ledger" in browser.find_element(By.ID, "csv-export").get_attribute("href")
    browser.find_element(By.LINK_TEXT, "Clear filters").click()
    wait_runs(browser, [waiting, staging, finished])
    Select(browser.find_element(By.ID, "job-filter")).select_by_visible_text(LONG_NAME)
    wait_runs(browser, [waiting, finished])
    browser.find_element(By.CSS_SELECTOR, "button.chip[data-status='PREVIEW']").click()
    wait_runs(browser, [waiting])
    browser.get(f"{live_url}/#/runs")
    wait_runs(browser, [waiting, staging, finished])
    for input_id in ("from-filter", "to-filter"):
        browser.execute_script("const i = document.getElementById(arguments[0]); i.value = '2026-05-01';"
                               "i.dispatchEvent(new Event('change'));", input_id)
        wait(browser, lambda b, i=input_id: b.execute_script(
            "return document.getElementById(arguments[0])?.value", i) == "2026-05-01")
    wait_runs(browser, [finished])

    # And on a phone the same list is a column of cards, still without sideways scrolling
    browser.get(f"{live_url}/#/runs")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        browser.refresh()
        wait_runs(browser, [waiting, staging, finished])
        assert sideways(browser) == []
        shape = browser.execute_script(
            "const c = document.querySelector(`tr[data-run-id='${arguments[0]}'] td[data-label='Amounts']`);"
            "return [getComputedStyle(c).display, c.innerText];", finished)
        assert shape[0] == "grid" and "USD 2,500.00" in shape[1]
        shoot(browser, "run-manager-phone", width=390)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_runs_items_filter_by_outcome_and_export_as_csv(
    browser: Any, live_url: str, day_of_runs: dict[str, int], sign_in: SignIn,
) -> None:
    finished = day_of_runs["finished"]
    # Given a viewer on the INCOMPLETE run's page
    sign_in("viewer")
    browser.get(f"{live_url}/#/runs/{finished}")
    heading(browser, f"Run {finished}")
    main = browser.find_element(By.TAG_NAME, "main")
    wait(browser, lambda b: "ACC-0003" in main.text)

    # Then its summary and items show money with currency, separators and two decimals; no operator buttons
    summary = browser.find_element(By.XPATH, "//section[h2='Summary']").text
    assert "Fees total\nUSD 2,500.00" in summary and "Late fees USD 2,500.00" in summary
    assert "Written off total\nUSD 1,234,567.89" in summary and "Accounts evaluated\n1,204" in summary
    assert "USD 1,250.50" in main.text and "USD 2,224.50" in main.text
    assert browser.find_elements(By.CSS_SELECTOR, "#run-actions [data-action]") == []
    assert "No retry is offered: its 3 failed items were refused for their data" in main.text
    assert not browser.find_elements(By.XPATH, "//main//a[normalize-space()='Create Job Run']")

    # When the items are filtered to errors, the table and the export follow
    Select(browser.find_element(By.ID, "item-outcome")).select_by_value("error")
    wait(browser, lambda b: "ACC-0001" not in b.find_element(By.TAG_NAME, "main").text)
    keys = [td.text for td in browser.find_elements(By.XPATH, "//section[h2='Details']//tbody/tr/td[1]")]
    assert keys == ["ACC-0002"]
    link = browser.find_element(By.ID, "items-csv")
    assert link.text == "Export error items (CSV)"
    shoot(browser, "run-items")
    text = browser.execute_async_script(
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(arguments[1])",
        link.get_attribute("href"))
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["key"] == "ACC-0002" and row["outcome"] == "error"
    assert row["fee_amount"] == "1250.50" and row["fee_amount_currency"] == "USD"
    assert row["error"] == "'=account locked"


def test_a_job_held_up_by_a_preview_says_which_and_how_many_ticks_it_skipped(
    browser: Any, live_url: str, day_of_runs: dict[str, int], sign_in: SignIn,
) -> None:
    sign_in("viewer")
    browser.get(f"{live_url}/#/jobs/{day_of_runs['dunning']}")
    heading(browser, LONG_NAME)
    note = wait(browser, lambda b: b.find_element(By.ID, "awaiting-review")).text
    assert f"Run {day_of_runs['waiting']} awaits review since" in note
    assert "skip 2 scheduled ticks (2026-06-02 02:00:00 UTC to 2026-06-03 02:00:00 UTC)" in note
