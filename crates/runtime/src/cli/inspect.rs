//! `durable list`, `durable show`, `durable cancel` and `durable event`.

use std::io::Write;
use std::path::Path;

use durable::store::{Cancelled, RunFilter, RunStatus, Sent, Store, StoreError};

use super::{CancelArgs, EventArgs, ExitCode, ListArgs, ShowArgs, tree};
use durable_api_model::{self as json, ListedRun};

/// Prints `durable: <message>` on stderr.
fn say(message: impl std::fmt::Display) {
    eprintln!("durable: {message}");
}

/// Prints an error with its causes.
fn error(e: &(dyn std::error::Error + 'static)) {
    eprintln!("durable: {}", super::run::chain(e));
}

/// Opens an existing database; reading never creates one.
async fn open_existing(db: &Path) -> Result<Option<Store>, ExitCode> {
    if !durable::store::may_exist(db) {
        return Ok(None);
    }
    Store::open(db).await.map(Some).map_err(|e| {
        error(&e);
        ExitCode::of_store(&e)
    })
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is fine.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `durable list`.
pub async fn list(db: &Path, args: ListArgs) -> ExitCode {
    let status = match args
        .status
        .as_deref()
        .map(|s| RunStatus::parse_name(s).ok_or(s))
    {
        Some(Err(s)) => {
            eprintln!(
                "durable: --status {s}: expected running, waiting, succeeded, failed or cancelled"
            );
            return ExitCode::Usage;
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            print(if args.json { "[]\n" } else { "" });
            return ExitCode::Success;
        }
        Err(code) => return code,
    };
    let filter = RunFilter {
        status,
        workflow: args.workflow.clone(),
        limit: args.limit,
        after: None,
        prefix: args.prefix.clone(),
    };
    let runs = match store.list(filter).await {
        Ok(r) => r,
        Err(e) => {
            error(&e);
            return ExitCode::of_store(&e);
        }
    };
    store.close().await;
    if args.json {
        let listed: Vec<ListedRun> = runs.iter().map(ListedRun::new).collect();
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&listed).unwrap_or_default()
        ));
        return ExitCode::Success;
    }
    let mut text = format!(
        "{:<36} {:<16} {:<10} {:<20} {:>10} {:>7} {:>9}\n",
        "RUN", "WORKFLOW", "STATUS", "STARTED (UTC)", "DURATION", "STEPS", "EXEC/REC"
    );
    for s in &runs {
        let r = &s.run;
        let duration = r
            .finished_at_ms
            .map(|f| format_duration(f - r.created_at_ms))
            .unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "{:<36} {:<16} {:<10} {:<20} {:>10} {:>7} {:>9}{}\n",
            r.id,
            r.workflow,
            r.status.as_str(),
            format_time(r.created_at_ms),
            duration,
            s.steps,
            format!("{}/{}", s.executed, s.recovered),
            waiting_text(r)
                .map(|w| format!("  {w}"))
                .unwrap_or_default()
        ));
    }
    print(&text);
    ExitCode::Success
}

/// `durable show`.
pub async fn show(db: &Path, args: ShowArgs) -> ExitCode {
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            error(&StoreError::RunNotFound(args.id.clone()));
            return ExitCode::NotFound;
        }
        Err(code) => return code,
    };
    let detail = match store.detail(&args.id, args.logs).await {
        Ok(d) => d,
        Err(e) => {
            error(&e);
            return ExitCode::of_store(&e);
        }
    };
    store.close().await;
    let shown = json::shown_run(&detail, args.logs);
    let r = &detail.run;
    if args.json {
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        ));
        return ExitCode::Success;
    }
    let mut text = format!("run        {}\n", shown.id);
    text.push_str(&format!(
        "workflow   {} (component {})\n",
        shown.workflow,
        short(&shown.component_digest)
    ));
    for w in &shown.component_switches {
        text.push_str(&format!(
            "switched   from component {} to {} at drive {}, {} UTC{}\n",
            short(&w.from_digest),
            short(&w.to_digest),
            w.drive,
            format_time(w.at_ms),
            w.forced_from_position
                .map(|p| format!(
                    " (forced: the workflow's records from position {p} on were superseded)"
                ))
                .unwrap_or_default()
        ));
    }
    let cancel = if shown.cancel_requested && r.status == RunStatus::Running {
        ", cancel requested"
    } else {
        ""
    };
    text.push_str(&format!(
        "status     {} after {} drive(s){cancel}{}\n",
        shown.status,
        shown.drives,
        waiting_text(r)
            .map(|w| format!(", {w}"))
            .unwrap_or_default()
    ));
    text.push_str(&format!(
        "started    {} UTC{}\n",
        format_time(shown.created_at_ms),
        shown
            .duration_ms
            .map(|d| format!(", took {}", format_duration(d)))
            .unwrap_or_default()
    ));
    if let Some(f) = &shown.forked_from {
        text.push_str(&format!("forked     from {f}\n"));
    }
    text.push_str(&format!("input      {}\n", clip(&shown.input.to_string())));
    if let Some(o) = &shown.output {
        text.push_str(&format!("output     {}\n", clip(&o.to_string())));
    }
    if let Some(e) = &shown.error {
        text.push_str(&format!("error      {e}\n"));
    }
    text.push_str(&format!(
        "steps      (executed: by drive {}; recovered: committed before it)\n",
        shown.drives
    ));
    text.push_str(&tree::draw(&shown.steps));
    if !shown.superseded.is_empty() {
        text.push_str(
            "superseded (moved aside: recorded by an earlier run of a step body that then did something else, or by the workflow before a forced switch of component)\n",
        );
        for r in &shown.superseded {
            text.push_str(&format!(
                "   {} {} (committed by drive {}, moved aside in drive {})\n",
                r.key, r.status, r.drive, r.superseded_in_drive
            ));
        }
    }
    if let Some(lines) = &shown.workflow_output
        && !lines.is_empty()
    {
        text.push_str("workflow output\n");
        for l in lines {
            text.push_str(&format!("   | {}{}\n", tree::kind_prefix(&l.kind), l.line));
        }
    }
    print(&text);
    ExitCode::Success
}

/// `durable cancel`.
pub async fn cancel(db: &Path, args: CancelArgs) -> ExitCode {
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            error(&StoreError::RunNotFound(args.id.clone()));
            return ExitCode::NotFound;
        }
        Err(code) => return code,
    };
    let result = store.cancel(&args.id).await;
    store.close().await;
    match result {
        Ok(Cancelled::Now) => {
            eprintln!("durable: run {} is cancelled", args.id);
            ExitCode::Success
        }
        Ok(Cancelled::Requested) => {
            eprintln!(
                "durable: run {} is being driven by another process; it stops at its next durable call",
                args.id
            );
            ExitCode::Success
        }
        // Cancelling twice is fine.
        Err(StoreError::AlreadyFinished {
            status: RunStatus::Cancelled,
            ..
        }) => {
            eprintln!("durable: run {} is cancelled", args.id);
            ExitCode::Success
        }
        Err(e) => {
            error(&e);
            ExitCode::of_store(&e)
        }
    }
}

/// At most a line's worth of a long JSON value (`--json` has all of it).
fn clip(s: &str) -> String {
    const MAX: usize = 240;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes; --json shows all)", &s[..end], s.len())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for ms since the Unix epoch.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `850 ms`, `12.3 s`, `4 min 5 s`.
pub fn format_duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// What a waiting run waits for, for people: `sleeping until T`,
/// `waiting for event NAME (until T)`.
fn waiting_text(r: &durable::store::RunRecord) -> Option<String> {
    if r.status != RunStatus::Waiting {
        return None;
    }
    let until = r
        .wake_at_ms
        .map(|t| format!(" until {} UTC", format_time(t)))
        .unwrap_or_default();
    Some(match &r.wait_event {
        Some(name) => format!("waiting for event {name}{until}"),
        None => format!("sleeping{until}"),
    })
}

/// `durable event`.
pub async fn event(db: &Path, args: EventArgs) -> ExitCode {
    if let Err(e) = durable::names::validate_step_name(&args.name) {
        say(format_args!("invalid event name: {e}"));
        return ExitCode::Usage;
    }
    if let Some(id) = &args.event_id
        && (id.is_empty() || id.len() > 256)
    {
        say("--id: an event id is 1 to 256 bytes");
        return ExitCode::Usage;
    }
    let payload = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone(),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut s = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                say(format_args!("cannot read the payload from stdin: {e}"));
                return ExitCode::Usage;
            }
            s
        }
        (None, Some(p)) => match std::fs::read_to_string(p) {
            Ok(s) => s,
            Err(e) => {
                say(format_args!("cannot read {}: {e}", p.display()));
                return ExitCode::Usage;
            }
        },
        (None, None) => "null".to_string(),
    };
    if payload.len() > args.max_input_bytes {
        say(format_args!(
            "the payload is {} bytes, over the limit of {} bytes (--max-input-bytes)",
            payload.len(),
            args.max_input_bytes
        ));
        return ExitCode::Usage;
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&payload) {
        say(format_args!("the payload is not valid JSON: {e}"));
        return ExitCode::Usage;
    }
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            error(&StoreError::RunNotFound(args.run.clone()));
            return ExitCode::NotFound;
        }
        Err(code) => return code,
    };
    let sent = store
        .send_event(&args.run, &args.name, args.event_id.as_deref(), &payload)
        .await;
    store.close().await;
    match sent {
        Ok(Sent::Stored { seq }) => {
            eprintln!(
                "durable: event {} stored for run {} (event #{seq})",
                args.name, args.run
            );
            ExitCode::Success
        }
        Ok(Sent::Duplicate) => {
            eprintln!(
                "durable: run {} already has an event with id {}; nothing stored",
                args.run,
                args.event_id.as_deref().unwrap_or_default()
            );
            ExitCode::Success
        }
        Err(e) => {
            error(&e);
            ExitCode::of_store(&e)
        }
    }
}

/// The first 12 characters of a digest, as `show` prints components.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_time(1_795_693_143_988), "2026-11-26 11:39:03");
        assert_eq!(super::format_duration(850), "850 ms");
        assert_eq!(super::format_duration(12_345), "12.3 s");
        assert_eq!(super::format_duration(245_000), "4 min 5 s");
    }
}
