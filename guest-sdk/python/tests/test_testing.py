"""Tests of the Python SDK in plain CPython, against durable_sdk.testing.FakeDurable.

Run: ``python -m pytest guest-sdk/python/tests`` with the SDK importable (the
installed package, or ``PYTHONPATH=guest-sdk/python``).
"""

import pytest

import durable_sdk as sdk
from durable_sdk import (
    HandleError,
    Permanent,
    StepError,
    Steps,
    WaitTimedOut,
    WitWorld,
    all,
    any,
    await_event,
    call_workflow,
    event,
    idempotency_key,
    log,
    now_ms,
    parallel,
    random_u64,
    set_tag,
    sleep,
    sleep_until,
    start_workflow,
    step,
    timer,
    workflow,
)
from durable_sdk.testing import Answers, CallRecord, FakeDurable, FakeDurableError, fail

START = 1_700_000_000_000
BODY_RUNS = []


@step
def double(n):
    BODY_RUNS.append(("double", n))
    return n * 2


@step
def shout(text):
    BODY_RUNS.append(("shout", text))
    return text.upper()


@step
def broken(v):
    BODY_RUNS.append(("broken", v))
    raise ValueError(f"broken on {v}")


@step
def refuses(v):
    BODY_RUNS.append(("refuses", v))
    raise Permanent("no retry can fix this")


@step
def gives_a_set(v):
    return {"tags": {"a"}}


@step
def echo_tuple(v):
    return {"got": v, "pair": (1, 2)}


@step
def inner(v):
    return {"key": idempotency_key(), "v": v}


@step
def outer(v):
    return {"key": idempotency_key(), "inner": inner(v), "again": inner(v)}


@step
def sleeps(v):
    sleep(1)
    return v


@step
def tags_itself(v):
    set_tag("customer", v)
    return v


@step(name="renamed")
def some_function(v):
    return {"renamed": v}


@pytest.fixture(autouse=True)
def _clear_runs():
    BODY_RUNS.clear()


def steps_of(fake):
    return [(c.name, c.input) for c in fake.calls if c.kind == "step"]


# --- plain Python, no host ---------------------------------------------------


def test_imports_in_plain_python():
    from durable_sdk import http
    from durable_sdk.http import HttpError, Response, post  # noqa: F401

    assert sdk.http is http
    assert isinstance(WitWorld(), WitWorld) and isinstance(Steps(), Steps)
    assert sdk.__version__ == "0.2.0"


def test_durable_calls_without_a_fake_say_what_to_do():
    with pytest.raises(RuntimeError, match="durable calls need the durable host or durable_sdk.testing.FakeDurable"):
        now_ms()
    with pytest.raises(RuntimeError, match="FakeDurable"):
        double(2)
    with pytest.raises(RuntimeError, match="FakeDurable"):
        sleep(1)


def test_http_outside_a_component_says_to_record_the_answer():
    from durable_sdk import http

    with pytest.raises(RuntimeError, match="record the answer"):
        http.post("https://example.com/x", json={"a": 1})
    with FakeDurable():
        with pytest.raises(RuntimeError, match="record the answer"):
            http.get("https://example.com/x")


def test_step_body_is_the_function():
    assert double.body(21) == 42
    assert some_function.body is some_function.fn
    assert double.with_options(timeout_ms=5).body(1) == 2
    with FakeDurable():
        assert inner.body(1) == {"key": "fake-run", "v": 1}


# --- steps -----------------------------------------------------------------


def test_a_step_without_an_answer_runs_its_body_with_json_round_trips():
    @workflow
    def wf(v):
        return {"doubled": double(v["n"]), "echo": echo_tuple((1, "x"))}

    fake = FakeDurable()
    assert fake.run(wf, {"n": 4}) == {"doubled": 8, "echo": {"got": [1, "x"], "pair": [1, 2]}}
    assert BODY_RUNS == [("double", 4)]
    assert fake.calls == [("step", "double", 4), ("step", "echo_tuple", [1, "x"])]
    assert isinstance(fake.calls[0], CallRecord)


def test_recorded_answers():
    def wf(v):
        return [double(1), double(2), shout("a"), shout("b"), shout("c")]

    fake = FakeDurable(steps={"double": {"any": "json"}, "shout": Answers("x", ["y"], None)})
    assert fake.run(wf, None) == [{"any": "json"}, {"any": "json"}, "x", ["y"], None]
    assert BODY_RUNS == []  # recorded answers: no body runs
    assert steps_of(fake) == [("double", 1), ("double", 2), ("shout", "a"), ("shout", "b"), ("shout", "c")]


def test_answers_used_up():
    def wf(v):
        return [shout("a"), shout("b")]

    fake = FakeDurable(steps={"shout": Answers("x")})
    with pytest.raises(FakeDurableError, match="'shout' was called 2 times, but FakeDurable has 1 answers"):
        fake.run(wf, None)


def test_a_recorded_failure():
    def wf(v):
        try:
            double(1)
        except StepError as e:
            return {"kind": e.kind, "message": e.message, "after": double(2)}

    fake = FakeDurable(steps={"double": Answers(fail("down"), 7)})
    assert fake.run(wf, None) == {"kind": "failed", "message": "down", "after": 7}


def test_a_raising_body_is_a_failed_step_without_retries():
    def wf(v):
        out = []
        for s in (broken, refuses):
            try:
                s(v)
            except StepError as e:
                out.append([e.kind, e.message])
        return out

    fake = FakeDurable()
    assert fake.run(wf, 3) == [["failed", "ValueError: broken on 3"], ["failed", "no retry can fix this"]]
    assert BODY_RUNS == [("broken", 3), ("refuses", 3)]  # once each


def test_a_result_that_is_not_json_fails_the_step():
    def wf(v):
        return gives_a_set(v)

    with pytest.raises(StepError, match="cannot encode the result"):
        FakeDurable().run(wf, 1)


def test_steps_from_a_step_body_and_idempotency_keys():
    def wf(v):
        return {"key": idempotency_key(), "outer": outer(v), "outer2": outer(v)}

    fake = FakeDurable()
    out = fake.run(wf, 5)
    assert out["key"] == "fake-run"
    assert out["outer"] == {
        "key": "fake-run/outer#1",
        "inner": {"key": "fake-run/outer#1/inner#1", "v": 5},
        "again": {"key": "fake-run/outer#1/inner#2", "v": 5},
    }
    assert out["outer2"]["inner"]["key"] == "fake-run/outer#2/inner#1"
    assert [c.name for c in fake.calls] == ["outer", "inner", "inner", "outer", "inner", "inner"]


def test_workflow_only_calls_fail_a_step():
    def wf(v):
        return sleeps(v)

    with pytest.raises(StepError, match="workflow code only"):
        FakeDurable().run(wf, 1)


def test_a_step_named_explicitly():
    def wf(v):
        return some_function(v)

    fake = FakeDurable(steps={"renamed": "recorded"})
    assert fake.run(wf, 1) == "recorded"
    assert fake.calls == [("step", "renamed", 1)]


def test_answers_for_an_undeclared_step_are_refused():
    with pytest.raises(FakeDurableError, match="'no_such_step', which no @step declares"):
        FakeDurable(steps={"no_such_step": 1}).run(lambda v: v, None)


def test_parallel_and_map():
    def wf(v):
        a, b = parallel(double.using(1), shout.using("x"))
        failed = parallel(double.using(2), broken.using(0), return_exceptions=True)
        return {"a": a, "b": b, "map": double.map([1, 2, 3]), "failed": [str(failed[0]), failed[1].kind]}

    fake = FakeDurable(steps={"double": Answers(10, 20, 30, 40, 50)})
    assert fake.run(wf, None) == {"a": 10, "b": "X", "map": [30, 40, 50], "failed": ["20", "failed"]}

    def wf2(v):
        return parallel(double.using(1), broken.using(2))

    with pytest.raises(StepError, match="broken on 2"):
        FakeDurable().run(wf2, None)


# --- children ----------------------------------------------------------------


def test_children():
    def wf(v):
        first = call_workflow("payment", {"n": 1})
        h = start_workflow("payment", {"n": 2}, id="custom")
        try:
            call_workflow("payment", {"n": 3})
        except HandleError as e:
            failed = [e.kind, e.message]
        return {"first": first, "second": h.result(), "failed": failed, "other": call_workflow("other", None)}

    fake = FakeDurable(children={"payment": Answers({"r": 1}, {"r": 2}, fail("declined")), "other": "ok"})
    assert fake.run(wf, None) == {"first": {"r": 1}, "second": {"r": 2}, "failed": ["failed", "declined"], "other": "ok"}
    assert [c for c in fake.calls if c.kind == "child"] == [
        ("child", "payment", {"n": 1}),
        ("child", "payment", {"n": 2}),
        ("child", "payment", {"n": 3}),
        ("child", "other", None),
    ]


def test_a_child_without_an_answer():
    def wf(v):
        return call_workflow("payment", v)

    with pytest.raises(FakeDurableError, match="child workflow 'payment' has no recorded answer"):
        FakeDurable().run(wf, 1)

    def cancels(v):
        # Never awaited: no answer needed.
        start_workflow("payment", v).cancel()
        return "done"

    fake = FakeDurable()
    assert fake.run(cancels, 1) == "done"
    assert fake.calls == [("child", "payment", 1), ("cancel", "payment", None)]


def test_errors_of_the_fake_get_out_even_if_the_workflow_catches_them():
    def wf(v):
        try:
            call_workflow("payment", v)
        except Exception:
            return "swallowed"

    with pytest.raises(FakeDurableError, match="payment"):
        FakeDurable().run(wf, 1)


# --- events ------------------------------------------------------------------


def test_events_first_in_first_out():
    def wf(v):
        return [await_event("approval"), await_event("approval", timeout=5), await_event("other")]

    fake = FakeDurable(events={"approval": [{"ok": 1}, {"ok": 2}], "other": [None]})
    assert fake.run(wf, None) == [{"ok": 1}, {"ok": 2}, None]
    assert fake.calls == [("event", "approval", None), ("event", "approval", 5000), ("event", "other", None)]
    assert fake.now_ms() == START


def test_an_event_that_never_comes():
    def wf(v):
        try:
            await_event("approval", timeout=60)
        except WaitTimedOut as e:
            return {"timed_out_after": e.timeout_ms, "now": now_ms()}

    fake = FakeDurable()
    assert fake.run(wf, None) == {"timed_out_after": 60_000, "now": START + 60_000}

    def forever(v):
        return await_event("approval")

    with pytest.raises(FakeDurableError, match="would wait for event 'approval' forever"):
        FakeDurable().run(forever, None)


# --- time, handles, races ------------------------------------------------------


def test_virtual_clock():
    def wf(v):
        t0 = now_ms()
        sleep(1.5)
        t1 = now_ms()
        sleep_until(t1 + 10_000)
        sleep_until(t1)  # in the past: at once
        return [t0, t1, now_ms(), timer(2).result(), now_ms()]

    fake = FakeDurable(now_ms=1_000)
    assert fake.run(wf, None) == [1_000, 2_500, 12_500, 14_500, 14_500]
    assert [c for c in fake.calls] == [
        ("sleep", None, 1_500),
        ("sleep_until", None, 12_500),
        ("sleep_until", None, 2_500),
        ("timer", None, 2_000),
    ]


def test_any_picks_the_earliest_and_moves_the_clock():
    def wf(v):
        slow, fast = timer(10), timer(3)
        index, value = any([slow, fast])
        first = [index, value, now_ms()]
        index, value = any([slow, timer(7)])  # both at START + 10 s: the first in the list
        second = [index, value, now_ms()]
        return [first, second]

    fake = FakeDurable(now_ms=0)
    assert fake.run(wf, None) == [[1, 3_000, 3_000], [0, 10_000, 10_000]]


def test_any_of_handles_that_completed_already_takes_the_first_in_list_order():
    def wf(v):
        t = timer(1)
        sleep(5)
        h = double.start(2)  # completes at 5 s, the timer at 1 s: both done
        return list(any([h, t]))

    fake = FakeDurable(now_ms=0)
    assert fake.run(wf, None) == [0, 4]
    assert fake.now_ms() == 5_000


def test_event_races_a_timer():
    def wf(v):
        index, value = any([event("approved"), timer(48 * 3600)])
        return [index, value, now_ms()]

    assert FakeDurable(events={"approved": ["ana"]}, now_ms=0).run(wf, None) == [0, "ana", 0]
    assert FakeDurable(now_ms=0).run(wf, None) == [1, 48 * 3600 * 1000, 48 * 3600 * 1000]


def test_an_event_handle_times_out():
    def wf(v):
        try:
            event("approved", timeout=30).result()
        except HandleError as e:
            return [e.kind, now_ms()]

    assert FakeDurable(now_ms=0).run(wf, None) == ["timed-out", 30_000]


def test_waiting_forever_on_handles():
    def wf(v):
        return any([event("approved")])

    with pytest.raises(FakeDurableError, match="wait forever.*event 'approved'"):
        FakeDurable().run(wf, None)

    def wf_all(v):
        return all([timer(1), event("approved")])

    with pytest.raises(FakeDurableError, match="wait forever.*event 'approved'"):
        FakeDurable().run(wf_all, None)


def test_all_moves_the_clock_to_the_last():
    def wf(v):
        return [all([timer(3), double.start(4), timer(1)]), now_ms()]

    fake = FakeDurable(now_ms=0)
    assert fake.run(wf, None) == [[3_000, 8, 1_000], 3_000]


def test_all_with_return_exceptions():
    def wf(v):
        results = all([double.start(1), broken.start(2)], return_exceptions=True)
        return [results[0], results[1].kind, results[1].message]

    assert FakeDurable().run(wf, None) == [2, "failed", "ValueError: broken on 2"]

    def wf_raises(v):
        return all([double.start(1), broken.start(2)])

    with pytest.raises(HandleError):
        FakeDurable().run(wf_raises, None)


def test_cancel():
    def wf(v):
        h = double.start(1)
        h.cancel()
        try:
            h.result()
        except HandleError as e:
            cancelled = [e.kind, e.message]
        done = double.start(2)
        value = done.result()
        done.cancel()  # its outcome was returned already: it stays
        t = timer(100)
        t.cancel()
        try:
            any([t, timer(1)])  # a cancelled handle has completed (as cancelled)
        except HandleError as e:
            index = [e.index, e.kind]
        return {"cancelled": cancelled, "value": value, "again": done.result(), "index": index, "now": now_ms()}

    fake = FakeDurable(now_ms=0)
    assert fake.run(wf, None) == {
        "cancelled": ["cancelled", "double#1 was cancelled by the workflow"],
        "value": 4,
        "again": 4,
        "index": [0, "cancelled"],
        "now": 0,
    }
    assert [c for c in fake.calls if c.kind == "cancel"] == [
        ("cancel", "double", None),
        ("cancel", "double", None),
        ("cancel", None, None),
    ]


def test_a_cancelled_event_wait_consumes_nothing():
    def wf(v):
        a, b = event("approval"), event("approval")
        a.cancel()
        b.cancel()
        return [await_event("approval"), await_event("approval")]

    assert FakeDurable(events={"approval": [1, 2]}).run(wf, None) == [1, 2]


def test_map_over_children_with_a_limit():
    def wf(orders):
        return sdk.map(lambda o: start_workflow("payment", o), orders, limit=2)

    fake = FakeDurable(children={"payment": Answers("a", "b", "c")})
    assert fake.run(wf, [1, 2, 3]) == ["a", "b", "c"]
    assert [c.input for c in fake.calls] == [1, 2, 3]


# --- the rest ------------------------------------------------------------------


def test_random_is_splitmix64_of_the_seed():
    def wf(v):
        return [random_u64(), random_u64()]

    first = FakeDurable().run(wf, None)
    assert first[0] == 0xE220A8397B1DCDAF  # SplitMix64's first output for seed 0
    assert FakeDurable().run(wf, None) == first
    other = FakeDurable(seed=42).run(wf, None)
    assert other != first and all_u64(other)


def all_u64(values):
    return not [v for v in values if not 0 <= v < 1 << 64]


def test_logs():
    def wf(v):
        log("hello")
        log("careful", level="warn")
        return None

    fake = FakeDurable()
    assert fake.run(wf, None) is None
    assert fake.logs == [("info", "hello"), ("warn", "careful")]


def test_tags_are_set_replaced_and_recorded():
    def wf(v):
        set_tag("customer", v)
        set_tag("region.eu-west_1", "")
        set_tag("customer", "43")

    fake = FakeDurable()
    fake.run(wf, "42")
    assert fake.tags == {"customer": "43", "region.eu-west_1": ""}
    assert [c for c in fake.calls if c.kind == "tag"] == [
        ("tag", "customer", "42"),
        ("tag", "region.eu-west_1", ""),
        ("tag", "customer", "43"),
    ]


def key_error(key):
    return f"tag key \"{key}\" must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'"


def test_invalid_tags_get_the_hosts_errors_and_set_nothing():
    def attempt(key, value):
        try:
            set_tag(key, value)
        except ValueError as e:
            return str(e)

    def wf(v):
        return [
            attempt("", "v"),
            attempt("has space", "v"),
            attempt("naïve", "v"),
            attempt("line\n", "v"),
            attempt("k" * 65, "v"),
            attempt("note", "é" * 129),
            attempt("k" * 64, "v" * 256),  # the limits themselves are allowed
        ]

    fake = FakeDurable()
    assert fake.run(wf, None) == [
        key_error(""),
        key_error("has space"),
        key_error("naïve"),
        key_error("line\n"),
        key_error("k" * 65),
        'tag "note": value is 258 bytes, more than 256',
        None,
    ]
    assert fake.tags == {"k" * 64: "v" * 256}
    assert [c.kind for c in fake.calls] == ["tag"]
    with FakeDurable():
        with pytest.raises(TypeError, match="as strings"):
            set_tag("customer", 42)


def test_a_workflow_sets_at_most_16_tag_keys_and_may_set_them_again():
    def wf(v):
        for i in range(16):
            set_tag(f"k{i}", "v")
        set_tag("k3", "w")
        set_tag("k16", "v")

    fake = FakeDurable()
    with pytest.raises(ValueError) as e:
        fake.run(wf, None)
    assert str(e.value) == 'a workflow sets at most 16 tag keys on its run; "k16" would be the 17th'
    assert len(fake.tags) == 16 and fake.tags["k3"] == "w" and "k16" not in fake.tags


def test_a_step_body_cannot_set_tags():
    def wf(v):
        return tags_itself(v)

    fake = FakeDurable()
    with pytest.raises(StepError, match="set-tag is a workflow call: a step body cannot set tags"):
        fake.run(wf, "42")
    assert fake.tags == {}
    assert [c.kind for c in fake.calls] == ["step"]


def test_run_round_trips_input_and_result():
    seen = []

    def wf(v):
        seen.append(v)
        return (1, {"a": (2,)})

    assert FakeDurable().run(wf, (1, 2)) == [1, {"a": [2]}]
    assert seen == [[1, 2]]

    with pytest.raises(TypeError, match="cannot encode the result"):
        FakeDurable().run(lambda v: {1, 2}, None)
    with pytest.raises(ValueError, match="cannot encode the result"):
        FakeDurable().run(lambda v: float("nan"), None)


def test_run_raises_what_the_workflow_raises():
    class Boom(Exception):
        pass

    def wf(v):
        raise Boom("no")

    with pytest.raises(Boom):
        FakeDurable().run(wf, None)


def test_async_workflows_and_steps_are_refused():
    async def wf(v):
        return 1

    with pytest.raises(TypeError, match="is it an async def"):
        FakeDurable().run(wf, None)


def test_a_step_is_not_a_workflow():
    with pytest.raises(TypeError, match="is a step"):
        FakeDurable().run(double, 1)


def test_the_exports_work_against_the_fake():
    # WitWorld.run and Steps.run_step, as the host would call them.
    with FakeDurable():
        assert Steps().run_step("double", "21") == "42"


def test_no_fake_is_left_active():
    FakeDurable().run(lambda v: v, 1)
    with pytest.raises(RuntimeError, match="FakeDurable"):
        now_ms()
