//! Reading a configuration document strictly: [`parse`], a JSON value in
//! which a key given twice in one object is an error (as TOML has it)
//! rather than the last one winning, and [`escaped`], the document's text
//! as an error may show it.

use std::cell::{Cell, RefCell};

use serde::de::DeserializeSeed;
use serde_json::{Map, Value};

use super::error::shown;

/// A JSON value as serde_json reads it, but a key given twice in one
/// object is an error (as in TOML) rather than the last one winning.
/// serde_json's recursion limit still applies.
/// (Read by [`parse`], which names a duplicate's path; this one is the
/// visitor's test harness.)
#[cfg(test)]
pub(super) struct Strict(pub(super) Value);

#[cfg(test)]
impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let reader = Reader::default();
        StrictSeed {
            path: Vec::new(),
            reader: &reader,
        }
        .deserialize(d)
        .map(Strict)
    }
}

/// Reads `text` as a `Strict` JSON value.
///
/// # Errors
///
/// serde_json's, with the path of a key given twice in one object (the
/// path of the second one; it was `(json): duplicate key "rate" at line
/// 1 column 39`, no path, found by a review), or of a whole number beyond
/// 64 bits, refused as written (serde_json read it as a float: it was
/// `invalid type: floating point `1e+20``, for `100000000000000000000`).
///
/// With the value, the path and text, as written, of each number that is
/// not a whole one: an error about one shows it as written (`1e3`), not as
/// read (`1000.0`).
pub(super) fn parse(text: &str) -> Result<(Value, Floats), (Option<String>, serde_json::Error)> {
    let reader = Reader {
        numbers: number_literals(text),
        ..Reader::default()
    };
    let seed = StrictSeed {
        path: Vec::new(),
        reader: &reader,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    seed.deserialize(&mut de)
        .and_then(|value| de.end().map(|()| (value, reader.floats.take())))
        .map_err(|e| (reader.at.take(), e))
}

/// Dotted paths and the text of the numbers at them, as written.
pub(super) type Floats = Vec<(String, String)>;

/// What [`parse`] keeps as it reads.
#[derive(Default)]
struct Reader<'t> {
    /// The path of the value refused, if the visitor refused one.
    at: RefCell<Option<String>>,
    /// The document's number literals, in order.
    numbers: Vec<&'t str>,
    /// How many numbers have been read.
    seen: Cell<usize>,
    /// The path and text of each number read that is not a whole one.
    floats: RefCell<Floats>,
}

/// The number literals of a JSON document, in order (the text outside
/// strings that starts with `-` or a digit); a syntax error only makes
/// the list wrong past it, where serde_json stops anyway.
fn number_literals(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'"' {
            i += 1;
            while let Some(&c) = bytes.get(i) {
                i += if c == b'\\' { 2 } else { 1 };
                if c == b'"' {
                    break;
                }
            }
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
            {
                i += 1;
            }
            out.push(text.get(start..i).unwrap_or(""));
        } else {
            i += 1;
        }
    }
    out
}

/// A `Strict` value at `path`, which records in `reader` the path of
/// a value it refuses.
struct StrictSeed<'a> {
    path: Vec<String>,
    reader: &'a Reader<'a>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor(self))
    }
}

struct StrictVisitor<'a>(StrictSeed<'a>);

impl<'a> StrictVisitor<'a> {
    /// The seed of the value under `key`.
    fn under(&self, key: String) -> StrictSeed<'a> {
        let mut path = self.0.path.clone();
        path.push(key);
        StrictSeed {
            path,
            reader: self.0.reader,
        }
    }

    /// Records `text`, a number that is not a whole one, at this path.
    fn float(&self, text: &str) {
        let path = self.0.path.join(".");
        self.0
            .reader
            .floats
            .borrow_mut()
            .push((path, text.to_owned()));
    }

    /// The text of the number being read, counted.
    fn number(&self) -> Option<&'a str> {
        let seen = self.0.reader.seen.get();
        self.0.reader.seen.set(seen + 1);
        self.0.reader.numbers.get(seen).copied()
    }
}

/// The one key of the map as which serde_json hands a number to
/// `deserialize_any` when its `arbitrary_precision` feature is on (features
/// are unified: any crate of the program may turn it on), for a number
/// that is not an `i64` or `u64`. serde_json's own `Value` reads such a map
/// as the number; so does `Strict`.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> serde::de::Visitor<'de> for StrictVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        self.number();
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        self.number();
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        let text = self.number().unwrap_or("");
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            // `-0`, which serde_json reads as a float: the integer 0, as
            // TOML and a variable read it (it was refused as beyond 64
            // bits, found by a review).
            if let Ok(zero) = text.parse::<i64>() {
                return Ok(Value::from(zero));
            }
            // A whole number serde_json could not hold in 64 bits.
            *self.0.reader.at.borrow_mut() = Some(self.0.path.join("."));
            return Err(E::custom(format_args!(
                "must be an integer of {}..={}, got {text}",
                i64::MIN,
                u64::MAX
            )));
        }
        if !text.is_empty() {
            self.float(text);
        }
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.under(out.len().to_string()))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.is_empty() && key == NUMBER_TOKEN {
                // A number, as serde_json's `arbitrary_precision` feature
                // hands it over: read back as serde_json's `Value` does.
                self.number();
                let text: String = map.next_value()?;
                let number: serde_json::Number = text.parse().map_err(serde::de::Error::custom)?;
                if number.is_f64() {
                    self.float(&text);
                }
                return Ok(Value::Number(number));
            }
            if out.contains_key(&key) {
                let message = format!("duplicate key \"{}\"", shown(&key));
                let mut path = self.0.path.clone();
                path.push(key);
                *self.0.reader.at.borrow_mut() = Some(path.join("."));
                return Err(serde::de::Error::custom(message));
            }
            let v = map.next_value_seed(self.under(key.clone()))?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The longest path or message of an error from the document, in
/// characters; a longer one is cut (and ends with `…`).
const MAX_SHOWN: usize = 512;

/// `text` from a document [redacted](crate::redact), with its control
/// characters escaped (no forged log line) and cut to [`MAX_SHOWN`]
/// characters. Redacted first: a cut can leave a URL without the `@` that
/// ends its user info, and a secret longer than the cut would then be
/// shown up to it.
pub(super) fn escaped(text: &str) -> String {
    let text = crate::redact::redact(text);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde::de::value::{Error, MapDeserializer};
    use serde::Deserialize;
    use serde_json::{json, Value};

    use super::Strict;

    /// With serde_json's `arbitrary_precision` feature on (any crate of the
    /// program may turn it on: features are unified), a number that is not
    /// an `i64` or `u64` reaches `deserialize_any` as a one-entry map under
    /// serde_json's private number token; serde_json's own `Value` reads it
    /// back as a number, and so must `Strict`, or every fraction in a JSON
    /// configuration (`"sample_rate": 0.5`) is refused as "a map" (seen in a
    /// program built with the feature). Emulated here, as this workspace
    /// builds without it.
    #[test]
    fn an_arbitrary_precision_number_is_a_number() {
        for text in ["0.5", "1e3", "-2.25", "18446744073709551616"] {
            let entries = [("$serde_json::private::Number", text)];
            let read = Strict::deserialize(MapDeserializer::<_, Error>::new(entries.into_iter()));
            let Strict(value) = read.unwrap();
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(value, expected, "{text}");
        }
        // An ordinary object is still read as one, duplicate keys refused.
        let entries = [("a", "1"), ("b", "2")];
        let Strict(value) =
            Strict::deserialize(MapDeserializer::<_, Error>::new(entries.into_iter())).unwrap();
        assert_eq!(value, json!({"a": "1", "b": "2"}));
        let entries = [("a", "1"), ("a", "2")];
        assert!(
            Strict::deserialize(MapDeserializer::<_, Error>::new(entries.into_iter())).is_err()
        );
    }
}
