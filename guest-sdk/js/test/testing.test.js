// Tests of durable-sdk/testing (the fake host) and of the SDK under it, in
// plain Node: `node --test guest-sdk/js/test`. They import the package by
// name, as an author does (in this repository through the package's
// self-reference; scripts/sdk-packages/js.sh runs them against the packed
// tarball).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  HandleError,
  Permanent,
  StepError,
  WaitTimedOut,
  all,
  any,
  awaitEvent,
  callWorkflow,
  event,
  fetch,
  idempotencyKey,
  log,
  map,
  nowMs,
  parallel,
  randomU64,
  setTag,
  sleep,
  sleepUntil,
  startWorkflow,
  step,
  timer,
  workflow,
} from "durable-sdk";
import { FakeDurable, FakeDurableError, answers, fail } from "durable-sdk/testing";

const START = 1700000000000;
const isStepError = (kind, detail) => (e) =>
  e instanceof StepError && e.kind === kind && (detail === undefined || e.detail === detail);
const isFake = (pattern) => (e) => e instanceof FakeDurableError && pattern.test(e.message);

// --- steps

const double = step("double", (n) => n * 2);
const echo = step("echo", (v) => ({ got: v }));
const boom = step("boom", () => {
  throw new Error("kaput");
});
const permanent = step("permanent", () => {
  throw new Permanent("never");
});
const nothing = step("nothing", () => {});
const big = step("big", () => 10n);
const later = step("later", async (v) => v);
const keyed = step("keyed", () => idempotencyKey());
const outer = step("outer", (v) => ({ inner: keyed(v), again: keyed(v), key: idempotencyKey() }));
const sleepy = step("sleepy", () => {
  sleep(10);
  return "slept";
});
const fetcher = step("fetcher", () => {
  fetch("https://example.com/charges?secret=1");
  return "sent";
});
const tagsItself = step("tags_itself", (v) => {
  setTag("customer", v);
  return v;
});

test("workflow() returns its function and step() gives the body", () => {
  const fn = (x) => x;
  assert.equal(workflow(fn), fn);
  assert.equal(double.body(4), 8);
  assert.equal(double.withOptions({ timeoutMs: 5 }).body, double.body);
  assert.equal(double.stepName, "double");
});

test("a step with no answer runs its body, JSON in and out", async () => {
  const fake = new FakeDurable();
  const when = new Date(0);
  const out = await fake.run(() => ({ d: double(21), e: echo({ when, skip: undefined }), n: nothing(1) }));
  assert.deepEqual(out, { d: 42, e: { got: { when: "1970-01-01T00:00:00.000Z" } }, n: null });
  assert.deepEqual(fake.calls, [
    { kind: "step", name: "double", input: 21 },
    { kind: "step", name: "echo", input: { when: "1970-01-01T00:00:00.000Z" } },
    { kind: "step", name: "nothing", input: 1 },
  ]);
});

test("a body's error is a failed StepError, Permanent or not, and no retry", async () => {
  let runs = 0;
  const flaky = step("flaky", () => {
    runs++;
    throw new Error("flaky");
  });
  for (const [s, detail] of [
    [boom, "Error: kaput"],
    [permanent, "Error: never"],
    [flaky, "Error: flaky"],
  ]) {
    await assert.rejects(new FakeDurable().run(() => s(1)), isStepError("failed", detail));
  }
  assert.equal(runs, 1);
  await assert.rejects(new FakeDurable().run(() => big(1)), isStepError("failed"));
  await assert.rejects(new FakeDurable().run(() => big(1)), /cannot encode the result/);
});

test("recorded answers: a value, answers(...), fail(...)", async () => {
  const fake = new FakeDurable({
    steps: { double: 7, echo: answers({ a: 1 }, fail("down"), { a: 3 }), boom: fail("recorded") },
  });
  const out = await fake.run(() => {
    const got = [double(1), double(2), echo(1)];
    try {
      echo(2);
    } catch (e) {
      got.push(`${e.kind}: ${e.detail}`);
    }
    got.push(echo(3));
    try {
      boom(0);
    } catch (e) {
      got.push(e instanceof StepError ? e.detail : "?");
    }
    return got;
  });
  assert.deepEqual(out, [7, 7, { a: 1 }, "failed: down", { a: 3 }, "recorded"]);
  assert.deepEqual(
    fake.calls.map((c) => [c.name, c.input]),
    [["double", 1], ["double", 2], ["echo", 1], ["echo", 2], ["echo", 3], ["boom", 0]],
  );
});

test("answers used up are an error of the fake, even if the workflow catches it", async () => {
  const fake = new FakeDurable({ steps: { double: answers(1) } });
  const wf = () => {
    double(1);
    try {
      double(2);
    } catch {
      return "swallowed";
    }
    return "no";
  };
  await assert.rejects(fake.run(wf), isFake(/step "double" was called 2 times, but FakeDurable has 1 answers/));
});

test("answers for a step that no step() declares are refused", async () => {
  await assert.rejects(new FakeDurable({ steps: { dubble: 1 } }).run(() => 1), isFake(/"dubble", which no step\(\) declares/));
});

test("an async body with no answer is an error of the fake; with an answer it is fine", async () => {
  await assert.rejects(new FakeDurable().run(() => later(1)), isFake(/step "later" has an async body/));
  assert.equal(await new FakeDurable({ steps: { later: 5 } }).run(() => later(1)), 5);
  assert.equal(await later.body(3), 3);
});

test("run: input and result through JSON, async workflows, thrown errors", async () => {
  const fake = new FakeDurable();
  assert.deepEqual(await fake.run((v) => v, { a: [1, undefined], d: new Date(0) }), { a: [1, null], d: "1970-01-01T00:00:00.000Z" });
  assert.equal(await fake.run(() => undefined), null);
  assert.equal(await fake.run(async (v) => double(await Promise.resolve(v)), 1), 2);
  await assert.rejects(fake.run(() => 1n), /cannot encode the result/);
  await assert.rejects(fake.run(() => { throw new RangeError("mine"); }), RangeError);
  await assert.rejects(fake.run(double, 1), /"double" is a step/);
  await assert.rejects(fake.run("nope"), TypeError);
});

test("parallel and map run their steps; returnErrors", async () => {
  const fake = new FakeDurable({ steps: { echo: fail("no") } });
  const out = await fake.run(() => {
    const [a, b] = parallel([double.using(1), double.using(2)]);
    const [c, e] = parallel([double.using(3), echo.using(4)], { returnErrors: true });
    const m = map((v) => double.start(v), [5, 6, 7], { limit: 2 });
    return { a, b, c, e: e instanceof StepError ? e.detail : e, m };
  });
  assert.deepEqual(out, { a: 2, b: 4, c: 6, e: "no", m: [10, 12, 14] });
  assert.deepEqual(fake.calls.map((c) => c.input), [1, 2, 3, 4, 5, 6, 7]);
});

test("step keys and idempotency keys, nested steps", async () => {
  const fake = new FakeDurable();
  const out = await fake.run(() => ({ wf: idempotencyKey(), a: outer(1), b: outer(2), k: keyed(3) }));
  assert.deepEqual(out, {
    wf: "fake-run",
    a: { inner: "fake-run/outer#1/keyed#1", again: "fake-run/outer#1/keyed#2", key: "fake-run/outer#1" },
    b: { inner: "fake-run/outer#2/keyed#1", again: "fake-run/outer#2/keyed#2", key: "fake-run/outer#2" },
    k: "fake-run/keyed#1",
  });
  assert.deepEqual(fake.calls.map((c) => c.name), ["outer", "keyed", "keyed", "outer", "keyed", "keyed", "keyed"]);
});

test("workflow-only calls from a step body fail the step", async () => {
  await assert.rejects(new FakeDurable().run(() => sleepy(1)), isStepError("failed", "Error: sleep() is workflow code only: the host fails a step that calls it (step sleepy#1)"));
});

test("fetch under the fake is refused, and durable calls outside a fake say what to do", async () => {
  await assert.rejects(new FakeDurable().run(() => fetcher(1)), isFake(/^fetch\(https:\/\/example.com\/charges\) under FakeDurable.*step "fetcher"/));
  assert.throws(() => double(1), /durable calls need the durable host or the fake of durable-sdk\/testing/);
  assert.throws(() => keyed.body(), /idempotencyKey: durable calls need/);
});

test("activate: a body's durable calls go to the fake", async () => {
  const fake = new FakeDurable({ nowMs: 5 });
  assert.equal(fake.activate(() => keyed.body()), "fake-run");
  assert.equal(await fake.activate(async () => nowMs()), 5);
  assert.throws(() => keyed.body(), /durable calls need/);
});

// --- children

test("children: recorded answers, fail, missing", async () => {
  const fake = new FakeDurable({ children: { payment: answers({ receipt: "R-1" }, fail("card declined")) } });
  const out = await fake.run(() => {
    const first = callWorkflow("payment", { n: 1 });
    let second;
    try {
      callWorkflow("payment", { n: 2 }, { id: "p-2" });
    } catch (e) {
      second = e instanceof HandleError ? [e.kind, e.detail] : e;
    }
    return { first, second };
  });
  assert.deepEqual(out, { first: { receipt: "R-1" }, second: ["failed", "card declined"] });
  assert.deepEqual(fake.calls, [
    { kind: "child", name: "payment", input: { n: 1 } },
    { kind: "child", name: "payment", input: { n: 2 } },
  ]);
  await assert.rejects(new FakeDurable().run(() => callWorkflow("shipping", {})), isFake(/child workflow "shipping" has no recorded answer/));
  // A child cancelled before its result is needed needs no answer.
  const cancelled = new FakeDurable();
  assert.equal(await cancelled.run(() => { startWorkflow("shipping", {}).cancel(); return "ok"; }), "ok");
  assert.deepEqual(cancelled.calls.map((c) => c.kind), ["child", "cancel"]);
});

// --- events and time

test("awaitEvent: first in, first out; a timeout; none and no timeout", async () => {
  const fake = new FakeDurable({ events: { approval: [{ n: 1 }, { n: 2 }] } });
  const out = await fake.run(() => {
    const got = [awaitEvent("approval"), awaitEvent("approval", { timeoutMs: 10 })];
    const before = nowMs();
    try {
      awaitEvent("approval", { timeoutMs: 5000 });
    } catch (e) {
      got.push(e instanceof WaitTimedOut ? e.timeoutMs : e);
    }
    got.push(nowMs() - before);
    return got;
  });
  assert.deepEqual(out, [{ n: 1 }, { n: 2 }, 5000, 5000]);
  assert.deepEqual(fake.calls.map((c) => c.input), [null, 10, 5000]);
  await assert.rejects(new FakeDurable().run(() => awaitEvent("approval")), isFake(/would wait for event "approval" forever/));
});

test("the clock: sleep, sleepUntil, timers; random and log", async () => {
  const fake = new FakeDurable({ seed: 0 });
  const out = await fake.run(() => {
    const t0 = nowMs();
    sleep(1500);
    const t1 = nowMs();
    sleepUntil(t1 - 100000); // in the past: at once
    sleepUntil(t1 + 500);
    const fired = timer(250).result();
    log("done", "warn");
    log("twice");
    return { t0, t1, t2: nowMs(), fired, r: [String(randomU64()), String(randomU64())] };
  });
  assert.deepEqual(out, {
    t0: START,
    t1: START + 1500,
    t2: START + 2250,
    fired: START + 2250,
    r: ["16294208416658607535", "7960286522194355700"],
  });
  assert.equal(fake.nowMs(), START + 2250);
  assert.deepEqual(fake.logs, [{ level: "warn", message: "done" }, { level: "info", message: "twice" }]);
  assert.deepEqual(
    fake.calls.map((c) => [c.kind, c.input]),
    [["sleep", 1500], ["sleep_until", START - 98500], ["sleep_until", START + 2000], ["timer", 250]],
  );
  const other = new FakeDurable({ seed: 42n });
  assert.deepEqual(await other.run(() => String(randomU64())), await new FakeDurable({ seed: 42 }).run(() => String(randomU64())));
});

// --- tags

const keyError = (key) => `tag key "${key}" must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'`;

test("setTag: set, replaced and recorded", async () => {
  const fake = new FakeDurable();
  await fake.run((v) => {
    setTag("customer", v);
    setTag("region.eu-west_1", "");
    setTag("customer", "43");
    setTag("__proto__", "a tag like any other");
  }, "42");
  assert.deepEqual(fake.tags, { customer: "43", "region.eu-west_1": "", ["__proto__"]: "a tag like any other" });
  assert.equal(Object.getPrototypeOf(fake.tags), Object.prototype);
  assert.deepEqual(
    fake.calls.filter((c) => c.kind === "tag"),
    [
      { kind: "tag", name: "customer", input: "42" },
      { kind: "tag", name: "region.eu-west_1", input: "" },
      { kind: "tag", name: "customer", input: "43" },
      { kind: "tag", name: "__proto__", input: "a tag like any other" },
    ],
  );
});

test("setTag: invalid tags throw the host's errors and set nothing", async () => {
  const attempt = (key, value) => {
    try {
      setTag(key, value);
      return null;
    } catch (e) {
      assert.equal(Object.getPrototypeOf(e), Error.prototype);
      return e.message;
    }
  };
  const fake = new FakeDurable();
  const got = await fake.run(() => [
    attempt("", "v"),
    attempt("has space", "v"),
    attempt("naïve", "v"),
    attempt("line\n", "v"),
    attempt("k".repeat(65), "v"),
    attempt("note", "é".repeat(129)),
    attempt("k".repeat(64), "v".repeat(256)), // the limits themselves are allowed
  ]);
  assert.deepEqual(got, [
    keyError(""),
    keyError("has space"),
    keyError("naïve"),
    keyError("line\n"),
    keyError("k".repeat(65)),
    'tag "note": value is 258 bytes, more than 256',
    null,
  ]);
  assert.deepEqual(fake.tags, { ["k".repeat(64)]: "v".repeat(256) });
  assert.deepEqual(fake.calls.map((c) => c.kind), ["tag"]);
  assert.throws(() => fake.activate(() => setTag("customer", 42)), { name: "TypeError", message: /as strings/ });
});

test("setTag: at most 16 keys, and a key set again does not count", async () => {
  const fake = new FakeDurable();
  await assert.rejects(
    fake.run(() => {
      for (let i = 0; i < 16; i++) setTag(`k${i}`, "v");
      setTag("k3", "w");
      setTag("k16", "v");
    }),
    { message: 'a workflow sets at most 16 tag keys on its run; "k16" would be the 17th' },
  );
  assert.equal(Object.keys(fake.tags).length, 16);
  assert.equal(fake.tags.k3, "w");
  assert.equal("k16" in fake.tags, false);
});

test("setTag from a step body fails the step", async () => {
  const fake = new FakeDurable();
  await assert.rejects(
    fake.run(() => tagsItself("42")),
    isStepError("failed", "Error: set-tag is a workflow call: a step body cannot set tags"),
  );
  assert.deepEqual(fake.tags, {});
  assert.deepEqual(fake.calls.map((c) => c.kind), ["step"]);
});

test("any: the earliest completion wins (ties: the first), and the clock moves to it", async () => {
  const fake = new FakeDurable({ events: { approved: ["ana"] } });
  const out = await fake.run(() => {
    const slow = timer(1000);
    const fast = timer(10);
    const [i1, v1] = any([slow, fast]);
    const after1 = nowMs() - START;
    const s = double.start(4);
    const e = event("approved");
    const [i2, v2] = any([e, s]); // both complete now: the first in list order
    const t = timer(5);
    const [i3, v3] = any([t, s]); // s completed before: it wins
    return { i1, v1: v1 - START, after1, i2, v2, i3, v3, end: nowMs() - START };
  });
  assert.deepEqual(out, { i1: 1, v1: 10, after1: 10, i2: 0, v2: "ana", i3: 1, v3: 8, end: 10 });
});

test("all: every value in order, the clock at the latest; a wait that never ends", async () => {
  const fake = new FakeDurable();
  const out = await fake.run(() => {
    const values = all([timer(30), double.start(2), timer(20)]).map((v, i) => (i === 1 ? v : v - START));
    return { values, now: nowMs() - START };
  });
  assert.deepEqual(out, { values: [30, 4, 20], now: 30 });
  await assert.rejects(new FakeDurable().run(() => all([timer(5), event("never")])), isFake(/would wait forever: event "never"/));
  await assert.rejects(new FakeDurable().run(() => any([event("never")])), isFake(/would wait forever: none of event "never"/));
});

test("an event handle with a timeout loses to an earlier timer, and times out alone", async () => {
  const fake = new FakeDurable();
  const out = await fake.run(() => {
    const e = event("approved", { timeoutMs: 100 });
    const [index] = any([e, timer(50)]);
    let timedOut;
    try {
      e.result();
    } catch (err) {
      timedOut = err instanceof HandleError ? [err.kind, err.detail] : err;
    }
    return { index, timedOut, now: nowMs() - START };
  });
  assert.deepEqual(out, { index: 1, timedOut: ["timed-out", "100"], now: 100 });
});

test("cancel: the handle gives cancelled, an event goes back, an observed handle stays", async () => {
  const fake = new FakeDurable({ events: { go: ["first", "second"] } });
  const out = await fake.run(() => {
    const e1 = event("go");
    e1.cancel();
    let cancelled;
    try {
      e1.result();
    } catch (e) {
      cancelled = [e.kind, e.detail];
    }
    const again = awaitEvent("go"); // the cancelled wait consumed nothing
    const s = double.start(5);
    const value = s.result();
    s.cancel(); // too late: the value was observed
    return { cancelled, again, value, still: s.result() };
  });
  assert.deepEqual(out, {
    cancelled: ["cancelled", "$event:go#1 was cancelled by the workflow"],
    again: "first",
    value: 10,
    still: 10,
  });
  assert.deepEqual(
    fake.calls.map((c) => [c.kind, c.name]),
    [["event", "go"], ["cancel", "go"], ["event", "go"], ["step", "double"], ["cancel", "double"]],
  );
});

test("options are checked", () => {
  assert.throws(() => new FakeDurable({ step: {} }), /no option "step"/);
  assert.throws(() => new FakeDurable({ events: { a: "x" } }), /events\["a"\] is an array of payloads/);
  assert.throws(() => new FakeDurable({ steps: { double: 1n } }), /the answer of step "double" is not JSON/);
  assert.throws(() => new FakeDurable({ steps: { double: answers(answers(1)) } }), /nest answers/);
  assert.throws(() => new FakeDurable({ nowMs: -1 }), /nowMs/);
});
