//! Tags: key/value pairs a run is found by (`set-tag` in a workflow, or
//! given at its start), indexed by the store.

/// Longest tag key, in characters (all ASCII).
pub const MAX_KEY_LEN: usize = 64;

/// Longest tag value, in bytes.
pub const MAX_VALUE_BYTES: usize = 256;

/// Most keys a workflow sets on its run; a start may carry as many more.
pub const MAX_KEYS: usize = 16;

/// A run's tags, by key (one value per key).
pub type Tags = std::collections::BTreeMap<String, String>;

/// Checks one tag: a key of 1 to [`MAX_KEY_LEN`] characters of
/// `a-z A-Z 0-9 _ . -` (so it reads the same in a URL, a shell and a
/// listing) and a value of at most [`MAX_VALUE_BYTES`] bytes.
///
/// # Errors
/// The message the guest or caller gets.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !key_ok {
        return Err(format!(
            "tag key {key:?} must be 1 to {MAX_KEY_LEN} characters of a-z, A-Z, 0-9, '_', '.', '-'"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "tag {key:?}: the value contains a control character (a newline, NUL, ...)"
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "tag {key:?}: value is {} bytes, more than {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    Ok(())
}

/// Checks the tags a start carries: each valid, at most [`MAX_KEYS`].
///
/// # Errors
/// The first problem found.
pub fn validate_start(tags: &Tags) -> Result<(), String> {
    if tags.len() > MAX_KEYS {
        return Err(format!(
            "a start carries at most {MAX_KEYS} tags, not {}",
            tags.len()
        ));
    }
    tags.iter().try_for_each(|(k, v)| validate(k, v))
}

/// The error a workflow gets for a key beyond [`MAX_KEYS`].
pub fn too_many(key: &str) -> String {
    format!(
        "a workflow sets at most {MAX_KEYS} tag keys on its run; {key:?} would be the {}th",
        MAX_KEYS + 1
    )
}

/// Parses `KEY<sep>VALUE` (`customer=42` on a command line, `customer:42`
/// in a URL query), splitting at the first `sep`, and checks it.
///
/// # Errors
/// Why it is not a tag.
pub fn parse(text: &str, sep: char) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once(sep)
        .ok_or_else(|| format!("tag {text:?} is not KEY{sep}VALUE"))?;
    validate(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_parsing() {
        assert!(validate("customer", "42").is_ok());
        assert!(validate("a.b-c_D9", "").is_ok());
        assert!(validate("", "x").is_err());
        assert!(validate("with space", "x").is_err());
        assert!(validate("ключ", "x").is_err());
        assert!(validate(&"k".repeat(65), "x").is_err());
        assert!(
            validate("k", &"v".repeat(257))
                .unwrap_err()
                .contains("257 bytes")
        );
        assert!(validate("k", "a\0b").is_err());
        assert!(validate("k", "x\nstatus     failed").is_err());
        assert!(validate("k", "café 42").is_ok());
        assert_eq!(
            parse("customer=4=2", '=').unwrap(),
            ("customer".into(), "4=2".into())
        );
        assert_eq!(parse("customer:42", ':').unwrap().1, "42");
        assert!(parse("customer", '=').is_err());
        let many: Tags = (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_start(&many).is_err());
        assert!(too_many("x").contains("17th"));
    }
}
