// Tests of app.js, in plain Node: `node --test` (needs the durable-sdk package).

import assert from "node:assert/strict";
import { test } from "node:test";

import { FakeDurable } from "durable-sdk/testing";

import { approval, submit } from "./app.js";

const report = { report: "R-1", amount: 120, approval_timeout_ms: 60000, pay_delay_ms: 1000 };

test("submit's body", () => {
  // A step's own function, called directly. It calls idempotencyKey(), a
  // durable call: activate a fake so that it has an answer.
  const fake = new FakeDurable();
  assert.deepEqual(fake.activate(() => submit.body(report)), { ticket: "T-R-1" });
});

test("approved: a cooling-off sleep, then paid", async () => {
  const fake = new FakeDurable({
    steps: { pay: { paid: 120 } }, // submit has no recorded answer: its body runs here
    events: { approval: [{ approved: true, by: "ana" }] },
  });
  const start = fake.nowMs();
  assert.deepEqual(await fake.run(approval, report), {
    status: "paid",
    report: "R-1",
    ticket: { ticket: "T-R-1" },
    by: "ana",
    payment: { paid: 120 },
  });
  assert.deepEqual(fake.calls, [
    { kind: "step", name: "submit", input: report },
    { kind: "event", name: "approval", input: 60000 },
    { kind: "sleep", name: null, input: 1000 },
    { kind: "step", name: "pay", input: report },
  ]);
  assert.equal(fake.nowMs(), start + 1000);
});

test("no answer in time: escalated", async () => {
  const fake = new FakeDurable({ steps: { submit: { ticket: "T-R-1" } } }); // no event: the wait times out
  const start = fake.nowMs();
  assert.deepEqual(await fake.run(approval, report), {
    status: "escalated",
    report: "R-1",
    ticket: { ticket: "T-R-1" },
    after_ms: 60000,
    escalation: { escalated_to: "finance" },
  });
  assert.deepEqual(
    fake.calls.map((c) => [c.kind, c.name]),
    [["step", "submit"], ["event", "approval"], ["step", "escalate"]],
  );
  assert.equal(fake.nowMs(), start + 60000);
});
