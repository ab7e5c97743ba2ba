// Tests of app.js, in plain Node: `node --test` (needs the durable-sdk package).

import assert from "node:assert/strict";
import { test } from "node:test";

import { StepError } from "durable-sdk";
import { FakeDurable, fail } from "durable-sdk/testing";

import { countLetters, greet, hello } from "./app.js";

test("the step bodies", () => {
  // A step's own function, called directly: not durable, no host needed.
  assert.equal(greet.body("Ada"), "Hello, Ada!");
  assert.equal(countLetters.body("Hello, Ada!"), 8);
});

test("the workflow runs the steps", async () => {
  const fake = new FakeDurable(); // no recorded answers: the step bodies run here
  assert.deepEqual(await fake.run(hello, { name: "Ada" }), { greeting: "Hello, Ada!", letters: 8 });
  assert.deepEqual(fake.calls, [
    { kind: "step", name: "greet", input: "Ada" },
    { kind: "step", name: "count_letters", input: "Hello, Ada!" },
  ]);
});

test("the workflow with recorded answers", async () => {
  const fake = new FakeDurable({ steps: { greet: "Hi, Bob!" } });
  assert.deepEqual(await fake.run(hello, { name: "Bob" }), { greeting: "Hi, Bob!", letters: 5 });
});

test("a failed step fails the workflow", async () => {
  const fake = new FakeDurable({ steps: { greet: fail("the greeter is down") } });
  await assert.rejects(fake.run(hello, { name: "Ada" }), (e) => e instanceof StepError && e.kind === "failed");
  assert.deepEqual(fake.calls.map((c) => c.name), ["greet"]);
});
