// An order, composed of workflows, in JavaScript: the same workflow as
// guest-examples/order.
//
// Input: {"order_id": "O-1", "items": 3, "approval_timeout_ms": 5000}. It
// starts child workflow `payment` (a run of its own: guest-examples/payment,
// `--link payment=payment.wasm` under `durable run`) and step `reserve_stock`
// at once, then races the event `approved` against a timer of
// `approval_timeout_ms`:
// - approved: waits for the payment's receipt and the reservation, then step
//   `ship`; output {"status": "shipped", ...};
// - no approval in time: cancels the payment and releases the stock (step
//   `release_stock`); output {"status": "expired", ...}.

import { HandleError, any, event, idempotencyKey, startWorkflow, step, timer, workflow } from "durable-sdk";

export { run, steps } from "durable-sdk";

const say = (line) => console.error(line);

export const reserveStock = step("reserve_stock", (s) => {
  say(`reserving ${s.items} items for ${s.order_id} (key ${idempotencyKey()})`);
  return { reservation: `RES-${s.order_id}`, items: s.items };
});

export const releaseStock = step("release_stock", (s) => {
  say(`releasing the stock of ${s.order_id} (key ${idempotencyKey()})`);
  return { released: s.items };
});

export const ship = step("ship", (orderId) => {
  say(`shipping ${orderId} (key ${idempotencyKey()})`);
  return `TRACK-${orderId}`;
});

export const order = workflow((o) => {
  const stock = { order_id: o.order_id, items: o.items };
  const payment = startWorkflow("payment", { order_id: o.order_id, amount_cents: o.items * 1250 });
  const reserved = reserveStock.start(stock);
  const approved = event("approved");
  const expiry = timer(o.approval_timeout_ms ?? 5000);
  const [index] = any([approved, expiry]);
  if (index === 1) {
    payment.cancel();
    let released = null;
    try {
      reserved.result();
      released = releaseStock(stock);
    } catch (e) {
      if (!(e instanceof HandleError)) throw e;
    }
    return { status: "expired", order_id: o.order_id, released };
  }
  const by = approved.result();
  const receipt = payment.result();
  const reservation = reserved.result();
  const tracking = ship(o.order_id);
  return { status: "shipped", order_id: o.order_id, approved_by: by, receipt, reservation, tracking };
});
