//! What the server counted: `INFO commandstats` (calls per command) and
//! `INFO cpu` (the server's CPU time), read before and after each row.
//!
//! Redis counts the commands a Lua script runs (`redis.call`) in
//! `commandstats` as well, so the client's own requests are told apart by
//! name: a row that runs a script sends `EVALSHA` (and, on `NOSCRIPT`,
//! `SCRIPT LOAD` and `EVALSHA` again), never a bare `GET`/`SET`/`TIME`/`DEL`;
//! those are the script's. The `INFO` requests that take the snapshots are
//! left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fusebox_std::backend::RedisConnection;

use crate::BoxError;

/// Commands the GCRA script runs inside Redis (`redis.call`).
const IN_SCRIPT: [&str; 4] = ["time", "get", "set", "del"];

/// The server's counters at one moment.
pub struct Snapshot {
    /// Per command: calls, and µs spent executing it.
    calls: BTreeMap<String, (u64, u64)>,
    cpu_secs: f64,
}

/// What the server did between two snapshots.
pub struct Delta {
    /// Requests the clients sent (round trips), by command.
    pub client: BTreeMap<String, u64>,
    /// Commands run inside scripts, by command.
    pub in_script: BTreeMap<String, u64>,
    /// µs the server spent executing the clients' requests (for a
    /// script: the whole script, its own commands included).
    pub exec_usec: u64,
    /// The server's CPU time (user + system), seconds.
    pub cpu_secs: f64,
}

impl Snapshot {
    /// Reads `INFO commandstats cpu` on `conn`.
    pub async fn take(conn: &mut RedisConnection) -> Result<Self, BoxError> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .arg("cpu")
            .query_async(conn)
            .await?;
        let mut calls = BTreeMap::new();
        let mut cpu_secs = 0.0;
        for line in info.lines() {
            if let Some(rest) = line.strip_prefix("cmdstat_") {
                let (name, fields) = rest.split_once(':').ok_or("a cmdstat line without ':'")?;
                let field = |key: &str| -> Result<u64, BoxError> {
                    Ok(fields
                        .split(',')
                        .find_map(|f| f.strip_prefix(key))
                        .ok_or_else(|| format!("a cmdstat line without {key}"))?
                        .parse::<u64>()?)
                };
                calls.insert(name.to_owned(), (field("calls=")?, field("usec=")?));
            } else if let Some(v) = line
                .strip_prefix("used_cpu_user:")
                .or_else(|| line.strip_prefix("used_cpu_sys:"))
            {
                cpu_secs += v.trim().parse::<f64>()?;
            }
        }
        Ok(Self { calls, cpu_secs })
    }

    /// From `self` to `later`; `scripted`: whether the row runs the Lua
    /// script (then `GET`, `SET`, `TIME` and `DEL` are the script's).
    pub fn delta(&self, later: &Self, scripted: bool) -> Delta {
        let mut client = BTreeMap::new();
        let mut in_script = BTreeMap::new();
        let mut exec_usec = 0;
        for (name, &(n, usec)) in &later.calls {
            let (n0, usec0) = self.calls.get(name).copied().unwrap_or((0, 0));
            if n == n0 || name == "info" {
                continue;
            }
            if scripted && IN_SCRIPT.contains(&name.as_str()) {
                in_script.insert(name.clone(), n - n0);
            } else {
                client.insert(name.clone(), n - n0);
                exec_usec += usec - usec0;
            }
        }
        Delta {
            client,
            in_script,
            exec_usec,
            cpu_secs: later.cpu_secs - self.cpu_secs,
        }
    }
}

impl Delta {
    /// All client requests.
    pub fn round_trips(&self) -> u64 {
        self.client.values().sum()
    }

    /// `name n, name n` (per decision, 4 decimals).
    pub fn per_decision(map: &BTreeMap<String, u64>, decisions: u64) -> String {
        let mut s = String::new();
        for (name, &n) in map {
            if !s.is_empty() {
                s.push_str(", ");
            }
            #[allow(clippy::cast_precision_loss, reason = "a ratio for a table")]
            let r = n as f64 / decisions.max(1) as f64;
            let _ = write!(s, "{} {r:.4}", name.to_uppercase());
        }
        if s.is_empty() {
            s.push('-');
        }
        s
    }
}
