"""ERP transfer to files under the files root: atomic writes, JSON and CSV content, paths kept inside the root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from erp_testkit import Ledger, delivered, items_of, make_job, run_row, seed_ledger, start_manual, start_retry
from sqlalchemy import Engine
from workers_testkit import Drain

from scheduler.clock import FrozenClock
from scheduler.errors import InvalidProperties
from scheduler.jobtypes import JobTypeRegistry
from scheduler.models import RunStatus
from workers.erp import JOB_TYPE
from workers.erp.send import write_atomically
from workers.runtime.env import WorkerEnv

S = RunStatus
OUTBOX = {"kind": "file", "directory": "erp/outbox"}


@pytest.fixture
def registry() -> JobTypeRegistry:
    """Just this job type, so the tests do not depend on the other types installed."""
    return JobTypeRegistry([JOB_TYPE])


@pytest.fixture
def ledger(billing_engine: Engine) -> Ledger:
    return seed_ledger(billing_engine)


def outbox(env: WorkerEnv) -> Path:
    return env.settings.resolved_files_root / "erp" / "outbox"


def test_json_batches_are_written_as_whole_files_named_by_run_and_batch(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    job = make_job(env, clock, target=OUTBOX, batch_size=3)
    run_id = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    run = run_row(env, run_id)
    assert run.status == S.COMPLETED
    # Only the final files are there: no temporary file is left behind
    assert sorted(os.listdir(outbox(env))) == [f"invoices-{run_id}-1.json", f"invoices-{run_id}-2.json"]
    second = json.loads((outbox(env) / f"invoices-{run_id}-2.json").read_text())
    assert second == {
        "run_id": run_id, "batch_no": 2, "dataset": "invoices",
        "records": [
            {"id": str(ledger.invoices["INV-0520"]), "number": "INV-0520", "account_number": "ACC-1",
             "kind": "INVOICE", "status": "OPEN", "issued_on": "2026-05-20", "due_on": "2026-07-01",
             "amount": "1000.00", "balance": "1000.00", "bill_cycle_run_id": "52"},
            {"id": str(ledger.invoices["INV-0531"]), "number": "INV-0531", "account_number": "ACC-2",
             "kind": "INVOICE", "status": "VOID", "issued_on": "2026-05-31", "due_on": "2026-07-01",
             "amount": "0.10", "balance": "0.10", "bill_cycle_run_id": "52"},
        ],
    }
    item = items_of(env, run_id)[f"invoices:{ledger.invoices['INV-0520']}"]
    assert item.detail["file"] == f"erp/outbox/invoices-{run_id}-2.json"
    assert run.summary["target"] == {"kind": "file", "directory": "erp/outbox"}
    assert len(delivered(env.billing_engine)) == 5
    # A second run finds nothing new and writes nothing
    again = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    assert run_row(env, again).summary["delivered"] == 0
    assert len(os.listdir(outbox(env))) == 2


def test_csv_batches_have_a_header_and_one_row_per_record(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    job = make_job(env, clock, name="ERP payments CSV", dataset="payments", format="csv", target=OUTBOX)
    run_id = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    assert run_row(env, run_id).status == S.COMPLETED
    content = (outbox(env) / f"payments-{run_id}-1.csv").read_bytes()
    assert content == (
        "id,account_number,invoice_number,amount,received_at,bill_cycle_run_id\r\n"
        f"{ledger.payments['P-0501-0000']},ACC-1,INV-0501,120.50,2026-05-01T00:00:00Z,51\r\n"
        f"{ledger.payments['P-0531-2359']},ACC-2,,40.00,2026-05-31T23:59:59Z,\r\n"
    ).encode()


@pytest.mark.parametrize("directory", ["../outside", "/etc/erp", "erp/../../outside", ".", "C:/erp"])
def test_a_directory_outside_the_files_root_is_refused_when_the_job_is_created(
    env: WorkerEnv, clock: FrozenClock, directory: str,
) -> None:
    with pytest.raises(InvalidProperties) as refused:
        make_job(env, clock, target={"kind": "file", "directory": directory})
    assert "directory" in str(refused.value.details)


def test_a_directory_that_leads_out_through_a_link_fails_the_run_before_anything_is_written(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain, tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = env.settings.resolved_files_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "erp").symlink_to(outside, target_is_directory=True)
    job = make_job(env, clock, target={"kind": "file", "directory": "erp/outbox"})
    run_id = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    run = run_row(env, run_id)
    assert run.status == S.FAILED
    assert run.error is not None and "outside the files root" in run.error
    assert list(outside.iterdir()) == []


def test_an_unwritable_directory_errors_the_batch_and_the_retry_writes_it(
    env: WorkerEnv, clock: FrozenClock, ledger: Ledger, drain: Drain,
) -> None:
    # Given a file where the target directory should be
    root = env.settings.resolved_files_root
    (root / "erp").mkdir(parents=True)
    (root / "erp" / "outbox").write_text("not a directory")
    job = make_job(env, clock, target=OUTBOX)
    run_id = start_manual(env, clock, job, date_from="2026-05-01", date_to="2026-05-31")
    drain()
    run = run_row(env, run_id)
    assert run.status == S.FAILED
    assert run.error is not None and f"cannot write invoices-{run_id}-1.json" in run.error
    assert delivered(env.billing_engine) == []
    # When the directory is fixed and the run retried, the batch is written once
    (root / "erp" / "outbox").unlink()
    retry_id = start_retry(env, clock, run_id)
    drain()
    assert run_row(env, retry_id).status == S.COMPLETED
    assert os.listdir(outbox(env)) == [f"invoices-{retry_id}-1.json"]
    assert len(delivered(env.billing_engine)) == 5


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "out" / "batch.json"
    write_atomically(target, b"old")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new content")
    assert os.listdir(target.parent) == ["batch.json"]
    assert target.read_bytes() == b"old"
