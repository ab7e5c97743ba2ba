// Test workflows in plain Node (`node --test`), without the durable host.
//
// `FakeDurable` runs a workflow function in this process against a fake host
// that answers from what the test recorded, so that a test checks the
// orchestration: which steps and children are called, with what, in which
// order, and what the workflow makes of their answers, timers and events:
//
//   import { test } from "node:test";
//   import assert from "node:assert/strict";
//   import { FakeDurable, answers, fail } from "durable-sdk/testing";
//   import { approval, submit } from "./app.js";
//
//   test("paid after approval", async () => {
//     const fake = new FakeDurable({
//       steps: { submit: { ticket: "T-1" }, pay: { paid: 120 } },
//       events: { approval: [{ approved: true, by: "ana" }] },
//     });
//     const out = await fake.run(approval, { report: "R-1", amount: 120 });
//     assert.equal(out.status, "paid");
//     assert.deepEqual(fake.calls.filter((c) => c.kind === "step").map((c) => c.name), ["submit", "pay"]);
//   });
//
// A step's own code is tested by calling it directly: `submit.body(report)`
// (`await` it if the body is async).
//
// Answers (`steps`: step name -> answer; `children`: child workflow name ->
// answer):
// - a JSON value answers every call of that step (or child);
// - `answers(v1, v2, ...)` answers the first call with v1, the second with
//   v2...; a call after the last is an error of the fake;
// - `fail("message")` is a failure: a step call throws a StepError (kind
//   "failed"), a handle's result a HandleError (kind "failed"). `fail` may be
//   one of `answers(...)`.
//
// A step with no recorded answer runs its body here, once (no retries), with
// its input and output encoded as JSON as the host would: an error thrown by
// the body (Permanent or not) is a failed StepError. A body that returns a
// promise (an async step) cannot be waited for inside a durable call, which
// is synchronous: that is an error of the fake; record the step's answer and
// test the body with `await someStep.body(input)`. The SDK's `fetch` is
// refused under the fake (no request is sent): record the answer of the step
// that fetches. A child with no recorded answer is an error of the fake, when
// the workflow needs its result (a child cancelled before needs none).
//
// `events`: event name -> array of payloads, consumed first in, first out by
// `awaitEvent` and `event()`. With none left, `awaitEvent` throws
// WaitTimedOut when it has a timeout (the clock moves on by it), and is an
// error of the fake otherwise (the workflow would wait forever).
//
// Time is virtual: `nowMs()` starts at `nowMs` (default 1700000000000) and
// moves only when the workflow waits: `sleep` and `sleepUntil` move it on;
// steps, children and events with a payload complete at once (at the time
// they start), a timer at its start plus its duration, an event with no
// payload at its timeout (or never). `any` returns the handle that completes
// first (ties: the first in list order, as the host does) and moves the clock
// to its completion; `all` to the last one's. `randomU64()` is a SplitMix64
// sequence from `seed` (a BigInt); `idempotencyKey()` is "fake-run" in
// workflow code and "fake-run/<step key>" ("charge#1", "parent#1/child#1")
// in a step body.
//
// What the workflow did is in `fake.calls`, an array of `{ kind, name, input }`:
// - { kind: "step", name, input }: a step called, started, or run by
//   `parallel` or `map` (also from a step body);
// - { kind: "child", name: workflow, input }: a child started
//   (`startWorkflow`, `callWorkflow`);
// - { kind: "event", name, input: timeoutMs }: an event awaited
//   (`awaitEvent`) or started (`event()`); timeoutMs is null without one;
// - { kind: "sleep", name: null, input: durationMs }, { kind: "sleep_until",
//   name: null, input: epochMs }, { kind: "timer", name: null, input: durationMs };
// - { kind: "cancel", name, input: null }: a handle cancelled; name is its
//   step's, child's or event's (null for a timer);
// - { kind: "tag", name: key, input: value }: a tag set (`setTag`).
//
// `setTag` checks its key, its value and the number of keys as the host does,
// and throws an Error with the host's message for an invalid tag, a 17th key
// or a call from a step body (such a call sets and records nothing).
// `fake.tags` is an object of the tags set, key -> last value.
//
// `fake.logs` holds the `log()` lines as `{ level, message }`. A fake is one
// run's world: its answers, events and clock are used up as the run goes, so
// give each test its own.
//
// Errors of the fake itself (a child with no answer, answers used up, a wait
// that can never end, an async step body, a fetch) are FakeDurableError;
// `run` throws it even if the workflow caught it.

import { __testing, steps as sdkSteps } from "./durable.js";
import { active } from "./host-node.js";

const FAKE_ERROR = Symbol.for("durable-sdk.fake-error");
const U64 = (1n << 64n) - 1n;

// The host's limits on tags.
const TAG_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
const TAG_VALUE_BYTES = 256;
const TAGS = 16;

/** The fake cannot go on: an answer is missing or used up, or the workflow
 * waits for something that never comes. */
export class FakeDurableError extends Error {
  constructor(message) {
    super(message);
    this.name = "FakeDurableError";
    // The SDK lets it through instead of making it a StepError.
    Object.defineProperty(this, FAKE_ERROR, { value: true });
  }
}

class Fail {
  constructor(message) {
    this.message = String(message);
  }
}

class Answers {
  constructor(values) {
    this.answers = values;
  }
}

/** A recorded failure: the step throws StepError("failed", message); a
 * handle's result throws HandleError("failed", message). */
export const fail = (message) => new Fail(message);

/** Answers consumed one per call, in order: `answers({ ok: 1 }, fail("down"), { ok: 2 })`. */
export const answers = (...values) => new Answers(values);

// What componentize-js throws for the `err` case of a WIT `result`: a
// string payload is its message.
class ComponentError extends Error {
  constructor(payload) {
    super(typeof payload === "string" ? payload : `${payload.tag}: ${payload.val}`);
    this.name = "ComponentError";
    this.payload = payload;
  }
}

const isThenable = (v) =>
  v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";

function jsonText(value, what) {
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (e) {
    throw new TypeError(`${what} is not JSON: ${e && e.message ? e.message : e}`);
  }
  if (text === undefined) throw new TypeError(`${what} is not JSON: a ${typeof value}`);
  return text;
}

const ok = (val) => ({ tag: "ok", val });
const err = (tag, val) => ({ tag: "err", val: { tag, val } });
const quote = (s) => JSON.stringify(s);

// The recorded answers of one step or child.
class Source {
  constructor(what, answer) {
    this.what = what;
    this.calls = 0;
    if (answer instanceof Answers) {
      this.sequence = answer.answers.map((a) => this.encode(a));
    } else {
      this.sequence = null;
      this.always = this.encode(answer);
    }
  }

  encode(answer) {
    if (answer instanceof Fail) return answer;
    if (answer instanceof Answers) throw new TypeError(`the answers of ${this.what} nest answers(...) in answers(...)`);
    return jsonText(answer, `the answer of ${this.what}`);
  }

  /** JSON text, or a Fail. */
  next(fake) {
    this.calls += 1;
    if (this.sequence === null) return this.always;
    if (this.calls > this.sequence.length) {
      throw fake.stuck(
        `${this.what} was called ${this.calls} times, but FakeDurable has ` +
          `${this.sequence.length} answers for it (answers(...))`,
      );
    }
    return this.sequence[this.calls - 1];
  }
}

// A handle's operation: when it completes (ms; null: never) and how.
class Op {
  constructor(kind, name, key, at, outcome, { missing = null, event = null } = {}) {
    this.kind = kind;
    this.name = name;
    this.key = key;
    this.at = at;
    this.outcome = outcome; // { tag: "ok", val: json } or { tag: "err", val: handle-error }
    this.missing = missing; // why there is no outcome (a child with no answer)
    this.event = event; // [sequence number, payload] of an event taken
    this.observed = false;
  }

  describe() {
    if (this.kind === "event") return `event ${quote(this.name)}`;
    if (this.kind === "timer") return "a timer";
    return `${this.kind} ${quote(this.name)}`;
  }
}

// The durable interface, answered by the fake, with the shapes of the
// componentize-js bindings: JSON text in and out, BigInt for u64, a
// ComponentError with `payload` for the err case of a result.
class Host {
  #f;

  constructor(fake) {
    this.#f = fake;
  }

  // --- steps

  step(name, input, _options) {
    const text = this.#f.runStep(name, input);
    if (text instanceof Fail) throw new ComponentError({ tag: "failed", val: text.message });
    return text;
  }

  parallel(calls) {
    return calls.map((c) => {
      const text = this.#f.runStep(c.name, c.input);
      return text instanceof Fail ? { tag: "err", val: { tag: "failed", val: text.message } } : ok(text);
    });
  }

  startStep(name, input, _options) {
    const f = this.#f;
    const key = f.stepKey(name);
    const text = f.runStep(name, input, key);
    const outcome = text instanceof Fail ? err("failed", text.message) : ok(text);
    return f.handle(new Op("step", name, key, f.now, outcome));
  }

  // --- children, timers, events

  startChild(workflow, input, _options) {
    const f = this.#f;
    f.workflowOnly("startWorkflow");
    const n = f.count(`$child:${workflow}`);
    f.calls.push({ kind: "child", name: workflow, input: JSON.parse(input) });
    const source = f.children.get(workflow);
    const key = `$child:${workflow}#${n}`;
    if (source === undefined) {
      const missing =
        `child workflow ${quote(workflow)} has no recorded answer: ` +
        `give one with new FakeDurable({ children: { ${quote(workflow)}: ... } })`;
      return f.handle(new Op("child", workflow, key, f.now, null, { missing }));
    }
    const text = source.next(f);
    const outcome = text instanceof Fail ? err("failed", text.message) : ok(text);
    return f.handle(new Op("child", workflow, key, f.now, outcome));
  }

  startTimer(durationMs) {
    const f = this.#f;
    f.workflowOnly("timer");
    const n = f.count("$timer");
    const ms = Number(durationMs);
    f.calls.push({ kind: "timer", name: null, input: ms });
    const at = f.now + ms;
    return f.handle(new Op("timer", null, `$timer#${n}`, at, ok(JSON.stringify(at))));
  }

  startEvent(name, timeoutMs) {
    const f = this.#f;
    f.workflowOnly("event");
    const n = f.count(`$event:${name}`);
    const timeout = timeoutMs === undefined || timeoutMs === null ? null : Number(timeoutMs);
    f.calls.push({ kind: "event", name, input: timeout });
    const key = `$event:${name}#${n}`;
    const taken = f.takeEvent(name);
    if (taken !== null) return f.handle(new Op("event", name, key, f.now, ok(taken[1]), { event: taken }));
    if (timeout !== null) {
      return f.handle(new Op("event", name, key, f.now + timeout, err("timed-out", BigInt(timeout))));
    }
    return f.handle(new Op("event", name, key, null, null));
  }

  awaitAny(handles) {
    const f = this.#f;
    if (handles.length === 0) throw f.stuck("any() of no handles would wait forever");
    const ops = handles.map((h) => f.op(h));
    let best = null;
    ops.forEach((op, i) => {
      if (op.at === null) return;
      const at = Math.max(op.at, f.now);
      if (best === null || at < best[1]) best = [i, at];
    });
    if (best === null) throw f.stuck(`the workflow would wait forever: none of ${f.describe(ops)} can complete`);
    const [index, at] = best;
    f.now = at;
    return [index, f.outcome(ops[index])];
  }

  awaitAll(handles) {
    const f = this.#f;
    const ops = handles.map((h) => f.op(h));
    const never = ops.filter((op) => op.at === null);
    if (never.length > 0) throw f.stuck(`the workflow would wait forever: ${f.describe(never)} can never complete`);
    for (const op of ops) f.now = Math.max(f.now, op.at);
    return ops.map((op) => f.outcome(op));
  }

  cancel(handle) {
    const f = this.#f;
    const op = f.op(handle);
    f.calls.push({ kind: "cancel", name: op.name, input: null });
    if (op.observed) return;
    if (op.event !== null) {
      f.putBack(op.name, op.event);
      op.event = null;
    }
    op.at = op.at === null ? f.now : Math.min(op.at, f.now);
    op.outcome = err("cancelled", `${op.key} was cancelled by the workflow`);
    op.missing = null;
  }

  // --- waits

  sleep(durationMs) {
    const f = this.#f;
    f.workflowOnly("sleep");
    const ms = Number(durationMs);
    f.calls.push({ kind: "sleep", name: null, input: ms });
    f.now += ms;
  }

  sleepUntil(epochMs) {
    const f = this.#f;
    f.workflowOnly("sleepUntil");
    const t = Number(epochMs);
    f.calls.push({ kind: "sleep_until", name: null, input: t });
    f.now = Math.max(f.now, t);
  }

  awaitEvent(name, timeoutMs) {
    const f = this.#f;
    f.workflowOnly("awaitEvent");
    f.count(`$event:${name}`);
    const timeout = timeoutMs === undefined || timeoutMs === null ? null : Number(timeoutMs);
    f.calls.push({ kind: "event", name, input: timeout });
    const taken = f.takeEvent(name);
    if (taken !== null) return taken[1];
    if (timeout !== null) {
      f.now += timeout;
      throw new ComponentError({ tag: "timed-out", val: BigInt(timeout) });
    }
    throw f.stuck(
      `the workflow would wait for event ${quote(name)} forever: FakeDurable has no payload ` +
        `left for it (give one with new FakeDurable({ events: { ${quote(name)}: [...] } }))`,
    );
  }

  // --- the rest

  nowMs() {
    return BigInt(this.#f.now);
  }

  randomU64() {
    return this.#f.random();
  }

  idempotencyKey() {
    const context = this.#f.context;
    return "fake-run" + (context.length > 0 ? `/${context[context.length - 1]}` : "");
  }

  log(level, message) {
    this.#f.logs.push({ level, message });
  }

  setTag(key, value) {
    const f = this.#f;
    if (f.context.length > 0) throw new ComponentError("set-tag is a workflow call: a step body cannot set tags");
    if (!TAG_KEY.test(key)) {
      throw new ComponentError(`tag key "${key}" must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'`);
    }
    const bytes = new TextEncoder().encode(value).length;
    if (/\p{Cc}/u.test(value)) {
      throw new ComponentError(`tag "${key}": the value contains a control character (a newline, NUL, ...)`);
    }
    if (bytes > TAG_VALUE_BYTES) {
      throw new ComponentError(`tag "${key}": value is ${bytes} bytes, more than ${TAG_VALUE_BYTES}`);
    }
    if (!Object.hasOwn(f.tags, key) && Object.keys(f.tags).length >= TAGS) {
      throw new ComponentError(
        `a workflow sets at most ${TAGS} tag keys on its run; "${key}" would be the ${TAGS + 1}th`,
      );
    }
    f.calls.push({ kind: "tag", name: key, input: value });
    // Defined, not assigned: a key "__proto__" is a tag like any other.
    Object.defineProperty(f.tags, key, { value, enumerable: true, writable: true, configurable: true });
  }

  /** The error that the SDK's fetch throws under the fake. */
  refuseFetch(input) {
    const f = this.#f;
    const key = f.context[f.context.length - 1];
    let url;
    try {
      url = typeof input === "string" ? input : input && input.url ? input.url : String(input);
      url = url.replace(/[?#].*$/, "");
    } catch {
      url = "a request";
    }
    const where =
      key === undefined
        ? "the workflow code, which may not send requests (the host refuses them): send it from a step"
        : `step ${quote(key.split("/").pop().replace(/#\d+$/, ""))}: record that step's answer ` +
          `(new FakeDurable({ steps: { ${quote(key.split("/").pop().replace(/#\d+$/, ""))}: ... } })) ` +
          "and test its body on its own";
    return f.stuck(`fetch(${url}) under FakeDurable: the fake sends no requests; it came from ${where}`);
  }
}

const OPTIONS = new Set(["steps", "children", "events", "nowMs", "seed"]);

/**
 * A fake durable host for tests: see the module's documentation.
 *
 * `steps`: step name -> answer; `children`: child workflow name -> answer (a
 * JSON value, `answers(...)` or `fail(...)`); `events`: event name -> array
 * of payloads; `nowMs`: the virtual clock's start (ms since the Unix epoch);
 * `seed`: of `randomU64()`.
 *
 * `await fake.run(workflow, input)` runs a workflow function. Durable calls
 * made inside `fake.activate(fn)` go to it too (e.g. a step body that calls
 * `idempotencyKey()`, run with `someStep.body`).
 */
export class FakeDurable {
  #host;

  constructor({ steps = {}, children = {}, events = {}, nowMs = 1700000000000, seed = 0, ...rest } = {}) {
    const unknown = Object.keys(rest).filter((k) => !OPTIONS.has(k));
    if (unknown.length > 0) {
      throw new TypeError(`FakeDurable has no option ${unknown.map(quote).join(", ")} (options: ${[...OPTIONS].join(", ")})`);
    }
    this.steps = new Map(Object.entries(steps ?? {}).map(([k, v]) => [k, new Source(`step ${quote(k)}`, v)]));
    this.children = new Map(
      Object.entries(children ?? {}).map(([k, v]) => [k, new Source(`child workflow ${quote(k)}`, v)]),
    );
    this.events = new Map();
    let seq = 0;
    for (const [name, payloads] of Object.entries(events ?? {})) {
      if (!Array.isArray(payloads)) {
        throw new TypeError(`events[${quote(name)}] is an array of payloads, not ${payloads === null ? "null" : typeof payloads}`);
      }
      this.events.set(
        name,
        payloads.map((p) => [seq++, jsonText(p, `a payload of event ${quote(name)}`)]),
      );
    }
    if (typeof nowMs !== "number" || !Number.isSafeInteger(nowMs) || nowMs < 0) {
      throw new TypeError(`nowMs is ms since the Unix epoch (a whole number), not ${String(nowMs)}`);
    }
    if (!(typeof seed === "bigint" || Number.isSafeInteger(seed))) {
      throw new TypeError(`seed is a whole number or a BigInt, not ${String(seed)}`);
    }
    /** The virtual clock (ms since the Unix epoch). */
    this.now = nowMs;
    this.rng = BigInt.asUintN(64, BigInt(seed));
    /** The durable calls the workflow made: `{ kind, name, input }`. */
    this.calls = [];
    /** The `log()` lines: `{ level, message }`. */
    this.logs = [];
    /** The tags `setTag` set: key -> last value. */
    this.tags = {};
    this.ops = [];
    this.counters = new Map();
    this.context = []; // the keys of the step bodies running, innermost last
    this.fatal = null;
    this.#host = new Host(this);
    for (const k of ["steps", "children", "events", "rng", "ops", "counters", "context", "fatal"]) {
      Object.defineProperty(this, k, { enumerable: false, writable: true, value: this[k] });
    }
  }

  /** @internal The durable interface this fake answers (for host-node.js). */
  get host() {
    return this.#host;
  }

  /** The virtual clock (ms since the Unix epoch). */
  nowMs() {
    return this.now;
  }

  /**
   * Runs `workflow` (the function given to, and returned by, `workflow()`)
   * on `input` (after a JSON round trip, as the host gives it) and resolves
   * to its result (after a JSON round trip; `undefined` is null), or rejects
   * with what it throws. The workflow may be async; durable calls stay
   * synchronous.
   */
  async run(workflow, input = null) {
    if (typeof workflow === "function" && typeof workflow.stepName === "string" && "body" in workflow) {
      throw new TypeError(`${quote(workflow.stepName)} is a step: give FakeDurable.run the workflow function`);
    }
    if (typeof workflow !== "function") {
      throw new TypeError(`FakeDurable.run takes the workflow function, not ${workflow === null ? "null" : typeof workflow}`);
    }
    const declared = __testing.stepNames();
    const unknown = [...this.steps.keys()].filter((n) => !declared.includes(n)).sort();
    if (unknown.length > 0) {
      throw new FakeDurableError(
        `FakeDurable has answers for ${unknown.map(quote).join(", ")}, which no step() declares ` +
          `(declared: ${[...declared].sort().map(quote).join(", ") || "none"})`,
      );
    }
    const value = JSON.parse(jsonText(input, "the workflow's input"));
    this.fatal = null;
    active.push(this);
    let result;
    try {
      try {
        result = workflow(value);
        if (isThenable(result)) result = await result;
      } catch (e) {
        if (this.fatal !== null) throw this.fatal;
        throw e;
      }
      if (this.fatal !== null) throw this.fatal; // the workflow caught it
    } finally {
      this.#leave();
    }
    let text;
    try {
      text = jsonText(result, "the result");
    } catch (e) {
      throw new TypeError(`cannot encode the result: ${e.message}`);
    }
    return JSON.parse(text);
  }

  /**
   * Calls `fn()` with this fake active, so that the durable calls it makes
   * (e.g. `idempotencyKey()` in a step body called with `someStep.body`) go
   * to this fake; returns what `fn` returns (a promise: the fake stays
   * active until it settles).
   */
  activate(fn) {
    active.push(this);
    let result;
    try {
      result = fn();
    } catch (e) {
      this.#leave();
      throw e;
    }
    if (isThenable(result)) return Promise.resolve(result).finally(() => this.#leave());
    this.#leave();
    return result;
  }

  #leave() {
    const i = active.lastIndexOf(this);
    if (i >= 0) active.splice(i, 1);
  }

  // --- for Host

  /** A FakeDurableError, kept so that `run` throws it even if caught. */
  stuck(message) {
    const error = new FakeDurableError(message);
    if (this.fatal === null) this.fatal = error;
    return error;
  }

  workflowOnly(what) {
    if (this.context.length > 0) {
      throw new Error(
        `${what}() is workflow code only: the host fails a step that calls it (step ${this.context[this.context.length - 1]})`,
      );
    }
  }

  count(key) {
    const n = (this.counters.get(key) ?? 0) + 1;
    this.counters.set(key, n);
    return n;
  }

  stepKey(name) {
    const parent = this.context.length > 0 ? this.context[this.context.length - 1] : "";
    const n = this.count(`step\u0000${parent}\u0000${name}`);
    return parent ? `${parent}/${name}#${n}` : `${name}#${n}`;
  }

  /** A step's JSON text, or a Fail. */
  runStep(name, input, key = this.stepKey(name)) {
    this.calls.push({ kind: "step", name, input: JSON.parse(input) });
    const source = this.steps.get(name);
    if (source !== undefined) return source.next(this);
    this.context.push(key);
    let result;
    try {
      try {
        result = sdkSteps.runStep(name, input);
      } catch (failure) {
        result = new Fail(failure && typeof failure.message === "string" ? failure.message : String(failure));
      }
      if (isThenable(result)) {
        Promise.resolve(result).catch(() => {}); // nobody waits for it
        throw this.stuck(
          `step ${quote(name)} has an async body (it returned a promise), which the fake cannot wait for ` +
            `inside a durable call (durable calls are synchronous): record its answer ` +
            `(new FakeDurable({ steps: { ${quote(name)}: ... } })) and test the body on its own ` +
            "(await someStep.body(input))",
        );
      }
    } finally {
      this.context.pop();
    }
    if (this.fatal !== null) throw this.fatal;
    return result;
  }

  handle(op) {
    this.ops.push(op);
    return this.ops.length - 1;
  }

  op(handle) {
    if (!Number.isInteger(handle) || handle < 0 || handle >= this.ops.length) throw this.stuck(`no handle ${String(handle)}`);
    return this.ops[handle];
  }

  outcome(op) {
    if (op.missing !== null) throw this.stuck(op.missing);
    op.observed = true;
    return op.outcome;
  }

  describe(ops) {
    return ops.map((op) => op.describe() + (op.kind === "event" ? " (no payload left, no timeout)" : "")).join(", ");
  }

  takeEvent(name) {
    const queue = this.events.get(name);
    return queue && queue.length > 0 ? queue.shift() : null;
  }

  putBack(name, taken) {
    if (!this.events.has(name)) this.events.set(name, []);
    const queue = this.events.get(name);
    let i = 0;
    while (i < queue.length && queue[i][0] < taken[0]) i++;
    queue.splice(i, 0, taken);
  }

  random() {
    // SplitMix64
    this.rng = (this.rng + 0x9e3779b97f4a7c15n) & U64;
    let z = this.rng;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & U64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & U64;
    return z ^ (z >> 31n);
  }
}
