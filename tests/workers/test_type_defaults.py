"""One set of defaults: the template the page's form renders carries what the API fills in for a left-out field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler.jobtypes import JobType
from workers.dunning import JOB_TYPE as DUNNING
from workers.erp import JOB_TYPE as ERP
from workers.gl import JOB_TYPE as GL
from workers.mediation import JOB_TYPE as MEDIATION


def test_the_dunning_form_starts_from_the_ladder_the_api_fills_in() -> None:
    # Given the dunning template, as GET /job-types publishes it to the page
    fields = DUNNING.template()["job_properties"]["properties"]
    # Then the tiers field starts from the four-tier ladder a job created without tiers gets
    api_default = DUNNING.validate_properties({}).model_dump(mode="json")
    assert fields["tiers"]["default"] == api_default["tiers"]
    assert [t["name"] for t in fields["tiers"]["default"]] == ["Reminder", "Late fee", "Suspension", "Write-off"]
    assert fields["tiers"]["default"][1]["late_fee"] == "25.00"


@pytest.mark.parametrize("job_type", [DUNNING, ERP, GL, MEDIATION], ids=lambda t: t.name)
def test_every_field_default_in_the_template_is_what_the_api_fills_in(job_type: JobType) -> None:
    for section, model in (("job_properties", job_type.job_properties), ("run_properties", job_type.run_properties)):
        try:
            filled = model.model_validate({}).model_dump(mode="json")
        except ValidationError:
            continue  # a required field: nothing is filled in for the whole model
        properties = job_type.template()[section].get("properties") or {}
        assert {name: prop.get("default") for name, prop in properties.items()} == filled, (job_type.name, section)
