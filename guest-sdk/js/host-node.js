// Where durable calls go outside a component (plain Node, under `node
// --test`): to the FakeDurable of durable-sdk/testing that is active, else
// they throw an error that says what to do. package.json maps the SDK's
// "#host" here for the "node" condition; inside a component ./host.js
// stands here instead, and durable calls go to the host.

if (typeof globalThis.process?.versions?.node !== "string") {
  // Bundled by mistake with the "node" condition (rolldown --platform node,
  // --format cjs...): fail the build's initialisation instead of a run.
  throw new Error(
    "durable-sdk: this bundle has the Node stand-in of the durable host (durable-sdk/host-node.js), " +
      "picked by the \"node\" export condition; bundle for the browser or neutral platform " +
      "(rolldown's default: no --platform node) so that it imports durable:workflow/durable@0.2.0",
  );
}

/** The fakes that are active, innermost last: durable calls go to the last. */
export const active = [];

export const NO_HOST =
  "durable calls need the durable host or the fake of durable-sdk/testing " +
  "(in a test: new FakeDurable({...}).run(workflow, input); a step's own code: someStep.body(value))";

function current(what) {
  const fake = active[active.length - 1];
  if (!fake) {
    const error = new Error(`${what}: ${NO_HOST}`);
    // The SDK lets it through instead of making it a StepError.
    Object.defineProperty(error, Symbol.for("durable-sdk.fake-error"), { value: true });
    throw error;
  }
  return fake.host;
}

/** The durable:workflow/durable@0.2.0 interface, as componentize-js binds it. */
export const durable = Object.freeze({
  step: (name, input, options) => current("step").step(name, input, options),
  parallel: (calls) => current("parallel").parallel(calls),
  nowMs: () => current("nowMs").nowMs(),
  randomU64: () => current("randomU64").randomU64(),
  idempotencyKey: () => current("idempotencyKey").idempotencyKey(),
  log: (level, message) => current("log").log(level, message),
  setTag: (key, value) => current("setTag").setTag(key, value),
  sleep: (durationMs) => current("sleep").sleep(durationMs),
  sleepUntil: (epochMs) => current("sleepUntil").sleepUntil(epochMs),
  awaitEvent: (name, timeoutMs) => current("awaitEvent").awaitEvent(name, timeoutMs),
  startStep: (name, input, options) => current("startStep").startStep(name, input, options),
  startChild: (workflow, input, options) => current("startWorkflow").startChild(workflow, input, options),
  startTimer: (durationMs) => current("timer").startTimer(durationMs),
  startEvent: (name, timeoutMs) => current("event").startEvent(name, timeoutMs),
  awaitAny: (handles) => current("any").awaitAny(handles),
  awaitAll: (handles) => current("all").awaitAll(handles),
  cancel: (handle) => current("cancel").cancel(handle),
});

/** The SDK's `fetch` under a fake: refused (the fake sends no requests). */
export function checkFetch(input) {
  const fake = active[active.length - 1];
  if (fake) throw fake.host.refuseFetch(input);
}
