//! `durable components list` and `durable components delete`: the
//! components stored in the database (one per digest; runs refer to them).

use std::io::Write;

use durable::store::{Location, Store};
use serde_json::json;

use crate::args::ComponentsCommand;
use crate::common::chain;
use crate::exit::ExitCode;

/// `durable components ...`.
pub async fn components(db: &Location, command: ComponentsCommand) -> ExitCode {
    if !db.may_exist() {
        eprintln!("durable: there is no database at {}", db);
        return ExitCode::NotFound;
    }
    let store = match Store::open(db).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("durable: {}", chain(&e));
            return ExitCode::of_store(&e);
        }
    };
    let code = match command {
        ComponentsCommand::List { json } => list(&store, json).await,
        ComponentsCommand::Delete { digest } => match store.delete_component(&digest).await {
            Ok(()) => {
                eprintln!("durable: component {digest} deleted");
                ExitCode::Success
            }
            Err(e) => {
                eprintln!("durable: {}", chain(&e));
                ExitCode::of_store(&e)
            }
        },
    };
    store.close().await;
    code
}

async fn list(store: &Store, as_json: bool) -> ExitCode {
    let components = match store.components().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("durable: {}", chain(&e));
            return ExitCode::of_store(&e);
        }
    };
    let mut text = String::new();
    if as_json {
        for c in &components {
            let line = json!({
                "digest": c.digest,
                "name": c.name,
                "bytes": c.bytes,
                "added_at_ms": c.added_at_ms,
                "runs": c.runs,
                "open_runs": c.open_runs,
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
    } else {
        text.push_str(&format!(
            "{:<64} {:<20} {:>11} RUNS\n",
            "DIGEST", "NAME", "SIZE"
        ));
        for c in &components {
            text.push_str(&format!(
                "{:<64} {:<20} {:>7} KiB {} ({} open)\n",
                c.digest,
                c.name.as_deref().unwrap_or("-"),
                c.bytes.div_ceil(1024),
                c.runs,
                c.open_runs
            ));
        }
    }
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is fine.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    ExitCode::Success
}
