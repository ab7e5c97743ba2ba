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
// `nowMs()` and `randomU64()`. Step bodies run at least once: give external
// services `idempotencyKey()`.
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
