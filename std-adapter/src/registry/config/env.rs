//! Environment variables over a configuration document:
//! `FUSEBOX__<TABLE>__<NAME>__<FIELD>=value` sets the field at that path.

use serde_json::{Map, Value};

use super::super::error::{FieldError, RegistryConfigError};
use super::super::strict_json::escaped;

/// The prefix of the environment variables read by
/// [`RegistryConfig::from_env`](super::RegistryConfig::from_env): `FUSEBOX__<TABLE>__<NAME>__<FIELD>`, path
/// segments separated by `__` and lowercased
/// (`FUSEBOX__BREAKERS__PAYMENTS__FAILURE_RATE=50`). A name ending in `_`
/// is written as it is, its `_` before the separator
/// (`FUSEBOX__BREAKERS__A___WINDOW` sets the window of `a_`).
///
/// ```
/// use fusebox_std::registry::{RegistryConfig, ENV_PREFIX};
///
/// let var = format!("{ENV_PREFIX}LIMITERS__API__RATE");
/// let config = RegistryConfig::from_env_vars([(var, "7".to_owned())])?;
/// assert_eq!(config.limiters["api"].rate, Some(7));
/// # Ok::<(), fusebox_std::registry::RegistryConfigError>(())
/// ```
pub const ENV_PREFIX: &str = "FUSEBOX__";

/// The most `__`-separated segments an environment variable's path may
/// have: deeper than any field (`keyed_limiters.<name>.overflow.rate` is
/// 4), with room to spare.
const MAX_ENV_DEPTH: usize = 8;

/// The process's environment variables, for [`apply`]. Not
/// `std::env::vars`, which panics when any variable (another program's
/// included) is not Unicode: those are read lossily, so one of fusebox's
/// that is not Unicode holds a U+FFFD, which no field, name or duration
/// accepts, and is refused as an invalid value on its path.
pub(super) fn process_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().map(|(key, value)| {
        (
            key.to_string_lossy().into_owned(),
            value.to_string_lossy().into_owned(),
        )
    })
}

/// A variable's value as JSON: `true`/`false` a boolean, a number a
/// number, anything else a string.
///
/// # Errors
///
/// A whole number (digits after an optional sign) beyond 64 bits, which
/// no setting holds. It was read as a float, and refused as `invalid
/// type: floating point `1e+20`, expected u64` for
/// `100000000000000000000`: not what the operator wrote (found by a
/// review).
fn env_value(raw: &str) -> Result<Value, String> {
    let unsigned = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    let whole = !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit());
    if whole && raw.parse::<u64>().is_err() && raw.parse::<i64>().is_err() {
        return Err(format!(
            "must be an integer of {}..={}, got {raw}",
            i64::MIN,
            u64::MAX
        ));
    }
    Ok(match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => raw
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<i64>().map(Value::from))
            .ok()
            .or_else(|| {
                raw.parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            })
            .unwrap_or_else(|| Value::String(raw.to_owned())),
    })
}

/// The lowercased segments of a variable's path (after the prefix),
/// separated by `__`. A name may end with `_` (`a_`), which then runs
/// into its separator (`A___FAILURE_RATE`): splitting at the first `__`
/// gives `a` and `_failure_rate`, and no segment begins with `_` (names
/// begin with a letter, fields too), so such a leading `_` is given back
/// to the segment before it (found by a hostile review: a name ending in
/// `_`, valid and documented as an environment-variable path segment,
/// could not be overridden: `breakers.a._failure_rate: unknown field`).
fn segments_of(path: &str) -> Vec<String> {
    let mut segments: Vec<String> = Vec::new();
    for segment in path.split("__").map(str::to_ascii_lowercase) {
        match (segment.strip_prefix('_'), segments.last_mut()) {
            (Some(rest), Some(before)) if !before.is_empty() => {
                before.push('_');
                segments.push(rest.to_owned());
            }
            _ => segments.push(segment),
        }
    }
    segments
}

/// Sets the field at `path` of `root` to `value`, making the tables on the
/// way (a scalar on the way becomes a table). A segment names the entry
/// the document already has under any case (`payments` sets the file's
/// `Payments`: variables are read in lowercase, so an override of a name
/// written with capitals would otherwise make a second entry and leave the
/// file's untouched).
///
/// Returns the path set, in the document's case.
///
/// # Errors
///
/// The path of the segments matched so far when a segment matches more
/// than one entry differing only in case.
fn set_path(root: &mut Value, path: &[String], value: Value) -> Result<Vec<String>, Vec<String>> {
    let mut node = root;
    let mut set = Vec::with_capacity(path.len());
    for (depth, segment) in path.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            return Ok(set);
        };
        // The exact name counts as one of the matches: a segment is read
        // in lowercase, so `payments` names the file's `Payments` as much
        // as its `payments`, and with both it is refused, not guessed.
        let mut same = map.keys().filter(|k| k.eq_ignore_ascii_case(segment));
        let key = match (same.next(), same.next()) {
            (Some(only), None) => only.clone(),
            (None, _) => segment.clone(),
            (Some(_), Some(_)) => return Err(path[..=depth].to_vec()),
        };
        set.push(key.clone());
        node = map.entry(key).or_insert(Value::Null);
    }
    *node = value;
    Ok(set)
}

/// Sets, in `value`, the field of every variable of `vars` that starts
/// with [`ENV_PREFIX`] (others are ignored). `floats`, the document's
/// numbers that are not whole ones by their dotted paths, as written,
/// loses the paths set (and those under them) and gains the variables'
/// own, as written: an error shows `1e3` as the operator wrote it, not
/// as read (`1000.0`), as it shows an integer.
///
/// # Errors
///
/// A variable's path deeper than any field, refused before its tables are
/// made; two variables naming one path (they differ in case only), or a
/// path and a table above it: which one won would depend on the order the
/// environment lists them in.
pub(super) fn apply(
    value: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
    floats: &mut Vec<(String, String)>,
) -> Result<(), RegistryConfigError> {
    let mut set: Vec<(Vec<String>, Value, String)> = Vec::new();
    for (key, raw) in vars {
        let Some(path) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if path.is_empty() {
            // `FUSEBOX__` alone: its path was the empty string, refused as
            // `: unknown field ``, a path of nothing (found by a review).
            return Err(RegistryConfigError::new(vec![FieldError::new(
                "(root)",
                format!("the variable {ENV_PREFIX} names no setting ({ENV_PREFIX}<TABLE>__<NAME>__<FIELD>)"),
            )]));
        }
        let segments = segments_of(path);
        if segments.len() > MAX_ENV_DEPTH {
            // Deeper than any field: an unknown one. Refused here, as
            // the tables it would make are dropped recursively. Shown
            // whole (`escaped` redacts, then cuts): cut to its first
            // segments, a URL's user info running past them would lose
            // the `@` that marks it, its password shown up to the cut.
            return Err(RegistryConfigError::new(vec![FieldError::new(
                escaped(&segments.join(".")),
                format!("unknown field: {} levels deep", segments.len()),
            )]));
        }
        let value = env_value(&raw).map_err(|message| {
            RegistryConfigError::new(vec![FieldError::new(escaped(&segments.join(".")), message)])
        })?;
        set.push((segments, value, raw));
    }
    // Sorted, a path is followed at once by any path it is a prefix of.
    set.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = set.windows(2).find(|w| w[1].0.starts_with(&w[0].0)) {
        return Err(RegistryConfigError::new(vec![FieldError::new(
            escaped(&pair[0].0.join(".")),
            "set by more than one environment variable (their paths are read in lowercase)",
        )]));
    }
    for (segments, new, raw) in set {
        let float = new.is_f64();
        let path = set_path(value, &segments, new)
            .map_err(|ambiguous| {
                RegistryConfigError::new(vec![FieldError::new(
                    escaped(&ambiguous.join(".")),
                    "matches more than one name that differs only in case",
                )])
            })?
            .join(".");
        let under = format!("{path}.");
        floats.retain(|(p, _)| *p != path && !p.starts_with(&under));
        if float {
            floats.push((path, raw));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{env_value, set_path};
    use serde_json::{json, Value};

    /// A path too deep was shown cut to its first segments, then
    /// redacted: a URL whose user info runs past the cut (`__` splits a
    /// password as it splits any segment) lost the `@` that marks it, and
    /// the password's start was shown (found by a hostile review).
    #[test]
    fn a_path_too_deep_never_shows_a_password_cut_short() {
        use crate::registry::RegistryConfig;
        let var = "FUSEBOX__A__B__C__D__E__F__G__redis://app:hunter__2@cache__X";
        let err = RegistryConfig::from_env_vars([(var.to_owned(), "1".to_owned())]).unwrap_err();
        assert_eq!(err.fields().len(), 1);
        assert!(err.fields()[0].message().starts_with("unknown field"));
        let shown = err.to_string();
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(
            shown.starts_with("a.b.c.d.e.f.g.redis://app:***@"),
            "{shown}"
        );
    }

    /// A name ending in `_` runs into the `__` after it: its override
    /// was read as the field `_failure_rate` of the name `a`.
    #[test]
    fn a_name_ending_in_an_underscore_can_be_overridden() {
        use crate::registry::RegistryConfig;
        let config = RegistryConfig::from_toml_with_env(
            "[breakers.a_]\nconsecutive_failures = 1\n[breakers.b_1_]\nconsecutive_failures = 1\n",
            [
                ("FUSEBOX__BREAKERS__A___FAILURE_RATE", "50"),
                ("FUSEBOX__BREAKERS__B_1___WINDOW", "8"),
                ("FUSEBOX__KEYED_LIMITERS__K___OVERFLOW__RATE", "9"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .unwrap();
        assert_eq!(config.breakers["a_"].failure_rate, Some(50));
        assert_eq!(config.breakers["b_1_"].window, Some(8));
        assert_eq!(
            config.keyed_limiters["k_"].overflow.as_ref().unwrap().rate,
            Some(9)
        );
        assert_eq!(super::segments_of("A__B"), ["a", "b"]);
        // Nothing before it: left as it is, an unknown field.
        assert_eq!(super::segments_of("_X__Y"), ["_x", "y"]);
        assert_eq!(super::segments_of("A____B"), ["a", "", "b"]);
    }

    #[test]
    fn environment_values_take_their_natural_type() {
        let env_value = |raw| env_value(raw).unwrap();
        assert_eq!(env_value("true"), json!(true));
        assert_eq!(env_value("false"), json!(false));
        assert_eq!(env_value("42"), json!(42));
        assert_eq!(env_value("-3"), json!(-3));
        assert_eq!(env_value("0.25"), json!(0.25));
        assert_eq!(env_value("30s"), json!("30s"));
        assert_eq!(env_value("True"), json!("True"));
        assert_eq!(env_value("NaN"), json!("NaN"), "no JSON number for NaN");
        assert_eq!(env_value("18446744073709551615"), json!(u64::MAX));
        assert_eq!(env_value("-9223372036854775808"), json!(i64::MIN));
    }

    #[test]
    fn paths_make_their_tables() {
        let mut root = json!({"breakers": {"a": {"window": 5}}, "events_capacity": 3});
        let seg = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        set_path(&mut root, &seg("breakers.a.failure_rate"), json!(50)).unwrap();
        set_path(&mut root, &seg("limiters.b.rate"), json!(1)).unwrap();
        set_path(&mut root, &seg("events_capacity.x"), json!(1)).unwrap(); // a scalar becomes a table
        assert_eq!(
            root,
            json!({
                "breakers": {"a": {"window": 5, "failure_rate": 50}},
                "limiters": {"b": {"rate": 1}},
                "events_capacity": {"x": 1}
            })
        );
        let mut empty = Value::Null;
        set_path(&mut empty, &[], json!(1)).unwrap();
        assert_eq!(empty, json!(1));
    }

    /// Variables are read in lowercase: an override of a name the file
    /// writes with capitals made a second, lowercase entry and left the
    /// file's untouched.
    #[test]
    fn a_segment_sets_the_documents_entry_under_any_case() {
        let seg = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        let mut root = json!({"breakers": {"Payments": {"window": 5}}});
        set_path(&mut root, &seg("breakers.payments.failure_rate"), json!(50)).unwrap();
        assert_eq!(
            root,
            json!({"breakers": {"Payments": {"window": 5, "failure_rate": 50}}})
        );
        let mut twice = json!({"breakers": {"Payments": {}, "PAYMENTS": {}}});
        assert_eq!(
            set_path(&mut twice, &seg("breakers.payments.window"), json!(1)),
            Err(seg("breakers.payments"))
        );
        let mut exact = json!({"breakers": {"Payments": {}, "payments": {}}});
        assert_eq!(
            set_path(&mut exact, &seg("breakers.payments.window"), json!(1)),
            Err(seg("breakers.payments"))
        );
    }
}
