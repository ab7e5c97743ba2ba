//! The words of a drive: error messages cut to size, the host's notes on
//! a failed attempt, a trap in one line, and elapsed times.

use std::time::Duration;

use crate::store::Outcome;

/// Longest step error message recorded; longer ones are cut with a marker.
pub(crate) const MAX_ERROR_BYTES: usize = 8 << 10;

/// Cuts an error message to [`MAX_ERROR_BYTES`], saying how much was cut.
pub(crate) fn cap_message(mut message: String) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message;
    }
    let mut end = MAX_ERROR_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = message.len() - end;
    message.truncate(end);
    message.push_str(&format!("... [{cut} more bytes cut by the host]"));
    message
}

/// How one attempt ended.
pub(super) struct Attempt {
    pub(super) outcome: Outcome,
    pub(super) retryable: bool,
}

/// A failed attempt's message with the HTTP limits its requests ran into,
/// which the guest's HTTP client may have reported as a bare error code.
pub(super) fn with_notes(attempt: Attempt, notes: &[String]) -> Attempt {
    let note = |message: String| {
        // A note is left out when the guest's message names its flag.
        let missing: Vec<&str> = notes
            .iter()
            .filter(|n| !message.contains(flag_of(n).unwrap_or(n.as_str())))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            message
        } else {
            cap_message(format!("{message} [host: {}]", missing.join("; ")))
        }
    };
    let outcome = match attempt.outcome {
        Outcome::Failed(m) => Outcome::Failed(note(m)),
        Outcome::Trapped(m) => Outcome::Trapped(note(m)),
        other => other,
    };
    Attempt { outcome, ..attempt }
}

/// The first `--flag` a note names.
fn flag_of(note: &str) -> Option<&str> {
    let start = note.find("--")?;
    let rest = &note[start..];
    let end = rest[2..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map_or(rest.len(), |i| i + 2);
    Some(&rest[..end])
}

/// A one-line description of a guest trap: its reason, then the innermost
/// guest frame when wasmtime captured one.
pub(crate) fn trap_message(e: &wasmtime::Error) -> String {
    let mut msg = e.root_cause().to_string();
    if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>()
        && let Some(frame) = bt.frames().first()
        && let Some(name) = frame.func_name()
    {
        msg.push_str(&format!(" (in {name})"));
    }
    msg
}

/// Elapsed time as a short human string.
pub fn human(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{} ms", d.as_millis())
    }
}
