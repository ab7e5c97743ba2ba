"""Tests of app.py, in plain Python: ``pytest`` (needs the durable-sdk package).

The workflow runs against ``FakeDurable``: recorded step answers, recorded
events, and a virtual clock, so a test of a 60-second timeout takes no time.
"""

from durable_sdk.testing import FakeDurable

from app import approval, submit

REPORT = {"report": "R-1", "amount": 120, "approval_timeout_ms": 60_000, "pay_delay_ms": 1_000}


def test_submit_body():
    # The step's own function, called directly; it asks for its
    # idempotency_key(), a durable call, so it runs inside a fake.
    with FakeDurable():
        assert submit.body(REPORT) == {"ticket": "T-R-1"}


def test_approved_then_paid():
    fake = FakeDurable(
        steps={"submit": {"ticket": "T-R-1"}, "pay": {"paid": 120}},
        events={"approval": [{"approved": True, "by": "ana"}]},
    )
    start = fake.now_ms()
    out = fake.run(approval, REPORT)
    assert out == {"status": "paid", "report": "R-1", "ticket": {"ticket": "T-R-1"}, "by": "ana", "payment": {"paid": 120}}
    assert [c.name for c in fake.calls if c.kind == "step"] == ["submit", "pay"]
    assert ("event", "approval", 60_000) in fake.calls
    assert ("sleep", None, 1_000) in fake.calls  # the cooling-off period
    assert fake.now_ms() == start + 1_000


def test_no_answer_escalates():
    # No "approval" event: the wait times out (on the virtual clock).
    fake = FakeDurable(steps={"submit": {"ticket": "T-R-1"}})
    start = fake.now_ms()
    out = fake.run(approval, REPORT)  # escalate has no answer: its body runs
    assert out["status"] == "escalated"
    assert out["after_ms"] == 60_000
    assert out["escalation"] == {"escalated_to": "finance"}
    assert [c.name for c in fake.calls if c.kind == "step"] == ["submit", "escalate"]
    assert fake.now_ms() == start + 60_000
