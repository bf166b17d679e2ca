#!/usr/bin/env python3
"""Every public item of fusebox and fusebox-std has a runnable example.

Reads rustdoc's JSON (nightly) and lists the public items whose docs hold
no code block: types, traits, functions, constants, statics, and the
inherent methods of public types, re-exported ones included (rustdoc's
own `missing_doc_code_examples` lint skips items declared in private
modules and re-exported, which is most of this workspace). Enum variants
and struct fields are covered by their type's example.

    RUSTDOCFLAGS='-Z unstable-options --output-format json' \\
        CARGO_TARGET_DIR=target/doc-json \\
        cargo +nightly doc -p fusebox -p fusebox-std --no-deps --all-features
    scripts/doc_examples.py target/doc-json [path-filter]

Exits 1 and prints `file:line name (kind)` for each item without one.
"""
import json
import sys

SKIPPED = ("module", "variant", "struct_field", "primitive", "use", "impl")


def without_example(path):
    doc = json.load(open(path))
    index, paths = doc["index"], doc["paths"]
    found = []

    def check(item, name, kind):
        if "```" not in (item.get("docs") or ""):
            span = item.get("span") or {}
            line = (span.get("begin") or [0])[0]
            found.append((span.get("filename", "?"), line, name, kind))

    for key, summary in paths.items():
        item = index.get(key)
        if summary.get("crate_id") != 0 or not item:
            continue
        kind = next(iter(item["inner"]))
        if kind in SKIPPED:
            continue
        name = "::".join(summary["path"])
        check(item, name, kind)
        body = item["inner"][kind]
        if not isinstance(body, dict):
            continue
        for impl_id in body.get("impls") or []:
            block = index.get(str(impl_id))
            inherent = block and block["inner"].get("impl")
            if not inherent or inherent.get("trait") is not None:
                continue
            for member in inherent.get("items", []):
                method = index.get(str(member))
                if method and method.get("visibility") == "public":
                    check(method, f"{name}::{method.get('name')}", "method")
    return found


def main():
    target = sys.argv[1]
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    found = sorted(
        set(
            without_example(f"{target}/doc/fusebox.json")
            + without_example(f"{target}/doc/fusebox_std.json")
        )
    )
    found = [f for f in found if only in f[0]]
    for file, line, name, kind in found:
        print(f"{file}:{line} {name} ({kind})")
    print(f"{len(found)} public items without a code example", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
