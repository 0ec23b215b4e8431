//! Feeds the latency histograms ([`crate::metrics::latency`]) from what the manager sees:
//! when a membership change arrived, when the placements it caused were handed to the
//! reconciler, and the reconciler's status after its pass (`last_apply` is when HAProxy
//! answered the commands; the status is published after the read-back).
//!
//! - change → command: `last_apply − change`, for the first apply at or after the handoff
//!   (the change time is when the gossip event arrived, or when the manager evaluated for a
//!   change its own clock makes: the failed grace, the guard's hold);
//! - command → confirm: status published − `last_apply`, when the read-back found every
//!   slot as planned (`last_error` empty).
//!
//! A handoff that needed no command (nothing differed in HAProxy) is forgotten after
//! [`FORGET_AFTER`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::metrics::latency::Latency;
use crate::slots::ReconcilerStatus;

/// A handoff older than this without an apply is dropped unmeasured.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// One backend's new placements, handed to the reconciler.
#[derive(Debug, Clone)]
struct Handoff {
    backend: String,
    changed: SystemTime,
    handed: SystemTime,
}

/// Handoffs waiting for their apply; shared by the evaluation task and the watcher.
#[derive(Debug, Default, Clone)]
pub struct Pending(Arc<Mutex<Vec<Handoff>>>);

impl Pending {
    /// `backend`'s placements changed because of a membership change at `changed`, and
    /// were handed to the reconciler now.
    pub fn handed(&self, backend: &str, changed: SystemTime) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.push(Handoff {
            backend: backend.to_string(),
            changed,
            handed: SystemTime::now(),
        });
    }

    /// Matches a reconciler status published at `now` against the pending handoffs.
    fn on_status(&self, latency: &Latency, st: &ReconcilerStatus, applied: bool, now: SystemTime) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(apply)) = (applied, st.last_apply) {
            p.retain(|h| {
                if h.handed > apply {
                    return true;
                }
                if let Ok(d) = apply.duration_since(h.changed) {
                    latency.observe_change_to_command(&h.backend, d);
                }
                if st.last_error.is_none() {
                    if let Ok(d) = now.duration_since(apply) {
                        latency.observe_command_to_confirm(&h.backend, d);
                    }
                }
                false
            });
        }
        p.retain(|h| now.duration_since(h.handed).unwrap_or_default() < FORGET_AFTER);
    }
}

/// Watches the reconciler's status until it stops, measuring each pending handoff.
pub async fn watch(
    mut status: watch::Receiver<ReconcilerStatus>,
    pending: Pending,
    latency: Latency,
) {
    let mut applies = status.borrow().applies;
    while status.changed().await.is_ok() {
        let st = status.borrow_and_update().clone();
        let applied = st.applies > applies;
        applies = st.applies;
        pending.on_status(&latency, &st, applied, SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsRegistry;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn a_handoff_is_measured_by_the_first_apply_after_it_and_only_once() {
        let r = MetricsRegistry::new();
        let l = Latency::register(&r);
        let p = Pending::default();
        p.0.lock().unwrap().push(Handoff {
            backend: "web".into(),
            changed: at(0),
            handed: at(4),
        });
        let mut st = ReconcilerStatus {
            last_apply: Some(at(2)),
            ..Default::default()
        };
        p.on_status(&l, &st, true, at(3));
        assert_eq!(p.0.lock().unwrap().len(), 1, "an apply before the handoff");
        st.last_apply = Some(at(10));
        p.on_status(&l, &st, true, at(12));
        assert!(p.0.lock().unwrap().is_empty());
        p.on_status(&l, &st, true, at(13));
        let text = r.encode();
        assert!(
            text.contains("haserf_member_change_to_command_seconds_count{backend=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("haserf_member_change_to_command_seconds_sum{backend=\"web\"} 0.01"),
            "{text}"
        );
        assert!(
            text.contains("haserf_command_to_confirm_seconds_sum{backend=\"web\"} 0.002"),
            "{text}"
        );
    }

    #[test]
    fn a_handoff_that_needed_no_command_is_forgotten() {
        let l = Latency::unregistered();
        let p = Pending::default();
        p.0.lock().unwrap().push(Handoff {
            backend: "web".into(),
            changed: at(0),
            handed: at(0),
        });
        let st = ReconcilerStatus::default();
        p.on_status(&l, &st, false, at(1));
        assert_eq!(p.0.lock().unwrap().len(), 1);
        p.on_status(&l, &st, false, at(0) + FORGET_AFTER);
        assert!(p.0.lock().unwrap().is_empty());
    }
}
