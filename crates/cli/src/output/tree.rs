//! The step tree of `durable show`, drawn as text with parallel batches
//! grouped (the tree itself is the API model's, `ShownRun::steps`).

use std::fmt::Write;

use durable_api_model::ShownStep;

/// Draws `steps` as an indented tree, one line per step (plus its failed
/// attempts and, when present, its output lines).
pub fn draw(steps: &[ShownStep]) -> String {
    let mut out = String::new();
    draw_level(steps, "", &mut out);
    out
}

fn draw_level(steps: &[ShownStep], indent: &str, out: &mut String) {
    // Group consecutive calls of one parallel batch under a "parallel" node.
    let mut groups: Vec<&[ShownStep]> = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let mut j = i + 1;
        if let Some(b) = steps[i].parallel {
            while j < steps.len() && steps[j].parallel == Some(b) {
                j += 1;
            }
        }
        groups.push(&steps[i..j]);
        i = j;
    }
    for (gi, group) in groups.iter().enumerate() {
        let last = gi + 1 == groups.len();
        let (branch, below) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        if group[0].parallel.is_some() {
            let _ = writeln!(out, "{indent}{branch}parallel ({} calls)", group.len());
            draw_steps(group, &format!("{indent}{below}"), out);
        } else {
            draw_step(&group[0], indent, branch, below, out);
        }
    }
}

fn draw_steps(steps: &[ShownStep], indent: &str, out: &mut String) {
    for (i, s) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        let (branch, below) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        draw_step(s, indent, branch, below, out);
    }
}

fn draw_step(s: &ShownStep, indent: &str, branch: &str, below: &str, out: &mut String) {
    let label = if let Some(n) = s.key.strip_prefix("$sleep") {
        let until = s.value.as_ref().and_then(|v| v.as_i64()).unwrap_or(0);
        format!("sleep{n} until {} UTC", super::format_time(until))
    } else if let Some(rest) = s.key.strip_prefix("$event:") {
        // Which event it consumed; the payload with --logs (or in --json).
        let which = s
            .event
            .as_ref()
            .map(|e| match &e.id {
                Some(id) => format!(" <- event #{} (id {id})", e.seq),
                None => format!(" <- event #{}", e.seq),
            })
            .unwrap_or_default();
        match (&s.output, &s.value) {
            (Some(_), Some(v)) => format!("event {rest}{which} = {v}"),
            _ => format!("event {rest}{which}"),
        }
    } else if let Some(rest) = s.key.strip_prefix("$child:") {
        // The child run, with a link to it (its id).
        match &s.child {
            Some(c) => format!("child {rest} -> {}", c.id),
            None => format!("child {rest}"),
        }
    } else if s.key.starts_with('$') {
        format!(
            "{} = {}",
            s.key,
            s.value.as_ref().map(|v| v.to_string()).unwrap_or_default()
        )
    } else {
        s.key.clone()
    };
    let attempts = if s.attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{} attempts", s.attempts)
    };
    let error = s
        .error
        .as_deref()
        .map(|e| format!("  {e}"))
        .unwrap_or_default();
    // Columns line up whatever the depth.
    let width = 40usize
        .saturating_sub(indent.chars().count() + branch.chars().count())
        .max(label.len());
    let _ = writeln!(
        out,
        "{indent}{branch}{label:<width$} {:<9} {attempts:<11} {:>8}  {}{error}",
        s.status,
        format!("{} ms", s.duration_ms),
        s.source
    );
    let inner = format!("{indent}{below}");
    for a in &s.failed_attempts {
        let _ = writeln!(out, "{inner}   attempt {}: {}", a.attempt, a.error);
    }
    if let Some(lines) = &s.output {
        for l in lines {
            let _ = writeln!(out, "{inner}   | {}{}", kind_prefix(&l.kind), l.line);
        }
    }
    if !s.children.is_empty() {
        draw_level(&s.children, &inner, out);
    }
}

/// `[info] ` for log lines, `[http] ` for HTTP requests, nothing for
/// printed output.
pub fn kind_prefix(kind: &str) -> String {
    if kind == "http" {
        return "[http] ".to_string();
    }
    kind.strip_prefix("log:")
        .map(|l| format!("[{l}] "))
        .unwrap_or_default()
}
