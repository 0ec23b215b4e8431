//! Partition guard: when a large share of a backend's members drop out of rotation for
//! non-graceful reasons (suspected or failed, not left) within a short window, the load
//! balancer is more likely cut off than the members dead. Keep the last good set in rotation,
//! raise an alert, and let them go only once the condition has held for the hold time.
//!
//! A member heard as failed without having been suspected first may be leaving gracefully
//! (the memberlist half of a leave can arrive before Serf's leave intent: "failed, then
//! left"). During the policy's failed grace such a member is *ambiguous*: it neither starts
//! a departure nor ends one, and keeps its place in the guard's view of the rotation, so a
//! routine scale-down never raises the guard while a real failure still counts once the
//! grace has passed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Guard settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Trigger when this share of the backend's members, or more, departed within `window`.
    /// "Or more", not "more than": SWIM detects simultaneous failures one probe round apart,
    /// so with 3 of 4 failing the guard must already hold at the second (2 of 4): waiting for
    /// the third lets the first be declared failed and removed before the guard starts.
    /// A value ≥ 1.0 disables the guard.
    pub share: f64,
    /// How far back departures count.
    pub window: Duration,
    /// How long the held set stays in rotation before the departures are applied.
    pub hold: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            share: 0.5,
            window: Duration::from_secs(10),
            hold: Duration::from_secs(30),
        }
    }
}

/// What changed in the guard during one evaluation (for logs and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardAlert {
    /// The guard started holding these members in rotation.
    Holding(Vec<String>),
    /// Every held member came back; the hold ended early.
    Recovered,
    /// The hold time passed; the departures are applied now.
    Released(Vec<String>),
}

/// One backend's guard.
#[derive(Debug, Default)]
pub struct PartitionGuard {
    in_rotation: BTreeSet<String>,
    departures: VecDeque<(Instant, String)>,
    hold: Option<Hold>,
}

#[derive(Debug)]
struct Hold {
    since: Instant,
    members: BTreeSet<String>,
}

impl PartitionGuard {
    /// Feeds one evaluation: `in_rotation_now` are the members that would be in rotation,
    /// `departed_badly` those out of rotation because they are suspected or failed (past
    /// the failed grace), `ambiguous` those failed within the grace (see the module doc).
    /// Returns the members to keep in rotation despite their state, and an alert when the
    /// guard's state changed.
    pub fn evaluate(
        &mut self,
        cfg: &GuardConfig,
        now: Instant,
        in_rotation_now: &BTreeSet<String>,
        departed_badly: &BTreeSet<String>,
        ambiguous: &BTreeSet<String>,
    ) -> (BTreeSet<String>, Option<GuardAlert>) {
        for name in departed_badly {
            if self.in_rotation.contains(name) && !self.departures.iter().any(|(_, n)| n == name) {
                self.departures.push_back((now, name.clone()));
            }
        }
        self.departures.retain(|(at, name)| {
            now.saturating_duration_since(*at) <= cfg.window && !in_rotation_now.contains(name)
        });
        let mut alert = None;
        if let Some(hold) = &mut self.hold {
            hold.members
                .retain(|m| departed_badly.contains(m) || ambiguous.contains(m));
            for (_, name) in &self.departures {
                hold.members.insert(name.clone());
            }
            if hold.members.is_empty() {
                self.hold = None;
                alert = Some(GuardAlert::Recovered);
            } else if now.saturating_duration_since(hold.since) >= cfg.hold {
                let released: Vec<String> = hold.members.iter().cloned().collect();
                self.hold = None;
                self.departures.clear();
                alert = Some(GuardAlert::Released(released));
            }
        } else if cfg.share < 1.0 && !self.departures.is_empty() {
            let base = in_rotation_now.len() + self.departures.len();
            if self.departures.len() as f64 >= cfg.share * base as f64 {
                let members: BTreeSet<String> =
                    self.departures.iter().map(|(_, n)| n.clone()).collect();
                alert = Some(GuardAlert::Holding(members.iter().cloned().collect()));
                self.hold = Some(Hold {
                    since: now,
                    members,
                });
            }
        }
        let held = self.held();
        let still_counted: Vec<String> = ambiguous
            .iter()
            .filter(|m| self.in_rotation.contains(*m))
            .cloned()
            .collect();
        self.in_rotation = in_rotation_now
            .iter()
            .chain(held.iter())
            .chain(still_counted.iter())
            .cloned()
            .collect();
        (held, alert)
    }

    /// Members currently held in rotation.
    pub fn held(&self) -> BTreeSet<String> {
        self.hold
            .as_ref()
            .map(|h| h.members.clone())
            .unwrap_or_default()
    }

    /// When the current hold started, if any.
    pub fn holding_since(&self) -> Option<Instant> {
        self.hold.as_ref().map(|h| h.since)
    }
}

/// Guards for every backend.
#[derive(Debug, Default)]
pub struct Guards(pub BTreeMap<String, PartitionGuard>);

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn cfg() -> GuardConfig {
        GuardConfig::default()
    }

    #[test]
    fn one_failure_among_four_is_not_held() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b", "c", "d"]), &set(&[]), &set(&[]));
        let (held, alert) = g.evaluate(&cfg(), t, &set(&["a", "b", "c"]), &set(&["d"]), &set(&[]));
        assert!(held.is_empty());
        assert_eq!(alert, None);
    }

    #[test]
    fn three_of_four_failing_at_once_are_held_then_released_after_the_hold_time() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b", "c", "d"]), &set(&[]), &set(&[]));
        let (held, alert) = g.evaluate(&cfg(), t, &set(&["a"]), &set(&["b", "c", "d"]), &set(&[]));
        assert_eq!(held, set(&["b", "c", "d"]));
        assert_eq!(
            alert,
            Some(GuardAlert::Holding(vec![
                "b".into(),
                "c".into(),
                "d".into()
            ]))
        );
        let later = t + Duration::from_secs(10);
        let (held, alert) = g.evaluate(
            &cfg(),
            later,
            &set(&["a"]),
            &set(&["b", "c", "d"]),
            &set(&[]),
        );
        assert_eq!(held, set(&["b", "c", "d"]));
        assert_eq!(alert, None);
        let done = t + cfg().hold;
        let (held, alert) = g.evaluate(
            &cfg(),
            done,
            &set(&["a"]),
            &set(&["b", "c", "d"]),
            &set(&[]),
        );
        assert!(held.is_empty());
        assert_eq!(
            alert,
            Some(GuardAlert::Released(vec![
                "b".into(),
                "c".into(),
                "d".into()
            ]))
        );
        // Released departures do not re-trigger the guard.
        let (held, _) = g.evaluate(
            &cfg(),
            done,
            &set(&["a"]),
            &set(&["b", "c", "d"]),
            &set(&[]),
        );
        assert!(held.is_empty());
    }

    #[test]
    fn failures_spread_over_the_window_add_up() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b", "c", "d"]), &set(&[]), &set(&[]));
        let (held, _) = g.evaluate(&cfg(), t, &set(&["a", "b", "c"]), &set(&["d"]), &set(&[]));
        assert!(held.is_empty(), "1 of 4 is not held");
        let (held, alert) = g.evaluate(
            &cfg(),
            t + Duration::from_secs(2),
            &set(&["a", "b"]),
            &set(&["c", "d"]),
            &set(&[]),
        );
        assert_eq!(held, set(&["c", "d"]), "2 of 4 within the window: hold");
        assert!(matches!(alert, Some(GuardAlert::Holding(_))));
        let (held, alert) = g.evaluate(
            &cfg(),
            t + Duration::from_secs(4),
            &set(&["a"]),
            &set(&["b", "c", "d"]),
            &set(&[]),
        );
        assert_eq!(
            held,
            set(&["b", "c", "d"]),
            "a later departure joins the hold"
        );
        assert_eq!(alert, None);
    }

    #[test]
    fn the_hold_ends_early_when_every_held_member_comes_back() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b"]), &set(&[]), &set(&[]));
        let (held, _) = g.evaluate(&cfg(), t, &set(&[]), &set(&["a", "b"]), &set(&[]));
        assert_eq!(held, set(&["a", "b"]));
        let (held, alert) = g.evaluate(
            &cfg(),
            t + Duration::from_secs(1),
            &set(&["a", "b"]),
            &set(&[]),
            &set(&[]),
        );
        assert!(held.is_empty());
        assert_eq!(alert, Some(GuardAlert::Recovered));
    }

    #[test]
    fn a_share_of_one_disables_the_guard() {
        let mut g = PartitionGuard::default();
        let off = GuardConfig {
            share: 1.0,
            ..cfg()
        };
        let t = Instant::now();
        g.evaluate(&off, t, &set(&["a", "b"]), &set(&[]), &set(&[]));
        let (held, alert) = g.evaluate(&off, t, &set(&[]), &set(&["a", "b"]), &set(&[]));
        assert!(held.is_empty());
        assert_eq!(alert, None);
    }

    #[test]
    fn old_departures_fall_out_of_the_window() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b", "c", "d"]), &set(&[]), &set(&[]));
        g.evaluate(&cfg(), t, &set(&["a", "b", "c"]), &set(&["d"]), &set(&[]));
        let late = t + Duration::from_secs(60);
        let (held, alert) = g.evaluate(
            &cfg(),
            late,
            &set(&["a", "b"]),
            &set(&["c", "d"]),
            &set(&[]),
        );
        assert!(
            held.is_empty(),
            "d left the window long ago; c alone is 1 of 3"
        );
        assert_eq!(alert, None);
    }

    #[test]
    fn a_member_failed_within_the_grace_then_left_never_raises_the_guard() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b"]), &set(&[]), &set(&[]));
        // b is heard failed (no suspicion first): one of two, but it may be a graceful leave
        let (held, alert) = g.evaluate(&cfg(), t, &set(&["a"]), &set(&[]), &set(&["b"]));
        assert!(held.is_empty());
        assert_eq!(alert, None);
        // then left: gone from every set
        let (held, alert) = g.evaluate(
            &cfg(),
            t + Duration::from_millis(50),
            &set(&["a"]),
            &set(&[]),
            &set(&[]),
        );
        assert!(held.is_empty());
        assert_eq!(alert, None);
    }

    #[test]
    fn a_failure_heard_without_suspicion_counts_once_the_grace_has_passed() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b"]), &set(&[]), &set(&[]));
        g.evaluate(&cfg(), t, &set(&["a"]), &set(&[]), &set(&["b"]));
        let (held, alert) = g.evaluate(
            &cfg(),
            t + Duration::from_secs(3),
            &set(&["a"]),
            &set(&["b"]),
            &set(&[]),
        );
        assert_eq!(held, set(&["b"]));
        assert!(matches!(alert, Some(GuardAlert::Holding(_))));
    }

    #[test]
    fn a_held_member_that_turns_ambiguous_stays_held() {
        let mut g = PartitionGuard::default();
        let t = Instant::now();
        g.evaluate(&cfg(), t, &set(&["a", "b"]), &set(&[]), &set(&[]));
        // b suspected: held
        let (held, _) = g.evaluate(&cfg(), t, &set(&["a"]), &set(&["b"]), &set(&[]));
        assert_eq!(held, set(&["b"]));
        // then declared failed (within the grace): still held, no "recovered"
        let (held, alert) = g.evaluate(
            &cfg(),
            t + Duration::from_secs(1),
            &set(&["a"]),
            &set(&[]),
            &set(&["b"]),
        );
        assert_eq!(held, set(&["b"]));
        assert_eq!(alert, None);
    }
}
