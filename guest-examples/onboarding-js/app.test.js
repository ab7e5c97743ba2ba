// Tests of app.js, in plain Node: `node --test` (needs the durable-sdk package).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Permanent, StepError } from "durable-sdk";
import { FakeDurable, fail } from "durable-sdk/testing";

import { createRecord, onboarding } from "./app.js";

const hire = { name: "Ada", email: "ada@example.com" };
const record = { employee_id: "EMP-123456", name: "Ada", email: "ada@example.com", team: "engineering" };

test("create_record's body", async () => {
  // A step's own function, called directly (it is async: await it). Offline:
  // no hr_url, so it sends no request.
  const made = await createRecord.body(hire);
  assert.match(made.employee_id, /^EMP-\d{6}$/);
  assert.deepEqual(made, { ...record, employee_id: made.employee_id });
  assert.deepEqual(await createRecord.body(hire), made, "the same hire, the same id");
  await assert.rejects(createRecord.body({ name: "Bob", email: "nope" }), Permanent);
});

test("the workflow, with recorded answers", async () => {
  // The steps are async (they may call the HR service), so the fake cannot
  // run their bodies inside a durable call: their answers are recorded.
  const fake = new FakeDurable({
    steps: {
      create_record: record,
      provision_laptop: { asset_tag: "LT-123456", model: "ThinkPad X1" },
      grant_access: { groups: ["all-staff", "engineering", "engineering-oncall"] },
    },
  });
  assert.deepEqual(await fake.run(onboarding, hire), {
    employee_id: "EMP-123456",
    name: "Ada",
    laptop: "ThinkPad X1 (LT-123456)",
    groups: ["all-staff", "engineering", "engineering-oncall"],
    status: "onboarded",
  });
  assert.deepEqual(fake.calls, [
    { kind: "step", name: "create_record", input: hire },
    { kind: "step", name: "provision_laptop", input: record },
    { kind: "step", name: "grant_access", input: record },
  ]);
});

test("a failed step fails the workflow", async () => {
  const fake = new FakeDurable({
    steps: { create_record: record, provision_laptop: { asset_tag: "LT-1", model: "M" }, grant_access: fail("directory down") },
  });
  await assert.rejects(fake.run(onboarding, hire), (e) => e instanceof StepError && e.kind === "failed" && e.detail === "directory down");
});
