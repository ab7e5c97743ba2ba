// Onboarding a new hire, in JavaScript: the same workflow as guest-examples/onboarding.
//
// Offline by default. With `"hr_url": "http://127.0.0.1:PORT"` in the input
// (and `--allow-http http://127.0.0.1:PORT` given to the host), each step also
// POSTs its input as JSON to the HR service: create_record to
// `{hr_url}/employees`, provision_laptop to `{hr_url}/laptops`, grant_access
// to `{hr_url}/access`, with the step's Idempotency-Key. Any 2xx means done; a
// 4xx fails the step for good; a 5xx or a connection failure is retried.

import { Permanent, checkStatus, fetch, parallel, step, workflow } from "durable-sdk";

// The component's exports: the host calls `run` for the workflow and `steps`
// for each step body.
export { run, steps } from "durable-sdk";

const say = (line) => console.error(line);
const now = () => Date.now();

// Busy-wait: the JS guest has no blocking sleep, and the work is simulated.
function work(ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // waiting on the vendor
  }
}

// FNV-1a, as the Rust example: every run of the same hire gets the same id.
function employeeId(email) {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(email)) {
    h = ((h ^ BigInt(b)) * 0x100000001b3n) % (1n << 64n);
  }
  return `EMP-${String(h % 1000000n).padStart(6, "0")}`;
}

// POSTs the step's input to the HR service, when the input names one.
async function tellHr(value, path) {
  if (!value.hr_url) return;
  const response = await fetch(`${value.hr_url.replace(/\/+$/, "")}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(value),
  });
  checkStatus(response);
  await response.arrayBuffer(); // not needed, but read to its end
}

export const createRecord = step("create_record", async (hire) => {
  if (!hire.email.includes("@")) throw new Permanent(`${JSON.stringify(hire.email)} is not an e-mail address`);
  await tellHr(hire, "employees");
  const record = {
    employee_id: employeeId(hire.email),
    name: hire.name,
    email: hire.email,
    team: hire.team ?? "engineering",
  };
  if (hire.hr_url) record.hr_url = hire.hr_url; // for the later steps; offline, the record stays as it was
  say(`created ${record.employee_id} for ${record.name} at ${now()}`);
  return record;
});

export const provisionLaptop = step("provision_laptop", async (record) => {
  const start = now();
  await tellHr(record, "laptops");
  work(300);
  const laptop = {
    asset_tag: `LT-${record.employee_id.slice(4)}`,
    model: record.team === "design" ? "MacBook Pro 16" : "ThinkPad X1",
  };
  say(`assigned laptop ${laptop.asset_tag} to ${record.employee_id} from ${start} to ${now()}`);
  return laptop;
});

export const grantAccess = step("grant_access", async (record) => {
  const start = now();
  await tellHr(record, "access");
  work(300);
  const groups = ["all-staff", record.team, `${record.team}-oncall`];
  say(`granted ${groups.length} groups to ${record.employee_id} from ${start} to ${now()}`);
  return { groups };
});

export const onboarding = workflow((hire) => {
  const record = createRecord(hire);
  const [laptop, access] = parallel([provisionLaptop.using(record), grantAccess.using(record)]);
  return {
    employee_id: record.employee_id,
    name: record.name,
    laptop: `${laptop.model} (${laptop.asset_tag})`,
    groups: access.groups,
    status: "onboarded",
  };
});
