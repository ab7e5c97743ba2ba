"""Hello, durable: the smallest useful workflow.

Two steps and a workflow that calls them. Each step's result is recorded
before the workflow goes on, so a run that crashes half way resumes where it
stopped instead of greeting twice.

Build: ``durable build``; run: ``durable run app.wasm --input '{"name": "Ada"}'``.
Test: ``pytest`` (see test_app.py).
"""

from durable_sdk import Permanent, Steps, WitWorld, step, workflow  # noqa: F401  (the component's exports)


@step
def greet(name):
    if not isinstance(name, str) or not name.strip():
        raise Permanent(f"a name is a non-empty string, not {name!r}")  # no retry can fix it
    return f"Hello, {name.strip()}!"


@step
def count_letters(text):
    return sum(1 for c in text if c.isalpha())


@workflow
def hello(person):
    greeting = greet(person["name"])  # durable: recorded, replayed after a crash
    letters = count_letters(greeting)
    return {"greeting": greeting, "letters": letters}
