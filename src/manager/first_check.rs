//! The first-check alert: a slot the agent filled that still waits for its first passing
//! health check after [`FIRST_CHECK_ALERT`] (an app without the checked path, a firewall,
//! a wrong port tag) raises a `first_check` alert naming the member and the slot; it is
//! resolved when the check passes or the member leaves the slot. HAProxy keeps such a slot
//! in drain, so no request reaches it; the alert is what tells the operator why the member
//! serves nothing. Pure: the waits and the time are passed in.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::alerts::{AlertBook, AlertKind};
use crate::slots::FirstCheckWait;

/// Default `--first-check-alert`: ten times HAProxy's default check interval (`inter 2s`).
pub const FIRST_CHECK_ALERT: Duration = Duration::from_secs(20);

/// What changed in the alerts, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A slot has now waited longer than the limit.
    Raised(FirstCheckWait),
    /// A slot that had an alert no longer waits: `(backend, slot)`.
    Resolved(String, String),
}

/// Raises an alert for every wait longer than `limit`, resolves the alerts of slots that no
/// longer wait, and returns what changed.
pub fn evaluate(
    alerts: &mut AlertBook,
    waits: &[FirstCheckWait],
    limit: Duration,
    now: SystemTime,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut late = BTreeSet::new();
    for w in waits
        .iter()
        .filter(|w| w.waited_ms > limit.as_millis() as u64)
    {
        late.insert((w.backend.clone(), w.slot.clone()));
        let message = format!(
            "{} in slot {} has waited {} s for its first passing health check (kept in drain: \
             is the app answering the backend's check on that address and port?)",
            w.member,
            w.slot,
            w.waited_ms / 1000
        );
        let new = !alerts.is_active(AlertKind::FirstCheck, &w.backend, &w.slot);
        alerts.raise(AlertKind::FirstCheck, &w.backend, &w.slot, message, now);
        if new {
            changes.push(Change::Raised(w.clone()));
        }
    }
    for (backend, slot) in alerts.active_subjects(AlertKind::FirstCheck) {
        if !late.contains(&(backend.clone(), slot.clone())) {
            alerts.resolve(
                AlertKind::FirstCheck,
                &backend,
                &slot,
                "the slot no longer waits (check passed, or the member left)".into(),
                now,
            );
            changes.push(Change::Resolved(backend, slot));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(slot: &str, ms: u64) -> FirstCheckWait {
        FirstCheckWait {
            backend: "web".into(),
            slot: slot.into(),
            member: format!("m-{slot}"),
            waited_ms: ms,
        }
    }

    #[test]
    fn a_slot_waiting_past_the_limit_raises_one_alert_resolved_when_it_stops_waiting() {
        let mut book = AlertBook::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let limit = Duration::from_secs(20);
        assert!(evaluate(&mut book, &[wait("web1", 5_000)], limit, now).is_empty());
        assert!(!book.is_active(AlertKind::FirstCheck, "web", "web1"));
        let c = evaluate(&mut book, &[wait("web1", 21_000)], limit, now);
        assert_eq!(c, vec![Change::Raised(wait("web1", 21_000))]);
        assert!(book.is_active(AlertKind::FirstCheck, "web", "web1"));
        assert!(book.views()[0].message.contains("m-web1"));
        // still waiting: no new change, still one alert
        assert!(evaluate(&mut book, &[wait("web1", 30_000)], limit, now).is_empty());
        assert_eq!(book.active_by_kind()["first_check"], 1);
        let c = evaluate(&mut book, &[], limit, now);
        assert_eq!(c, vec![Change::Resolved("web".into(), "web1".into())]);
        assert_eq!(book.active_by_kind()["first_check"], 0);
    }
}
