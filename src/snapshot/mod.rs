//! Serf's snapshot (`snapshot_path`, `-snapshot`): an append-only text log of the members
//! this node saw alive and of its Lamport clocks, so that a restarted agent rejoins the
//! cluster it knew without `-join` and never hands an old user event or query to its
//! handlers again. The format is serf's own (`serf/snapshot.go`), so a node moving from
//! `serf agent` to `haserf agent` keeps its file:
//!
//! ```text
//! alive: NAME IP:PORT
//! not-alive: NAME
//! clock: N          (member clock - 1)
//! event-clock: N    (last user event seen)
//! query-clock: N    (last query seen)
//! leave             (a graceful leave: forget everything, unless rejoin_after_leave)
//! # comment
//! ```
//!
//! [`Snapshot`] is the sans-IO state (replay, lines to append, compaction);
//! [`writer`] the task that owns the file.

pub mod writer;

use std::collections::BTreeMap;

/// Bytes per alive member in serf's compaction estimate (`snapshotBytesPerNode`).
pub const BYTES_PER_NODE: u64 = 128;
/// The log is compacted past this multiple of the estimate (`snapshotCompactionThreshold`).
pub const COMPACTION_THRESHOLD: u64 = 2;
/// Never compact below this size (serf's `MinSnapshotSize` default, 128 KiB).
pub const MIN_COMPACT_SIZE: u64 = 128 * 1024;

/// What a snapshot file says about the past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// Members last seen alive: name → `IP:PORT`.
    pub alive: BTreeMap<String, String>,
    /// Member clock.
    pub clock: u64,
    /// Last user event time.
    pub event_clock: u64,
    /// Last query time.
    pub query_clock: u64,
    /// Lines not understood (logged, skipped; serf does the same).
    pub unrecognized: Vec<String>,
}

/// Reads a snapshot as serf's `replay` does: later lines win; a `leave` forgets members and
/// clocks unless `rejoin_after_leave`; an unterminated last line is ignored.
pub fn replay(text: &str, rejoin_after_leave: bool) -> Previous {
    let mut p = Previous::default();
    let mut rest = text;
    while let Some(end) = rest.find('\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let num = |s: &str| s.parse::<u64>().ok();
        if let Some(info) = line.strip_prefix("alive: ") {
            match info.rsplit_once(' ') {
                Some((name, addr)) => {
                    p.alive.insert(name.to_string(), addr.to_string());
                }
                None => p.unrecognized.push(line.to_string()),
            }
        } else if let Some(name) = line.strip_prefix("not-alive: ") {
            p.alive.remove(name);
        } else if let Some(t) = line.strip_prefix("clock: ") {
            match num(t) {
                Some(t) => p.clock = t,
                None => p.unrecognized.push(line.to_string()),
            }
        } else if let Some(t) = line.strip_prefix("event-clock: ") {
            match num(t) {
                Some(t) => p.event_clock = t,
                None => p.unrecognized.push(line.to_string()),
            }
        } else if let Some(t) = line.strip_prefix("query-clock: ") {
            match num(t) {
                Some(t) => p.query_clock = t,
                None => p.unrecognized.push(line.to_string()),
            }
        } else if line.starts_with("coordinate: ") || line.starts_with('#') {
        } else if line == "leave" {
            if !rejoin_after_leave {
                let unrecognized = std::mem::take(&mut p.unrecognized);
                p = Previous {
                    unrecognized,
                    ..Previous::default()
                };
            }
        } else {
            p.unrecognized.push(line.to_string());
        }
    }
    p
}

/// The recorder's state: what the file holds once compacted, and what to append next.
#[derive(Debug, Clone)]
pub struct Snapshot {
    alive: BTreeMap<String, String>,
    last_clock: u64,
    last_event_clock: u64,
    last_query_clock: u64,
    rejoin_after_leave: bool,
    leaving: bool,
    /// Bytes in the file.
    pub offset: u64,
}

impl Snapshot {
    /// The state after replaying a file of `offset` bytes.
    pub fn new(prev: &Previous, offset: u64, rejoin_after_leave: bool) -> Self {
        Snapshot {
            alive: prev.alive.clone(),
            last_clock: prev.clock,
            last_event_clock: prev.event_clock,
            last_query_clock: prev.query_clock,
            rejoin_after_leave,
            leaving: false,
            offset,
        }
    }

    /// A member joined: `alive: NAME IP:PORT`.
    pub fn alive(&mut self, name: &str, addr: &str) -> Option<String> {
        if self.leaving {
            return None;
        }
        self.alive.insert(name.to_string(), addr.to_string());
        Some(format!("alive: {name} {addr}\n"))
    }

    /// A member left or failed: `not-alive: NAME`.
    pub fn not_alive(&mut self, name: &str) -> Option<String> {
        if self.leaving {
            return None;
        }
        self.alive.remove(name);
        Some(format!("not-alive: {name}\n"))
    }

    /// The member clock now reads `time`: `clock: time-1` when it moved (serf's
    /// `updateClock`).
    pub fn clock(&mut self, time: u64) -> Option<String> {
        let seen = time.saturating_sub(1);
        if self.leaving || seen <= self.last_clock {
            return None;
        }
        self.last_clock = seen;
        Some(format!("clock: {seen}\n"))
    }

    /// A user event at `ltime` was seen.
    pub fn user_event(&mut self, ltime: u64) -> Option<String> {
        if self.leaving || ltime <= self.last_event_clock {
            return None;
        }
        self.last_event_clock = ltime;
        Some(format!("event-clock: {ltime}\n"))
    }

    /// A query at `ltime` was seen.
    pub fn query(&mut self, ltime: u64) -> Option<String> {
        if self.leaving || ltime <= self.last_query_clock {
            return None;
        }
        self.last_query_clock = ltime;
        Some(format!("query-clock: {ltime}\n"))
    }

    /// A graceful leave: `leave`; nothing is recorded after it.
    pub fn leave(&mut self) -> String {
        self.leaving = true;
        if !self.rejoin_after_leave {
            self.alive.clear();
        }
        "leave\n".to_string()
    }

    /// The file should be compacted (serf's `snapshotMaxSize`).
    pub fn needs_compaction(&self) -> bool {
        let est = self.alive.len() as u64 * BYTES_PER_NODE * COMPACTION_THRESHOLD;
        self.offset > est.max(MIN_COMPACT_SIZE)
    }

    /// The compacted file: the alive members and the three clocks.
    pub fn compacted(&self) -> String {
        let mut out = String::new();
        for (name, addr) in &self.alive {
            out.push_str(&format!("alive: {name} {addr}\n"));
        }
        out.push_str(&format!("clock: {}\n", self.last_clock));
        out.push_str(&format!("event-clock: {}\n", self.last_event_clock));
        out.push_str(&format!("query-clock: {}\n", self.last_query_clock));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_latest_state_and_a_leave_forgets_unless_rejoin_after_leave() {
        let text = "alive: a 10.0.0.1:7946\nalive: b c 10.0.0.2:7946\nclock: 7\nevent-clock: 3\n\
                    query-clock: 2\nnot-alive: a\ncoordinate: x\n# note\nbogus\nalive: z 1.1.1.1:1";
        let p = replay(text, false);
        assert_eq!(p.alive.len(), 1);
        assert_eq!(
            p.alive["b c"], "10.0.0.2:7946",
            "the address is after the last space"
        );
        assert_eq!((p.clock, p.event_clock, p.query_clock), (7, 3, 2));
        assert_eq!(
            p.unrecognized,
            ["bogus"],
            "the unterminated last line is not read"
        );
        let left = format!("{text}\nleave\n");
        assert_eq!(replay(&left, false).alive.len(), 0);
        assert_eq!(replay(&left, false).event_clock, 0);
        assert_eq!(replay(&left, true).alive.len(), 2);
    }

    #[test]
    fn lines_are_appended_only_for_news_and_compaction_keeps_the_state() {
        let mut s = Snapshot::new(&Previous::default(), 0, false);
        assert_eq!(
            s.alive("a", "10.0.0.1:7946").unwrap(),
            "alive: a 10.0.0.1:7946\n"
        );
        assert_eq!(s.clock(5).unwrap(), "clock: 4\n");
        assert_eq!(s.clock(5), None);
        assert_eq!(s.user_event(9).unwrap(), "event-clock: 9\n");
        assert_eq!(s.user_event(8), None, "older events move nothing");
        assert_eq!(s.query(2).unwrap(), "query-clock: 2\n");
        s.alive("b", "10.0.0.2:7946");
        s.not_alive("b");
        let again = replay(&s.compacted(), false);
        assert_eq!(again.alive.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            (again.clock, again.event_clock, again.query_clock),
            (4, 9, 2)
        );
        assert_eq!(s.leave(), "leave\n");
        assert_eq!(s.alive("c", "x:1"), None, "nothing after a leave");
    }

    #[test]
    fn compaction_is_due_past_twice_the_estimate_and_never_below_128_kib() {
        let mut s = Snapshot::new(&Previous::default(), 100 * 1024, false);
        assert!(!s.needs_compaction());
        s.offset = 200 * 1024;
        assert!(s.needs_compaction());
        for i in 0..1000 {
            s.alive(&format!("n{i}"), "10.0.0.1:7946");
        }
        assert!(!s.needs_compaction(), "1000 members: 256000 bytes allowed");
    }
}
