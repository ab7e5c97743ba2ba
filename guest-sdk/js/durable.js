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
    try {
      return JSON.parse(durable.step(name, JSON.stringify(value), options));
    } catch (e) {
      throw stepError(e);
    }
  };
  call.using = (value) => ({ name, input: JSON.stringify(value), options });
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
  try {
    return JSON.stringify(entry(JSON.parse(input)));
  } catch (e) {
    throw String(e && e.message ? e.message : e);
  }
}

/** The component's `steps` export. */
export const steps = {
  runStep(name, input) {
    const fn = registry.get(name);
    if (!fn) {
      throw { message: `no step named ${JSON.stringify(name)} (declared: ${[...registry.keys()].join(", ")})`, retryable: false };
    }
    try {
      return JSON.stringify(fn(JSON.parse(input)));
    } catch (e) {
      const message = e && e.message ? `${e.name}: ${e.message}` : String(e);
      throw { message, retryable: !(e instanceof Permanent) };
    }
  },
};
