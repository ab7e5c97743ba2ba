//! An order, composed of workflows: it starts child workflow `payment` (a
//! run of its own, any language: `guest-examples/payment`) and step
//! `reserve_stock` at once, then races the event `approved` against a
//! timer of `approval_timeout_ms`.
//!
//! - approved: waits for the payment's receipt and the reservation, then
//!   step `ship`; output `{"status": "shipped", ...}`;
//! - no approval in time: cancels the payment (durably: its run ends
//!   cancelled, even if it was waiting) and releases the stock (step
//!   `release_stock`); output `{"status": "expired", ...}`.
//!
//! ```text
//! durable run order.wasm --link payment=payment.wasm --id O-1 \
//!     --input '{"order_id": "O-1", "items": 3, "approval_timeout_ms": 5000}'
//! durable event O-1 approved --data '{"by": "ada"}'      # from another shell
//! ```
//!
//! Which of the approval and the timer came first is recorded: a replay after
//! a crash takes the same branch, whatever has happened since.

use std::time::Duration;

use durable_sdk::{Child, Error, any, event, idempotency_key, step, timer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Order {
    order_id: String,
    items: u32,
    #[serde(default = "five_seconds")]
    approval_timeout_ms: u64,
}

fn five_seconds() -> u64 {
    5_000
}

#[derive(Serialize, Deserialize)]
struct Stock {
    order_id: String,
    items: u32,
}

fn reserve_stock(s: Stock) -> Result<Value, String> {
    eprintln!(
        "reserving {} items for {} (key {})",
        s.items,
        s.order_id,
        idempotency_key()
    );
    Ok(json!({ "reservation": format!("RES-{}", s.order_id), "items": s.items }))
}

fn release_stock(s: Stock) -> Result<Value, String> {
    eprintln!(
        "releasing the stock of {} (key {})",
        s.order_id,
        idempotency_key()
    );
    Ok(json!({ "released": s.items }))
}

fn ship(order_id: String) -> Result<String, String> {
    eprintln!("shipping {order_id} (key {})", idempotency_key());
    Ok(format!("TRACK-{order_id}"))
}

fn order(o: Order) -> Result<Value, Error> {
    let stock = Stock {
        order_id: o.order_id.clone(),
        items: o.items,
    };
    let payment = Child::<Value, Value>::named("payment").start(&json!({
        "order_id": o.order_id,
        "amount_cents": u64::from(o.items) * 1250,
    }));
    let reserved = step!(reserve_stock).start(&stock);
    let approved = event::<Value>("approved", None);
    let expiry = timer(Duration::from_millis(o.approval_timeout_ms));
    if any(&[&approved, &expiry]) == 1 {
        payment.cancel();
        let released = match reserved.wait() {
            Ok(_) => Some(step!(release_stock).call(&stock)?),
            Err(_) => None,
        };
        return Ok(json!({
            "status": "expired",
            "order_id": o.order_id,
            "released": released,
        }));
    }
    let by = approved.wait()?;
    let receipt = payment.wait()?;
    let reservation = reserved.wait()?;
    let tracking = step!(ship).call(&o.order_id)?;
    Ok(json!({
        "status": "shipped",
        "order_id": o.order_id,
        "approved_by": by,
        "receipt": receipt,
        "reservation": reservation,
        "tracking": tracking,
    }))
}

durable_sdk::workflow!(run: order, steps: [reserve_stock, release_stock, ship]);
