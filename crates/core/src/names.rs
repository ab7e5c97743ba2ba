//! What the host accepts as a step name, a run id and a workflow name.
//! Each becomes part of keys (`run/step#1`), URLs and one-line listings.

/// Why a step name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid step name {name:?}: {reason}")]
pub struct InvalidName {
    /// The name.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

/// Checks a guest-chosen step name: it becomes part of keys, so it must not
/// contain the key separators, and `$` names are the host's.
pub fn validate_step_name(name: &str) -> Result<(), InvalidName> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 256 {
        "it is longer than 256 bytes"
    } else if name.contains(['/', '#']) {
        "it contains '/' or '#'"
    } else if name.starts_with('$') {
        "names starting with '$' are reserved"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Why a run id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid run id {id:?}: {reason}")]
pub struct InvalidRunId {
    /// The id.
    pub id: String,
    /// Why.
    pub reason: &'static str,
}

/// Checks a run id: it is part of idempotency keys (`run/step#1`) and of
/// one-line listings, so it must not contain the key separators, control
/// characters, or be unreasonably long.
///
/// # Errors
/// [`InvalidRunId`] saying why.
pub fn validate_run_id(id: &str) -> Result<(), InvalidRunId> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > 256 {
        "it is longer than 256 bytes"
    } else if id.contains(['/', '#']) {
        "it contains '/' or '#'"
    } else if id == "." || id == ".." {
        // A path segment that URLs and file names resolve away: the run
        // could not be reached at /runs/{id} (the UI) nor named in a path.
        "'.' and '..' are not run ids"
    } else if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(InvalidRunId {
        id: id.to_string(),
        reason,
    })
}

/// Checks a workflow name: a step-like name (see [`validate_step_name`])
/// that can also be part of a run id, since runs are named after their
/// workflow (`NAME-...`, schedules' `NAME@TICK`). `durable.toml`, `POST
/// /v1/workflows` and uploads check names with it.
///
/// # Errors
/// A sentence saying why, naming the name.
pub fn validate_workflow_name(name: &str) -> Result<(), String> {
    validate_step_name(name)
        .map_err(|e| format!("invalid workflow name {name:?}: {}", e.reason))?;
    // The longest ids the host makes of a name: a start without an id
    // (`NAME-<ms>-<random>`) and a schedule's tick (`NAME@<tick>`).
    for made in [
        format!("{name}-1796619530490-dbffbddf"),
        format!("{name}@20260101T000000Z"),
    ] {
        if let Err(e) = validate_run_id(&made) {
            return Err(format!(
                "invalid workflow name {name:?}: the run ids made from it (such as {:?}) would \
                 not be valid: {}",
                made, e.reason
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_that_would_break_keys_are_refused() {
        for bad in ["", "a/b", "a#1", "$now", "tab\there"] {
            assert!(validate_step_name(bad).is_err(), "{bad:?}");
        }
        for good in ["create_record", "send-email", "ünïcode step"] {
            assert!(validate_step_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_workflow_name_leaves_room_for_the_run_ids_made_from_it() {
        assert!(validate_workflow_name(&"n".repeat(233)).is_ok());
        let e = validate_workflow_name(&"n".repeat(234)).expect_err("too long for its run ids");
        assert!(e.starts_with("invalid workflow name"), "{e}");
        let e = validate_workflow_name("a/b").expect_err("a separator");
        assert!(e.starts_with("invalid workflow name \"a/b\""), "{e}");
    }
}
