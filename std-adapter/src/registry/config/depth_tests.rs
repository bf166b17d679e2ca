//! How deep a TOML document may nest: bounded before the parser reads it.

use super::document::{too_deep, MAX_TOML_DEPTH};
use crate::registry::RegistryConfig;

/// `n` segments: `a.a.…a`.
fn key(n: usize) -> String {
    vec!["a"; n].join(".")
}

/// The TOML parser bounds a key's segments and the nesting of inline
/// tables and arrays (80 each) but not their sum: this 2 KB document (a
/// 78-segment header, a 78-segment key, ten inline tables of 78-segment
/// keys) overflowed the 2 MiB stack of the test's thread, as of a tokio
/// worker, inside the parser: the process aborted (found by a hostile
/// review). It is refused, on its line and column, before it is parsed.
#[test]
fn a_document_nested_past_the_bound_is_refused_not_a_stack_overflow() {
    let inline = format!("{{ {} = ", key(78));
    let mut text = format!("[{}]\n{} = {}1", key(78), key(78), inline.repeat(10));
    text.push_str(&" }".repeat(10));
    text.push('\n');
    assert!(text.len() < 2_100, "{}", text.len());
    let err = RegistryConfig::from_toml(&text).unwrap_err();
    assert_eq!(err.fields().len(), 1);
    assert_eq!(err.fields()[0].path(), "(toml)");
    assert_eq!(
        err.fields()[0].message(),
        "nested deeper than 32 levels (no setting is deeper than 4) at line 1 column 65"
    );
    // Each way of nesting alone, far past the bound, as well.
    let n = 100_000;
    let deep = [
        format!("{} = 1\n", key(n)),
        format!("[{}]\nx = 1\n", key(n)),
        format!("[[{}]]\nx = 1\n", key(n)),
        format!("x = {}1{}\n", "[".repeat(n), "]".repeat(n)),
        format!("x = {}1{}\n", "{a = ".repeat(n), "}".repeat(n)),
    ];
    for text in deep {
        let err = RegistryConfig::from_toml(&text).unwrap_err();
        assert!(
            err.fields()[0].message().starts_with("nested deeper"),
            "{err}"
        );
    }
}

/// The bound is exact for a dotted key, a header and inline tables, and
/// a document at it is read (here into unknown fields, refused by name).
#[test]
fn a_document_at_the_bound_is_read() {
    let at = [
        format!("{} = 1\n", key(MAX_TOML_DEPTH)),
        format!("[{}]\nx = 1\n", key(MAX_TOML_DEPTH - 1)),
        format!(
            "x = {}1{}\n",
            "{a = ".repeat(MAX_TOML_DEPTH - 1),
            "}".repeat(MAX_TOML_DEPTH - 1)
        ),
        format!("[{}]\n{} = 1\n", key(16), key(16)),
    ];
    for text in at {
        assert_eq!(too_deep(&text), None, "{text}");
        let err = RegistryConfig::from_toml(&text).unwrap_err();
        assert!(err.fields()[0].message().contains("unknown field"), "{err}");
    }
    assert_eq!(
        too_deep(&format!("{} = 1\n", key(MAX_TOML_DEPTH + 1))),
        Some((1, 67))
    );
    assert_eq!(
        too_deep(&format!("[{}]\nx = 1\n", key(MAX_TOML_DEPTH))),
        Some((2, 3))
    );
}

/// Dots, brackets and braces in strings and comments are no nesting,
/// nor are many entries side by side, nor a later header's shallower
/// tables; a real configuration's lines and columns are counted through
/// its strings.
#[test]
fn only_the_documents_structure_counts() {
    let dots = ".[{".repeat(200);
    let texts = [
        format!("[limiters.\"{dots}\"]\nrate = 1\n"),
        format!("[limiters.'{dots}']\nrate = 1\n"),
        format!("# {dots}\n[limiters.a] # {dots}\nrate = 1\n"),
        format!("x = \"\"\"\n{dots}\\\"\"\"\n\"\"\"\n[limiters.a]\nrate = 1\n"),
        format!("x = '''\n{dots}\n'''''\n[limiters.a]\nrate = 1\n"),
        format!("x = \"a\\\"{dots}\"\n[limiters.a]\nrate = 1\n"),
        format!("x = [{}]\n", vec!["1.5"; 1_000].join(", ")),
        format!(
            "x = {{ {} }}\n",
            (0..1_000)
                .map(|i| format!("k{i}.a.b = 1"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("[t.{}]\n{} = 1\n", key(15), key(15)).repeat(1_000),
    ];
    for text in texts {
        assert_eq!(too_deep(&text), None, "{text}");
    }
    // A one-line string left open ends at its line, as for the parser:
    // what follows is counted.
    let deep = format!("{} = 1\n", key(40));
    for open in ["x = \"a\n", "x = 'a\n", "x = \"a\\\n"] {
        assert_eq!(too_deep(&format!("{open}{deep}")), Some((2, 66)), "{open}");
    }
    // Lines and columns past strings spanning lines, and an escaped newline.
    let text = format!("x = \"\"\"a\\\nb\"\"\"\ny = '''\n'''\n{} = 1\n", key(40));
    assert_eq!(too_deep(&text), Some((5, 66)));
}
