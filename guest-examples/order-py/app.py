"""An order, composed of workflows, in Python: the same workflow as
guest-examples/order.

Input: ``{"order_id": "O-1", "items": 3, "approval_timeout_ms": 5000}``. It
starts child workflow ``payment`` (a run of its own: ``guest-examples/payment``,
``--link payment=payment.wasm`` under ``durable run``) and step
``reserve_stock`` at once, then races the event ``approved`` against a timer of
``approval_timeout_ms``:
- approved: waits for the payment's receipt and the reservation, then step
  ``ship``; output ``{"status": "shipped", ...}``;
- no approval in time: cancels the payment and releases the stock (step
  ``release_stock``); output ``{"status": "expired", ...}``.
"""

import sys

from durable_sdk import (  # noqa: F401
    HandleError,
    Steps,
    WitWorld,
    any,
    event,
    idempotency_key,
    start_workflow,
    step,
    timer,
    workflow,
)


def say(line):
    print(line, file=sys.stderr, flush=True)


@step
def reserve_stock(s):
    say(f"reserving {s['items']} items for {s['order_id']} (key {idempotency_key()})")
    return {"reservation": f"RES-{s['order_id']}", "items": s["items"]}


@step
def release_stock(s):
    say(f"releasing the stock of {s['order_id']} (key {idempotency_key()})")
    return {"released": s["items"]}


@step
def ship(order_id):
    say(f"shipping {order_id} (key {idempotency_key()})")
    return f"TRACK-{order_id}"


@workflow
def order(o):
    stock = {"order_id": o["order_id"], "items": o["items"]}
    payment = start_workflow("payment", {"order_id": o["order_id"], "amount_cents": o["items"] * 1250})
    reserved = reserve_stock.start(stock)
    approved = event("approved")
    expiry = timer(o.get("approval_timeout_ms", 5000) / 1000)
    index, _ = any([approved, expiry])
    if index == 1:
        payment.cancel()
        try:
            reserved.result()
            released = release_stock(stock)
        except HandleError:
            released = None
        return {"status": "expired", "order_id": o["order_id"], "released": released}
    by = approved.result()
    receipt = payment.result()
    reservation = reserved.result()
    tracking = ship(o["order_id"])
    return {
        "status": "shipped",
        "order_id": o["order_id"],
        "approved_by": by,
        "receipt": receipt,
        "reservation": reservation,
        "tracking": tracking,
    }
