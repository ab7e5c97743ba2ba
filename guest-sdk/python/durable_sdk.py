"""Write durable workflows in Python.

Steps are plain functions from one JSON value to another, declared with
``@step``; the workflow is a function declared with ``@workflow``. Calling a
step runs it durably: the host answers from the run's history when the step
has already committed, and otherwise runs it in a fresh instance and commits
its result before returning it. Build with ``scripts/build-guests.sh``.

    from durable_sdk import step, workflow, parallel, Permanent

    @step
    def create_record(hire):
        return {"id": hire["email"]}

    @workflow
    def onboarding(hire):
        record = create_record(hire)
        laptop, access = parallel(provision_laptop.using(record), grant_access.using(record))
        return {"record": record, "laptop": laptop, "access": access}

    from durable_sdk import WitWorld, Steps  # the component's exports

Rules for the workflow function: make the same durable calls in the same
order for the same input and step results; read time and randomness with
``now_ms()`` and ``random_u64()``; wait with ``sleep()`` and ``await_event()``
(durable: the run holds nothing while it waits). Step bodies run at least
once: give external services ``idempotency_key()``.

Timers and events, workflow code only (from a step body they fail the step,
permanently):

    sleep(1.5)                     # seconds (a float): recorded, not slept again on replay
    sleep_until(now_ms() + 60_000) # ms since the Unix epoch
    try:
        decision = await_event("approval", timeout=3600)  # seconds, or None: no timeout
    except WaitTimedOut as e:      # a WaitError; e.timeout_ms, replayed as the same
        ...

``await_event`` returns the decoded JSON payload of the next event of that
name (``durable event RUN NAME --data JSON``), consumed first in, first out.

HTTP from steps, steps only (``durable_http.py``; the host must allow the
service with ``--allow-http``):

    from durable_sdk import http      # or: from durable_sdk.http import post

    @step
    def create_account(user):
        r = http.post("https://crm.example.com/accounts", json=user).raise_for_status()
        return r.json()

Every request carries ``Idempotency-Key: <idempotency_key()>``;
``raise_for_status()`` makes a 4xx (but 408 and 429) a ``Permanent`` failure
and any other non-2xx status a retryable ``http.HttpError``.

Steps and the workflow are plain functions: a component has no event loop,
so an ``async def`` step (or one that returns any awaitable) fails at once,
permanently, saying so; such a workflow fails the run. A step's result that
is not JSON (a set, an object, a cycle, NaN) is a permanent failure, as is an
input that does not decode: another attempt would not change it.
"""

import json
import sys

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import durable
# The world also imports wasi:http/types, so componentize-py names this
# package's `types` interface in full.
from wit_world.imports import durable_workflow_types as types

_steps = {}
_workflow = None


class StepError(Exception):
    """A step gave no value after its last attempt.

    ``kind`` is ``"failed"``, ``"trapped"`` or ``"timed-out"``.
    """

    def __init__(self, kind, message):
        super().__init__(f"step {kind}: {message}")
        self.kind = kind
        self.message = message


class WaitError(Exception):
    """``await_event`` returned no event (the base of ``WaitTimedOut``), or
    its payload did not decode."""


class WaitTimedOut(WaitError):
    """No event came within the timeout; ``timeout_ms`` is the timeout."""

    def __init__(self, timeout_ms):
        super().__init__(f"no event came within {timeout_ms} ms")
        self.timeout_ms = timeout_ms


class Permanent(Exception):
    """Raise from a step body for an error that no retry can fix."""


class Retry:
    """How a step's failed attempts are retried (see the WIT's retry-policy)."""

    def __init__(self, attempts=3, initial_backoff_ms=100, backoff_factor=2.0, max_backoff_ms=10_000):
        self.policy = types.RetryPolicy(attempts, initial_backoff_ms, float(backoff_factor), max_backoff_ms)


class Call:
    """A prepared call of a step, for ``parallel``."""

    def __init__(self, step, value):
        self.step = step
        self.value = value


class Step:
    """A declared step: call it to run it durably."""

    def __init__(self, fn, name, options=None):
        self.fn = fn
        self.name = name
        self.options = options

    def __call__(self, value):
        try:
            return json.loads(durable.step(self.name, json.dumps(value), self.options))
        except Err as e:
            raise _step_error(e.value) from None

    def using(self, value):
        """Prepares a call for ``parallel``."""
        return Call(self, value)

    def map(self, values):
        """Runs the step once per value, all at once; results in order."""
        return parallel(*[self.using(v) for v in values])

    def with_options(self, retry=None, timeout_ms=None):
        """The same step with its own retry policy and/or timeout."""
        options = types.StepOptions(retry.policy if retry else None, timeout_ms)
        return Step(self.fn, self.name, options)


def _step_error(e):
    kinds = {
        types.StepError_Failed: "failed",
        types.StepError_Trapped: "trapped",
        types.StepError_TimedOut: "timed-out",
    }
    return StepError(kinds.get(type(e), "failed"), str(e.value))


def step(fn=None, *, name=None):
    """Declares a step (usable as ``@step`` or ``@step(name="...")``)."""

    def declare(f):
        s = Step(f, name or f.__name__)
        _steps[s.name] = s
        return s

    return declare(fn) if fn is not None else declare


def workflow(fn):
    """Declares the workflow's entry point."""
    global _workflow
    _workflow = fn
    return fn


def parallel(*calls, return_exceptions=False):
    """Runs prepared calls concurrently; returns their values in call order.

    A failed call raises its ``StepError`` once all calls have finished, or
    with ``return_exceptions=True`` is returned in its place.
    """
    batch = [types.Call(c.step.name, json.dumps(c.value), c.step.options) for c in calls]
    results = []
    for r in durable.parallel(batch):
        if hasattr(r, "value") and type(r).__name__ == "Ok":
            results.append(json.loads(r.value))
        elif type(r).__name__ == "Err":
            results.append(_step_error(r.value))
        else:
            results.append(json.loads(r))
    if not return_exceptions:
        for r in results:
            if isinstance(r, StepError):
                raise r
    return results


def now_ms():
    """Wall-clock ms, recorded the first time and replayed afterwards."""
    return durable.now_ms()


def random_u64():
    """A random number, recorded the first time and replayed afterwards."""
    return durable.random_u64()


def _ms(seconds, what):
    """Whole milliseconds of ``seconds`` (an int or a float, not negative)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(seconds).__name__}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{what} must be finite, not {seconds}")
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, not {seconds}")
    return min(round(seconds * 1000), (1 << 64) - 1)


def sleep(seconds):
    """Waits ``seconds`` (int or float; whole ms), durably: the wake-up time
    is recorded before the run waits, so a run resumed after it does not
    sleep again and one resumed before it waits only the rest. The run holds
    nothing meanwhile. Workflow code only."""
    durable.sleep(_ms(seconds, "sleep's duration"))


def sleep_until(epoch_ms):
    """Like ``sleep``, until ``epoch_ms`` (ms since the Unix epoch); returns at
    once if that time has passed."""
    if isinstance(epoch_ms, bool) or not isinstance(epoch_ms, int):
        raise TypeError(f"sleep_until takes ms since the epoch as an int, not {type(epoch_ms).__name__}")
    durable.sleep_until(min(max(epoch_ms, 0), (1 << 64) - 1))


def await_event(name, timeout=None):
    """Waits for the next event named ``name`` sent to this run (``durable
    event RUN NAME --data JSON``) and returns its decoded JSON payload.

    ``timeout`` is in seconds (int or float), or None to wait for ever; on
    timeout raises ``WaitTimedOut`` (a ``WaitError``), counted from the first
    call across crashes and replayed as the same. Events are consumed first
    in, first out per name, whether they came before or after the call.
    Workflow code only.
    """
    timeout_ms = None if timeout is None else _ms(timeout, "await_event's timeout")
    try:
        payload = durable.await_event(name, timeout_ms)
    except Err as e:
        if isinstance(e.value, types.WaitError_TimedOut):
            raise WaitTimedOut(e.value.value) from None
        raise WaitError(f"await_event failed: {e.value!r}") from None
    try:
        return json.loads(payload)
    except Exception as e:  # e.g. an integer of more than 4300 digits
        raise WaitError(f"the event's payload did not decode: {e}") from None


def idempotency_key():
    """The same on every attempt and replay of the current step."""
    return durable.idempotency_key()


def log(message, level="info"):
    """Writes a line to the host's log, tagged with the run and step."""
    durable.log(getattr(types.LogLevel, level.upper()), message)


def _encode(value):
    """JSON text of a step's or the workflow's result (NaN and infinities are not JSON)."""
    return json.dumps(value, allow_nan=False)


def _refuse_awaitable(value, what):
    """Why ``value`` cannot be a result if it is awaitable (an ``async def``'s
    coroutine), else None. Closes a coroutine, so that it does not warn that it
    was never awaited."""
    if not hasattr(value, "__await__"):
        return None
    close = getattr(value, "close", None)
    if callable(close):
        close()
    return (
        f"{what} returned a {type(value).__name__} (is it an async def?): the Python SDK "
        "cannot await it (a component has no event loop); make it a plain def: durable "
        "calls block until their answer, so nothing needs awaiting"
    )


class WitWorld(wit_world.WitWorld):
    """The component's `run` export: import it into the app module."""

    def run(self, input):
        if _workflow is None:
            raise Err("no function is declared with @workflow")
        try:
            value = json.loads(input)
        except Exception as e:  # e.g. an integer of more than 4300 digits
            raise Err(f"cannot decode the input: {e}")
        try:
            result = _workflow(value)
        except (StepError, WaitError) as e:
            raise Err(str(e))
        except Exception as e:  # the workflow's own error ends the run
            raise Err(f"{type(e).__name__}: {e}")
        refused = _refuse_awaitable(result, "the workflow function")
        if refused:
            raise Err(refused)
        try:
            return _encode(result)
        except Exception as e:
            raise Err(f"cannot encode the result: {e}")


class Steps(exports.Steps):
    """The component's `run-step` export: import it into the app module."""

    def run_step(self, name, input):
        s = _steps.get(name)
        if s is None:
            raise Err(types.Failure(f"no step named {name!r} (declared: {', '.join(sorted(_steps))})", False))
        # What no retry can change is permanent, as in the Rust SDK: an input
        # that does not decode, an awaitable, a result that is not JSON.
        try:
            value = json.loads(input)
        except Exception as e:  # e.g. an integer of more than 4300 digits
            raise Err(types.Failure(f"cannot decode the input: {e}", False))
        try:
            result = s.fn(value)
        except Permanent as e:
            raise Err(types.Failure(str(e), False))
        except Exception as e:
            raise Err(types.Failure(f"{type(e).__name__}: {e}", True))
        refused = _refuse_awaitable(result, f"step {name!r}")
        if refused:
            raise Err(types.Failure(refused, False))
        try:
            return _encode(result)
        except Exception as e:  # TypeError (a set, an object), ValueError (a cycle, NaN)
            raise Err(types.Failure(f"cannot encode the result: {e}", False))


# `from durable_sdk import http` (and `from durable_sdk.http import post`):
# last, since durable_http uses what is defined above.
import durable_http as http  # noqa: E402

sys.modules[__name__ + ".http"] = http
