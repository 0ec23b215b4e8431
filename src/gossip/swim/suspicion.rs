//! Suspicion with Lifeguard timers (memberlist `suspicion.go`): a suspected node is declared
//! dead when its suspicion times out. The timeout starts at `max` and shrinks towards `min`
//! as independent confirmations arrive (`k` are expected), so a node suspected by many is
//! failed fast and a node suspected by one slow peer gets time to refute. Each timer carries
//! an epoch: a timer rescheduled by a confirmation, or a suspicion cleared by an alive,
//! leaves stale timers that do nothing.
//!
//! A suspect message is applied in `swim/state.rs` (`Swim::suspect`), which starts or
//! confirms the suspicion here; a probe round that gets no ack suspects its target
//! (`swim/probe.rs`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::gossip::config::Timing;

/// memberlist `suspicionTimeout`: `mult × max(1, log10(max(1, n))) × interval`, the minimum
/// suspicion timeout in a cluster of `n` nodes (without Go's millisecond truncation of the
/// scale).
pub(crate) fn suspicion_timeout(mult: u32, n: usize, interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    interval.mul_f64(mult as f64 * scale)
}

/// One suspicion: when it started, its bounds, and who confirmed it.
#[derive(Debug)]
struct Suspicion {
    /// Confirmations expected before the timeout reaches `min`.
    k: u32,
    min: Duration,
    max: Duration,
    start: Instant,
    /// The first accuser and every confirmer.
    from: HashSet<String>,
    epoch: u64,
}

impl Suspicion {
    /// memberlist `remainingSuspicionTime` from the start: `max` minus the fraction
    /// `log(n + 1) / log(k + 1)` of `max - min` for `n` confirmations, never below `min`.
    fn deadline(&self) -> Instant {
        let n = self.from.len().saturating_sub(1) as f64;
        if self.k == 0 {
            return self.start + self.min;
        }
        let frac = ((n + 1.0).ln() / (self.k as f64 + 1.0).ln()).min(1.0);
        let raw = self.max.as_secs_f64() - frac * (self.max.as_secs_f64() - self.min.as_secs_f64());
        let t = Duration::from_secs_f64(raw.max(self.min.as_secs_f64()));
        self.start + t
    }
}

/// What a suspect message did to an existing suspicion.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// The node is not under suspicion.
    NotSuspected,
    /// Already counted (or enough confirmations): nothing changes.
    Known,
    /// A new confirmation: the timer moves to `deadline` with a new `epoch` (and the suspect
    /// message is re-gossiped).
    Counted {
        /// New deadline.
        deadline: Instant,
        /// Epoch of the new timer.
        epoch: u64,
    },
}

/// The suspicions in progress, by node.
#[derive(Debug, Default)]
pub(crate) struct Suspicions {
    by_node: HashMap<String, Suspicion>,
    epoch: u64,
}

impl Suspicions {
    /// Starts suspecting `node` on `from`'s word in a cluster of `n` nodes (memberlist
    /// `suspectNode`: `k = SuspicionMult - 2` confirmations expected, none below 3 nodes;
    /// `min = suspicionTimeout`, `max = SuspicionMaxTimeoutMult × min`). Returns the
    /// deadline and epoch of its timer.
    pub fn start(
        &mut self,
        node: &str,
        from: &str,
        n: usize,
        timing: &Timing,
        now: Instant,
    ) -> (Instant, u64) {
        let mut k = timing.suspicion_mult.saturating_sub(2);
        if (n as i64 - 2) < k as i64 {
            k = 0;
        }
        let min = suspicion_timeout(timing.suspicion_mult, n, timing.probe_interval);
        let max = min * timing.suspicion_max_timeout_mult;
        self.epoch += 1;
        let s = Suspicion {
            k,
            min,
            max,
            start: now,
            from: HashSet::from([from.to_string()]),
            epoch: self.epoch,
        };
        let deadline = s.deadline();
        self.by_node.insert(node.to_string(), s);
        (deadline, self.epoch)
    }

    /// `from` also suspects `node` (memberlist `Confirm`).
    pub fn confirm(&mut self, node: &str, from: &str) -> Confirmation {
        let Some(s) = self.by_node.get_mut(node) else {
            return Confirmation::NotSuspected;
        };
        if s.from.contains(from) || s.from.len() > s.k as usize {
            return Confirmation::Known;
        }
        s.from.insert(from.to_string());
        self.epoch += 1;
        s.epoch = self.epoch;
        Confirmation::Counted {
            deadline: s.deadline(),
            epoch: self.epoch,
        }
    }

    /// Ends the suspicion about `node` (it proved alive, or is dead); whether there was one.
    pub fn remove(&mut self, node: &str) -> bool {
        self.by_node.remove(node).is_some()
    }

    /// The timer with `epoch` fired: true (and the suspicion ends) when it is the current
    /// one, false for a stale timer.
    pub fn expire(&mut self, node: &str, epoch: u64) -> bool {
        match self.by_node.get(node) {
            Some(s) if s.epoch == epoch => {
                self.by_node.remove(node);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_timeout_scales_with_the_log_of_the_cluster_size_like_memberlists() {
        // memberlist TestUtil_SuspicionTimeout: suspicionTimeout(3, n, 1s) / 3.
        let ms = |n| (suspicion_timeout(3, n, Duration::from_secs(1)) / 3).as_millis();
        assert_eq!(ms(5), 1000);
        assert_eq!(ms(10), 1000);
        assert_eq!(ms(100), 2000);
        assert_eq!(ms(1000), 3000);
        // Go truncates the scale to 1.698 (1698970004 ns); we keep the full 1.69897.
        assert_eq!(ms(50), 1698);
        assert_eq!(ms(500), 2698);
    }

    fn suspicion(k: u32, min: Duration, max: Duration, start: Instant, n: usize) -> Suspicion {
        let mut from = HashSet::from(["me".to_string()]);
        for i in 0..n {
            from.insert(format!("c{i}"));
        }
        Suspicion {
            k,
            min,
            max,
            start,
            from,
            epoch: 1,
        }
    }

    #[test]
    fn the_timeout_shrinks_from_max_to_min_with_confirmations_like_memberlists() {
        // memberlist TestSuspicion_remainingSuspicionTime, as deadlines from the start
        // (elapsed + remaining): k = 3, min 2 s, max 30 s.
        let t0 = Instant::now();
        let (min, max) = (Duration::from_secs(2), Duration::from_secs(30));
        let at = |n| suspicion(3, min, max, t0, n).deadline() - t0;
        assert_eq!(at(0), max);
        assert_eq!(at(1), Duration::from_secs(16));
        let two = at(2).as_secs_f64();
        assert!((two - 7.810).abs() < 0.001, "{two}");
        assert_eq!(at(3), min);
        assert_eq!(at(4), min, "never below min");
        assert_eq!(at(5), min);
    }

    #[test]
    fn without_expected_confirmations_the_timeout_is_min() {
        let t0 = Instant::now();
        let s = suspicion(0, Duration::from_secs(2), Duration::from_secs(30), t0, 0);
        assert_eq!(s.deadline() - t0, Duration::from_secs(2));
    }

    #[test]
    fn confirmations_are_counted_once_per_peer_up_to_k() {
        // As memberlist TestSuspicion_Timer (k = 3), with min 625 ms and max 2.5 s.
        let mut timing = Timing::lan();
        timing.suspicion_mult = 5; // k = 3
        timing.probe_interval = Duration::from_millis(125); // min = 5 × 1 × 125 ms = 625 ms
        timing.suspicion_max_timeout_mult = 4;
        let t0 = Instant::now();
        let mut s = Suspicions::default();
        let (d0, e0) = s.start("n1", "me", 10, &timing, t0);
        assert_eq!(d0 - t0, Duration::from_millis(2500), "max = 4 × min");
        assert_eq!(s.confirm("n1", "me"), Confirmation::Known, "the accuser");
        let Confirmation::Counted { deadline, epoch } = s.confirm("n1", "foo") else {
            panic!("a new confirmation counts");
        };
        assert!(epoch > e0 && deadline < d0);
        assert_eq!(s.confirm("n1", "foo"), Confirmation::Known, "once per peer");
        assert!(matches!(
            s.confirm("n1", "bar"),
            Confirmation::Counted { .. }
        ));
        let Confirmation::Counted { deadline, .. } = s.confirm("n1", "baz") else {
            panic!("third confirmation");
        };
        assert_eq!(deadline - t0, Duration::from_millis(625), "k reached: min");
        assert_eq!(s.confirm("n1", "qux"), Confirmation::Known, "beyond k");
        assert_eq!(s.confirm("n2", "foo"), Confirmation::NotSuspected);
    }

    #[test]
    fn small_clusters_expect_no_confirmations() {
        let timing = Timing::lan(); // suspicion_mult 4: k = 2, but n - 2 < k
        let t0 = Instant::now();
        let mut s = Suspicions::default();
        let (d, _) = s.start("n1", "me", 3, &timing, t0);
        assert_eq!(d - t0, Duration::from_secs(4), "min = 4 × 1 × 1 s at once");
    }

    #[test]
    fn a_stale_timer_does_nothing_and_the_current_one_ends_the_suspicion() {
        let timing = Timing::lan();
        let t0 = Instant::now();
        let mut s = Suspicions::default();
        let (_, first) = s.start("n1", "a", 10, &timing, t0);
        let Confirmation::Counted { epoch, .. } = s.confirm("n1", "b") else {
            panic!("k = 2 here");
        };
        assert!(
            !s.expire("n1", first),
            "rescheduled: the first timer is stale"
        );
        assert!(s.expire("n1", epoch));
        assert!(!s.remove("n1"), "already ended");
    }
}
