//! Onboarding a new hire: create their record, then provision a laptop and
//! grant system access in parallel, then summarize.
//!
//! Each step body prints what it does (with wall-clock times); the host shows
//! each line with the step it came from, so you can see which bodies ran on
//! a given drive and that the two parallel steps overlap.
//!
//! With `"hr_url": "http://127.0.0.1:PORT"` in the input, each step also
//! tells an HR service (run with `--allow-http http://127.0.0.1:PORT`):
//! `create_record` POSTs to `{hr_url}/employees`, `provision_laptop` to
//! `{hr_url}/laptops`, `grant_access` to `{hr_url}/access`, each with the
//! step's input as its JSON body and the step's `Idempotency-Key`. Any 2xx
//! means done; a 4xx fails the step for good; a 5xx or a connection failure
//! is retried. Without `hr_url` nothing leaves the sandbox.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_sdk::{Error, Failure, parallel, step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NewHire {
    name: String,
    email: String,
    #[serde(default = "default_team")]
    team: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hr_url: Option<String>,
}

fn default_team() -> String {
    "engineering".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    employee_id: String,
    name: String,
    email: String,
    team: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hr_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Laptop {
    asset_tag: String,
    model: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Access {
    groups: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    employee_id: String,
    name: String,
    laptop: String,
    groups: Vec<String>,
    status: String,
}

/// Prints one line on stderr with a single write, so that the lines of the
/// two parallel steps never interleave.
fn say(line: String) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A stable id from the e-mail address, so every run of the same hire
/// gets the same record (what an idempotent HR system would do).
fn employee_id(email: &str) -> String {
    let h = email.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("EMP-{:06}", h % 1_000_000)
}

/// Tells the HR service at `hr_url`, if the input named one: POSTs `body`
/// to `{hr_url}{path}` with the step's idempotency key (the SDK's default),
/// so that a step that runs again after a crash is not done twice.
fn tell_hr<T: Serialize>(hr_url: Option<&str>, path: &str, body: &T) -> Result<(), Failure> {
    if let Some(base) = hr_url {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        durable_sdk::http::post(&url)
            .json(body)
            .send()?
            .error_for_status()?;
    }
    Ok(())
}

fn create_record(hire: NewHire) -> Result<Record, Failure> {
    if !hire.email.contains('@') {
        // No retry can fix this input.
        return Err(Failure::permanent(format!(
            "{:?} is not an e-mail address",
            hire.email
        )));
    }
    tell_hr(hire.hr_url.as_deref(), "/employees", &hire)?;
    let record = Record {
        employee_id: employee_id(&hire.email),
        name: hire.name,
        email: hire.email,
        team: hire.team,
        hr_url: hire.hr_url,
    };
    say(format!(
        "created {} for {} at {}",
        record.employee_id,
        record.name,
        now_ms()
    ));
    Ok(record)
}

fn provision_laptop(record: Record) -> Result<Laptop, Failure> {
    let start = now_ms();
    tell_hr(record.hr_url.as_deref(), "/laptops", &record)?;
    std::thread::sleep(Duration::from_millis(300)); // ordering from the vendor
    let laptop = Laptop {
        asset_tag: format!("LT-{}", &record.employee_id[4..]),
        model: if record.team == "design" {
            "MacBook Pro 16"
        } else {
            "ThinkPad X1"
        }
        .into(),
    };
    say(format!(
        "assigned laptop {} to {} from {start} to {}",
        laptop.asset_tag,
        record.employee_id,
        now_ms()
    ));
    Ok(laptop)
}

fn grant_access(record: Record) -> Result<Access, Failure> {
    let start = now_ms();
    tell_hr(record.hr_url.as_deref(), "/access", &record)?;
    std::thread::sleep(Duration::from_millis(300)); // waiting on the directory service
    let access = Access {
        groups: vec![
            "all-staff".into(),
            record.team.clone(),
            format!("{}-oncall", record.team),
        ],
    };
    say(format!(
        "granted {} groups to {} from {start} to {}",
        access.groups.len(),
        record.employee_id,
        now_ms()
    ));
    Ok(access)
}

fn onboarding(hire: NewHire) -> Result<Summary, Error> {
    let record = step!(create_record).call(&hire)?;
    let (laptop, access) = parallel!(
        step!(provision_laptop).with(&record),
        step!(grant_access).with(&record)
    );
    let (laptop, access) = (laptop?, access?);
    Ok(Summary {
        employee_id: record.employee_id,
        name: record.name,
        laptop: format!("{} ({})", laptop.model, laptop.asset_tag),
        groups: access.groups,
        status: "onboarded".into(),
    })
}

durable_sdk::workflow!(run: onboarding, steps: [create_record, provision_laptop, grant_access]);

#[cfg(test)]
mod tests {
    use super::*;
    use durable_sdk::testing::Fake;

    fn ada() -> NewHire {
        NewHire {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            team: "design".into(),
            hr_url: None,
        }
    }

    #[test]
    fn a_step_body_is_a_plain_function() {
        let record = create_record(ada()).unwrap();
        assert_eq!(record.employee_id, employee_id("ada@example.com"));
        let bad = NewHire {
            email: "nobody".into(),
            ..ada()
        };
        assert!(!create_record(bad).unwrap_err().is_retryable());
    }

    #[test]
    fn the_workflow_against_recorded_answers() {
        // The laptop and access steps are recorded (no waiting on vendors);
        // create_record runs its body.
        let mut fake = Fake::new(DURABLE_STEPS)
            .answer(
                "provision_laptop",
                serde_json::json!({"asset_tag": "LT-1", "model": "M"}),
            )
            .answer("grant_access", serde_json::json!({"groups": ["all-staff"]}));
        let summary = fake.run(|| onboarding(ada())).unwrap();
        assert_eq!(summary.status, "onboarded");
        assert_eq!(summary.laptop, "M (LT-1)");
        assert_eq!(
            fake.calls_of("step"),
            ["create_record", "provision_laptop", "grant_access"]
        );
    }

    #[test]
    fn a_failed_step_fails_the_run() {
        let mut fake = Fake::new(DURABLE_STEPS).fail("grant_access", "directory down");
        let err = fake.run(|| onboarding(ada())).unwrap_err();
        assert!(err.to_string().contains("directory down"), "{err}");
    }
}
