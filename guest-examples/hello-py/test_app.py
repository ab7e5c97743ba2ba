"""Tests of app.py, in plain Python: ``pytest`` (needs the durable-sdk package)."""

import pytest

from durable_sdk import StepError
from durable_sdk.testing import FakeDurable, fail

from app import count_letters, greet, hello


def test_greet_body():
    # A step's own function, called directly: not durable, no host needed.
    assert greet.body("Ada") == "Hello, Ada!"
    assert count_letters.body("Hello, Ada!") == 8


def test_workflow_runs_the_steps():
    fake = FakeDurable()  # no recorded answers: the step bodies run here
    assert fake.run(hello, {"name": "Ada"}) == {"greeting": "Hello, Ada!", "letters": 8}
    assert fake.calls == [("step", "greet", "Ada"), ("step", "count_letters", "Hello, Ada!")]


def test_workflow_with_recorded_answers():
    fake = FakeDurable(steps={"greet": "Hi, Bob!"})
    assert fake.run(hello, {"name": "Bob"}) == {"greeting": "Hi, Bob!", "letters": 5}


def test_a_failed_step_fails_the_workflow():
    fake = FakeDurable(steps={"greet": fail("the greeter is down")})
    with pytest.raises(StepError) as e:
        fake.run(hello, {"name": "Ada"})
    assert e.value.kind == "failed"
    assert [c.name for c in fake.calls] == ["greet"]
