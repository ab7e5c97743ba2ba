"""The Python SDK's edge cases, for tests/e2e/polyglot.rs. `{"mode": ...}`
picks a scenario, as in tests/guests/testbed.

Every step body that runs prints `EXEC <idempotency-key>` on stderr, which
is how the tests see, from outside the engine, which bodies ran.
"""

import json
import sys

from componentize_py_types import Err
from durable_sdk import StepError, Steps, WitWorld, http, idempotency_key, set_tag, step, workflow  # noqa: F401
from wit_world.imports import durable


def mark():
    print(f"EXEC {idempotency_key()}", file=sys.stderr, flush=True)


@step
def echo(v):
    mark()
    return {"echo": v}


@step
async def async_step(v):
    # Never runs: calling an async def only makes a coroutine.
    mark()
    return {"awaited": v}


async def later(v):
    return {"awaited": v}


@step
def returns_awaitable(v):
    mark()
    return later(v)


@step
def unencodable(v):
    mark()
    return {"tags": {"a", "b"}}


@step
def cyclic(v):
    mark()
    node = {"name": "loop"}
    node["self"] = node
    return node


def undecodable(_):
    # The host checks that a step's input is JSON, and it is; but json.loads
    # refuses an integer of more than 4300 digits. Called through the raw
    # import, since the SDK's own json.dumps would refuse to write it.
    raw = '{"n": ' + "1" * 5000 + "}"
    try:
        return json.loads(durable.step("echo", raw, None))
    except Err as e:
        raise StepError("failed", str(e.value.value)) from None


async def async_workflow(v):
    return echo(v)


@step
def fetch(v):
    # POSTs v["body"] as JSON to v["url"]: the default Idempotency-Key,
    # redirects followed, a 4xx permanent and any other non-2xx retried.
    mark()
    r = http.post(v["url"], json=v["body"]).raise_for_status()
    return {"status": r.status, "body": r.text()}


def fetch_in_workflow(v):
    # Workflow code may not send requests: the host refuses and fails the run.
    r = http.get(v["url"])
    return {"status": r.status}


def tag(v):
    # Sets each tag of v (an object of strings); the host's refusals are
    # returned.
    refused = []
    for key, value in v.items():
        try:
            set_tag(key, value)
        except ValueError as e:
            refused.append(str(e))
    return {"refused": refused, "after": echo("tagged")}


MODES = {
    "echo": echo,
    "async_step": async_step,
    "returns_awaitable": returns_awaitable,
    "unencodable": unencodable,
    "cyclic": cyclic,
    "undecodable": undecodable,
    "async_workflow": async_workflow,
    "fetch": fetch,
    "fetch_in_workflow": fetch_in_workflow,
    "tag": tag,
}


@workflow
def main(input):
    return MODES[input["mode"]](input.get("value"))
