//! A run's steps as a tree: children under their parent in call order,
//! with failed attempts, the event each consumed and (if asked) output.

use std::collections::HashMap;

use durable_core::views::RunDetail;

use crate::{
    ShownChild, ShownDriveStart, ShownEvent, ShownQueued, ShownRun, ShownStep, ShownSuperseded,
    ShownSwitch, line, parse_json,
};

/// The tree of `detail`'s steps (children in call order), with attempts and,
/// if `with_output`, guest output attached.
pub fn build(detail: &RunDetail, with_output: bool) -> Vec<ShownStep> {
    let mut attempts: HashMap<&str, Vec<crate::ShownAttempt>> = HashMap::new();
    for a in &detail.attempts {
        attempts
            .entry(a.key.as_str())
            .or_default()
            .push(crate::attempt(a));
    }
    let mut output: HashMap<&str, Vec<crate::ShownLine>> = HashMap::new();
    for l in &detail.output {
        output
            .entry(l.key.as_str())
            .or_default()
            .push(crate::line(l));
    }
    let mut children: HashMap<&str, Vec<&durable_core::records::StepRecord>> = HashMap::new();
    for s in &detail.steps {
        children.entry(s.parent.as_str()).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.position);
    }
    fn node(
        key: &str,
        detail: &RunDetail,
        children: &HashMap<&str, Vec<&durable_core::records::StepRecord>>,
        attempts: &mut HashMap<&str, Vec<crate::ShownAttempt>>,
        output: &mut HashMap<&str, Vec<crate::ShownLine>>,
        with_output: bool,
    ) -> Vec<ShownStep> {
        let Some(list) = children.get(key) else {
            return Vec::new();
        };
        list.iter()
            .map(|s| {
                let mut n = crate::step_node(s, &detail.run);
                n.event = detail
                    .events
                    .iter()
                    .find(|e| e.consumed_by.as_deref() == Some(s.key.as_str()))
                    .map(crate::ShownEvent::new);
                n.child = detail
                    .children
                    .iter()
                    .find(|c| c.parent_key.as_deref() == Some(s.key.as_str()))
                    .map(ShownChild::new);
                n.failed_attempts = attempts.remove(s.key.as_str()).unwrap_or_default();
                if with_output {
                    n.output = Some(output.remove(s.key.as_str()).unwrap_or_default());
                }
                n.children = node(&s.key, detail, children, attempts, output, with_output);
                n
            })
            .collect()
    }
    node(
        "",
        detail,
        &children,
        &mut attempts,
        &mut output,
        with_output,
    )
}

/// The `show --json` shape of a run (also what the server's
/// `GET /v1/runs/{id}` answers); with `logs`, guest output and HTTP lines.
pub fn shown_run(detail: &RunDetail, logs: bool) -> ShownRun {
    let steps = build(detail, logs);
    let r = &detail.run;
    let workflow_output = logs.then(|| {
        detail
            .output
            .iter()
            .filter(|l| l.key.is_empty())
            .map(line)
            .collect::<Vec<_>>()
    });
    ShownRun {
        id: r.id.clone(),
        workflow: r.workflow.clone(),
        status: r.status.as_str(),
        input: parse_json(&r.input),
        output: r.output.as_deref().map(parse_json),
        error: r.error.clone(),
        created_at_ms: r.created_at_ms,
        finished_at_ms: r.finished_at_ms,
        duration_ms: r.finished_at_ms.map(|f| f - r.created_at_ms),
        drives: r.drives,
        component_digest: r.component_digest.clone(),
        forked_from: r.forked_from.clone(),
        parent: r.parent.clone(),
        parent_key: r.parent_key.clone(),
        queue: r.queue.clone(),
        queued: detail.queued.as_ref().map(|q| ShownQueued {
            key: q.key.clone(),
            priority: q.priority,
            position: q.position,
            held_by: q.held_by.as_str(),
            not_before_ms: q.not_before_ms,
        }),
        tags: detail.tags.clone(),
        children: detail.children.iter().map(ShownChild::new).collect(),
        cancel_requested: r.cancel_requested,
        waiting_for: r.waiting_for.clone(),
        wake_at_ms: r.wake_at_ms,
        steps,
        superseded: detail
            .superseded
            .iter()
            .map(|r| ShownSuperseded {
                key: r.key.clone(),
                name: r.name.clone(),
                parent: r.parent.clone(),
                position: r.position,
                input: r.input.as_deref().map(parse_json),
                status: r.outcome.kind(),
                drive: r.drive,
                superseded_in_drive: r.superseded_in,
                superseded_at_ms: r.superseded_at_ms,
            })
            .collect(),
        events: detail.events.iter().map(ShownEvent::new).collect(),
        drive_starts: detail
            .drive_starts
            .iter()
            .map(|&(drive, started_at_ms)| ShownDriveStart {
                drive,
                started_at_ms,
            })
            .collect(),
        component_switches: detail
            .switches
            .iter()
            .map(|w| ShownSwitch {
                drive: w.drive,
                at_ms: w.at_ms,
                from_digest: w.from_digest.clone(),
                to_digest: w.to_digest.clone(),
                forced_from_position: w.forced_from,
            })
            .collect(),
        workflow_output,
    }
}
