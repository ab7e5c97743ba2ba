"""Write durable workflows in Python.

Steps are plain functions from one JSON value to another, declared with
``@step``; the workflow is a function declared with ``@workflow``. Calling a
step runs it durably: the host answers from the run's history when the step
has already committed, and otherwise runs it in a fresh instance and commits
its result before returning it. Build with ``durable build`` (in this
repository, ``scripts/build-guests.sh``).

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

Tags, workflow code only: ``set_tag("customer", str(order["customer"]))``
lets ``durable list --tag customer=42`` find the run (an invalid tag, a 17th
key or a call from a step body raises ``ValueError``).

Handles: steps, child workflows, timers and events that run while the
workflow goes on, awaited later (workflow code; steps may start steps)::

    payment = start_workflow("payment", order)     # a child run of its own
    stock = reserve_stock.start(order)             # a step, running now
    index, value = any([event("approved"), timer(48 * 3600)])
    if index == 1:
        payment.cancel()                           # cancelled durably, with its children
    receipt, reserved = all([payment, stock])
    totals = map(lambda o: start_workflow("payment", o), orders, limit=20)

``any`` records which handle won, so a replay gets the same winner; a
handle that failed raises ``HandleError`` (``kind``: ``"failed"``,
``"trapped"``, ``"timed-out"`` or ``"cancelled"``; from ``any``, with
``index`` set). A handle still pending when the workflow returns is
cancelled. ``call_workflow(name, value)`` starts a child and waits for it.
Under ``durable serve`` a child's name is a registered workflow's; under
``durable run``, the same component runs it unless ``--link NAME=PATH``.

HTTP from steps, steps only (``durable_sdk.http``; the host must allow the
service with ``--allow-http``):

    from durable_sdk import http      # or: from durable_sdk.http import post

    @step
    def create_account(user):
        r = http.post("https://crm.example.com/accounts", json=user).raise_for_status()
        return r.json()

Every request carries ``Idempotency-Key: <idempotency_key()>``;
``raise_for_status()`` makes a 4xx (but 408 and 429) a ``Permanent`` failure
and any other non-2xx status a retryable ``http.HttpError``.

Tests run in plain CPython, without the host: ``charge.body(order)`` calls a
step's own function, and ``durable_sdk.testing.FakeDurable`` runs the
workflow in process against recorded answers (see that module)::

    fake = FakeDurable(steps={"charge": {"receipt": "R-1"}}, events={"approved": [True]})
    assert fake.run(checkout, order)["receipt"] == {"receipt": "R-1"}

Steps and the workflow are plain functions: a component has no event loop,
so an ``async def`` step (or one that returns any awaitable) fails at once,
permanently, saying so; such a workflow fails the run. A step's result that
is not JSON (a set, an object, a cycle, NaN) is a permanent failure, as is an
input that does not decode: another attempt would not change it.
"""

import json

from . import _host
# Inside a component: the generated bindings; in plain Python: stand-ins, and
# `durable` sends each call to the running durable_sdk.testing.FakeDurable.
from ._host import Err, durable, types

__version__ = "0.2.0"

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


class HandleError(Exception):
    """A handle gave no value: ``kind`` is ``"failed"``, ``"trapped"``,
    ``"timed-out"`` or ``"cancelled"``; ``index`` is its place in the list
    ``any`` was given (None elsewhere)."""

    def __init__(self, kind, message, index=None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.index = index


class Handle:
    """A durable operation started and not awaited yet: a step, a child
    workflow, a timer or an event wait."""

    def __init__(self, id):
        self.id = id

    def result(self):
        """Waits for its value (at once if it has completed); raises
        ``HandleError`` if it gave none."""
        return _handle_value(durable.await_all([self.id])[0])

    def cancel(self):
        """Cancels it unless an await returned its value already: a step is
        stopped, a child run cancelled durably (with its children), an event
        wait consumes nothing. Its result then raises ``HandleError``
        (``"cancelled"``)."""
        durable.cancel(self.id)


_HANDLE_ERRORS = {
    "HandleError_Failed": "failed",
    "HandleError_Trapped": "trapped",
    "HandleError_TimedOut": "timed-out",
    "HandleError_Cancelled": "cancelled",
}


def _handle_value(r, index=None):
    """The value of an await's result, or its ``HandleError`` raised."""
    if type(r).__name__ == "Err":
        e = r.value
        raise HandleError(_HANDLE_ERRORS.get(type(e).__name__, "failed"), str(e.value), index)
    return json.loads(r.value if type(r).__name__ == "Ok" else r)


def _ids(handles):
    for h in handles:
        if not isinstance(h, Handle):
            raise TypeError(f"expected a Handle (from .start(), start_workflow(), timer() or event()), not {type(h).__name__}")
    return [h.id for h in handles]


def any(handles):
    """Waits until one of ``handles`` has completed; returns ``(index,
    value)``. When several have, the first in list order wins; which one won
    is recorded, so a replay gets the same. Raises ``HandleError`` (with
    ``index``) if the winner gave no value."""
    ids = _ids(handles)
    if not ids:
        raise ValueError("any() of no handles would wait for ever")
    index, r = durable.await_any(ids)
    return index, _handle_value(r, index)


def all(handles, return_exceptions=False):
    """Waits until all ``handles`` have completed; their values in order.
    The first that gave no value raises its ``HandleError``, or with
    ``return_exceptions=True`` is returned in its place."""
    results = []
    for r in durable.await_all(_ids(handles)):
        try:
            results.append(_handle_value(r))
        except HandleError as e:
            if not return_exceptions:
                raise
            results.append(e)
    return results


def map(start, values, limit=20, return_exceptions=False):
    """Calls ``start`` (which returns a ``Handle``) on every value with at
    most ``limit`` pending at once, starting the next as one completes;
    returns the values in input order (as ``all`` does)."""
    limit = max(int(limit), 1)
    results = [None] * len(values)
    pending = []
    values = list(values)
    nxt = 0
    while nxt < len(values) or pending:
        while nxt < len(values) and len(pending) < limit:
            pending.append((nxt, start(values[nxt])))
            nxt += 1
        index, _ = durable.await_any([h.id for _, h in pending])
        i, h = pending.pop(index)
        try:
            results[i] = h.result()
        except HandleError as e:
            if not return_exceptions:
                raise
            results[i] = e
    return results


def start_workflow(name, value, id=None, timeout=None):
    """Starts child workflow ``name`` with ``value``: a run of its own (id
    ``<parent>:<name>-<n>`` unless given), committed before this returns.
    With ``timeout`` (seconds from its start), an await that finds it still
    running after that cancels it and raises ``HandleError("timed-out")``."""
    timeout_ms = None if timeout is None else _ms(timeout, "the child's timeout")
    options = types.ChildOptions(id, timeout_ms) if id is not None or timeout_ms is not None else None
    return Handle(durable.start_child(name, json.dumps(value), options))


def call_workflow(name, value, id=None, timeout=None):
    """Starts child workflow ``name`` and waits for its output."""
    return start_workflow(name, value, id, timeout).result()


def timer(seconds):
    """A durable timer of ``seconds``: its value is when it fires (ms since
    the Unix epoch)."""
    return Handle(durable.start_timer(_ms(seconds, "timer's duration")))


def event(name, timeout=None):
    """A wait for the next event named ``name`` as a handle (see
    ``await_event``); the timeout (seconds) counts from now."""
    timeout_ms = None if timeout is None else _ms(timeout, "event's timeout")
    return Handle(durable.start_event(name, timeout_ms))


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

    @property
    def body(self):
        """The undecorated function: ``charge.body(order)`` runs the step's
        code directly, in this process, not durably (for tests)."""
        return self.fn

    def __call__(self, value):
        try:
            return json.loads(durable.step(self.name, json.dumps(value), self.options))
        except Err as e:
            raise _step_error(e.value) from None

    def using(self, value):
        """Prepares a call for ``parallel``."""
        return Call(self, value)

    def start(self, value):
        """Starts the step and returns a ``Handle`` at once: it runs in its
        own instance while the workflow goes on."""
        return Handle(durable.start_step(self.name, json.dumps(value), self.options))

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


def set_tag(key, value):
    """Sets this run's tag ``key`` to ``value`` (replacing an earlier value
    of that key), so that the run can be found by it: ``durable list --tag
    KEY=VALUE``, ``GET /v1/runs?tag=KEY:VALUE``. Recorded and replayed like
    any durable call. A key is 1 to 64 characters of ``a-z A-Z 0-9 _ . -``,
    a value at most 256 bytes (UTF-8), and a workflow sets at most 16 keys on
    its run (setting a key again does not count). Workflow code only: an
    invalid tag, a 17th key or a call from a step body raises ``ValueError``
    with the host's message, and sets nothing."""
    if not isinstance(key, str) or not isinstance(value, str):
        raise TypeError(
            f"set_tag takes a key and a value as strings, not {type(key).__name__} and {type(value).__name__}"
        )
    try:
        durable.set_tag(key, value)
    except Err as e:
        raise ValueError(str(e.value)) from None


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


class WitWorld(_host.WitWorldBase):
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
        except (StepError, WaitError, HandleError) as e:
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


class Steps(_host.StepsBase):
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
# last, since durable_sdk.http uses what is defined above.
from . import http  # noqa: E402
