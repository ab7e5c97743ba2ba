// The JavaScript SDK's edge cases, for tests/e2e/polyglot.rs. `{"mode": ...}`
// picks a scenario, as in tests/guests/testbed.
//
// Every step body that runs prints `EXEC <idempotency-key>` on stderr, which
// is how the tests see, from outside the engine, which bodies ran.

import { Permanent, checkStatus, fetch, idempotencyKey, retry, setTag, step, workflow } from "durable-sdk";

export { run, steps } from "durable-sdk";

const mark = () => console.error(`EXEC ${idempotencyKey()}`);
const tick = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const asyncEcho = step("async_echo", async (v) => {
  mark();
  await tick(5);
  await null;
  return { awaited: v };
});

const nothing = step("nothing", () => {
  mark();
});

const asyncPermanent = step("async_permanent", async (v) => {
  mark();
  await tick(1);
  throw new Permanent(`rejected for good: ${JSON.stringify(v)}`);
});

const asyncRetryable = step("async_retryable", async (v) => {
  mark();
  await null;
  throw new Error(`rejected on purpose: ${JSON.stringify(v)}`);
}).withOptions({ retry: retry(2, 1) });

const bigint = step("bigint", () => {
  mark();
  return { n: 10n };
});

const asyncBigint = step("async_bigint", async () => {
  mark();
  await null;
  return { n: 10n };
});

const cyclic = step("cyclic", () => {
  mark();
  const node = { name: "loop" };
  node.self = node;
  return node;
});

// POSTs v.body as JSON to v.url: the default Idempotency-Key, redirects
// followed, a 4xx permanent and any other non-2xx retried.
const fetchStep = step("fetch", async (v) => {
  mark();
  const r = checkStatus(
    await fetch(v.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(v.body) }),
  );
  return { status: r.status, body: await r.text() };
});

const echoStep = step("echo", (v) => {
  mark();
  return { echo: v };
});

const modes = {
  // An async workflow awaiting an async step.
  async: async (v) => {
    const echoed = await asyncEcho(v);
    return { ...echoed, nothing: nothing(v) };
  },
  async_permanent: (v) => asyncPermanent(v),
  async_retryable: (v) => asyncRetryable(v),
  bigint: (v) => bigint(v),
  async_bigint: (v) => asyncBigint(v),
  cyclic: (v) => cyclic(v),
  fetch: (v) => fetchStep(v),
  // Workflow code may not send requests: the host refuses and fails the run.
  // Sets each tag of v (an object of strings); the host's refusals are
  // returned.
  tag: (v) => {
    const refused = [];
    for (const [key, value] of Object.entries(v)) {
      try {
        setTag(key, value);
      } catch (e) {
        refused.push(e.message);
      }
    }
    return { refused, after: echoStep("tagged") };
  },
  fetch_in_workflow: async (v) => {
    const r = await fetch(v.url);
    return { status: r.status };
  },
};

workflow((input) => modes[input.mode](input.value ?? null));
