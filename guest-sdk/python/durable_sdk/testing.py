"""Test workflows in plain Python, without the durable host.

``FakeDurable`` runs a workflow function in this process against a fake host
that answers from what the test recorded, so that a test checks the
orchestration: which steps and children are called, with what, in which
order, and what the workflow makes of their answers, timers and events::

    from durable_sdk.testing import Answers, FakeDurable, fail

    def test_paid_after_approval():
        fake = FakeDurable(
            steps={"submit": {"ticket": "T-1"}, "pay": {"paid": 120}},
            events={"approval": [{"approved": True, "by": "ana"}]},
        )
        out = fake.run(approval, {"report": "R-1", "amount": 120})
        assert out["status"] == "paid"
        assert [c.name for c in fake.calls if c.kind == "step"] == ["submit", "pay"]

A step's own code is tested by calling it directly: ``submit.body(report)``.

Answers (``steps``: step name -> answer; ``children``: child workflow name
-> answer):

- a JSON value answers every call of that step (or child);
- ``Answers(v1, v2, ...)`` answers the first call with ``v1``, the second with
  ``v2``...; a call after the last is an error of the fake;
- ``fail("message")`` is a failure: a step call raises ``StepError`` (kind
  ``"failed"``), a handle's result ``HandleError`` (kind ``"failed"``).
  ``fail`` may be one of ``Answers(...)``.

A step with no recorded answer runs its body here, once (no retries), with
its input and output encoded as JSON as the host would: an exception raised
by the body (``Permanent`` or not) is a failed ``StepError``. A child with no
recorded answer is an error of the fake, raised when the workflow needs its
result (a child that is cancelled before needs none).

``events``: event name -> list of payloads, consumed first in, first out by
``await_event`` and ``event()``. With none left, ``await_event`` raises
``WaitTimedOut`` when it has a timeout (the clock moves on by it), and is an
error of the fake otherwise (the workflow would wait for ever).

Time is virtual: ``now_ms()`` starts at ``now_ms`` and moves only when the
workflow waits: ``sleep`` and ``sleep_until`` move it on; steps, children and
events with a payload complete at once (at the time they start), a timer at
its start plus its duration, an event with no payload at its timeout (or
never). ``any`` returns the handle that completes first (of those that have
completed already, the first in list order, as the host does) and moves the
clock to its completion; ``all`` to the last one's. ``random_u64()`` is a
SplitMix64 sequence from ``seed``; ``idempotency_key()`` is ``"fake-run"`` in
workflow code and ``"fake-run/<step key>"`` (``charge#1``, ``parent#1/child#1``)
in a step body.

What the workflow did is in ``fake.calls``, a list of ``CallRecord(kind,
name, input)`` (named tuples: they compare equal to plain tuples):

- ``("step", name, input)``: a step called, started, or run by ``parallel``
  or ``map`` (also from a step body);
- ``("child", workflow, input)``: a child started (``start_workflow``,
  ``call_workflow``);
- ``("event", name, timeout_ms)``: an event awaited (``await_event``) or
  started (``event()``); ``timeout_ms`` is None without a timeout;
- ``("sleep", None, duration_ms)``, ``("sleep_until", None, epoch_ms)``,
  ``("timer", None, duration_ms)``;
- ``("cancel", name, None)``: a handle cancelled; ``name`` is its step's,
  child's or event's (None for a timer);
- ``("tag", key, value)``: a tag set (``set_tag``).

``set_tag`` checks its key, its value and the number of keys as the host
does, and raises ``ValueError`` with the host's message for an invalid tag, a
17th key or a call from a step body (such a call sets and records nothing).
``fake.tags`` is the dict of the tags set, key -> last value.

``fake.logs`` holds the ``log()`` lines as ``(level, message)``. A fake is
one run's world: its answers, events and clock are used up as the run goes,
so give each test its own.

Errors of the fake itself (a child with no answer, answers used up, a wait
that can never end) are ``FakeDurableError``; ``run`` raises it even if the
workflow caught it.
"""

import json
import re
import unicodedata
from typing import Any, NamedTuple, Optional

import durable_sdk as _sdk

from . import _host
from ._host import Err, Ok, types

__all__ = ["Answers", "CallRecord", "FakeDurable", "FakeDurableError", "Fail", "fail"]

_U64 = (1 << 64) - 1

# The host's limits on tags.
_TAG_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TAG_VALUE_BYTES = 256
_TAGS = 16


class FakeDurableError(RuntimeError):
    """The fake cannot go on: an answer is missing or used up, or the
    workflow waits for something that never comes."""


class Fail:
    """A recorded failure (see ``fail``)."""

    def __init__(self, message):
        self.message = str(message)

    def __repr__(self):
        return f"fail({self.message!r})"


def fail(message):
    """A recorded failure: the step raises ``StepError("failed", message)``;
    a handle's result raises ``HandleError("failed", message)``."""
    return Fail(message)


class Answers:
    """Answers consumed one per call, in order: ``Answers({"ok": 1}, fail("down"), {"ok": 2})``."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def __repr__(self):
        return f"Answers({', '.join(repr(a) for a in self.answers)})"


class CallRecord(NamedTuple):
    """One durable call the workflow made (see the module's documentation)."""

    kind: str
    name: Optional[str]
    input: Any


def _json_text(value, what):
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON: {e}") from None


class _Source:
    """The recorded answers of one step or child."""

    def __init__(self, what, answer):
        self.what = what
        self.calls = 0
        if isinstance(answer, Answers):
            self.sequence = [self._encode(a) for a in answer.answers]
        else:
            self.sequence = None
            self.always = self._encode(answer)

    def _encode(self, answer):
        if isinstance(answer, Fail):
            return answer
        if isinstance(answer, Answers):
            raise TypeError(f"the answers of {self.what} nest Answers(...) in Answers(...)")
        return _json_text(answer, f"the answer of {self.what}")

    def next(self, fake):
        """JSON text, or a ``Fail``."""
        self.calls += 1
        if self.sequence is None:
            return self.always
        if self.calls > len(self.sequence):
            raise fake._stuck(
                f"{self.what} was called {self.calls} times, but FakeDurable has "
                f"{len(self.sequence)} answers for it (Answers(...))"
            )
        return self.sequence[self.calls - 1]


class _Op:
    """A handle's operation: when it completes (ms, None: never) and how."""

    def __init__(self, kind, name, key, at, outcome, missing=None, event=None):
        self.kind = kind
        self.name = name
        self.key = key
        self.at = at
        self.outcome = outcome  # Ok(json text) or Err(a HandleError_* value)
        self.missing = missing  # why there is no outcome (a child with no answer)
        self.event = event  # (sequence number, payload) of an event taken
        self.observed = False

    def describe(self):
        if self.kind == "event":
            return f"event {self.name!r}"
        if self.kind == "timer":
            return "a timer"
        return f"{self.kind} {self.name!r}"


class _Api:
    """The ``durable`` interface, answered by the fake (the shapes of the
    generated bindings: JSON text in and out, ``Err`` for a failure)."""

    def __init__(self, fake):
        self._fake = fake

    def __getattr__(self, name):
        raise AttributeError(f"the fake host has no durable.{name}")

    # --- steps

    def step(self, name, input, options=None):
        text = self._fake._run_step(name, input)
        if isinstance(text, Fail):
            raise Err(types.StepError_Failed(text.message))
        return text

    def parallel(self, calls):
        out = []
        for c in calls:
            text = self._fake._run_step(c.name, c.input)
            out.append(Err(types.StepError_Failed(text.message)) if isinstance(text, Fail) else Ok(text))
        return out

    def start_step(self, name, input, options=None):
        f = self._fake
        key = f._step_key(name)
        text = f._run_step(name, input, key)
        outcome = Err(types.HandleError_Failed(text.message)) if isinstance(text, Fail) else Ok(text)
        return f._handle(_Op("step", name, key, f.now, outcome))

    # --- children, timers, events

    def start_child(self, workflow, input, options=None):
        f = self._fake
        f._workflow_only("start_workflow")
        n = f._count(("$child", workflow))
        f.calls.append(CallRecord("child", workflow, json.loads(input)))
        source = f._children.get(workflow)
        key = f"$child:{workflow}#{n}"
        if source is None:
            missing = (
                f"child workflow {workflow!r} has no recorded answer: "
                f"give one with FakeDurable(children={{{workflow!r}: ...}})"
            )
            return f._handle(_Op("child", workflow, key, f.now, None, missing=missing))
        text = source.next(f)
        outcome = Err(types.HandleError_Failed(text.message)) if isinstance(text, Fail) else Ok(text)
        return f._handle(_Op("child", workflow, key, f.now, outcome))

    def start_timer(self, duration_ms):
        f = self._fake
        f._workflow_only("timer")
        n = f._count(("$timer",))
        f.calls.append(CallRecord("timer", None, duration_ms))
        at = f.now + duration_ms
        return f._handle(_Op("timer", None, f"$timer#{n}", at, Ok(json.dumps(at))))

    def start_event(self, name, timeout_ms=None):
        f = self._fake
        f._workflow_only("event")
        n = f._count(("$event", name))
        f.calls.append(CallRecord("event", name, timeout_ms))
        key = f"$event:{name}#{n}"
        taken = f._take_event(name)
        if taken is not None:
            return f._handle(_Op("event", name, key, f.now, Ok(taken[1]), event=taken))
        if timeout_ms is not None:
            return f._handle(_Op("event", name, key, f.now + timeout_ms, Err(types.HandleError_TimedOut(timeout_ms))))
        return f._handle(_Op("event", name, key, None, None))

    def await_any(self, handles):
        f = self._fake
        if not handles:
            raise f._stuck("await_any of no handles would wait forever")
        ops = [f._op(h) for h in handles]
        best = None
        for i, op in enumerate(ops):
            if op.at is not None:
                at = max(op.at, f.now)
                if best is None or at < best[1]:
                    best = (i, at)
        if best is None:
            raise f._stuck(f"the workflow would wait forever: none of {f._describe(ops)} can complete")
        index, at = best
        f.now = at
        return index, f._outcome(ops[index])

    def await_all(self, handles):
        f = self._fake
        ops = [f._op(h) for h in handles]
        never = [op for op in ops if op.at is None]
        if never:
            raise f._stuck(f"the workflow would wait forever: {f._describe(never)} can never complete")
        for op in ops:
            f.now = max(f.now, op.at)
        return [f._outcome(op) for op in ops]

    def cancel(self, handle):
        f = self._fake
        op = f._op(handle)
        f.calls.append(CallRecord("cancel", op.name, None))
        if op.observed:
            return
        if op.event is not None:
            f._put_back(op.name, op.event)
            op.event = None
        op.at = f.now if op.at is None else min(op.at, f.now)
        op.outcome = Err(types.HandleError_Cancelled(f"{op.key} was cancelled by the workflow"))
        op.missing = None

    # --- waits

    def sleep(self, duration_ms):
        f = self._fake
        f._workflow_only("sleep")
        f.calls.append(CallRecord("sleep", None, duration_ms))
        f.now += duration_ms

    def sleep_until(self, epoch_ms):
        f = self._fake
        f._workflow_only("sleep_until")
        f.calls.append(CallRecord("sleep_until", None, epoch_ms))
        f.now = max(f.now, epoch_ms)

    def await_event(self, name, timeout_ms=None):
        f = self._fake
        f._workflow_only("await_event")
        f._count(("$event", name))
        f.calls.append(CallRecord("event", name, timeout_ms))
        taken = f._take_event(name)
        if taken is not None:
            return taken[1]
        if timeout_ms is not None:
            f.now += timeout_ms
            raise Err(types.WaitError_TimedOut(timeout_ms))
        raise f._stuck(
            f"the workflow would wait for event {name!r} forever: FakeDurable has no payload "
            f"left for it (give one with FakeDurable(events={{{name!r}: [...]}}))"
        )

    # --- the rest

    def now_ms(self):
        return self._fake.now

    def random_u64(self):
        return self._fake._random()

    def idempotency_key(self):
        context = self._fake._context
        return "fake-run" + (f"/{context[-1]}" if context else "")

    def log(self, level, message):
        self._fake.logs.append((level.name.lower(), message))

    def set_tag(self, key, value):
        f = self._fake
        if f._context:
            raise Err("set-tag is a workflow call: a step body cannot set tags")
        if not _TAG_KEY.fullmatch(key):
            raise Err(f"tag key \"{key}\" must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'")
        n = len(value.encode("utf-8", "surrogatepass"))
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise Err(f"tag \"{key}\": the value contains a control character (a newline, NUL, ...)")
        if n > _TAG_VALUE_BYTES:
            raise Err(f"tag \"{key}\": value is {n} bytes, more than {_TAG_VALUE_BYTES}")
        if key not in f.tags and len(f.tags) >= _TAGS:
            raise Err(f"a workflow sets at most {_TAGS} tag keys on its run; \"{key}\" would be the {_TAGS + 1}th")
        f.calls.append(CallRecord("tag", key, value))
        f.tags[key] = value


class FakeDurable:
    """A fake durable host for tests: see the module's documentation.

    ``steps``: step name -> answer; ``children``: child workflow name ->
    answer (a JSON value, ``Answers(...)`` or ``fail(...)``); ``events``:
    event name -> list of payloads; ``now_ms``: the virtual clock's start (ms
    since the Unix epoch); ``seed``: of ``random_u64()``.

    ``run(workflow, input)`` runs a workflow function. Durable calls made
    inside ``with fake:`` go to it too (e.g. a step body that calls
    ``idempotency_key()``, run with ``step.body``).
    """

    def __init__(self, steps=None, children=None, events=None, now_ms=1_700_000_000_000, seed=0):
        self._steps = {str(k): _Source(f"step {k!r}", v) for k, v in (steps or {}).items()}
        self._children = {str(k): _Source(f"child workflow {k!r}", v) for k, v in (children or {}).items()}
        self._events = {}
        seq = 0
        for name, payloads in (events or {}).items():
            if isinstance(payloads, (str, bytes, dict)) or not hasattr(payloads, "__iter__"):
                raise TypeError(f"events[{name!r}] is a list of payloads, not {type(payloads).__name__}")
            queue = []
            for p in payloads:
                queue.append((seq, _json_text(p, f"a payload of event {name!r}")))
                seq += 1
            self._events[str(name)] = queue
        if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
            raise TypeError(f"now_ms is ms since the Unix epoch (an int), not {now_ms!r}")
        self.now = now_ms
        self._rng = int(seed) & _U64
        self.calls = []
        self.logs = []
        self.tags = {}  # key -> value, set by set_tag
        self._ops = []
        self._counters = {}
        self._context = []  # the keys of the step bodies running, innermost last
        self._fatal = None
        self._api = _Api(self)

    def __repr__(self):
        return f"<FakeDurable at {self.now} ms, {len(self.calls)} calls>"

    def __enter__(self):
        _host.active.append(self)
        return self

    def __exit__(self, *exc):
        for i in range(len(_host.active) - 1, -1, -1):
            if _host.active[i] is self:
                del _host.active[i]
                break
        return False

    def now_ms(self):
        """The virtual clock (ms since the Unix epoch)."""
        return self.now

    def run(self, workflow, input=None):
        """Runs ``workflow`` (the ``@workflow`` function) on ``input`` (after a
        JSON round trip, as the host gives it) and returns its result (after
        a JSON round trip), or raises what it raises."""
        if isinstance(workflow, _sdk.Step):
            raise TypeError(f"{workflow.name!r} is a step: give FakeDurable.run the @workflow function")
        if not callable(workflow):
            raise TypeError(f"FakeDurable.run takes the workflow function, not {type(workflow).__name__}")
        unknown = sorted(set(self._steps) - set(_sdk._steps))
        if unknown:
            raise FakeDurableError(
                f"FakeDurable has answers for {', '.join(map(repr, unknown))}, which no @step declares "
                f"(declared: {', '.join(sorted(_sdk._steps)) or 'none'})"
            )
        value = json.loads(_json_text(input, "the workflow's input"))
        self._fatal = None
        with self:
            try:
                result = workflow(value)
            except BaseException:
                if self._fatal is not None:
                    raise self._fatal from None
                raise
            if self._fatal is not None:  # the workflow caught it
                raise self._fatal
        refused = _sdk._refuse_awaitable(result, "the workflow function")
        if refused:
            raise TypeError(refused)
        try:
            text = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise type(e)(f"cannot encode the result: {e}") from None
        return json.loads(text)

    # --- for _Api

    def _stuck(self, message):
        """A FakeDurableError, kept so that ``run`` raises it even if caught."""
        error = FakeDurableError(message)
        if self._fatal is None:
            self._fatal = error
        return error

    def _workflow_only(self, what):
        if self._context:
            raise RuntimeError(
                f"{what}() is workflow code only: the host fails a step that calls it "
                f"(step {self._context[-1]})"
            )

    def _count(self, key):
        n = self._counters.get(key, 0) + 1
        self._counters[key] = n
        return n

    def _step_key(self, name):
        parent = self._context[-1] if self._context else ""
        n = self._count(("step", parent, name))
        return f"{parent}/{name}#{n}" if parent else f"{name}#{n}"

    def _run_step(self, name, input, key=None):
        """A step's JSON text, or a ``Fail``."""
        if key is None:
            key = self._step_key(name)
        self.calls.append(CallRecord("step", name, json.loads(input)))
        source = self._steps.get(name)
        if source is not None:
            return source.next(self)
        self._context.append(key)
        try:
            return _sdk.Steps().run_step(name, input)
        except Err as e:
            return Fail(e.value.message)
        finally:
            self._context.pop()
            if self._fatal is not None:
                raise self._fatal

    def _handle(self, op):
        self._ops.append(op)
        return len(self._ops) - 1

    def _op(self, handle):
        if not isinstance(handle, int) or not 0 <= handle < len(self._ops):
            raise self._stuck(f"no handle {handle!r}")
        return self._ops[handle]

    def _outcome(self, op):
        if op.missing is not None:
            raise self._stuck(op.missing)
        op.observed = True
        return op.outcome

    def _describe(self, ops):
        return ", ".join(op.describe() + (" (no payload left, no timeout)" if op.kind == "event" else "") for op in ops)

    def _take_event(self, name):
        queue = self._events.get(name)
        return queue.pop(0) if queue else None

    def _put_back(self, name, taken):
        queue = self._events.setdefault(name, [])
        i = 0
        while i < len(queue) and queue[i][0] < taken[0]:
            i += 1
        queue.insert(i, taken)

    def _random(self):
        # SplitMix64
        self._rng = (self._rng + 0x9E3779B97F4A7C15) & _U64
        z = self._rng
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
        return z ^ (z >> 31)
