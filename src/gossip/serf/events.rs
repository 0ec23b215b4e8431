//! User events (Serf `UserEvent` / `handleUserEvent`): named payloads gossiped to every
//! member, ordered by the event Lamport clock. Each is delivered once: a ring of the last 512
//! event times keeps what was seen (and goes into push/pulls so a joining node learns recent
//! events); older events are dropped, and after a join with `ignore_old` those before the
//! join are not delivered.

use std::collections::HashMap;

use super::lamport::LamportClock;
use crate::gossip::error::GossipError;
use crate::gossip::model::UserEventInfo;
use crate::gossip::output::CoreEvent;
use crate::gossip::runtime::Runtime;
use crate::gossip::wire::{encode_serf_message, RingEvent, RingSlot, SerfMessage, UserEvent};

/// Serf's `eventBuffer`: event times remembered.
const EVENT_BUFFER: u64 = 512;

/// The user event state of a member.
#[derive(Debug)]
pub(crate) struct UserEvents {
    clock: LamportClock,
    /// Events older than this are not delivered (set by a join that ignores old events).
    min_time: u64,
    ring: HashMap<u64, RingSlot>,
}

impl UserEvents {
    /// No event seen; the clock at 1.
    pub fn new() -> Self {
        UserEvents {
            clock: LamportClock::new(1),
            min_time: 0,
            ring: HashMap::new(),
        }
    }

    /// The event clock.
    pub fn clock(&self) -> u64 {
        self.clock.time()
    }

    /// Sends a user event: size-checked (name + payload, then the encoded message, against
    /// `limit`), delivered here, then gossiped. Refused while `leaving`.
    pub fn send(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
        limit: usize,
        leaving: bool,
        rt: &mut Runtime,
    ) -> Result<(), GossipError> {
        let size = name.len() + payload.len();
        if size > limit {
            return Err(GossipError::TooLarge {
                what: "user event (name + payload)",
                size,
                limit,
            });
        }
        if leaving {
            return Err(GossipError::Leaving);
        }
        let ev = UserEvent {
            ltime: self.clock.time(),
            name: name.to_string(),
            payload: payload.to_vec(),
            cc: coalesce,
        };
        self.clock.increment();
        let bytes = encode_serf_message(&SerfMessage::UserEvent(ev.clone()));
        if bytes.len() > limit {
            return Err(GossipError::TooLarge {
                what: "encoded user event",
                size: bytes.len(),
                limit,
            });
        }
        self.handle(ev, rt);
        rt.broadcasts.queue_serf(bytes, None);
        Ok(())
    }

    /// A user event from the cluster (or a push/pull): delivered unless too old or already
    /// seen. True when it was news (re-gossip it).
    pub fn handle(&mut self, e: UserEvent, rt: &mut Runtime) -> bool {
        self.clock.witness(e.ltime);
        if e.ltime < self.min_time {
            return false;
        }
        let cur = self.clock.time();
        if cur > EVENT_BUFFER && e.ltime < cur - EVENT_BUFFER {
            rt.count_drop("old_user_event");
            return false;
        }
        let idx = e.ltime % EVENT_BUFFER;
        let slot = self.ring.entry(idx).or_insert_with(|| RingSlot {
            ltime: e.ltime,
            events: Vec::new(),
        });
        if slot.ltime != e.ltime {
            *slot = RingSlot {
                ltime: e.ltime,
                events: Vec::new(),
            };
        }
        if slot
            .events
            .iter()
            .any(|x| x.name == e.name && x.payload == e.payload)
        {
            return false;
        }
        slot.events.push(RingEvent {
            name: e.name.clone(),
            payload: e.payload.clone(),
        });
        rt.event(CoreEvent::User(UserEventInfo {
            name: e.name,
            payload: e.payload,
            ltime: e.ltime,
            coalesce: e.cc,
        }));
        true
    }

    /// The ring for a push/pull, oldest first.
    pub fn recent(&self) -> Vec<Option<RingSlot>> {
        let mut v: Vec<&RingSlot> = self.ring.values().collect();
        v.sort_by_key(|s| s.ltime);
        v.into_iter().cloned().map(Some).collect()
    }

    /// A push/pull's event clock: witnessed; `ignore_old` (our join asked to ignore old
    /// events) makes everything before it undeliverable.
    pub fn witness_remote(&mut self, ltime: u64, ignore_old: bool) {
        if ltime > 0 {
            self.clock.witness(ltime - 1);
        }
        if ignore_old {
            self.min_time = self.min_time.max(ltime);
        }
    }

    /// The events of a push/pull's ring (delivered like gossiped ones, never coalesced).
    pub fn merge_remote(&mut self, ring: Vec<Option<RingSlot>>, rt: &mut Runtime) {
        for slot in ring.into_iter().flatten() {
            for e in slot.events {
                self.handle(
                    UserEvent {
                        ltime: slot.ltime,
                        name: e.name,
                        payload: e.payload,
                        cc: false,
                    },
                    rt,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::output::Output;
    use crate::gossip::runtime::testing::runtime;

    fn ev(ltime: u64, name: &str) -> UserEvent {
        UserEvent {
            ltime,
            name: name.into(),
            payload: b"p".to_vec(),
            cc: false,
        }
    }

    fn delivered(rt: &mut Runtime) -> Vec<(u64, String)> {
        std::iter::from_fn(|| rt.poll_output())
            .filter_map(|o| match o {
                Output::Event(CoreEvent::User(u)) => Some((u.ltime, u.name)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_event_is_delivered_once_and_moves_the_clock() {
        let mut rt = runtime();
        let mut e = UserEvents::new();
        assert!(e.handle(ev(7, "deploy"), &mut rt));
        assert!(!e.handle(ev(7, "deploy"), &mut rt), "a duplicate");
        assert!(e.handle(ev(7, "other"), &mut rt), "same time, other event");
        assert_eq!(
            delivered(&mut rt),
            vec![(7, "deploy".into()), (7, "other".into())]
        );
        assert_eq!(e.clock(), 8);
    }

    #[test]
    fn events_older_than_the_ring_are_dropped_and_counted() {
        let mut rt = runtime();
        let mut e = UserEvents::new();
        e.handle(ev(1000, "new"), &mut rt);
        assert!(!e.handle(ev(400, "old"), &mut rt));
        assert_eq!(rt.stats.dropped.get("old_user_event"), Some(&1));
        assert!(e.handle(ev(500, "recent enough"), &mut rt));
    }

    #[test]
    fn after_a_join_that_ignores_old_events_earlier_ones_are_not_delivered() {
        let mut rt = runtime();
        let mut e = UserEvents::new();
        e.witness_remote(10, true);
        assert_eq!(e.clock(), 10);
        e.merge_remote(
            vec![
                Some(RingSlot {
                    ltime: 9,
                    events: vec![RingEvent {
                        name: "before".into(),
                        payload: vec![],
                    }],
                }),
                None,
            ],
            &mut rt,
        );
        assert!(delivered(&mut rt).is_empty());
        assert!(e.handle(ev(10, "after"), &mut rt));
    }

    #[test]
    fn a_sent_event_takes_the_clock_is_delivered_here_and_gossiped() {
        let mut rt = runtime();
        let mut e = UserEvents::new();
        e.send("deploy", b"v1", true, 512, false, &mut rt).unwrap();
        assert_eq!(delivered(&mut rt), vec![(1, "deploy".into())]);
        assert_eq!(e.clock(), 2);
        assert_eq!(rt.broadcasts.len(), 1);
        assert_eq!(e.recent().len(), 1, "in the ring for push/pulls");
        let big = e.send("x", &[0; 600], false, 512, false, &mut rt);
        assert!(matches!(big, Err(GossipError::TooLarge { size: 601, .. })));
        let leaving = e.send("x", b"", false, 512, true, &mut rt);
        assert!(matches!(leaving, Err(GossipError::Leaving)));
        assert_eq!(e.clock(), 2, "refused events take no time");
    }
}
