"""Onboarding a new hire, in Python: the same workflow as guest-examples/onboarding.

Offline by default. With ``"hr_url": "http://127.0.0.1:PORT"`` in the input
(and ``--allow-http http://127.0.0.1:PORT`` given to the host), each step also
POSTs its input as JSON to the HR service: ``create_record`` to
``{hr_url}/employees``, ``provision_laptop`` to ``{hr_url}/laptops``,
``grant_access`` to ``{hr_url}/access``, with the step's Idempotency-Key. Any
2xx means done; a 4xx fails the step for good; a 5xx or a connection failure
is retried.
"""

import sys
import time

from durable_sdk import Permanent, Steps, WitWorld, http, parallel, step, workflow  # noqa: F401


def say(line):
    print(line, file=sys.stderr, flush=True)


def now_ms():
    return int(time.time() * 1000)


def employee_id(email):
    # FNV-1a, as the Rust example: every run of the same hire gets the same id.
    h = 0xCBF29CE484222325
    for b in email.encode():
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return f"EMP-{h % 1_000_000:06d}"


def tell_hr(value, path):
    """POSTs the step's input to the HR service, when the input names one."""
    hr_url = value.get("hr_url")
    if hr_url:
        http.post(f"{hr_url.rstrip('/')}/{path}", json=value).raise_for_status()


@step
def create_record(hire):
    if "@" not in hire["email"]:
        raise Permanent(f"{hire['email']!r} is not an e-mail address")
    tell_hr(hire, "employees")
    record = {
        "employee_id": employee_id(hire["email"]),
        "name": hire["name"],
        "email": hire["email"],
        "team": hire.get("team", "engineering"),
    }
    if hire.get("hr_url"):  # for the later steps; offline, the record stays as it was
        record["hr_url"] = hire["hr_url"]
    say(f"created {record['employee_id']} for {record['name']} at {now_ms()}")
    return record


@step
def provision_laptop(record):
    start = now_ms()
    tell_hr(record, "laptops")
    time.sleep(0.3)  # ordering from the vendor
    model = "MacBook Pro 16" if record["team"] == "design" else "ThinkPad X1"
    laptop = {"asset_tag": f"LT-{record['employee_id'][4:]}", "model": model}
    say(f"assigned laptop {laptop['asset_tag']} to {record['employee_id']} from {start} to {now_ms()}")
    return laptop


@step
def grant_access(record):
    start = now_ms()
    tell_hr(record, "access")
    time.sleep(0.3)  # waiting on the directory service
    groups = ["all-staff", record["team"], f"{record['team']}-oncall"]
    say(f"granted {len(groups)} groups to {record['employee_id']} from {start} to {now_ms()}")
    return {"groups": groups}


@workflow
def onboarding(hire):
    record = create_record(hire)
    laptop, access = parallel(provision_laptop.using(record), grant_access.using(record))
    return {
        "employee_id": record["employee_id"],
        "name": record["name"],
        "laptop": f"{laptop['model']} ({laptop['asset_tag']})",
        "groups": access["groups"],
        "status": "onboarded",
    }
