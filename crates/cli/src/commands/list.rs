//! `durable list`: runs, newest first, as a table or JSON.

use crate::args::ListArgs;
use crate::common::{chain, error, open_existing, print};
use crate::exit::ExitCode;
use crate::output::{format_duration, format_time, waiting_text};
use durable::store::{Location, RunFilter, RunStatus};
use durable_api_model::ListedRun;

/// `durable list`.
pub(crate) async fn list(db: &Location, args: ListArgs) -> ExitCode {
    let status = match args
        .status
        .as_deref()
        .map(|s| RunStatus::parse_name(s).ok_or(s))
    {
        Some(Err(s)) => {
            eprintln!(
                "durable: --status {s}: expected queued, running, waiting, succeeded, failed or cancelled"
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
        parent: args.parent.clone(),
        tags: args.tags.clone(),
    };
    let runs = match store.list(filter).await {
        Ok(r) => r,
        Err(e) => {
            error(chain(&e));
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
