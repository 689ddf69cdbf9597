"""ERP transfer job and run properties: what is refused and why, the target's identity, the demo job."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from scheduler.errors import InvalidProperties
from scheduler.jobtypes import ENTRY_POINT_GROUP
from workers.billing.demo_erp import DEMO_JOB, prepare_outbox
from workers.erp import JOB_TYPE, ErpProperties, FileTarget, HttpTarget, target_key

HTTP = {"kind": "http", "url": "https://erp.example.com/api/batches", "token_env": "ERP_TOKEN"}


def props(**changes: Any) -> dict[str, Any]:
    return {"dataset": "invoices", "target": HTTP, **changes}


def refusal(data: dict[str, Any], validate: Any = JOB_TYPE.validate_properties) -> str:
    with pytest.raises(InvalidProperties) as refused:
        validate(data)
    return str(refused.value.details)


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ({**HTTP, "token_env": "s3cr3t-token-value"}, "NAME of an environment variable"),
        ({**HTTP, "token_env": "eyJhbGciOiJIUzI1NiJ9"}, "NAME of an environment variable"),
        ({**HTTP, "token": "s3cr3t"}, "extra"),
        ({**HTTP, "url": "https://user:pass@erp.example.com/x"}, "must not carry credentials"),
        ({**HTTP, "url": "ftp://erp.example.com/x"}, "http:// or https://"),
        ({**HTTP, "max_attempts": 0}, "max_attempts"),
        ({"kind": "file", "directory": "../elsewhere"}, "inside the files root"),
        ({"kind": "file", "directory": "/var/erp"}, "relative to the files root"),
        ({"kind": "file", "directory": "a/b/../../.."}, "inside the files root"),
        ({"kind": "sftp", "directory": "x"}, "kind"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(target: dict[str, Any], says: str) -> None:
    assert says in refusal(props(target=target))


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"dataset": "orders"}, "dataset"),
        ({"format": "xml"}, "format"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 5001}, "batch_size"),
        ({"inception_date": "yesterday"}, "inception_date"),
        ({"lookback_days": -1}, "lookback_days"),
        ({"lookback_days": 367}, "lookback_days"),
    ],
)
def test_bad_job_properties_are_refused(changes: dict[str, Any], says: str) -> None:
    assert says in refusal(props(**changes))


def test_the_token_is_stored_by_name_and_paths_are_normalized() -> None:
    valid = JOB_TYPE.validate_properties(props(target={"kind": "file", "directory": "./erp//outbox/"}))
    assert isinstance(valid, ErpProperties) and isinstance(valid.target, FileTarget)
    assert valid.target.directory == "erp/outbox"
    stored = JOB_TYPE.validate_properties(props()).model_dump(mode="json")
    assert stored["target"]["token_env"] == "ERP_TOKEN"
    assert stored["auto_send"] is True and stored["batch_size"] == 500 and stored["format"] == "json"


def test_run_properties_take_a_bill_cycle_and_or_an_ordered_range() -> None:
    validate = JOB_TYPE.validate_run_properties
    validate({})
    validate({"bill_cycle_run_id": 7, "date_from": "2026-05-01"})
    assert "date_from must not be after date_to" in refusal(
        {"date_from": "2026-05-31", "date_to": "2026-05-01"}, validate)
    assert "bill_cycle_run_id" in refusal({"bill_cycle_run_id": 0}, validate)


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        (HttpTarget(url="HTTP://ERP.example.com:80/x"), HttpTarget(url="http://erp.example.com/x"), True),
        (HttpTarget(url="https://erp.example.com/x", token_env="A"), HttpTarget(url="https://erp.example.com/x"), True),
        (HttpTarget(url="https://erp.example.com/x"), HttpTarget(url="https://erp.example.com/y"), False),
        (HttpTarget(url="https://erp.example.com/x"), HttpTarget(url="https://erp.example.com/x?tenant=2"), False),
        (FileTarget(directory="erp/outbox/"), FileTarget(directory="erp/./outbox"), True),
        (FileTarget(directory="erp/outbox"), FileTarget(directory="erp/other"), False),
    ],
)
def test_the_target_key_is_stable_and_tells_targets_apart(
    one: HttpTarget | FileTarget, other: HttpTarget | FileTarget, same: bool,
) -> None:
    assert len(target_key(one)) == 64
    assert (target_key(one) == target_key(other)) is same


def test_the_template_offers_the_custom_fields() -> None:
    template = JOB_TYPE.template()
    assert (template["name"], template["queue"], template["supports_preview"]) == (
        "erp_transfer", "erp_transfer", True)
    fields = template["job_properties"]["properties"]
    assert {"dataset", "target", "format", "batch_size", "auto_send", "inception_date", "lookback_days"} <= set(fields)
    assert set(template["run_properties"]["properties"]) == {"bill_cycle_run_id", "date_from", "date_to"}


def test_the_demo_job_is_valid_and_writes_under_the_files_root(tmp_path: Path) -> None:
    valid = JOB_TYPE.validate_properties(DEMO_JOB["properties"])
    assert isinstance(valid, ErpProperties) and isinstance(valid.target, FileTarget)
    assert DEMO_JOB["job_type"] == JOB_TYPE.name
    outbox = prepare_outbox(tmp_path / "files")
    assert outbox.is_dir() and valid.target.resolve(tmp_path / "files") == outbox.resolve()


def test_registered_through_the_job_types_entry_point() -> None:
    (entry,) = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "erp_transfer"]
    assert entry.value == "workers.erp:JOB_TYPE"
    assert entry.load() is JOB_TYPE
