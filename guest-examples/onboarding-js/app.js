// Onboarding a new hire, in JavaScript: the same workflow as guest-examples/onboarding.

import { Permanent, parallel, step, workflow } from "../../guest-sdk/js/durable.js";

export { run, steps } from "../../guest-sdk/js/durable.js";

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

const createRecord = step("create_record", (hire) => {
  if (!hire.email.includes("@")) throw new Permanent(`${JSON.stringify(hire.email)} is not an e-mail address`);
  const record = {
    employee_id: employeeId(hire.email),
    name: hire.name,
    email: hire.email,
    team: hire.team ?? "engineering",
  };
  say(`created ${record.employee_id} for ${record.name} at ${now()}`);
  return record;
});

const provisionLaptop = step("provision_laptop", (record) => {
  const start = now();
  work(300);
  const laptop = {
    asset_tag: `LT-${record.employee_id.slice(4)}`,
    model: record.team === "design" ? "MacBook Pro 16" : "ThinkPad X1",
  };
  say(`assigned laptop ${laptop.asset_tag} to ${record.employee_id} from ${start} to ${now()}`);
  return laptop;
});

const grantAccess = step("grant_access", (record) => {
  const start = now();
  work(300);
  const groups = ["all-staff", record.team, `${record.team}-oncall`];
  say(`granted ${groups.length} groups to ${record.employee_id} from ${start} to ${now()}`);
  return { groups };
});

workflow((hire) => {
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
