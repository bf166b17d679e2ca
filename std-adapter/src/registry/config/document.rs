//! The configuration as a document, before any setting is read: the
//! file's bytes, and what the parsers would accept but no setting holds
//! (lists, non-finite numbers), and TOML's errors on one line.

use serde_json::Value;

use super::super::strict_json::escaped;
use super::RegistryConfig;

/// The text of the configuration file at `path`: a regular file (a FIFO
/// or a device such as `/dev/zero` named `*.toml` would block or never
/// end), of at most [`RegistryConfig::MAX_FILE_BYTES`], in UTF-8. A
/// leading byte-order mark, which editors on Windows write and neither
/// parser accepts, is dropped.
pub(super) fn read_config_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let not_regular = || "not a regular file".to_owned();
    // Checked before the open too: opening a FIFO waits for a writer.
    if !std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .is_file()
    {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // And after: the name may have been given another file in between.
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err(not_regular());
    }
    let max = RegistryConfig::MAX_FILE_BYTES;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (an invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// The path and value of the first float of `value` that is NaN or
/// infinite (TOML writes them, JSON has no number for them: read into a
/// JSON value they became null, and an optional field given one was
/// silently its default). The depth is bounded by the TOML parser's own
/// recursion limit.
pub(super) fn non_finite(value: &toml::Value, path: String) -> Option<(String, f64)> {
    let at = |key: &dyn std::fmt::Display| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some((path, *f)),
        toml::Value::Table(table) => table.iter().find_map(|(k, v)| non_finite(v, at(k))),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite(v, at(&i))),
        _ => None,
    }
}

/// The path of the first list in `value` (`(root)` for the document
/// itself). No setting of a [`RegistryConfig`] is a list, but serde reads
/// a struct from one as well as from a table, field by field in order:
/// `a = [5, 50]` would be a breaker with `consecutive_failures = 5` and
/// `failure_rate = 50`, a JSON document `[]` an empty configuration. The
/// depth is bounded by the parsers' recursion limits (environment
/// variables make no lists).
pub(super) fn first_list(value: &Value, path: String) -> Option<String> {
    match value {
        Value::Array(_) if path.is_empty() => Some("(root)".to_owned()),
        Value::Array(_) => Some(path),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            first_list(
                v,
                if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                },
            )
        }),
        _ => None,
    }
}

/// A TOML syntax error as serde_json words its own, on one bounded line
/// (`<message> at line L column C`): the TOML crate's report quotes the
/// whole offending line, at any length and with its control characters.
pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = escaped(e.message().trim_end());
    let Some(at) = e.span().map(|s| s.start.min(text.len())) else {
        return message;
    };
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{message} at line {line} column {column}")
}
