//! A payment, as a workflow of its own: `authorize`, then `capture`.
//! `guest-examples/order` starts it as a child workflow:
//!
//! ```text
//! durable run order.wasm --link payment=payment.wasm --input '{"order_id": "O-1", "items": 3}'
//! ```
//!
//! Input: `{"order_id": "O-1", "amount_cents": 3750}`; output: `{"receipt":
//! "RCPT-O-1", "amount_cents": 3750}`. Each step takes ~200 ms of simulated
//! work and prints what it does.

use std::time::Duration;

use durable_sdk::{Error, idempotency_key, step};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Payment {
    order_id: String,
    amount_cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Authorization {
    order_id: String,
    amount_cents: u64,
    authorization: String,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    receipt: String,
    amount_cents: u64,
}

fn authorize(p: Payment) -> Result<Authorization, String> {
    eprintln!(
        "authorizing {} cents for {} (key {})",
        p.amount_cents,
        p.order_id,
        idempotency_key()
    );
    std::thread::sleep(Duration::from_millis(200));
    Ok(Authorization {
        authorization: format!("AUTH-{}", p.order_id),
        order_id: p.order_id,
        amount_cents: p.amount_cents,
    })
}

fn capture(a: Authorization) -> Result<Receipt, String> {
    eprintln!("capturing {} (key {})", a.authorization, idempotency_key());
    std::thread::sleep(Duration::from_millis(200));
    Ok(Receipt {
        receipt: format!("RCPT-{}", a.order_id),
        amount_cents: a.amount_cents,
    })
}

fn payment(p: Payment) -> Result<Receipt, Error> {
    let authorization = step!(authorize).call(&p)?;
    Ok(step!(capture).call(&authorization)?)
}

durable_sdk::workflow!(run: payment, steps: [authorize, capture]);
