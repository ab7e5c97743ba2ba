// Hello, durable: the smallest useful workflow.
//
// Two steps and a workflow that calls them. Each step's result is recorded
// before the workflow goes on, so a run that crashes half way resumes where
// it stopped instead of greeting twice.
//
// Build: `durable build .`; run: `durable run . --input '{"name": "Ada"}'`.
// Test: `node --test` (see app.test.js).

import { Permanent, step, workflow } from "durable-sdk";

// The component's exports: the host calls `run` for the workflow and
// `steps` for each step body.
export { run, steps } from "durable-sdk";

export const greet = step("greet", (name) => {
  if (typeof name !== "string" || name.trim() === "") {
    throw new Permanent(`a name is a non-empty string, not ${JSON.stringify(name)}`); // no retry can fix it
  }
  return `Hello, ${name.trim()}!`;
});

// A letter is a character with an upper and a lower case (no \p{L}: the
// component's JavaScript engine has no Unicode property tables).
const isLetter = (c) => c.toLowerCase() !== c.toUpperCase();

export const countLetters = step("count_letters", (text) => [...text].filter(isLetter).length);

export const hello = workflow((person) => {
  const greeting = greet(person.name); // durable: recorded, replayed after a crash
  const letters = countLetters(greeting);
  return { greeting, letters };
});
