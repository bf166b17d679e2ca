//! The configuration as a document, before any setting is read: the
//! file's bytes, and what the parsers would accept but no setting holds
//! (lists, non-finite numbers), and TOML's errors on one line.

use serde_json::Value;

use super::super::error::FieldError;
use super::super::strict_json::escaped;
use super::toml_path::path_at;
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
/// silently its default). The depth is bounded by [`too_deep`], checked
/// before the document is parsed.
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
/// depth is bounded by serde_json's recursion limit and by [`too_deep`]
/// (environment variables make no lists).
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

/// A TOML error on the path of the setting it is about, when the document
/// parses and the error has a place: a table or key written twice, or one
/// that extends a value (`breakers = 5` then `[breakers.a]`), named by the
/// second one, and an integer outside TOML's (64-bit) range, named by its
/// key (found by a review: these were `(toml): duplicate key at line 3
/// column 11`, a place but no path, and `(toml): u64 value was too large`
/// for `window = 18446744073709551615`). A syntax error has no setting to
/// name: path `(toml)`, as before. Either way the message ends with the
/// line and column.
pub(super) fn toml_field_error(text: &str, e: &toml::de::Error) -> FieldError {
    let path = e
        .span()
        .and_then(|span| Some((path_at(text, span.start)?, span)));
    let Some((path, span)) = path else {
        return FieldError::new("(toml)", toml_error(text, e));
    };
    let message = e.message();
    let out_of_range =
        message.starts_with("invalid type: integer") || message.contains("value was too large");
    let written = text.get(span.clone()).unwrap_or("").trim();
    let message = if out_of_range && !written.is_empty() {
        // As written (serde's words were `integer `…` as i128, expected
        // any valid TOML value`).
        format!(
            "must be an integer of -9223372036854775808..=9223372036854775807 (TOML's range), got {}{}",
            escaped(written),
            at_line(text, span.start),
        )
    } else {
        toml_error(text, e)
    };
    FieldError::new(escaped(&path.join(".")), message)
}

/// ` at line L column C` for byte `at` of `text`, in characters from 1.
fn at_line(text: &str, at: usize) -> String {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line} column {column}")
}

/// A TOML syntax error as serde_json words its own, on one bounded line
/// (`<message> at line L column C`): the TOML crate's report quotes the
/// whole offending line, at any length and with its control characters.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    // The parser's words "basic string" read to the redaction as HTTP
    // Basic credentials: `invalid basic ***` for an unclosed string.
    let message = e
        .message()
        .trim_end()
        .replace("basic string", "double-quoted string");
    let message = escaped(&message);
    match e.span() {
        Some(span) => format!("{message}{}", at_line(text, span.start)),
        None => message,
    }
}

/// The deepest a TOML document may nest, in tables (a header's, a
/// dotted key's and inline tables' levels together) and arrays. No
/// setting is deeper than 4 (`keyed_limiters.<name>.overflow.rate`).
pub(super) const MAX_TOML_DEPTH: usize = 32;

/// Where, as line and column (from 1, in characters), `text` first nests
/// deeper than [`MAX_TOML_DEPTH`], read before the TOML parser sees it
/// (found by a hostile review: the parser bounds a key's segments and
/// the nesting of inline tables and arrays, 80 each, but not their sum:
/// a 2 KB document of a 78-segment header, a 78-segment key and ten
/// inline tables of 78-segment keys overflowed the stack of a 2 MiB
/// thread, as a tokio worker's, in the parser, aborting the process).
///
/// An upper bound, counted outside strings and comments: the segments of
/// the last table header, plus those of the top-level dotted key being
/// read (its dots, and one once its `=` is read), plus,
/// for each open inline table or array, one and the segments of the key
/// read in it since its last `,` (a float's `.` counts too, which only
/// overcounts).
pub(super) fn too_deep(text: &str) -> Option<(usize, usize)> {
    // Per open `{`, `[` (values) and header `[`: the dots read in it
    // since it opened or since its last `,`.
    let mut open: Vec<usize> = Vec::new();
    let mut header = 0; // levels of the last table header
    let mut in_header = false;
    let mut line_dots = 0; // dots of a top-level key, this line
    let mut value = false; // past a top-level `=` on this line
    let (mut line, mut column) = (1, 0);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match c {
            '\n' => {
                (line, column) = (line + 1, 0);
                if open.is_empty() {
                    (line_dots, value) = (0, false);
                }
            }
            '#' => {
                // A comment, up to its line's end.
                while chars.next_if(|&c| c != '\n').is_some() {}
            }
            '"' | '\'' => {
                // A string: `"…"` (with `\` escapes), `'…'`, or their
                // multi-line forms `"""…"""`, `'''…'''`.
                let mut quotes = 1;
                while quotes < 3 && chars.next_if_eq(&c).is_some() {
                    quotes += 1;
                    column += 1;
                }
                if quotes == 2 {
                    continue; // an empty string
                }
                // A newline ends a one-line string, closed or not, as it
                // ends one for TOML's lexer: the text after it is read as
                // the parser reads it, not as the string's.
                let ends = |s: &char| quotes == 1 && *s == '\n';
                let mut run = 0;
                while let Some(s) = chars.next_if(|s| !ends(s)) {
                    column += 1;
                    if s == '\n' {
                        (line, column) = (line + 1, 0);
                    }
                    if s == c {
                        run += 1;
                        if run == quotes {
                            break;
                        }
                        continue;
                    }
                    run = 0;
                    if s == '\\' && c == '"' {
                        // An escape: the next character is the string's.
                        match chars.next_if(|s| !ends(s)) {
                            Some('\n') => (line, column) = (line + 1, 0),
                            Some(_) => column += 1,
                            None => {}
                        }
                    }
                }
                // A multi-line string may end with up to two more quotes.
                while quotes == 3 && chars.next_if_eq(&c).is_some() {
                    column += 1;
                }
            }
            '.' => match open.last_mut() {
                Some(dots) => *dots += 1,
                None => line_dots += 1,
            },
            ',' => {
                if let Some(dots) = open.last_mut() {
                    *dots = 0;
                }
            }
            '=' if open.is_empty() => value = true,
            '[' if open.is_empty() && !value => {
                // A table header (`[a.b]`, or `[[a.b]]`).
                (in_header, header) = (true, 0);
                open.push(0);
            }
            '[' | '{' => open.push(0),
            ']' | '}' => {
                let dots = open.pop().unwrap_or(0);
                if in_header {
                    header += 1 + dots;
                    if open.is_empty() {
                        in_header = false;
                    }
                }
            }
            _ => {}
        }
        let nested: usize = open.iter().map(|dots| 1 + dots).sum();
        if header + line_dots + usize::from(value) + nested > MAX_TOML_DEPTH {
            return Some((line, column));
        }
    }
    None
}
