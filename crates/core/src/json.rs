//! JSON comparisons the store and the runner share.

/// Whether two JSON texts hold the same value (key order and spacing
/// aside); text that is not JSON compares as text. A run started again with
/// its id must have the same input, an event sent again under its id the
/// same payload.
pub fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
