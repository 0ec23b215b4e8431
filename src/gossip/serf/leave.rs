//! Our graceful leave (Serf `Leave` then memberlist `Leave`): a leave intent is gossiped and
//! awaited (up to the broadcast timeout), then a dead message about ourselves from
//! ourselves — peers mark us left, not failed — is gossiped and awaited, then we keep
//! answering for the propagation delay before stopping. Each step's timer carries an epoch,
//! so a step finished early (its broadcast went out) leaves a stale timer.

use std::time::{Duration, Instant};

use crate::gossip::runtime::Runtime;
use crate::gossip::swim::{NodeChange, Swim};
use crate::gossip::timer::Timer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not leaving.
    None,
    /// The leave intent is being gossiped.
    Intent,
    /// The dead message about ourselves is being gossiped.
    Dead,
    /// Still answering while the news spreads.
    Propagate,
    /// Stopped.
    Done,
}

/// What a step of the leave did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeaveStep {
    /// Waiting for a broadcast or a delay.
    Waiting,
    /// Our dead message was applied (the change to report) and is being gossiped.
    Dead(Option<NodeChange>),
    /// The leave is over: stop.
    Done,
}

/// The graceful leave state machine.
#[derive(Debug)]
pub(crate) struct Leave {
    phase: Phase,
    epoch: u64,
    broadcast_timeout: Duration,
    propagate_delay: Duration,
}

impl Leave {
    /// Not leaving; each broadcast is awaited up to `broadcast_timeout`, and the last step
    /// lasts `propagate_delay`.
    pub fn new(broadcast_timeout: Duration, propagate_delay: Duration) -> Self {
        Leave {
            phase: Phase::None,
            epoch: 0,
            broadcast_timeout,
            propagate_delay,
        }
    }

    /// Whether a leave started.
    pub fn is_leaving(&self) -> bool {
        self.phase != Phase::None
    }

    /// Starts leaving; false when already leaving. SWIM stops refuting news of our death.
    pub fn begin(&mut self, swim: &mut Swim) -> bool {
        if self.phase != Phase::None {
            return false;
        }
        self.phase = Phase::Intent;
        swim.local.leaving = true;
        true
    }

    /// Our leave intent (applied here already): gossiped and awaited when someone can hear
    /// it, else the next step at once.
    pub fn announce(
        &mut self,
        now: Instant,
        intent: Vec<u8>,
        swim: &mut Swim,
        rt: &mut Runtime,
    ) -> LeaveStep {
        if !swim.nodes.any_alive_peer(&swim.local.name) {
            return self.advance(now, swim, rt);
        }
        let notify = rt.next_id();
        rt.broadcasts.await_delivery(Some(notify));
        rt.broadcasts.queue_serf(intent, Some(notify));
        self.epoch += 1;
        rt.schedule(now + self.broadcast_timeout, Timer::Leave(self.epoch));
        LeaveStep::Waiting
    }

    /// [`Timer::Leave`]: the current step timed out (a stale epoch does nothing).
    pub fn timer(
        &mut self,
        now: Instant,
        epoch: u64,
        swim: &mut Swim,
        rt: &mut Runtime,
    ) -> LeaveStep {
        if epoch != self.epoch {
            return LeaveStep::Waiting;
        }
        self.advance(now, swim, rt)
    }

    /// The awaited broadcast went out: the next step now.
    pub fn broadcast_out(&mut self, now: Instant, swim: &mut Swim, rt: &mut Runtime) -> LeaveStep {
        self.epoch += 1;
        self.advance(now, swim, rt)
    }

    fn advance(&mut self, now: Instant, swim: &mut Swim, rt: &mut Runtime) -> LeaveStep {
        match self.phase {
            Phase::Intent => {
                self.phase = Phase::Dead;
                let notify = rt.next_id();
                rt.broadcasts.await_delivery(Some(notify));
                let change = swim.leave(now, notify, rt);
                self.epoch += 1;
                let at = if swim.nodes.any_alive_peer(&swim.local.name) {
                    now + self.broadcast_timeout
                } else {
                    now
                };
                rt.schedule(at, Timer::Leave(self.epoch));
                LeaveStep::Dead(change)
            }
            Phase::Dead => {
                self.phase = Phase::Propagate;
                rt.broadcasts.await_delivery(None);
                self.epoch += 1;
                rt.schedule(now + self.propagate_delay, Timer::Leave(self.epoch));
                LeaveStep::Waiting
            }
            Phase::Propagate => {
                self.phase = Phase::Done;
                LeaveStep::Done
            }
            Phase::None | Phase::Done => LeaveStep::Waiting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::config::Timing;
    use crate::gossip::runtime::testing::runtime;
    use crate::gossip::swim::nodes::testing::node;
    use crate::gossip::swim::LocalNode;
    use crate::gossip::wire::NodeStateKind;
    use std::net::SocketAddr;

    fn swim(peers: u8, rt: &mut Runtime, now: Instant) -> Swim {
        let local = LocalNode::new(
            "n0".into(),
            SocketAddr::from(([10, 0, 0, 0], 7946)),
            vec![],
            8,
        );
        let mut s = Swim::new(local, Timing::lan());
        let me = s.local.alive();
        s.alive(now, me, true, rt);
        for i in 1..=peers {
            s.nodes.insert(node(i, now), rt);
        }
        s
    }

    fn leave() -> Leave {
        Leave::new(Duration::from_secs(5), Duration::from_secs(1))
    }

    fn due(rt: &mut Runtime, at: Instant) -> Vec<Timer> {
        std::iter::from_fn(|| rt.timers.pop_due(at)).collect()
    }

    #[test]
    fn each_step_waits_for_its_broadcast_at_most_the_broadcast_timeout() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(2, &mut rt, t0);
        let mut l = leave();
        assert!(l.begin(&mut s) && s.local.leaving);
        assert!(!l.begin(&mut s), "once");
        let step = l.announce(t0, vec![1], &mut s, &mut rt);
        assert_eq!(step, LeaveStep::Waiting);
        let at = t0 + Duration::from_secs(5);
        assert_eq!(due(&mut rt, at), vec![Timer::Leave(1)]);
        // Timeout: the dead message about ourselves.
        let step = l.timer(t0, 1, &mut s, &mut rt);
        assert_eq!(step, LeaveStep::Dead(Some(NodeChange::Other("n0".into()))));
        assert_eq!(s.nodes.get("n0").unwrap().state, NodeStateKind::Left);
        assert_eq!(due(&mut rt, at), vec![Timer::Leave(2)]);
        assert_eq!(l.timer(t0, 2, &mut s, &mut rt), LeaveStep::Waiting);
        assert!(due(&mut rt, t0 + Duration::from_millis(999)).is_empty());
        let at = t0 + Duration::from_secs(1);
        assert_eq!(due(&mut rt, at), vec![Timer::Leave(3)]);
        assert_eq!(l.timer(t0, 2, &mut s, &mut rt), LeaveStep::Waiting, "stale");
        assert_eq!(l.timer(at, 3, &mut s, &mut rt), LeaveStep::Done);
    }

    #[test]
    fn a_broadcast_that_went_out_moves_on_at_once_and_its_timer_goes_stale() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(1, &mut rt, t0);
        let mut l = leave();
        l.begin(&mut s);
        l.announce(t0, vec![1], &mut s, &mut rt);
        assert!(!rt.broadcasts.awaited_out());
        while !rt.broadcasts.is_empty() {
            rt.broadcasts.take(1400);
        }
        assert!(rt.broadcasts.take_awaited_out());
        let step = l.broadcast_out(t0, &mut s, &mut rt);
        assert!(matches!(step, LeaveStep::Dead(Some(_))), "{step:?}");
        let stale = l.timer(t0, 1, &mut s, &mut rt);
        assert_eq!(stale, LeaveStep::Waiting, "the intent's timeout is stale");
        assert_eq!(s.nodes.get("n0").unwrap().state, NodeStateKind::Left);
    }

    #[test]
    fn alone_the_leave_skips_the_waits_but_still_propagates() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(0, &mut rt, t0);
        let mut l = leave();
        l.begin(&mut s);
        let step = l.announce(t0, vec![1], &mut s, &mut rt);
        assert!(matches!(step, LeaveStep::Dead(Some(_))), "{step:?}");
        assert_eq!(s.nodes.get("n0").unwrap().state, NodeStateKind::Left);
        assert_eq!(due(&mut rt, t0), vec![Timer::Leave(1)], "due at once");
        assert_eq!(l.timer(t0, 1, &mut s, &mut rt), LeaveStep::Waiting);
        let at = t0 + Duration::from_secs(1);
        assert_eq!(l.timer(at, 2, &mut s, &mut rt), LeaveStep::Done);
    }
}
