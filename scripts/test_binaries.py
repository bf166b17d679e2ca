#!/usr/bin/env python3
"""Runs test binaries side by side, as `cargo test` runs them one by one.

    scripts/test_binaries.py [--jobs N] [CARGO-TEST-ARGS] [-- TEST-ARGS]

Builds the tests as `cargo test --no-run CARGO-TEST-ARGS` would, reads
cargo's JSON messages for the test executables (`profile.test`), and
runs each the way cargo would: from its package's directory, with
CARGO_MANIFEST_DIR set, TEST-ARGS passed on. Up to N binaries run at
once (default 3): most of the integration suites wait on servers,
timeouts and sockets rather than on a core, so one binary at a time left
this 2-core machine's cores idle for minutes. The ones named in
SLOW_FIRST start first, so the longest does not start last. Doctests are
not binaries: `cargo test --doc` runs them.

Each binary's output is printed whole when it ends (never interleaved),
with its wall time. After a failure no binary is started; the ones
running finish (a binary killed midway would leave the servers its
tests started behind), the failed ones' output is printed last, and the
script exits 1. A failed build exits 1 before anything runs.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

# Binaries (target names) that take longest here, wall time: started
# first. The workspace's integration and core suites (scripts/test.sh's
# unit layer), then the loom models' (`breaker` ends on its longest
# model, `cache` holds the next). A name not built is ignored.
SLOW_FIRST = (
    "redis",
    "fleet_breaker",
    "redis_refused_password_outage",
    "tower_http",
    "breaker",
    "limiter",
    "cache",
    "fd_limit",
)


def test_binaries(cargo_args):
    """Builds the tests of `cargo test CARGO_ARGS`: their executables,
    slowest first; exits 1 unless cargo's build succeeded (the binaries
    built before a failure must not pass for the whole)."""
    build = subprocess.run(
        ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics", *cargo_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    found = []
    built = build.returncode == 0
    for line in build.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("reason") == "build-finished":
            built = built and message.get("success") is True
        if message.get("reason") != "compiler-artifact":
            continue
        if not message["profile"]["test"] or not message.get("executable"):
            continue
        target = message["target"]
        found.append(
            {
                "name": target["name"],
                "label": f"{target['name']} ({os.path.relpath(target['src_path'])})",
                "executable": message["executable"],
                "dir": os.path.dirname(message["manifest_path"]),
            }
        )
    if not built:
        sys.exit("test_binaries.py: cargo could not build the tests")
    # Slow ones first (in SLOW_FIRST's order), then the rest as cargo built them.
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    return sorted(found, key=lambda b: rank.get(b["name"], len(rank)))


def main():
    args = sys.argv[1:]
    jobs = 3
    if args[:1] == ["--jobs"]:
        jobs, args = int(args[1]), args[2:]
    cargo_args, test_args = args, []
    if "--" in args:
        split = args.index("--")
        cargo_args, test_args = args[:split], args[split + 1 :]
    binaries = test_binaries(cargo_args)
    if not binaries:
        sys.exit("test_binaries.py: cargo built no test executable")

    lock = threading.Lock()
    failed = []
    start = time.monotonic()

    def run(binary):
        with lock:
            if failed:
                return
            # In this script's process group, as under cargo: whatever
            # stops the run stops them.
            try:
                process = subprocess.Popen(
                    [binary["executable"], *test_args],
                    cwd=binary["dir"],
                    env=dict(os.environ, CARGO_MANIFEST_DIR=binary["dir"]),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            except OSError as error:
                failed.append((binary["label"], None, f"could not start it: {error}\n"))
                return
        t0 = time.monotonic()
        output = process.communicate()[0].decode(errors="replace")
        took = time.monotonic() - t0
        with lock:
            if process.returncode != 0:
                failed.append((binary["label"], process.returncode, output))
            else:
                print(f"     Ran {binary['label']} [{took:.1f}s]")
                print(output, end="", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for outcome in [pool.submit(run, binary) for binary in binaries]:
            outcome.result()
    for label, code, output in failed:
        print(output, end="", flush=True)
        print(f"\ntest binary {label} failed (exit status {code})", file=sys.stderr, flush=True)
    if failed:
        sys.exit(1)
    print(f"     {len(binaries)} test binaries passed in {time.monotonic() - start:.1f}s, {jobs} at a time")


if __name__ == "__main__":
    main()
