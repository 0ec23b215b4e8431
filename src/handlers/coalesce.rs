//! Serf's event coalescing for handlers, sans-IO: member events gathered for up to the
//! coalesce period (3 s in `serf agent`) or until the quiescent period (1 s) passes without
//! one, then one event per type listing the members' latest states; user events sent with
//! `coalesce` keep only the latest Lamport time per name. As serf's `coalesce.go`,
//! `coalesce_member.go` and `coalesce_user.go` (member and user events have separate
//! windows); other events pass straight through.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::event::{EventKind, HandlerEvent, MemberLine, UserEvent};

/// Coalescing periods; `serf agent` hard-codes 3 s / 1 s for both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescePeriods {
    /// Longest a pending event waits.
    pub coalesce: Duration,
    /// Flush once no new event came for this long.
    pub quiescent: Duration,
}

impl Default for CoalescePeriods {
    fn default() -> Self {
        CoalescePeriods {
            coalesce: Duration::from_secs(3),
            quiescent: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    first_deadline: Option<Instant>,
    quiet_deadline: Option<Instant>,
}

impl Window {
    fn touch(&mut self, now: Instant, p: CoalescePeriods) {
        self.first_deadline.get_or_insert(now + p.coalesce);
        self.quiet_deadline = Some(now + p.quiescent);
    }
    fn deadline(&self) -> Option<Instant> {
        match (self.first_deadline, self.quiet_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }
}

/// The coalescing state between the gossip events and the handler queues.
#[derive(Debug)]
pub struct Coalescer {
    periods: CoalescePeriods,
    member_window: Window,
    /// Latest pending state per member.
    latest: BTreeMap<String, (EventKind, MemberLine)>,
    /// Last state flushed per member (a repeat of it is not sent again, updates excepted).
    last_sent: BTreeMap<String, EventKind>,
    user_window: Window,
    /// Per user event name: the latest Lamport time and its events.
    users: BTreeMap<String, (u64, Vec<UserEvent>)>,
}

impl Coalescer {
    /// A coalescer with these periods.
    pub fn new(periods: CoalescePeriods) -> Self {
        Coalescer {
            periods,
            member_window: Window::default(),
            latest: BTreeMap::new(),
            last_sent: BTreeMap::new(),
            user_window: Window::default(),
            users: BTreeMap::new(),
        }
    }

    /// Takes one event; returns what is to be handled at once (events that are not
    /// coalesced).
    pub fn push(&mut self, ev: HandlerEvent, now: Instant) -> Vec<HandlerEvent> {
        match ev {
            HandlerEvent::Member { kind, members } => {
                for m in members {
                    self.latest.insert(m.name.clone(), (kind, m));
                }
                self.member_window.touch(now, self.periods);
                Vec::new()
            }
            HandlerEvent::User(u) if u.coalesce => {
                let entry = self.users.entry(u.name.clone());
                let slot = entry.or_insert((u.ltime, Vec::new()));
                if u.ltime > slot.0 {
                    *slot = (u.ltime, vec![u]);
                } else if u.ltime == slot.0 {
                    slot.1.push(u);
                }
                self.user_window.touch(now, self.periods);
                Vec::new()
            }
            other => vec![other],
        }
    }

    /// When [`Coalescer::poll`] has something to flush next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.member_window.deadline(), self.user_window.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Flushes every window that is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<HandlerEvent> {
        let mut out = Vec::new();
        if self.member_window.due(now) {
            self.member_window = Window::default();
            let mut by_kind: BTreeMap<EventKind, Vec<MemberLine>> = BTreeMap::new();
            for (name, (kind, m)) in std::mem::take(&mut self.latest) {
                if self.last_sent.get(&name) == Some(&kind) && kind != EventKind::MemberUpdate {
                    continue;
                }
                self.last_sent.insert(name, kind);
                by_kind.entry(kind).or_default().push(m);
            }
            out.extend(
                by_kind
                    .into_iter()
                    .map(|(kind, members)| HandlerEvent::Member { kind, members }),
            );
        }
        if self.user_window.due(now) {
            self.user_window = Window::default();
            for (_, (_, events)) in std::mem::take(&mut self.users) {
                out.extend(events.into_iter().map(HandlerEvent::User));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(kind: EventKind, name: &str) -> HandlerEvent {
        HandlerEvent::Member {
            kind,
            members: vec![MemberLine {
                name: name.into(),
                ..MemberLine::default()
            }],
        }
    }

    fn names(ev: &HandlerEvent) -> (EventKind, Vec<String>) {
        match ev {
            HandlerEvent::Member { kind, members } => {
                (*kind, members.iter().map(|m| m.name.clone()).collect())
            }
            other => (other.kind(), vec![other.name().unwrap_or("").to_string()]),
        }
    }

    #[test]
    fn member_events_wait_for_quiet_and_keep_each_members_latest_state() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalescePeriods::default());
        assert!(c.push(member(EventKind::MemberJoin, "a"), t0).is_empty());
        assert!(c.push(member(EventKind::MemberJoin, "b"), t0).is_empty());
        let t1 = t0 + Duration::from_millis(500);
        assert!(c.push(member(EventKind::MemberFailed, "a"), t1).is_empty());
        assert!(
            c.poll(t0 + Duration::from_millis(1400)).is_empty(),
            "not quiet yet"
        );
        assert_eq!(c.next_deadline(), Some(t1 + Duration::from_secs(1)));
        let out: Vec<_> = c
            .poll(t1 + Duration::from_secs(1))
            .iter()
            .map(names)
            .collect();
        assert_eq!(
            out,
            vec![
                (EventKind::MemberJoin, vec!["b".to_string()]),
                (EventKind::MemberFailed, vec!["a".to_string()]),
            ]
        );
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_steady_stream_is_flushed_at_the_coalesce_period_and_repeats_are_dropped() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalescePeriods::default());
        let mut flushed = Vec::new();
        for i in 0..40 {
            let t = t0 + Duration::from_millis(100 * i);
            flushed.extend(c.poll(t));
            c.push(member(EventKind::MemberJoin, "a"), t);
        }
        assert_eq!(flushed.len(), 1, "one flush at 3 s: {flushed:?}");
        assert!(
            c.poll(t0 + Duration::from_secs(10)).is_empty(),
            "join again: not resent"
        );
        c.push(
            member(EventKind::MemberUpdate, "a"),
            t0 + Duration::from_secs(10),
        );
        c.poll(t0 + Duration::from_secs(12));
        c.push(
            member(EventKind::MemberUpdate, "a"),
            t0 + Duration::from_secs(13),
        );
        assert_eq!(
            c.poll(t0 + Duration::from_secs(15)).len(),
            1,
            "updates always go"
        );
    }

    #[test]
    fn coalesced_user_events_keep_the_latest_ltime_and_others_pass() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(CoalescePeriods::default());
        let u = |name: &str, ltime, coalesce| {
            HandlerEvent::User(UserEvent {
                name: name.into(),
                payload: vec![],
                ltime,
                coalesce,
            })
        };
        assert!(c.push(u("deploy", 5, true), t0).is_empty());
        assert!(c.push(u("deploy", 7, true), t0).is_empty());
        assert!(c.push(u("deploy", 6, true), t0).is_empty());
        assert_eq!(c.push(u("now", 8, false), t0).len(), 1);
        let out = c.poll(t0 + Duration::from_secs(1));
        assert_eq!(out.len(), 1);
        match &out[0] {
            HandlerEvent::User(e) => assert_eq!(e.ltime, 7),
            other => panic!("{other:?}"),
        }
    }
}
