// An expense report that waits for a person, in JavaScript: the same workflow
// as guest-examples/approval.
//
// Input: {"report": "R-1", "amount": 120, "approval_timeout_ms": 60000,
// "pay_delay_ms": 1000}. The workflow submits the report (step `submit`),
// then waits for the event `approval` (`durable event RUN approval --data
// '{"approved": true}'`) for at most `approval_timeout_ms`:
// - approved: a cooling-off `sleep(pay_delay_ms)`, then step `pay`; output
//   {"status": "paid", ...};
// - rejected: step `notify_rejected`; output {"status": "rejected", ...};
// - no answer in time: step `escalate`; output {"status": "escalated", ...}.
//
// While it waits (for the event or the sleep) the run holds nothing: kill the
// process, send the event, `durable resume` it, and it goes on.

import { WaitError, WaitTimedOut, awaitEvent, idempotencyKey, sleep, step, workflow } from "durable-sdk";

export { run, steps } from "durable-sdk";

const say = (line) => console.error(line);

// The input with the Rust example's defaults.
const reportOf = (v) => ({
  report: v.report,
  amount: v.amount,
  approval_timeout_ms: v.approval_timeout_ms ?? 60000,
  pay_delay_ms: v.pay_delay_ms ?? 0,
});

export const submit = step("submit", (r) => {
  say(`submitting ${r.report} for ${r.amount} (key ${idempotencyKey()})`);
  return { ticket: `T-${r.report}` };
});

export const pay = step("pay", (r) => {
  say(`paying ${r.amount} to the employee (key ${idempotencyKey()})`);
  return { paid: r.amount };
});

export const notifyRejected = step("notify_rejected", (r) => {
  say(`telling the employee that ${r.report} was rejected (key ${idempotencyKey()})`);
  return { notified: true };
});

export const escalate = step("escalate", (r) => {
  say(`no answer on ${r.report}: escalating to the finance team (key ${idempotencyKey()})`);
  return { escalated_to: "finance" };
});

export const approval = workflow((value) => {
  const r = reportOf(value);
  const ticket = submit(r);
  let decision;
  try {
    decision = awaitEvent("approval", { timeoutMs: r.approval_timeout_ms });
  } catch (e) {
    if (!(e instanceof WaitTimedOut)) throw e;
    const to = escalate(r);
    return { status: "escalated", report: r.report, ticket, after_ms: e.timeoutMs, escalation: to };
  }
  if (decision === null || typeof decision !== "object" || typeof decision.approved !== "boolean") {
    // As the Rust example's typed decode: the run fails, saying why.
    throw new WaitError(`the event's payload did not decode: expected {"approved": true|false}, got ${JSON.stringify(decision)}`);
  }
  const by = decision.by ?? null;
  if (decision.approved) {
    // A cooling-off period: the run holds nothing while it sleeps.
    sleep(r.pay_delay_ms);
    const paid = pay(r);
    return { status: "paid", report: r.report, ticket, by, payment: paid };
  }
  notifyRejected(r);
  return { status: "rejected", report: r.report, ticket, by };
});
