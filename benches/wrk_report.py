#!/usr/bin/env python3
"""Writes benches/wrk.md from wrk's outputs and puts it into BENCHMARKS.md
between the wrk markers (see benches/wrk.sh).

    wrk_report.py OUTDIR "bare fusebox governor" ROUNDS "wrk command line" \
        "bare:fusebox ..." DUET_ROUNDS "duet wrk command line"

OUTDIR holds MODE.ROUND.txt (wrk --latency output), MODE.ROUND.cpu (the
server's CPU clock ticks during that run), clk_tck and loadavg-before/-after
(the solo runs); duet.A:B.ROUND.{a,b}.txt (wrk output of each side) and
duet.A:B.ROUND.cpu ("mode_a mode_b cpu_ns_a cpu_ns_b steal_ticks_cpu0"),
and duet-capped (the duets' CPU cgroup cap).
"""
import datetime, os, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- wrk:begin -->", "<!-- wrk:end -->"
out_dir, modes, rounds, command = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4]
pairs, duet_rounds, duet_command = sys.argv[5].split(), int(sys.argv[6]), sys.argv[7]

UNIT = {"us": 1.0, "ms": 1e3, "s": 1e6}


def micros(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNIT[m.group(2)]


def parse(path):
    text = open(path).read()
    run = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "seconds": float(re.search(r"requests in ([\d.]+)s", text).group(1)),
        "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0,
        "socket_errors": sum(map(int, m.groups())) if (m := re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)) else 0,
    }
    for q in ("50", "99"):
        if m := re.search(rf"^\s+{q}%\s+(\S+)$", text, re.M):
            run[f"p{q}"] = micros(m.group(1))
    return run


CLK_TCK = int(open(os.path.join(out_dir, "clk_tck")).read())


def run(mode, r):
    x = parse(os.path.join(out_dir, f"{mode}.{r}.txt"))
    ticks = int(open(os.path.join(out_dir, f"{mode}.{r}.cpu")).read())
    x["cpu"] = ticks / CLK_TCK * 1e6 / x["requests"]  # server CPU µs per request
    x["busy"] = ticks / CLK_TCK / x["seconds"]  # share of the run the server was on a CPU
    return x


runs = {m: [run(m, r) for r in range(1, rounds + 1)] for m in modes}
bad = [f"{m}: {sum(r['non2xx'] for r in rs)} non-2xx answers" for m, rs in runs.items() if any(r["non2xx"] for r in rs)]
if bad:
    sys.exit("the limiter refused requests, the runs measure nothing: " + "; ".join(bad))
med = {m: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "cpu", "busy")} for m, rs in runs.items()}


def paired(a, b):
    """The median over rounds of a's requests/s over b's in the same round:
    the machine drifts between rounds (±10 % here) more than between two
    runs of one round, so the ratio is taken within each round."""
    return statistics.median(x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b]))


def lat(us):
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


lock = open(os.path.join(ROOT, "Cargo.lock")).read()
def version(p):
    m = re.search(rf'name = "{p}"\nversion = "([^"]+)"', lock)
    return m.group(1) if m else "?"


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
load = [open(os.path.join(out_dir, f"loadavg-{w}")).read().split()[0] for w in ("before", "after")]
LABEL = {
    "bare": "bare axum (`axum::serve(listener, router)`)",
    "bare-outer": "bare axum served as the layers around the router are (`ServiceExt::into_make_service` of the finalised router): their baseline",
    "fusebox-outer": "axum + fusebox keyed `RateLimitLayer` + `CircuitBreakerLayer` around the router (with its `RateLimit` fields, its default)",
    "governor-outer": "axum + tower_governor `GovernorLayer` (keyed) around the router, no headers (its default)",
    "governor-headers-outer": "axum + tower_governor `GovernorLayer` (keyed) around the router, with `use_headers()`",
    "fusebox-no-fields-outer": "fusebox around the router without the `RateLimit` fields",
    "fusebox-limit-no-fields-outer": "fusebox keyed `RateLimitLayer` alone around the router, without its fields",
    "identity-outer": "a layer that does nothing, around the router",
    "fusebox": "axum + fusebox keyed `RateLimitLayer` + `CircuitBreakerLayer` in one `Router::layer` call (with its `RateLimit` fields, its default)",
    "fusebox-two-calls": "the same fusebox layers in two `Router::layer` calls",
    "identity": "floor: a layer that does nothing (`tower_layer::Identity`), one `Router::layer` call",
    "governor": "axum + tower_governor `GovernorLayer` (keyed), no headers (its default)",
    "governor-headers": "axum + tower_governor `GovernorLayer` (keyed) with `use_headers()`",
    "fusebox-no-fields": "breakdown: fusebox without the `RateLimit` fields (`rate_limit_headers(false)`)",
    "fusebox-limit": "breakdown: fusebox keyed `RateLimitLayer` alone (with the fields)",
    "fusebox-breaker": "breakdown: fusebox `CircuitBreakerLayer` alone",
}

o = []
w = o.append
w("## HTTP under wrk: the tower layers' cost per request (`benches/wrk.sh`)\n")
w("Generated by `benches/wrk.sh`; do not edit by hand.\n")
w(f"* date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
  f"machine: {cpu}, {os.cpu_count()} logical CPUs, load average {load[0]} before and {load[1]} after")
w(f"* {wrk_version}; {rustc}; release profile; axum {version('axum')}, hyper {version('hyper')}, "
  f"tokio {version('tokio')}, tower_governor {version('tower_governor')} (governor {version('governor')})")
w("* both limiters keyed by the `x-api-key` header into a `SmolStr` (inline: no heap allocation per request), quotas never reached (fusebox: 10^9/s, "
  "burst 10^9; governor: one token per ns, burst 2^32 − 1), every answer a 200 (checked: a non-2xx answer "
  "fails the script); fusebox adds the `RateLimit-Policy` and `RateLimit` fields to every response (its "
  "default), tower_governor adds none by default and `x-ratelimit-limit` / `x-ratelimit-remaining` with "
  "`use_headers()`; like is compared with like: fusebox with its fields against governor with its "
  "headers, and fusebox without fields against governor without")
w("")
w("### Solo runs: requests/s and latency\n")
w(f"* each run: `{command}` after a 1 s warm-up; modes interleaved, {rounds} rounds; the table shows medians, "
  "and ratios to bare as the median over rounds of the ratio within a round. Single runs on this VM drift by "
  "more than the layers cost (see the spread below): the duets further down measure the costs")
PINNED = open(os.path.join(out_dir, "pinned")).read().strip() == "1"
if PINNED:
    w("* the server (benches/examples/http_server.rs): `GET /` answering `ok`, **pinned to CPU 0 with one tokio "
      "worker**; wrk pinned to CPU 1 with one thread. *Server busy* is the share of the run the server was "
      "on its CPU: near 100 % it is the bottleneck; lower, the client (or the host taking CPU 0 away) "
      "limits the rate too, which is why the duets below cap the servers")
else:
    w("* the server (benches/examples/http_server.rs): `GET /` answering `ok` on tokio's multi-thread runtime "
      "(a worker per CPU); wrk runs on the **same** cores, nothing pinned, so client and server compete and "
      "a layer's cost shows as a share of what both reach together")
w("* *server CPU/request*: the server process's user + system time during the measured run "
  "(`/proc/PID/stat`, 1/CLK_TCK resolution) over the requests wrk completed; less moved by other "
  "processes than throughput is, it is the cost a layer adds where the server has the CPU to itself\n")
w("| server | requests/s | ÷ bare (paired) | p50 latency | p99 latency | server CPU/request | ÷ bare | server busy | requests/s per round |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for m in modes:
    r = med[m]
    each = ", ".join(f"{x['rps']:,.0f}" for x in runs[m])
    w(f"| {LABEL.get(m, m)} | {r['rps']:,.0f} | {paired(m, 'bare'):.3f} | {lat(r['p50'])} | "
      f"{lat(r['p99'])} | {r['cpu']:.2f} µs | {r['cpu'] / med['bare']['cpu']:.3f} | {100 * r['busy']:.0f} % | {each} |")
spread = {m: (min(x["rps"] for x in rs), max(x["rps"] for x in rs)) for m, rs in runs.items()}
w("\nRound-to-round spread of one server (min … max requests/s): " + "; ".join(
    f"{m} {lo:,.0f} … {hi:,.0f} ({100 * (hi - lo) / med[m]['rps']:.0f} % of its median)" for m, (lo, hi) in spread.items())
  + ". A difference between modes smaller than that is not resolved by this table.")
errors = sum(r["socket_errors"] for rs in runs.values() for r in rs)
if errors:
    w(f"\nwrk counted {errors} socket errors over all runs.")
w("")
# --- Duets ---------------------------------------------------------------
def duet(pair, r):
    base = os.path.join(out_dir, f"duet.{pair}.{r}")
    mode_a, mode_b, ns_a, ns_b, steal = open(base + ".cpu").read().split()
    side = {mode_a: parse(base + ".a.txt"), mode_b: parse(base + ".b.txt")}
    side[mode_a]["ns"], side[mode_b]["ns"] = int(ns_a), int(ns_b)
    if mode_a == mode_b:  # the control: a is the first listed
        first, second = parse(base + ".a.txt"), parse(base + ".b.txt")
        first["ns"], second["ns"] = int(ns_a), int(ns_b)
    else:
        first, second = side[pair.split(":")[0]], side[pair.split(":")[1]]
    bad = first["non2xx"] + second["non2xx"]
    if bad:
        sys.exit(f"duet {pair} round {r}: {bad} non-2xx answers, the run measures nothing")
    # A request cut by a socket error costs CPU without being counted:
    # it would raise that side's cost per request (a hostile review
    # noticed the duets never looked).
    errors = first["socket_errors"] + second["socket_errors"]
    if errors:
        sys.exit(f"duet {pair} round {r}: {errors} wrk socket errors, the costs are not comparable")
    cost = lambda x: x["ns"] / x["requests"]
    return {"cost": cost(second) / cost(first), "rps": second["rps"] / first["rps"],
            "steal": int(steal), "us": (cost(first) / 1e3, cost(second) / 1e3)}


duets = {p: [duet(p, r) for r in range(1, duet_rounds + 1)] for p in pairs}
capped = open(os.path.join(out_dir, "duet-capped")).read().strip() == "capped"
w("### Duets: each layer's cost against bare axum and against tower_governor, measured side by side\n")
w(f"* each round: two servers at once on CPU 0 (one tokio worker each{', both in one CPU cgroup capped at 50 % of the CPU so that they, not the clients, are the bottleneck' if capped else ', **not capped** (no writable CPU cgroup): the clients may be the bottleneck'}), "
  f"each loaded by its own `{duet_command}` on CPU 1 after a 1 s warm-up; {duet_rounds} rounds per pair, "
  "alternating which server starts first")
w("* *cost ratio*: B's CPU time per request over A's, each server's CPU time being the sum of its threads' "
  "run time (`/proc/PID/task/*/schedstat`, ns, time stolen by the host excluded) over the requests its wrk "
  "completed; both servers go through the same interference at the same time, so the ratio holds where "
  "solo runs drift (Bulej et al., \"Duet Benchmarking\", 2020). Requests/s B ÷ A is shown too: with the CPU "
  "shared fairly it is the inverse of the cost ratio")
w("* `bare` against `bare` is the control: what the method reads for no difference\n")
w("| A | B | cost per request B ÷ A (median) | per round | requests/s B ÷ A (median) | CPU µs/request A, B (median) | CPU 0 steal, ticks/round (median) |")
w("|---|---|---:|---|---:|---:|---:|")
med_cost = {}
for p in pairs:
    a, b = p.split(":")
    ds = duets[p]
    med_cost[p] = statistics.median(d["cost"] for d in ds)
    each = ", ".join(f"{d['cost']:.3f}" for d in ds)
    us_a = statistics.median(d["us"][0] for d in ds)
    us_b = statistics.median(d["us"][1] for d in ds)
    w(f"| {a} | {b} | {med_cost[p]:.3f} | {each} | {statistics.median(d['rps'] for d in ds):.3f} | "
      f"{us_a:.2f}, {us_b:.2f} | {statistics.median(d['steal'] for d in ds):.0f} |")
w("")
w("| issue 13 target | measured | verdict | rounds that agree | how |\n|---|---:|---|---:|---|")


def verdict(ok):
    return "met" if ok else "**missed**"


# What the method reads for no difference: the widest round of the
# controls (a server against itself, `bare:bare` or any `X:X` pair). With no
# control run, nothing is resolved: every side-by-side reads as a tie.
controls = [d for p, ds in duets.items() if p.split(":")[0] == p.split(":")[1] for d in ds]
noise = max((abs(d["cost"] - 1) for d in controls), default=float("inf"))


def race(ratio):
    """fusebox's cost ÷ the peer's: a win or a loss only beyond the control's spread."""
    if ratio < 1 - noise:
        return "met"
    if ratio > 1 + noise:
        return "**missed**"
    if noise == float("inf"):
        return "**tie** (no control pair was run: nothing is resolved)"
    return f"**tie** (within the control's ±{100 * noise:.1f} %)"


for pair, what in [("bare-outer:fusebox-outer", "around the router, against the router served the same way without them"),
                   ("bare:fusebox", "in one `Router::layer` call, axum's per-request boxing included"),
                   ("bare:fusebox-outer", "around the router, against `axum::serve(listener, router)`: flattered by the cheaper way of serving, shown for completeness")]:
    if pair in duets:
        loss = 1 - 1 / med_cost[pair]
        agree = sum(1 - 1 / d["cost"] <= 0.05 for d in duets[pair])
        w(f"| fusebox's layers cost ≤ 5 % of bare throughput ({what}) | {100 * loss:.1f} % | {verdict(loss <= 0.05)} "
          f"| {agree} of {duet_rounds} | 1 − A's cost per request ÷ fusebox's (median ratio of the duet) |")
# The same bar for the peer: what tower_governor with its headers costs in
# the same placement (context for the first rows, not a target).
if "bare-outer:governor-headers-outer" in duets:
    pair = "bare-outer:governor-headers-outer"
    loss = 1 - 1 / med_cost[pair]
    agree = sum(1 - 1 / d["cost"] <= 0.05 for d in duets[pair])
    w(f"| (context, not a target: the peer under the same bar) tower_governor with `use_headers()` costs ≤ 5 % of bare throughput "
      f"(around the router, against the router served the same way) | {100 * loss:.1f} % | {verdict(loss <= 0.05)} "
      f"| {agree} of {duet_rounds} | 1 − A's cost per request ÷ tower_governor's (median ratio of the duet) |")
# The floor under that bar: what the cheapest parts of a keyed limit with
# its two fields cost on their own, whoever builds them (context again):
# the peer's keyed limiter without headers, and two constant fields added
# by a layer that does nothing else (`static-fields`). Their sum leaves
# what a breaker may cost before the layers pass 5 %.
floor_parts = ["bare-outer:governor-outer", "bare-outer:static-fields-outer"]
if all(p in duets for p in floor_parts):
    losses = [1 - 1 / med_cost[p] for p in floor_parts]
    floor = sum(losses)
    w(f"| (context, not a target: the floor under the bar) tower_governor keyed without headers ({100 * losses[0]:.1f} %) "
      f"plus two constant `RateLimit` fields ({100 * losses[1]:.1f} %), no breaker, around the router | "
      f"{100 * floor:.1f} % | {100 * max(0.0, 0.05 - floor):.1f} % of the 5 % left for a breaker | – | "
      f"the sum of the two duets' costs against `bare-outer` (median ratios) |")
for pair, what in [("governor-headers-outer:fusebox-outer", "both with rate-limit headers; fusebox with its breaker too"),
                   ("governor-headers-outer:fusebox-limit-outer", "limiters alone, both with rate-limit headers"),
                   ("governor-outer:fusebox-limit-no-fields-outer", "limiters alone, neither with headers"),
                   ("governor-outer:fusebox-no-fields-outer", "no headers; fusebox with its breaker too")]:
    if pair in duets:
        agree = sum(d["cost"] < 1 for d in duets[pair])
        w(f"| fusebox faster than tower_governor ({what}) | {med_cost[pair]:.3f} × its cost | {race(med_cost[pair])} "
          f"| {agree} of {duet_rounds} | fusebox's cost per request ÷ tower_governor's (median ratio of the duet) |")
w("")
section = "\n".join(o)
open(os.path.join(ROOT, "benches/wrk.md"), "w").write(section)

path = os.path.join(ROOT, "BENCHMARKS.md")
doc = open(path).read() if os.path.exists(path) else ""
block = f"{BEGIN}\n{section}\n{END}"
if BEGIN in doc and END in doc:
    doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
elif "\n## Sizes" in doc:
    i = doc.index("\n## Sizes") + 1
    doc = doc[:i] + block + "\n\n" + doc[i:]
else:
    doc = doc.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(doc)
print(section)
