"""Tests of app.py, in plain Python: ``pytest`` (needs the durable-sdk package).

The workflow runs against ``FakeDurable``: recorded answers stand in for the
steps, so no host, HR service or laptop vendor is needed.
"""

import pytest

from durable_sdk import Permanent, StepError
from durable_sdk.testing import FakeDurable, fail

from app import create_record, onboarding

HIRE = {"name": "Ada", "email": "ada@example.com", "team": "design"}


def test_create_record_body():
    # The step's own function, called directly (offline: no hr_url).
    record = create_record.body(HIRE)
    assert record["employee_id"].startswith("EMP-")
    assert record == {**HIRE, "employee_id": record["employee_id"]}
    with pytest.raises(Permanent):
        create_record.body({"name": "Bob", "email": "not-an-address"})


def test_onboarding_with_recorded_answers():
    record = {"employee_id": "EMP-000042", "name": "Ada", "email": "ada@example.com", "team": "design"}
    fake = FakeDurable(
        steps={
            "create_record": record,
            "provision_laptop": {"asset_tag": "LT-000042", "model": "MacBook Pro 16"},
            "grant_access": {"groups": ["all-staff", "design"]},
        }
    )
    out = fake.run(onboarding, HIRE)
    assert out == {
        "employee_id": "EMP-000042",
        "name": "Ada",
        "laptop": "MacBook Pro 16 (LT-000042)",
        "groups": ["all-staff", "design"],
        "status": "onboarded",
    }
    # The record goes to both parallel steps.
    assert fake.calls == [
        ("step", "create_record", HIRE),
        ("step", "provision_laptop", record),
        ("step", "grant_access", record),
    ]


def test_onboarding_runs_the_step_bodies():
    # No answers: the bodies run here (about 0.6 s: two simulated waits).
    out = FakeDurable().run(onboarding, HIRE)
    assert out["status"] == "onboarded"
    assert out["laptop"].startswith("MacBook Pro 16 (LT-")
    assert out["groups"] == ["all-staff", "design", "design-oncall"]


def test_a_failed_step_fails_the_run():
    fake = FakeDurable(steps={"create_record": fail("HR is down")})
    with pytest.raises(StepError) as e:
        fake.run(onboarding, HIRE)
    assert e.value.kind == "failed"
    assert [c.name for c in fake.calls] == ["create_record"]
