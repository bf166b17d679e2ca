//! The path of the setting at a place in a TOML document, for the errors
//! the TOML parser reports with a place but no path (a key or table
//! written twice, an integer out of TOML's range).

use toml_parser::decoder::Encoding;
use toml_parser::parser::{parse_document, EventReceiver};
use toml_parser::{ErrorSink, ParseError, Raw, Source, Span};

/// The dotted path of the key (or of the key whose value) `text` holds at
/// byte `at`: `breakers.quotes` for the second `[breakers.quotes]`,
/// `limiters.api.rate` for `rate = 100000000000000000000` under
/// `[limiters.api]`. `None` where the document does not parse as TOML
/// (a syntax error: its place is all there is to name) or `at` is
/// outside every key and value.
pub(super) fn path_at(text: &str, at: usize) -> Option<Vec<String>> {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut syntax: Vec<ParseError> = Vec::new();
    let mut finder = Finder {
        source,
        at,
        path: Vec::new(),
        table: 0,
        open: Vec::new(),
        found: None,
        floats: None,
    };
    parse_document(&tokens, &mut finder, &mut syntax);
    if !syntax.is_empty() {
        return None;
    }
    finder.found.filter(|path| !path.is_empty())
}

/// The dotted path and the text, as written, of each float of `text` (a
/// TOML document that parses): an error about one shows it as written
/// (`1e3`), not as read (`1000.0`). A float in an array is given the
/// array's path (no setting is a list: refused before any float is
/// shown).
pub(super) fn float_literals(text: &str) -> Vec<(String, String)> {
    let source = Source::new(text);
    let tokens = source.lex().into_vec();
    let mut syntax: Vec<ParseError> = Vec::new();
    let mut finder = Finder {
        source,
        at: usize::MAX,
        path: Vec::new(),
        table: 0,
        open: Vec::new(),
        found: None,
        floats: Some(Vec::new()),
    };
    parse_document(&tokens, &mut finder, &mut syntax);
    finder.floats.unwrap_or_default()
}

/// Whether a bare TOML scalar is a float: a number with a fraction or an
/// exponent (a date or time holds `-` or `:`, and no `f64` reads it).
fn is_float(raw: &str) -> bool {
    let digits = raw.replace('_', "");
    digits.contains(['.', 'e', 'E']) && digits.parse::<f64>().is_ok()
}

struct Finder<'i> {
    source: Source<'i>,
    at: usize,
    /// The keys from the document's root to the one being read.
    path: Vec<String>,
    /// How many of `path` the last table header holds.
    table: usize,
    /// Per open inline table or array: the length of `path` at its open.
    open: Vec<usize>,
    found: Option<Vec<String>>,
    /// The floats read so far, with their paths, if collected.
    floats: Option<Vec<(String, String)>>,
}

impl Finder<'_> {
    /// Records the path if `span` reaches the place sought.
    fn reach(&mut self, span: Span) {
        if self.found.is_none() && span.end() > self.at {
            self.found = Some(self.path.clone());
        }
    }

    /// Back to the table's (or the open inline table's) own level, after
    /// a key-value pair.
    fn end_pair(&mut self) {
        let level = self.open.last().copied().unwrap_or(self.table);
        self.path.truncate(level);
    }
}

impl EventReceiver for Finder<'_> {
    fn std_table_open(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.path.clear();
        self.open.clear();
        self.reach(span);
    }

    fn array_table_open(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.std_table_open(span, error);
    }

    fn std_table_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.table = self.path.len();
        self.reach(span);
    }

    fn array_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.std_table_close(span, error);
    }

    fn inline_table_open(&mut self, span: Span, _: &mut dyn ErrorSink) -> bool {
        self.reach(span);
        self.open.push(self.path.len());
        true
    }

    fn inline_table_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if let Some(level) = self.open.pop() {
            self.path.truncate(level);
        }
        self.reach(span);
    }

    fn array_open(&mut self, span: Span, _: &mut dyn ErrorSink) -> bool {
        self.reach(span);
        self.open.push(self.path.len());
        true
    }

    fn array_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if let Some(level) = self.open.pop() {
            self.path.truncate(level);
        }
        self.reach(span);
    }

    fn simple_key(&mut self, span: Span, kind: Option<Encoding>, error: &mut dyn ErrorSink) {
        let raw = Raw::new_unchecked(
            self.source
                .input()
                .get(span.start()..span.end())
                .unwrap_or(""),
            kind,
            span,
        );
        let mut key = String::new();
        raw.decode_key(&mut key, error);
        self.path.push(key);
        self.reach(span);
    }

    fn scalar(&mut self, span: Span, kind: Option<Encoding>, _: &mut dyn ErrorSink) {
        self.reach(span);
        if let (Some(floats), None) = (&mut self.floats, kind) {
            let raw = self
                .source
                .input()
                .get(span.start()..span.end())
                .unwrap_or("");
            if is_float(raw) {
                floats.push((self.path.join("."), raw.to_owned()));
            }
        }
    }

    fn value_sep(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.reach(span);
        self.end_pair();
    }

    fn newline(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.reach(span);
        if self.open.is_empty() {
            self.end_pair();
        }
    }

    fn error(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.reach(span);
    }
}

#[cfg(test)]
mod tests {
    use super::path_at;

    fn at(text: &str, marker: &str) -> Option<String> {
        let offset = text.rfind(marker).unwrap();
        path_at(text, offset).map(|p| p.join("."))
    }

    #[test]
    fn the_path_of_a_key_or_value_at_a_place() {
        let text = "a = 1\n[b.c]\nd.e = { f = 2, g = [3, { h = 4 }] }\n[[i]]\nj = 5\n";
        assert_eq!(at(text, "a ").as_deref(), Some("a"));
        assert_eq!(at(text, "1").as_deref(), Some("a"));
        assert_eq!(at(text, "c]").as_deref(), Some("b.c"));
        assert_eq!(at(text, "e =").as_deref(), Some("b.c.d.e"));
        assert_eq!(at(text, "2").as_deref(), Some("b.c.d.e.f"));
        assert_eq!(at(text, "3").as_deref(), Some("b.c.d.e.g"));
        assert_eq!(at(text, "4").as_deref(), Some("b.c.d.e.g.h"));
        assert_eq!(at(text, "5").as_deref(), Some("i.j"));
        assert_eq!(at("\"x.y\" = 1\n", "1").as_deref(), Some("x.y"));
        // A syntax error: no path.
        assert_eq!(at("[a\nb = 1\n", "1"), None);
        assert_eq!(path_at("a = 1\n", 1000), None);
    }
}
