//! memberlist's node states (`state.go` `aliveNode`, `suspectNode`, `deadNode`): how alive,
//! suspect and dead messages — gossiped, pushed/pulled, or our own — change a node, and the
//! [`Swim`] layer that owns this node, the node table, the suspicions and the prober. Every
//! change it accepts is re-gossiped and reported as a [`NodeChange`] for the Serf layer.

use std::net::SocketAddr;
use std::time::Instant;

use super::gossip::gossip;
use super::local::LocalNode;
use super::nodes::{Node, Nodes};
use super::probe::Prober;
use super::suspicion::{Confirmation, Suspicions};
use crate::gossip::config::Timing;
use crate::gossip::runtime::Runtime;
use crate::gossip::timer::Timer;
use crate::gossip::wire::{Alive, Dead, IndirectPing, Message, NodeStateKind, Ping, Suspect, Vsn};

/// What an accepted alive, suspect or dead message changed, for the Serf layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeChange {
    /// A node became alive: new, or back from dead or left.
    Joined(String),
    /// An alive node's meta changed.
    Updated(String),
    /// A suspected node proved alive; `updated`: its meta changed too.
    Refuted {
        /// The node.
        node: String,
        /// Its meta changed.
        updated: bool,
    },
    /// A node is now suspected.
    Suspected(String),
    /// Another node is now dead or left.
    Gone(String),
    /// Something else changed about the node: its incarnation, or our own state.
    Other(String),
    /// Refused: another node claims this name at another address. `local`: our name.
    AddressConflict {
        /// The claimed name is ours.
        local: bool,
    },
}

/// The SWIM layer of one member.
#[derive(Debug)]
pub(crate) struct Swim {
    /// This node.
    pub local: LocalNode,
    /// Every node heard of.
    pub nodes: Nodes,
    suspicions: Suspicions,
    prober: Prober,
    timing: Timing,
}

impl Swim {
    /// The layer of `local`, knowing no node yet (not even itself: apply its alive).
    pub fn new(local: LocalNode, timing: Timing) -> Self {
        Swim {
            local,
            nodes: Nodes::default(),
            suspicions: Suspicions::default(),
            prober: Prober::default(),
            timing,
        }
    }

    // ------------------------------------------------------------------ alive

    /// Applies an alive message (memberlist `aliveNode`). `bootstrap`: our own, at start or
    /// with new tags. A newer incarnation (or a new address for a node dead long enough or
    /// left) is accepted and re-gossiped; an alive about us that we did not send is refuted.
    pub fn alive(
        &mut self,
        now: Instant,
        a: Alive,
        bootstrap: bool,
        rt: &mut Runtime,
    ) -> Option<NodeChange> {
        let is_local = a.node == self.local.name;
        if is_local && !bootstrap && self.local.leaving {
            return None;
        }
        let vsn = a.vsn.unwrap_or(Vsn::SERF);
        let mut created = false;
        if !self.nodes.contains(&a.node) {
            if a.incarnation == 0 && !bootstrap {
                return None;
            }
            let node = Node {
                name: a.node.clone(),
                addr: a.addr,
                port: a.port,
                meta: a.meta.clone(),
                vsn,
                incarnation: 0,
                state: NodeStateKind::Dead,
                state_change: now,
            };
            self.nodes.insert(node, rt);
            created = true;
        }
        let st = self.nodes.get(&a.node).expect("inserted").clone();
        let mut updates_node = false;
        if st.addr != a.addr || st.port != a.port {
            let reclaim = st.state == NodeStateKind::Left
                || (st.state == NodeStateKind::Dead
                    && (created
                        || now.duration_since(st.state_change) > self.timing.gossip_to_the_dead));
            if reclaim {
                updates_node = true;
            } else {
                tracing::warn!(
                    node = %a.node, old = %st.sock(), new = %SocketAddr::new(a.addr, a.port),
                    "conflicting address for a known node"
                );
                rt.count_drop("name_conflict");
                return Some(NodeChange::AddressConflict { local: is_local });
            }
        }
        if !is_local && a.incarnation <= st.incarnation && !updates_node && !created {
            return None;
        }
        if is_local && a.incarnation < st.incarnation {
            return None;
        }
        if is_local && !bootstrap {
            if a.incarnation == st.incarnation && a.meta == st.meta && vsn == st.vsn {
                return None;
            }
            self.refute(a.incarnation, rt);
            return None;
        }
        // Accept.
        self.suspicions.remove(&a.node);
        rt.broadcasts
            .queue_memberlist(&a.node, &Message::Alive(a.clone()), None);
        let n = self.nodes.get_mut(&a.node).expect("present");
        n.incarnation = a.incarnation;
        n.meta = a.meta.clone();
        n.addr = a.addr;
        n.port = a.port;
        n.vsn = vsn;
        if n.state != NodeStateKind::Alive {
            n.state = NodeStateKind::Alive;
            n.state_change = now;
        }
        let updated = st.meta != a.meta;
        Some(match st.state {
            NodeStateKind::Dead | NodeStateKind::Left => NodeChange::Joined(a.node),
            NodeStateKind::Suspect => NodeChange::Refuted {
                node: a.node,
                updated,
            },
            NodeStateKind::Alive if updated => NodeChange::Updated(a.node),
            NodeStateKind::Alive => NodeChange::Other(a.node),
        })
    }

    /// memberlist `refute`: someone says we are suspect or dead; we gossip an alive with a
    /// higher incarnation (and our health score worsens).
    fn refute(&mut self, accused: u32, rt: &mut Runtime) {
        let a = self.local.refute(accused);
        if let Some(n) = self.nodes.get_mut(&self.local.name) {
            n.incarnation = a.incarnation;
            n.meta = a.meta.clone();
            n.state = NodeStateKind::Alive;
        }
        tracing::info!(
            incarnation = a.incarnation,
            "refuting a suspicion about this node"
        );
        rt.broadcasts
            .queue_memberlist(&self.local.name, &Message::Alive(a), None);
    }

    // ------------------------------------------------------------------ suspect

    /// Applies a suspect message (memberlist `suspectNode`): an alive node becomes suspect
    /// and its suspicion timer starts; a suspect one gains a confirmation (re-gossiped); a
    /// suspicion about us is refuted.
    pub fn suspect(&mut self, now: Instant, s: Suspect, rt: &mut Runtime) -> Option<NodeChange> {
        let st = self.nodes.get(&s.node)?;
        if s.incarnation < st.incarnation {
            return None;
        }
        match self.suspicions.confirm(&s.node, &s.from) {
            Confirmation::NotSuspected => {}
            Confirmation::Known => return None,
            Confirmation::Counted { deadline, epoch } => {
                rt.schedule(deadline.max(now), Timer::Suspicion(s.node.clone(), epoch));
                rt.broadcasts
                    .queue_memberlist(&s.node.clone(), &Message::Suspect(s), None);
                return None;
            }
        }
        if st.state != NodeStateKind::Alive {
            return None;
        }
        if s.node == self.local.name {
            if !self.local.leaving {
                self.refute(s.incarnation, rt);
            }
            return None;
        }
        rt.broadcasts
            .queue_memberlist(&s.node.clone(), &Message::Suspect(s.clone()), None);
        let n = self.nodes.get_mut(&s.node).expect("present");
        n.incarnation = s.incarnation;
        n.state = NodeStateKind::Suspect;
        n.state_change = now;
        let (deadline, epoch) =
            self.suspicions
                .start(&s.node, &s.from, self.nodes.len(), &self.timing, now);
        rt.schedule(deadline, Timer::Suspicion(s.node.clone(), epoch));
        Some(NodeChange::Suspected(s.node))
    }

    /// A suspicion timer fired ([`Timer::Suspicion`]): the dead message to apply when it is
    /// the current timer and the node is still suspect.
    pub fn suspicion_expired(&mut self, node: &str, epoch: u64) -> Option<Dead> {
        if !self.suspicions.expire(node, epoch) {
            return None;
        }
        let n = self.nodes.get(node)?;
        if n.state != NodeStateKind::Suspect {
            return None;
        }
        tracing::info!(node = %node, "marking as failed, suspect timeout reached");
        Some(Dead {
            incarnation: n.incarnation,
            node: node.to_string(),
            from: self.local.name.clone(),
        })
    }

    // ------------------------------------------------------------------ dead and left

    /// Applies a dead message (memberlist `deadNode`): the node is dead, or left when it
    /// declared itself dead (our own graceful leave too, gossiped with `notify` so the leave
    /// can wait for it); a death declared about us while we are not leaving is refuted.
    pub fn dead(
        &mut self,
        now: Instant,
        d: Dead,
        notify: Option<u64>,
        rt: &mut Runtime,
    ) -> Option<NodeChange> {
        let st = self.nodes.get(&d.node)?;
        if d.incarnation < st.incarnation {
            return None;
        }
        self.suspicions.remove(&d.node);
        if matches!(st.state, NodeStateKind::Dead | NodeStateKind::Left) {
            return None;
        }
        if d.node == self.local.name && !self.local.leaving {
            self.refute(d.incarnation, rt);
            return None;
        }
        let left = d.node == d.from;
        rt.broadcasts
            .queue_memberlist(&d.node.clone(), &Message::Dead(d.clone()), notify);
        let n = self.nodes.get_mut(&d.node).expect("present");
        n.incarnation = d.incarnation;
        n.state = if left {
            NodeStateKind::Left
        } else {
            NodeStateKind::Dead
        };
        n.state_change = now;
        Some(if d.node != self.local.name {
            NodeChange::Gone(d.node)
        } else {
            NodeChange::Other(d.node)
        })
    }

    /// Our graceful leave's dead message (memberlist `Leave`: dead about ourselves, from
    /// ourselves), gossiped with `notify`.
    pub fn leave(&mut self, now: Instant, notify: u64, rt: &mut Runtime) -> Option<NodeChange> {
        let d = Dead {
            incarnation: self.local.incarnation,
            node: self.local.name.clone(),
            from: self.local.name.clone(),
        };
        self.dead(now, d, Some(notify), rt)
    }

    // ------------------------------------------------------------------ probing and gossip

    /// [`Timer::Probe`].
    pub fn probe(&mut self, now: Instant, rt: &mut Runtime) {
        self.prober
            .tick(now, &mut self.nodes, &self.local, &self.timing, rt);
    }

    /// [`Timer::ProbeTimeout`].
    pub fn probe_timeout(&mut self, now: Instant, seq: u32, rt: &mut Runtime) {
        self.prober
            .timeout(now, seq, &self.nodes, &self.local, &self.timing, rt);
    }

    /// [`Timer::ProbeEnd`]: the suspicion to apply when the round failed.
    pub fn probe_end(&mut self, now: Instant, seq: u32, rt: &mut Runtime) -> Option<Suspect> {
        self.prober
            .end(now, seq, &self.nodes, &mut self.local, &self.timing, rt)
    }

    /// [`Timer::IndirectExpire`].
    pub fn indirect_expired(&mut self, seq: u32, rt: &mut Runtime) {
        self.prober.indirect_expired(seq, rt);
    }

    /// The TCP ping of probe round `probe_seq` finished.
    pub fn tcp_ping_result(&mut self, probe_seq: u32, result: &Result<Option<Message>, String>) {
        self.prober.tcp_ping_result(probe_seq, result);
    }

    /// A ping packet.
    pub fn ping(&mut self, from: SocketAddr, p: Ping, rt: &mut Runtime) {
        self.prober.handle_ping(from, p, &self.local, rt);
    }

    /// A ping stream: the ack stream to write back.
    pub fn stream_ping(&mut self, p: &Ping, rt: &mut Runtime) -> Option<Vec<u8>> {
        self.prober.handle_stream_ping(p, &self.local, rt)
    }

    /// An indirect ping request.
    pub fn indirect_ping(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ip: IndirectPing,
        rt: &mut Runtime,
    ) {
        self.prober
            .handle_indirect(now, from, ip, &self.local, &self.timing, rt);
    }

    /// An ack; `Some((target, rtt))` when it completed our direct probe.
    pub fn ack(
        &mut self,
        now: Instant,
        seq: u32,
        rt: &mut Runtime,
    ) -> Option<(String, std::time::Duration)> {
        self.prober.handle_ack(now, seq, &mut self.local, rt)
    }

    /// A nack.
    pub fn nack(&mut self, seq: u32) {
        self.prober.handle_nack(seq);
    }

    /// [`Timer::Gossip`].
    pub fn gossip(&mut self, now: Instant, rt: &mut Runtime) {
        gossip(now, &self.nodes, &self.local.name, &self.timing, rt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::runtime::testing::runtime;
    use std::net::IpAddr;
    use std::time::Duration;

    fn swim(rt: &mut Runtime, now: Instant) -> Swim {
        let local = LocalNode::new(
            "a".into(),
            SocketAddr::from(([10, 0, 0, 1], 7946)),
            vec![],
            8,
        );
        let mut s = Swim::new(local, Timing::lan());
        let me = s.local.alive();
        assert_eq!(
            s.alive(now, me, true, rt),
            Some(NodeChange::Joined("a".into()))
        );
        s
    }

    fn alive(node: &str, ip: u8, incarnation: u32, meta: &[u8]) -> Alive {
        Alive {
            incarnation,
            node: node.into(),
            addr: IpAddr::from([10, 0, 0, ip]),
            port: 7946,
            meta: meta.to_vec(),
            vsn: Some(Vsn::SERF),
        }
    }

    fn suspect(node: &str, incarnation: u32, from: &str) -> Suspect {
        Suspect {
            incarnation,
            node: node.into(),
            from: from.into(),
        }
    }

    fn state(s: &Swim, node: &str) -> (NodeStateKind, u32) {
        let n = s.nodes.get(node).expect("known");
        (n.state, n.incarnation)
    }

    #[test]
    fn an_alive_about_a_new_node_joins_it_and_is_regossiped() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut s = swim(&mut rt, now);
        let queued = rt.broadcasts.len();
        assert_eq!(
            s.alive(now, alive("b", 2, 1, b""), false, &mut rt),
            Some(NodeChange::Joined("b".into()))
        );
        assert_eq!(rt.broadcasts.len(), queued + 1);
        assert_eq!(
            s.alive(now, alive("b", 2, 1, b""), false, &mut rt),
            None,
            "old news"
        );
        assert_eq!(
            s.alive(now, alive("b", 2, 2, b"x"), false, &mut rt),
            Some(NodeChange::Updated("b".into()))
        );
        assert_eq!(
            s.alive(now, alive("b", 2, 3, b"x"), false, &mut rt),
            Some(NodeChange::Other("b".into()))
        );
        assert_eq!(
            s.alive(now, alive("c", 3, 0, b""), false, &mut rt),
            None,
            "incarnation 0"
        );
    }

    #[test]
    fn another_address_for_a_live_node_is_a_conflict_but_a_left_node_may_come_back_elsewhere() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut s = swim(&mut rt, now);
        s.alive(now, alive("b", 2, 1, b""), false, &mut rt);
        assert_eq!(
            s.alive(now, alive("b", 9, 5, b""), false, &mut rt),
            Some(NodeChange::AddressConflict { local: false })
        );
        assert_eq!(
            s.alive(now, alive("a", 9, 5, b""), false, &mut rt),
            Some(NodeChange::AddressConflict { local: true })
        );
        assert_eq!(rt.stats.dropped.get("name_conflict"), Some(&2));
        let left = Dead {
            incarnation: 1,
            node: "b".into(),
            from: "b".into(),
        };
        assert_eq!(
            s.dead(now, left, None, &mut rt),
            Some(NodeChange::Gone("b".into()))
        );
        assert_eq!(
            s.alive(now, alive("b", 9, 2, b""), false, &mut rt),
            Some(NodeChange::Joined("b".into()))
        );
    }

    #[test]
    fn a_suspicion_about_this_node_is_refuted_with_a_higher_incarnation() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut s = swim(&mut rt, now);
        assert_eq!(s.suspect(now, suspect("a", 5, "b"), &mut rt), None);
        assert_eq!(s.local.incarnation, 6);
        assert_eq!(s.local.awareness.score(), 1);
        assert_eq!(state(&s, "a"), (NodeStateKind::Alive, 6));
        // An alive about us that we did not send is refuted too.
        assert_eq!(
            s.alive(now, alive("a", 1, 6, b"forged"), false, &mut rt),
            None
        );
        assert_eq!(s.local.incarnation, 7);
    }

    #[test]
    fn a_leaving_node_neither_refutes_nor_accepts_alives_about_itself() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut s = swim(&mut rt, now);
        s.local.leaving = true;
        assert_eq!(s.suspect(now, suspect("a", 5, "b"), &mut rt), None);
        assert_eq!(s.local.incarnation, 1);
        assert_eq!(s.alive(now, alive("a", 1, 9, b""), false, &mut rt), None);
        assert_eq!(
            s.leave(now, 42, &mut rt),
            Some(NodeChange::Other("a".into()))
        );
        assert_eq!(state(&s, "a"), (NodeStateKind::Left, 1));
    }

    #[test]
    fn a_suspected_node_fails_when_its_suspicion_times_out() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(&mut rt, t0);
        s.alive(t0, alive("b", 2, 1, b""), false, &mut rt);
        assert_eq!(
            s.suspect(t0, suspect("b", 1, "c"), &mut rt),
            Some(NodeChange::Suspected("b".into()))
        );
        assert_eq!(state(&s, "b"), (NodeStateKind::Suspect, 1));
        // Two nodes: no confirmations expected, min = 4 × 1 s.
        let due: Vec<Timer> =
            std::iter::from_fn(|| rt.timers.pop_due(t0 + Duration::from_secs(4))).collect();
        let Some(Timer::Suspicion(node, epoch)) = due.into_iter().next() else {
            panic!("a suspicion timer");
        };
        let d = s.suspicion_expired(&node, epoch).expect("still suspect");
        assert_eq!(
            (d.node.as_str(), d.from.as_str(), d.incarnation),
            ("b", "a", 1)
        );
        assert_eq!(
            s.dead(t0, d, None, &mut rt),
            Some(NodeChange::Gone("b".into()))
        );
        assert_eq!(state(&s, "b"), (NodeStateKind::Dead, 1));
        assert_eq!(s.suspicion_expired("b", epoch), None, "once");
    }

    #[test]
    fn an_alive_with_a_newer_incarnation_refutes_a_suspicion() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(&mut rt, t0);
        s.alive(t0, alive("b", 2, 1, b""), false, &mut rt);
        s.suspect(t0, suspect("b", 1, "c"), &mut rt);
        assert_eq!(
            s.alive(t0, alive("b", 2, 2, b"new"), false, &mut rt),
            Some(NodeChange::Refuted {
                node: "b".into(),
                updated: true
            })
        );
        assert_eq!(state(&s, "b"), (NodeStateKind::Alive, 2));
        let timer = rt.timers.pop_due(t0 + Duration::from_secs(60));
        let Some(Timer::Suspicion(node, epoch)) = timer else {
            panic!("{timer:?}");
        };
        assert_eq!(
            s.suspicion_expired(&node, epoch),
            None,
            "the timer is stale"
        );
    }

    #[test]
    fn confirmations_from_other_accusers_are_regossiped_once_each() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(&mut rt, t0);
        for (i, n) in ["b", "c", "d", "e"].iter().enumerate() {
            s.alive(t0, alive(n, i as u8 + 2, 1, b""), false, &mut rt);
        }
        s.suspect(t0, suspect("b", 1, "c"), &mut rt);
        let before = rt.broadcasts.len();
        assert_eq!(s.suspect(t0, suspect("b", 1, "d"), &mut rt), None);
        assert_eq!(
            rt.broadcasts.len(),
            before,
            "replaces the queued suspect about b"
        );
        let timers =
            std::iter::from_fn(|| rt.timers.pop_due(t0 + Duration::from_secs(600))).count();
        assert_eq!(
            timers, 2,
            "the start and the confirmation each scheduled a timer"
        );
        assert_eq!(s.suspect(t0, suspect("b", 1, "d"), &mut rt), None);
        assert!(
            rt.timers.next_at().is_none(),
            "a repeated confirmation changes nothing"
        );
    }

    #[test]
    fn dead_news_about_an_older_incarnation_is_ignored() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut s = swim(&mut rt, t0);
        s.alive(t0, alive("b", 2, 5, b""), false, &mut rt);
        let old = Dead {
            incarnation: 4,
            node: "b".into(),
            from: "c".into(),
        };
        assert_eq!(s.dead(t0, old, None, &mut rt), None);
        assert_eq!(state(&s, "b"), (NodeStateKind::Alive, 5));
    }
}
