"""An expense report that waits for a person, in Python: the same workflow as
guest-examples/approval.

Input: ``{"report": "R-1", "amount": 120, "approval_timeout_ms": 60000,
"pay_delay_ms": 1000}``. The workflow submits the report (step ``submit``),
then waits for the event ``approval`` (``durable event RUN approval --data
'{"approved": true}'``) for at most ``approval_timeout_ms``:
- approved: a cooling-off ``sleep`` of ``pay_delay_ms``, then step ``pay``;
  output ``{"status": "paid", ...}``;
- rejected: step ``notify_rejected``; output ``{"status": "rejected", ...}``;
- no answer in time: step ``escalate``; output ``{"status": "escalated", ...}``.

While it waits (for the event or the sleep) the run holds nothing: kill the
process, send the event, ``durable resume`` it, and it goes on.
"""

import sys

from durable_sdk import (  # noqa: F401
    Steps,
    WaitError,
    WaitTimedOut,
    WitWorld,
    await_event,
    idempotency_key,
    sleep,
    step,
    workflow,
)


def say(line):
    print(line, file=sys.stderr, flush=True)


def report_of(value):
    """The input with the Rust example's defaults."""
    return {
        "report": value["report"],
        "amount": value["amount"],
        "approval_timeout_ms": value.get("approval_timeout_ms", 60_000),
        "pay_delay_ms": value.get("pay_delay_ms", 0),
    }


@step
def submit(r):
    say(f"submitting {r['report']} for {r['amount']} (key {idempotency_key()})")
    return {"ticket": f"T-{r['report']}"}


@step
def pay(r):
    say(f"paying {r['amount']} to the employee (key {idempotency_key()})")
    return {"paid": r["amount"]}


@step
def notify_rejected(r):
    say(f"telling the employee that {r['report']} was rejected (key {idempotency_key()})")
    return {"notified": True}


@step
def escalate(r):
    say(f"no answer on {r['report']}: escalating to the finance team (key {idempotency_key()})")
    return {"escalated_to": "finance"}


@workflow
def approval(value):
    r = report_of(value)
    ticket = submit(r)
    try:
        decision = await_event("approval", timeout=r["approval_timeout_ms"] / 1000)
    except WaitTimedOut as e:
        to = escalate(r)
        return {"status": "escalated", "report": r["report"], "ticket": ticket, "after_ms": e.timeout_ms, "escalation": to}
    if not isinstance(decision, dict) or not isinstance(decision.get("approved"), bool):
        # As the Rust example's typed decode: the run fails, saying why.
        raise WaitError(f"the event's payload did not decode: expected {{\"approved\": true|false}}, got {decision!r}")
    by = decision.get("by")
    if decision["approved"]:
        # A cooling-off period: the run holds nothing while it sleeps.
        sleep(r["pay_delay_ms"] / 1000)
        paid = pay(r)
        return {"status": "paid", "report": r["report"], "ticket": ticket, "by": by, "payment": paid}
    notify_rejected(r)
    return {"status": "rejected", "report": r["report"], "ticket": ticket, "by": by}
