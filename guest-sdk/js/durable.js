// Write durable workflows in JavaScript.
//
// Steps are functions from one JSON value to another, declared with
// `step(name, fn)`; the workflow is declared with `workflow(fn)`. Calling a
// step runs it durably: the host answers from the run's history when the
// step has already committed, and otherwise runs it in a fresh instance and
// commits its result before returning it. The app module re-exports `run`
// and `steps` from here (the component's exports); `durable build` bundles
// and builds it.
//
//   import { step, workflow, parallel, Permanent } from "durable-sdk";
//   export { run, steps } from "durable-sdk";
//   export const createRecord = step("create_record", (hire) => ({ id: hire.email }));
//   export const onboarding = workflow((hire) => ({ record: createRecord(hire) }));
//
// `createRecord.body` is the function given to `step()` (call it in a unit
// test); `workflow(fn)` returns `fn`, which `FakeDurable.run` of
// durable-sdk/testing runs in plain Node against recorded answers.
//
// Rules for the workflow function: make the same durable calls in the same
// order for the same input and step results; read time and randomness with
// `nowMs()` and `randomU64()`; wait with `sleep()` and `awaitEvent()`
// (durable: the run holds nothing while it waits). Step bodies run at least
// once: give external services `idempotencyKey()`.
//
// Timers and events, workflow code only (from a step body they fail the
// step, permanently):
//
//   sleep(1500);                        // ms: recorded, not slept again on replay
//   sleepUntil(nowMs() + 60000);        // ms since the Unix epoch
//   try {
//     const decision = awaitEvent("approval", { timeoutMs: 3600000 }); // no timeoutMs: none
//   } catch (e) {
//     if (!(e instanceof WaitTimedOut)) throw e; // a WaitError; e.timeoutMs, replayed as the same
//   }
//
// `awaitEvent` returns the parsed JSON payload of the next event of that name
// (`durable event RUN NAME --data JSON`), consumed first in, first out.
//
// Tags, workflow code only: `setTag("customer", String(order.customer))` lets
// `durable list --tag customer=42` find the run (an invalid tag, a 17th key
// or a call from a step body throws an Error).
//
// HTTP from steps, steps only (the host must allow the service with
// `--allow-http`): `fetch` is the global fetch plus an `Idempotency-Key:
// <idempotencyKey()>` header; `checkStatus` makes a 4xx (but 408 and 429) a
// Permanent failure and any other status that is not 2xx a retryable error:
//
//   const charge = step("charge", async (order) => {
//     const r = checkStatus(await fetch("https://payments.example.com/charges", {
//       method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(order),
//     }));
//     return { charge: (await r.json()).id };
//   });
//
// Step bodies and the workflow function may be `async` (return a Promise):
// the runtime runs the event loop until it settles, then its value is
// committed, and a rejection is the step's failure like a throw. Durable calls
// themselves are synchronous (no `await` needed). A step's result that is not
// JSON (a BigInt, a cyclic object, a function) is a permanent failure, as is
// an input that does not parse: another attempt would not change it. A step
// or workflow that returns `undefined` gives `null`.

// The host's interface: durable:workflow/durable@0.2.0 inside a component
// (./host.js), the active fake of durable-sdk/testing in Node
// (./host-node.js); package.json's "imports" picks one by condition.
import { checkFetch, durable } from "#host";

const registry = new Map();
let entry = null;

/** A step gave no value after its last attempt: kind is failed, trapped or timed-out. */
export class StepError extends Error {
  constructor(kind, message) {
    super(`step ${kind}: ${message}`);
    this.kind = kind;
    this.detail = message;
  }
}

/** `awaitEvent` returned no event (the base of WaitTimedOut), or its payload did not parse. */
export class WaitError extends Error {}

/** No event came within the timeout; `timeoutMs` is the timeout. */
export class WaitTimedOut extends WaitError {
  constructor(timeoutMs) {
    super(`no event came within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/** Throw from a step body for an error that no retry can fix. */
export class Permanent extends Error {}

// JSON text of `value`; `undefined` (a function that returns nothing) is
// `null`. Throws a TypeError for what JSON cannot hold (BigInt, cycles,
// functions, symbols).
function toJson(value) {
  const json = JSON.stringify(value === undefined ? null : value);
  if (json === undefined) throw new TypeError(`a ${typeof value} is not JSON`);
  return json;
}

const isThenable = (v) =>
  v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";

const describe = (e) => (e && e.message ? (e.name ? `${e.name}: ${e.message}` : e.message) : String(e));

// An error of the fake of durable-sdk/testing (an answer missing or used
// up...): not the workflow's to handle as a step's failure.
const FAKE_ERROR = Symbol.for("durable-sdk.fake-error");

function stepError(e) {
  if (e && e[FAKE_ERROR] === true) return e;
  // A failed `step` call throws a ComponentError whose payload is the WIT
  // `step-error` variant ({ tag, val }).
  const v = e && e.payload !== undefined ? e.payload : e;
  if (v && typeof v === "object" && "tag" in v) return new StepError(v.tag, String(v.val));
  return new StepError("failed", String(e));
}

/** Declares step `name`; call the returned function to run it durably. */
export function step(name, fn, options) {
  registry.set(name, fn);
  const call = (value) => {
    const input = toJson(value);
    try {
      return JSON.parse(durable.step(name, input, options));
    } catch (e) {
      throw stepError(e);
    }
  };
  call.using = (value) => ({ name, input: toJson(value), options });
  call.start = (value) => new Handle(durable.startStep(name, toJson(value), options));
  call.withOptions = ({ retry, timeoutMs } = {}) =>
    step(name, fn, { retry: retry ?? undefined, timeoutMs: timeoutMs === undefined ? undefined : BigInt(timeoutMs) });
  call.stepName = name;
  /** The function given to `step()`, to call directly in a test. */
  call.body = fn;
  return call;
}

/** A retry policy for `withOptions`. */
export function retry(attempts, initialBackoffMs = 100, backoffFactor = 2, maxBackoffMs = 10000) {
  return {
    maxAttempts: attempts,
    initialBackoffMs: BigInt(initialBackoffMs),
    backoffFactor,
    maxBackoffMs: BigInt(maxBackoffMs),
  };
}

/** Declares the workflow's entry point; returns `fn` (to export, and to
 * run in a test with durable-sdk/testing's FakeDurable). */
export function workflow(fn) {
  entry = fn;
  return fn;
}

/**
 * Runs prepared calls (`someStep.using(value)`) concurrently and returns
 * their values in call order; a failed call throws its StepError once all
 * have finished (or is returned in its place with `{ returnErrors: true }`).
 */
export function parallel(calls, { returnErrors = false } = {}) {
  const results = durable.parallel(calls).map((r) =>
    r.tag === "ok" ? JSON.parse(r.val) : stepError({ payload: r.val }),
  );
  if (!returnErrors) {
    const failed = results.find((r) => r instanceof StepError);
    if (failed) throw failed;
  }
  return results;
}

/** A handle gave no value: `kind` is "failed", "trapped", "timed-out" or
 * "cancelled"; `index` its place in the list `any` was given. */
export class HandleError extends Error {
  constructor(kind, message, index) {
    super(`${kind}: ${message}`);
    this.kind = kind;
    this.detail = message;
    this.index = index;
  }
}

/** A durable operation started and not awaited yet: a step, a child
 * workflow, a timer or an event wait. */
export class Handle {
  constructor(id) {
    this.id = id;
  }
  /** Its value, waiting for it if need be; throws a HandleError if none. */
  result() {
    return handleValue(durable.awaitAll([this.id])[0]);
  }
  /** Cancels it unless an await returned its value already: a step is
   * stopped, a child run cancelled durably (with its children), an event
   * wait consumes nothing. */
  cancel() {
    durable.cancel(this.id);
  }
}

function handleValue(r, index) {
  if (r.tag === "ok") return JSON.parse(r.val);
  const e = r.val;
  throw new HandleError(e.tag, String(e.val), index);
}

function ids(handles) {
  return handles.map((h) => {
    if (!(h instanceof Handle)) {
      throw new TypeError("expected a Handle (from .start(), startWorkflow(), timer() or event())");
    }
    return h.id;
  });
}

/** Waits until one of `handles` has completed: `[index, value]`. The first
 * in list order wins when several have; the winner is recorded, so a replay
 * gets the same. Throws a HandleError (with `index`) if the winner gave no
 * value. */
export function any(handles) {
  if (handles.length === 0) throw new RangeError("any() of no handles would wait for ever");
  const [index, r] = durable.awaitAny(ids(handles));
  return [index, handleValue(r, index)];
}

/** Waits until all `handles` have completed; their values in order. The
 * first that gave none throws, or with `returnErrors` is returned in place. */
export function all(handles, { returnErrors = false } = {}) {
  return durable.awaitAll(ids(handles)).map((r) => {
    try {
      return handleValue(r);
    } catch (e) {
      if (!returnErrors) throw e;
      return e;
    }
  });
}

/** Calls `start` (returning a Handle) on every value with at most `limit`
 * pending at once, starting the next as one completes; values in input
 * order. */
export function map(start, values, { limit = 20, returnErrors = false } = {}) {
  const results = new Array(values.length);
  const pending = [];
  let next = 0;
  const max = Math.max(1, Math.floor(limit));
  while (next < values.length || pending.length > 0) {
    while (next < values.length && pending.length < max) {
      pending.push([next, start(values[next])]);
      next++;
    }
    const [index] = durable.awaitAny(pending.map(([, h]) => h.id));
    const [i, h] = pending.splice(index, 1)[0];
    try {
      results[i] = h.result();
    } catch (e) {
      if (!returnErrors) throw e;
      results[i] = e;
    }
  }
  return results;
}

/** Starts child workflow `name` with `value`: a run of its own (id
 * `<parent>:<name>-<n>` unless `id` is given), committed before this
 * returns. Under `durable serve` the name is a registered workflow's. */
export function startWorkflow(name, value, { id, timeoutMs } = {}) {
  const timeout = timeoutMs === undefined || timeoutMs === null ? undefined : u64(timeoutMs, "the child's timeoutMs");
  const options = id === undefined && timeout === undefined ? undefined : { id, timeoutMs: timeout };
  return new Handle(durable.startChild(name, toJson(value), options));
}

/** Starts child workflow `name` and waits for its output. */
export const callWorkflow = (name, value, options) => startWorkflow(name, value, options).result();

/** A durable timer of `ms`: its value is when it fires (ms since the epoch). */
export const timer = (ms) => new Handle(durable.startTimer(u64(ms, "timer's duration")));

/** A wait for the next event named `name`, as a handle; the timeout counts
 * from now. */
export function event(name, { timeoutMs } = {}) {
  const timeout = timeoutMs === undefined || timeoutMs === null ? undefined : u64(timeoutMs, "event's timeoutMs");
  return new Handle(durable.startEvent(name, timeout));
}

export const nowMs = () => Number(durable.nowMs());
export const randomU64 = () => durable.randomU64();
export const idempotencyKey = () => durable.idempotencyKey();

// Whole milliseconds as the u64 (a BigInt) the host takes.
function u64(ms, what) {
  if (typeof ms === "bigint") {
    if (ms < 0n) throw new RangeError(`${what} must not be negative, not ${ms}`);
    return ms;
  }
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
    const shown = typeof ms === "string" ? JSON.stringify(ms) : String(ms);
    throw new RangeError(`${what} must be a finite, non-negative number of ms, not ${shown}`);
  }
  return BigInt(Math.round(ms));
}

/**
 * Waits `ms` milliseconds, durably: the wake-up time is recorded before the
 * run waits, so a run resumed after it does not sleep again and one resumed
 * before it waits only the rest. The run holds nothing meanwhile. Workflow
 * code only.
 */
export const sleep = (ms) => durable.sleep(u64(ms, "sleep's duration"));

/** Like `sleep`, until `epochMs` (ms since the Unix epoch); returns at once if that time has passed. */
export const sleepUntil = (epochMs) =>
  durable.sleepUntil(u64(epochMs < 0 ? 0 : epochMs, "sleepUntil's time"));

/**
 * Waits for the next event named `name` sent to this run (`durable event RUN
 * NAME --data JSON`) and returns its parsed JSON payload. With `timeoutMs`,
 * throws a WaitTimedOut (a WaitError) if none came in time, counted from the
 * first call across crashes and replayed as the same; without it, waits for
 * ever. Events are consumed first in, first out per name, whether they came
 * before or after the call. Workflow code only.
 */
export function awaitEvent(name, { timeoutMs } = {}) {
  const timeout = timeoutMs === undefined || timeoutMs === null ? undefined : u64(timeoutMs, "awaitEvent's timeoutMs");
  let payload;
  try {
    payload = durable.awaitEvent(name, timeout);
  } catch (e) {
    // A timeout throws a ComponentError whose payload is the WIT
    // `wait-error` variant ({ tag: "timed-out", val: <BigInt ms> }).
    const v = e && e.payload !== undefined ? e.payload : undefined;
    if (v && typeof v === "object" && v.tag === "timed-out") throw new WaitTimedOut(Number(v.val));
    throw e;
  }
  try {
    return JSON.parse(payload);
  } catch (e) {
    throw new WaitError(`the event's payload did not decode: ${describe(e)}`);
  }
}

export const log = (message, level = "info") => durable.log(level, message);

/**
 * Sets this run's tag `key` to `value` (replacing an earlier value of that
 * key), so that the run can be found by it: `durable list --tag KEY=VALUE`,
 * `GET /v1/runs?tag=KEY:VALUE`. Recorded and replayed like any durable call.
 * A key is 1 to 64 characters of `a-z A-Z 0-9 _ . -`, a value at most 256
 * bytes (UTF-8), and a workflow sets at most 16 keys on its run (setting a
 * key again does not count). Workflow code only: an invalid tag, a 17th key
 * or a call from a step body throws an Error with the host's message, and
 * sets nothing.
 */
export function setTag(key, value) {
  if (typeof key !== "string" || typeof value !== "string") {
    throw new TypeError(`setTag takes a key and a value as strings, not ${typeof key} and ${typeof value}`);
  }
  try {
    durable.setTag(key, value);
  } catch (e) {
    if (e && e[FAKE_ERROR] === true) throw e;
    // The err case throws a ComponentError whose payload is the host's
    // message (a string).
    const message = e && e.payload !== undefined ? e.payload : e && e.message ? e.message : e;
    throw new Error(String(message));
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
// Request headers that describe the body: dropped with it.
const BODY_HEADERS = ["content-type", "content-length", "content-encoding", "content-language", "content-location"];
// The URL as shown in messages: no query (it may hold secrets), no user info.
const shownUrl = (url) => {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return String(url).replace(/[?#].*$/, "");
  }
};

/**
 * The global `fetch`, plus `Idempotency-Key: <idempotencyKey()>` (the same on
 * every attempt of the step, across retries and crashes), so that a service
 * which honours the header does the work once though the step may run again.
 * `init.idempotencyKey`: `false` sends no key, a string sends that one; a key
 * already in the request's headers is kept.
 *
 * Redirects (301, 302, 303, 307, 308) are followed here, at most 5 in a row
 * (the runtime's own fetch does not follow them), unless `init.redirect` is
 * "manual" (the 3xx response is returned) or "error" (a TypeError): 303, and
 * 301 or 302 after anything but GET or HEAD, go on as a GET without a body;
 * 307 and 308 send the same method and body again. Each hop is a request of
 * its own, which the host checks against its `--allow-http` patterns, so a
 * redirect to a host that is not allowed is refused. The body is read into
 * memory first, so that it can be sent again.
 *
 * Steps only, and only to hosts the host's `--allow-http` patterns allow:
 * anything else is refused and the host fails the step for good, or, from
 * workflow code (which runs again on every replay), the run. No response
 * (connection refused, a timeout...) rejects with a TypeError naming the
 * request: retryable, as any error but Permanent. A response is returned
 * whatever its status: pass it to `checkStatus`.
 */
export function fetch(input, init) {
  // Under the fake of durable-sdk/testing: refused (no request is sent).
  checkFetch(input);
  return fetchFollowing(input, init);
}

async function fetchFollowing(input, init) {
  const { idempotencyKey: key = true, redirect = "follow", ...options } = init ?? {};
  const fromRequest = typeof Request !== "undefined" && input instanceof Request;
  let url = fromRequest ? input.url : String(input);
  let method = String(options.method ?? (fromRequest ? input.method : "GET")).toUpperCase();
  let headers = new Headers(options.headers ?? (fromRequest ? input.headers : undefined));
  let body = "body" in options ? options.body : fromRequest && input.body !== null ? await input.arrayBuffer() : undefined;
  if (body !== undefined && body !== null) {
    // Bytes, so that a 307 or 308 can send them again; with the Content-Type
    // that fetch gives this kind of body (a string's text/plain...).
    const buffered = new Response(body);
    const type = buffered.headers.get("content-type");
    if (type && !headers.has("content-type")) headers.set("content-type", type);
    body = new Uint8Array(await buffered.arrayBuffer());
  }
  if (key !== false && key !== null && !headers.has("idempotency-key")) {
    headers.set("idempotency-key", key === true ? durable.idempotencyKey() : String(key));
  }
  for (let hops = 0; ; hops++) {
    let response;
    try {
      response = await globalThis.fetch(url, { ...options, method, headers, body, redirect: "manual" });
    } catch (e) {
      throw new TypeError(`${method} ${shownUrl(url)} failed: ${e && e.message ? e.message : e}`, { cause: e });
    }
    const location = response.headers.get("location");
    if (redirect === "manual" || !REDIRECTS.has(response.status) || !location) {
      if (hops > 0) Object.defineProperty(response, "redirected", { value: true });
      return response;
    }
    await response.arrayBuffer().catch(() => {});
    if (redirect === "error") {
      throw new TypeError(`${method} ${shownUrl(url)} was redirected (${response.status}), and redirect is "error"`);
    }
    if (hops === MAX_REDIRECTS) {
      throw new TypeError(`${method} ${shownUrl(url)} failed: more than ${MAX_REDIRECTS} redirects in a row`);
    }
    const next = new URL(location, url);
    if (response.status === 303 || ((response.status === 301 || response.status === 302) && method !== "GET" && method !== "HEAD")) {
      if (method !== "HEAD") method = "GET";
      body = undefined;
      headers = new Headers(headers);
      for (const name of BODY_HEADERS) headers.delete(name);
    }
    if (next.origin !== new URL(url).origin) {
      // Credentials are for the origin that was asked.
      headers = new Headers(headers);
      headers.delete("authorization");
      headers.delete("cookie");
    }
    url = next.href;
  }
}

/**
 * A response's status that is not 2xx, as an error: `status` and `response`
 * are the response's. `checkStatus` throws it for what a later attempt may
 * change (5xx, 408, 429, an unfollowed redirect): retryable.
 */
export class HttpError extends Error {
  constructor(message, response) {
    super(message);
    this.name = "HttpError";
    this.status = response.status;
    this.response = response;
  }
}

/**
 * Returns `response` if its status is 2xx. Otherwise throws a Permanent for a
 * 4xx other than 408 and 429 (no retry fixes the request: the step fails at
 * once), and an HttpError (retryable) for any other status. Both have
 * `status` and `response`. The body is left unread.
 */
export function checkStatus(response) {
  if (response.status >= 200 && response.status < 300) return response;
  const url = response.url ? shownUrl(response.url) : "";
  const message = `${url || "the request"} returned ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
    const e = new Permanent(message);
    e.status = response.status;
    e.response = response;
    throw e;
  }
  throw new HttpError(message, response);
}

/** The component's `run` export. */
export function run(input) {
  if (!entry) throw "no function is declared with workflow()";
  let value;
  try {
    value = JSON.parse(input);
  } catch (e) {
    throw `cannot decode the input: ${describe(e)}`;
  }
  const failed = (e) => String(e && e.message ? e.message : e);
  let result;
  try {
    result = entry(value);
  } catch (e) {
    throw failed(e);
  }
  const encode = (v) => {
    try {
      return toJson(v);
    } catch (e) {
      throw `cannot encode the result: ${describe(e)}`;
    }
  };
  // An async workflow: returning the promise makes the runtime run the
  // event loop until it settles (a rejection fails the run, as a throw).
  if (isThenable(result)) {
    return Promise.resolve(result).then(encode, (e) => {
      throw failed(e);
    });
  }
  return encode(result);
}

// A step body's error: retryable unless it is a Permanent.
const failure = (e) => ({ message: describe(e), retryable: !(e instanceof Permanent) });
const permanent = (message) => ({ message, retryable: false });

/** The component's `steps` export. */
export const steps = {
  runStep(name, input) {
    const fn = registry.get(name);
    if (!fn) {
      throw permanent(`no step named ${JSON.stringify(name)} (declared: ${[...registry.keys()].join(", ")})`);
    }
    let value;
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw permanent(`cannot decode the input: ${describe(e)}`);
    }
    let result;
    try {
      result = fn(value);
    } catch (e) {
      throw failure(e);
    }
    // No retry makes a value JSON: the same as in the Rust SDK.
    const encode = (v) => {
      try {
        return toJson(v);
      } catch (e) {
        throw permanent(`cannot encode the result: ${describe(e)}`);
      }
    };
    // An async step: the runtime runs the event loop until the promise
    // settles; its value is committed, its rejection is the step's failure.
    if (isThenable(result)) {
      return Promise.resolve(result).then(encode, (e) => {
        throw failure(e);
      });
    }
    return encode(result);
  },
};

/** For durable-sdk/testing only: the names of the declared steps. */
export const __testing = Object.freeze({ stepNames: () => [...registry.keys()] });
