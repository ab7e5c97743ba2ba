//! `durable show`: one run with its step tree, as text or JSON.

use crate::args::ShowArgs;
use crate::common::{chain, error, open_existing, print};
use crate::exit::ExitCode;
use crate::output::{clip, format_duration, format_time, short, tree, waiting_text};
use durable::store::{Location, RunStatus, StoreError};
use durable_api_model as json;

/// `durable show`.
pub(crate) async fn show(db: &Location, args: ShowArgs) -> ExitCode {
    let store = match open_existing(db).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            error(StoreError::RunNotFound(args.id.clone()));
            return ExitCode::NotFound;
        }
        Err(code) => return code,
    };
    let detail = match store.detail(&args.id, args.logs).await {
        Ok(d) => d,
        Err(e) => {
            error(chain(&e));
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
    if let Some(p) = &shown.parent {
        text.push_str(&format!(
            "parent     {p} (its {})\n",
            shown.parent_key.as_deref().unwrap_or("child")
        ));
    }
    if let (None, Some(place)) = (&shown.queue, &shown.queued) {
        text.push_str(&format!(
            "queued     debounced, held by {}{}\n",
            place.held_by,
            place
                .not_before_ms
                .map(|t| format!(" until {} UTC", format_time(t)))
                .unwrap_or_default()
        ));
    }
    if let Some(q) = &shown.queue {
        match &shown.queued {
            Some(place) => text.push_str(&format!(
                "queue      {q}: position {} (0 is next), priority {}{}, held by {}\n",
                place.position,
                place.priority,
                place
                    .key
                    .as_deref()
                    .map(|k| format!(", key {k:?}"))
                    .unwrap_or_default(),
                place.held_by
            )),
            None => text.push_str(&format!("queue      {q}\n")),
        }
    }
    if !shown.tags.is_empty() {
        let tags: Vec<String> = shown.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("tags       {}\n", clip(&tags.join(" "))));
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
    if !shown.children.is_empty() {
        // Every child, ended or not (a pending one has no step above yet).
        const SHOWN: usize = 20;
        text.push_str(&format!(
            "children   {} (durable list --parent {})\n",
            shown.children.len(),
            shown.id
        ));
        for c in shown.children.iter().take(SHOWN) {
            text.push_str(&format!(
                "   {:<36} {:<10} {}\n",
                c.id,
                c.status,
                c.parent_key.as_deref().unwrap_or("")
            ));
        }
        if shown.children.len() > SHOWN {
            text.push_str(&format!("   and {} more\n", shown.children.len() - SHOWN));
        }
    }
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
