// Write durable workflows in JavaScript.
//
// Steps are functions from one JSON value to another, declared with
// `step(name, fn)`; the workflow is declared with `workflow(fn)`. Calling a
// step runs it durably: the host answers from the run's history when the
// step has already committed, and otherwise runs it in a fresh instance and
// commits its result before returning it. The app module re-exports `run`
// and `steps` from here; `scripts/build-guests.sh` bundles and builds it.
//
//   import { step, workflow, parallel, Permanent } from "../../guest-sdk/js/durable.js";
//   const createRecord = step("create_record", (hire) => ({ id: hire.email }));
//   workflow((hire) => { const record = createRecord(hire); return { record }; });
//   export { run, steps } from "../../guest-sdk/js/durable.js";
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
// Step bodies and the workflow function may be `async` (return a Promise):
// the runtime runs the event loop until it settles, then its value is
// committed, and a rejection is the step's failure like a throw. Durable calls
// themselves are synchronous (no `await` needed). A step's result that is not
// JSON (a BigInt, a cyclic object, a function) is a permanent failure, as is
// an input that does not parse: another attempt would not change it. A step
// or workflow that returns `undefined` gives `null`.

import * as durable from "durable:workflow/durable@0.1.0";

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

function stepError(e) {
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
  call.withOptions = ({ retry, timeoutMs } = {}) =>
    step(name, fn, { retry: retry ?? undefined, timeoutMs: timeoutMs === undefined ? undefined : BigInt(timeoutMs) });
  call.stepName = name;
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

/** Declares the workflow's entry point. */
export function workflow(fn) {
  entry = fn;
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
