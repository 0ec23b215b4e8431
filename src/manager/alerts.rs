//! Alerts that clear: a condition raises an alert once, the alert stays active while the
//! condition lasts, is marked resolved (with when and how) when it ends, and a resolved
//! alert is dropped [`RESOLVED_TTL`] later. `haserf status` shows them (`haproxy.alerts`),
//! `haserf_alerts_active{kind}` counts the active ones. Pure: time is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// How long a resolved alert stays listed.
pub const RESOLVED_TTL: Duration = Duration::from_secs(15 * 60);
/// Most alerts kept; the oldest resolved go first, then the oldest active.
pub const MAX_ALERTS: usize = 32;

/// What raised an alert (its `kind` in JSON and in `haserf_alerts_active{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The partition guard holds failed members in rotation.
    PartitionGuard,
    /// A slot has waited for its first passing health check for too long.
    FirstCheck,
}

impl AlertKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::PartitionGuard => "partition_guard",
            AlertKind::FirstCheck => "first_check",
        }
    }
}

/// One alert as `haserf status` shows it (times in RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    /// What raised it.
    pub kind: AlertKind,
    /// Backend.
    pub backend: String,
    /// What is wrong (updated while active).
    pub message: String,
    /// True until the condition ended.
    pub active: bool,
    /// When it was raised.
    pub at: String,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// How it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

#[derive(Debug, Clone)]
struct Alert {
    kind: AlertKind,
    backend: String,
    subject: String,
    message: String,
    at: SystemTime,
    resolved: Option<(SystemTime, String)>,
}

/// The alerts of one agent.
#[derive(Debug, Default)]
pub struct AlertBook {
    alerts: Vec<Alert>,
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl AlertBook {
    /// Raises (or, if the same kind/backend/subject is active, updates the message of) an
    /// alert. `subject` tells apart alerts of one kind in one backend (e.g. a slot); empty
    /// when there is one per backend.
    pub fn raise(
        &mut self,
        kind: AlertKind,
        backend: &str,
        subject: &str,
        message: String,
        now: SystemTime,
    ) {
        if let Some(a) = self.active_mut(kind, backend, subject) {
            a.message = message;
            return;
        }
        self.alerts.push(Alert {
            kind,
            backend: backend.to_string(),
            subject: subject.to_string(),
            message,
            at: now,
            resolved: None,
        });
        self.trim();
    }

    /// Marks the active alert of that kind/backend/subject resolved; nothing if none is.
    pub fn resolve(
        &mut self,
        kind: AlertKind,
        backend: &str,
        subject: &str,
        how: String,
        now: SystemTime,
    ) {
        if let Some(a) = self.active_mut(kind, backend, subject) {
            a.resolved = Some((now, how));
        }
    }

    /// True while that alert is active.
    pub fn is_active(&self, kind: AlertKind, backend: &str, subject: &str) -> bool {
        self.alerts.iter().any(|a| {
            a.resolved.is_none() && a.kind == kind && a.backend == backend && a.subject == subject
        })
    }

    /// `(backend, subject)` of every active alert of `kind`.
    pub fn active_subjects(&self, kind: AlertKind) -> Vec<(String, String)> {
        self.alerts
            .iter()
            .filter(|a| a.resolved.is_none() && a.kind == kind)
            .map(|a| (a.backend.clone(), a.subject.clone()))
            .collect()
    }

    /// Drops the alerts resolved more than [`RESOLVED_TTL`] before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        self.alerts.retain(|a| match &a.resolved {
            None => true,
            Some((at, _)) => now.duration_since(*at).unwrap_or_default() < RESOLVED_TTL,
        });
    }

    /// Active alerts per kind (every kind listed, 0 when none).
    pub fn active_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut out: BTreeMap<&'static str, usize> =
            [AlertKind::PartitionGuard, AlertKind::FirstCheck]
                .into_iter()
                .map(|k| (k.as_str(), 0))
                .collect();
        for a in self.alerts.iter().filter(|a| a.resolved.is_none()) {
            *out.entry(a.kind.as_str()).or_default() += 1;
        }
        out
    }

    /// Every alert kept, oldest first.
    pub fn views(&self) -> Vec<AlertView> {
        self.alerts
            .iter()
            .map(|a| AlertView {
                kind: a.kind,
                backend: a.backend.clone(),
                message: a.message.clone(),
                active: a.resolved.is_none(),
                at: rfc3339(a.at),
                resolved_at: a.resolved.as_ref().map(|(t, _)| rfc3339(*t)),
                resolution: a.resolved.as_ref().map(|(_, how)| how.clone()),
            })
            .collect()
    }

    fn active_mut(&mut self, kind: AlertKind, backend: &str, subject: &str) -> Option<&mut Alert> {
        self.alerts.iter_mut().find(|a| {
            a.resolved.is_none() && a.kind == kind && a.backend == backend && a.subject == subject
        })
    }

    fn trim(&mut self) {
        while self.alerts.len() > MAX_ALERTS {
            let victim = self
                .alerts
                .iter()
                .position(|a| a.resolved.is_some())
                .unwrap_or(0);
            self.alerts.remove(victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn an_alert_is_active_until_resolved_then_expires() {
        let mut b = AlertBook::default();
        b.raise(
            AlertKind::PartitionGuard,
            "web",
            "",
            "holding 2".into(),
            t(0),
        );
        b.raise(
            AlertKind::PartitionGuard,
            "web",
            "",
            "holding 3".into(),
            t(5),
        );
        let v = b.views();
        assert_eq!(v.len(), 1, "raised once, updated");
        assert_eq!(v[0].message, "holding 3");
        assert!(v[0].active);
        assert_eq!(v[0].at, "2027-01-15T08:00:00.000Z");
        assert_eq!(b.active_by_kind()["partition_guard"], 1);
        b.resolve(
            AlertKind::PartitionGuard,
            "web",
            "",
            "recovered".into(),
            t(10),
        );
        let v = b.views();
        assert!(!v[0].active);
        assert_eq!(
            v[0].resolved_at.as_deref(),
            Some("2027-01-15T08:00:10.000Z")
        );
        assert_eq!(v[0].resolution.as_deref(), Some("recovered"));
        assert_eq!(b.active_by_kind()["partition_guard"], 0);
        b.expire(t(10) + RESOLVED_TTL - Duration::from_secs(1));
        assert_eq!(b.views().len(), 1);
        b.expire(t(10) + RESOLVED_TTL);
        assert!(b.views().is_empty());
    }

    #[test]
    fn a_new_occurrence_after_resolution_is_a_new_alert() {
        let mut b = AlertBook::default();
        b.raise(AlertKind::FirstCheck, "web", "web3", "waiting".into(), t(0));
        b.resolve(AlertKind::FirstCheck, "web", "web3", "passed".into(), t(1));
        b.raise(AlertKind::FirstCheck, "web", "web3", "waiting".into(), t(2));
        assert_eq!(b.views().len(), 2);
        assert!(b.is_active(AlertKind::FirstCheck, "web", "web3"));
        assert!(!b.is_active(AlertKind::FirstCheck, "web", "web4"));
    }

    #[test]
    fn the_book_is_bounded_and_drops_resolved_alerts_first() {
        let mut b = AlertBook::default();
        b.raise(AlertKind::PartitionGuard, "keep", "", "active".into(), t(0));
        for i in 0..100 {
            let s = i.to_string();
            b.raise(AlertKind::FirstCheck, "web", &s, "x".into(), t(i));
            b.resolve(AlertKind::FirstCheck, "web", &s, "y".into(), t(i));
        }
        assert_eq!(b.views().len(), MAX_ALERTS);
        assert!(b.is_active(AlertKind::PartitionGuard, "keep", ""));
    }
}
