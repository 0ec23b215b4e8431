//! The core's timers: what is due ([`Timer`], each carrying the token of the round or identity
//! it belongs to, so a stale one is recognised and ignored) and when ([`Timers`], a queue on
//! simulated time that fires equal deadlines in scheduling order).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A timer of the core, routed by `Core::tick` to the part it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Start the next probe round (swim/probe).
    Probe,
    /// The direct ack of probe `seq` is late: probe indirectly (swim/probe).
    ProbeTimeout(u32),
    /// Probe round `seq` is over: suspect the target if nothing answered (swim/probe).
    ProbeEnd(u32),
    /// Gossip pending broadcasts to a few peers (swim/gossip).
    Gossip,
    /// Periodic push/pull with a random peer (sync).
    PushPull,
    /// The suspicion about a node (with this epoch) timed out (swim/suspicion).
    Suspicion(String, u64),
    /// An indirect probe we run for a peer timed out: nack if asked (swim/probe).
    IndirectExpire(u32),
    /// Forget failed and left members after their timeouts (serf/reap).
    Reap,
    /// Try to reconnect to a failed member (serf/reap).
    Reconnect,
    /// The deadline of our outgoing query with this handle (serf/query).
    QueryEnd(u64),
    /// The deadline of an incoming query with this token (serf/query).
    IncomingQueryEnd(u64),
    /// The graceful leave's current step (with this epoch) timed out (serf/leave).
    Leave(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TimerKey(Instant, u64);

/// Timers on simulated time: the earliest first, equal deadlines in scheduling order.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(TimerKey, Timer)>>,
    seq: u64,
}

impl Timers {
    /// Schedules `t` at `at`.
    pub fn schedule(&mut self, at: Instant, t: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((TimerKey(at, self.seq), t)));
    }

    /// When the earliest timer is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((k, _))| k.0)
    }

    /// The earliest timer, if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((k, _))) if k.0 <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_earliest_first_and_equal_deadlines_in_scheduling_order() {
        let t0 = Instant::now();
        let mut q = Timers::default();
        q.schedule(t0 + Duration::from_secs(2), Timer::Gossip);
        q.schedule(t0 + Duration::from_secs(1), Timer::Reap);
        q.schedule(t0 + Duration::from_secs(1), Timer::Probe);
        assert_eq!(q.next_at(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None, "nothing is due before its deadline");
        let due: Vec<Timer> =
            std::iter::from_fn(|| q.pop_due(t0 + Duration::from_secs(5))).collect();
        assert_eq!(due, vec![Timer::Reap, Timer::Probe, Timer::Gossip]);
        assert_eq!(q.next_at(), None);
    }
}
