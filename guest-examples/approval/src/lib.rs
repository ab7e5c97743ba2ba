//! An expense report that waits for a person.
//!
//! Input: `{"report": "R-1", "amount": 120, "approval_timeout_ms": 60000,
//! "pay_delay_ms": 1000}`. The workflow submits the report (step `submit`),
//! then waits for the event `approval` (`durable event RUN approval --data
//! '{"approved": true}'`) for at most `approval_timeout_ms`:
//! - approved: a cooling-off `sleep(pay_delay_ms)`, then step `pay`; output
//!   `{"status": "paid", ...}`;
//! - rejected: step `notify_rejected`; output `{"status": "rejected", ...}`;
//! - no answer in time: step `escalate`; output `{"status": "escalated", ...}`.
//!
//! While it waits (for the event or the sleep) the run holds nothing: kill
//! the process, send the event, `durable resume` it, and it goes on.

use std::time::Duration;

use durable_sdk::{Error, WaitError, await_event, idempotency_key, sleep, step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    report: String,
    amount: u64,
    #[serde(default = "default_timeout")]
    approval_timeout_ms: u64,
    #[serde(default)]
    pay_delay_ms: u64,
}

fn default_timeout() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
struct Decision {
    approved: bool,
    #[serde(default)]
    by: Option<String>,
}

fn submit(r: Report) -> Result<Value, String> {
    eprintln!(
        "submitting {} for {} (key {})",
        r.report,
        r.amount,
        idempotency_key()
    );
    Ok(json!({ "ticket": format!("T-{}", r.report) }))
}

fn pay(r: Report) -> Result<Value, String> {
    eprintln!(
        "paying {} to the employee (key {})",
        r.amount,
        idempotency_key()
    );
    Ok(json!({ "paid": r.amount }))
}

fn notify_rejected(r: Report) -> Result<Value, String> {
    eprintln!("telling the employee that {} was rejected", r.report);
    Ok(json!({ "notified": true }))
}

fn escalate(r: Report) -> Result<Value, String> {
    eprintln!("no answer on {}: escalating to the finance team", r.report);
    Ok(json!({ "escalated_to": "finance" }))
}

fn approval(r: Report) -> Result<Value, Error> {
    let ticket = step!(submit).call(&r)?;
    let timeout = Duration::from_millis(r.approval_timeout_ms);
    match await_event::<Decision>("approval", Some(timeout)) {
        Ok(Decision { approved: true, by }) => {
            // A cooling-off period: the run holds nothing while it sleeps.
            sleep(Duration::from_millis(r.pay_delay_ms));
            let paid = step!(pay).call(&r)?;
            Ok(
                json!({ "status": "paid", "report": r.report, "ticket": ticket, "by": by, "payment": paid }),
            )
        }
        Ok(Decision {
            approved: false,
            by,
        }) => {
            step!(notify_rejected).call(&r)?;
            Ok(json!({ "status": "rejected", "report": r.report, "ticket": ticket, "by": by }))
        }
        Err(WaitError::TimedOut(ms)) => {
            let to = step!(escalate).call(&r)?;
            Ok(
                json!({ "status": "escalated", "report": r.report, "ticket": ticket, "after_ms": ms, "escalation": to }),
            )
        }
        Err(e) => Err(e.into()),
    }
}

durable_sdk::workflow!(run: approval, steps: [submit, pay, notify_rejected, escalate]);

#[cfg(test)]
mod tests {
    use super::*;
    use durable_sdk::testing::Fake;

    fn report() -> Report {
        Report {
            report: "R-1".into(),
            amount: 120,
            approval_timeout_ms: 60_000,
            pay_delay_ms: 1_000,
        }
    }

    #[test]
    fn a_step_body_is_a_plain_function() {
        assert_eq!(
            notify_rejected(report()).unwrap(),
            json!({ "notified": true })
        );
    }

    #[test]
    fn an_approved_report_is_paid_after_the_cooling_off() {
        let mut fake =
            Fake::new(DURABLE_STEPS).event("approval", json!({"approved": true, "by": "Grace"}));
        let start = fake.clock();
        let out = fake.run(|| approval(report())).unwrap();
        assert_eq!(out["status"], "paid");
        assert_eq!(out["by"], "Grace");
        assert_eq!(fake.calls_of("step"), ["submit", "pay"]);
        assert_eq!(fake.clock() - start, 1_000, "slept pay_delay_ms");
    }

    #[test]
    fn no_answer_in_time_escalates() {
        let mut fake = Fake::new(DURABLE_STEPS);
        let out = fake.run(|| approval(report())).unwrap();
        assert_eq!(out["status"], "escalated");
        assert_eq!(out["after_ms"], 60_000);
        assert_eq!(fake.calls_of("step"), ["submit", "escalate"]);
    }
}
