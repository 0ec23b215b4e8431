//! The Serf member table (Serf `memberState`): every member with its tags, address, status
//! (alive, leaving, left, failed) and status time, plus the intents buffered for members not
//! known yet (Serf `recentIntents`).
//!
//! Every member change — a status, tags or address, a suspicion or its refutation, a leave
//! intent, a reap, and any node state SWIM accepted (our own leave included) — ends in
//! [`Members::publish`]: the one place that marks the member list changed (the driver then
//! republishes it) and emits the member event, if the change has one. What SWIM reports
//! arrives through `Serf::node_changed` and [`Members::node_joined`],
//! [`Members::node_updated`] and [`Members::node_left`] (Serf `handleNodeJoin`,
//! `handleNodeUpdate`, `handleNodeLeave`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::tags::decode_meta;
use crate::control::model::MemberStatus;
use crate::gossip::model::Member;
use crate::gossip::output::CoreEvent;
use crate::gossip::runtime::Runtime;
use crate::gossip::swim::nodes::Nodes;
use crate::gossip::wire::Vsn;

/// Buffered intents are forgotten after this (Serf's `RecentIntentTimeout`).
const RECENT_INTENT_TIMEOUT: Duration = Duration::from_secs(300);

/// One member as Serf sees it.
#[derive(Debug, Clone)]
pub(crate) struct SerfMember {
    /// Name.
    pub name: String,
    /// Advertised IP.
    pub addr: IpAddr,
    /// Advertised port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Protocol versions.
    pub vsn: Vsn,
    /// Alive, leaving, left or failed.
    pub status: MemberStatus,
    /// Lamport time of the last intent applied.
    pub status_ltime: u64,
    /// When it failed or left (for reaping).
    pub leave_time: Option<Instant>,
}

/// An intent about a member not known yet, applied when it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferedIntent {
    /// A leave intent (else a join intent).
    pub leave: bool,
    /// Its Lamport time.
    pub ltime: u64,
    /// When it arrived.
    pub at: Instant,
}

/// How a member changed, as [`Members::publish`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberChange {
    /// Joined or came back (`MemberJoin`).
    Joined,
    /// Tags or address changed (`MemberUpdate`).
    Updated,
    /// Left gracefully (`MemberLeave`).
    Left,
    /// Failed (`MemberFailed`).
    Failed,
    /// About to be forgotten (`MemberReap`).
    Reaped,
    /// Suspected by the failure detector (`MemberSuspect`).
    Suspected,
    /// Refuted a suspicion (`MemberRefuted`).
    Refuted,
    /// A status change without an event: a leave intent (alive → leaving), a newer join intent
    /// (leaving → alive), or this node's own member.
    Quiet,
}

/// The member table.
#[derive(Debug)]
pub(crate) struct Members {
    me: String,
    by_name: HashMap<String, SerfMember>,
    intents: HashMap<String, BufferedIntent>,
}

impl Members {
    /// An empty table of node `me`.
    pub fn new(me: &str) -> Self {
        Members {
            me: me.to_string(),
            by_name: HashMap::new(),
            intents: HashMap::new(),
        }
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The member called `name`.
    pub fn get(&self, name: &str) -> Option<&SerfMember> {
        self.by_name.get(name)
    }

    /// The member called `name`, to change it (publish the change after).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut SerfMember> {
        self.by_name.get_mut(name)
    }

    /// How many members are known (Serf `NumNodes`).
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every member, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &SerfMember> {
        self.by_name.values()
    }

    /// How many members are alive (this node included).
    pub fn alive_count(&self) -> usize {
        self.iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .count()
    }

    /// `m` as users see it: suspected while SWIM suspects it and its status is alive.
    pub fn view(m: &SerfMember, nodes: &Nodes) -> Member {
        Member {
            name: m.name.clone(),
            addr: m.addr,
            port: m.port,
            tags: m.tags.clone(),
            status: m.status,
            suspect: nodes.is_suspect(&m.name) && m.status == MemberStatus::Alive,
            vsn: m.vsn,
        }
    }

    /// The member called `name` as users see it.
    pub fn view_of(&self, name: &str, nodes: &Nodes) -> Option<Member> {
        self.by_name.get(name).map(|m| Self::view(m, nodes))
    }

    /// Every member as users see it, sorted by name.
    pub fn views(&self, nodes: &Nodes) -> Vec<Member> {
        let mut v: Vec<Member> = self.iter().map(|m| Self::view(m, nodes)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The one place a member change becomes visible: the member list is marked changed and
    /// the event (if the change has one) is emitted with the member as it is now.
    pub fn publish(&self, name: &str, change: MemberChange, nodes: &Nodes, rt: &mut Runtime) {
        if change == MemberChange::Quiet {
            rt.members_changed();
            return;
        }
        let Some(m) = self.view_of(name, nodes) else {
            return;
        };
        let event = match change {
            MemberChange::Joined => {
                tracing::info!(node = %name, addr = %m.addr, "EventMemberJoin");
                CoreEvent::MemberJoin(m)
            }
            MemberChange::Updated => {
                tracing::info!(node = %name, "EventMemberUpdate");
                CoreEvent::MemberUpdate(m)
            }
            MemberChange::Left => {
                tracing::info!(node = %name, "EventMemberLeave");
                CoreEvent::MemberLeave(m)
            }
            MemberChange::Failed => {
                tracing::info!(node = %name, "EventMemberFailed");
                CoreEvent::MemberFailed(m)
            }
            MemberChange::Reaped => {
                tracing::info!(node = %name, "EventMemberReap");
                CoreEvent::MemberReap(m)
            }
            MemberChange::Suspected => CoreEvent::MemberSuspect(m),
            MemberChange::Refuted => CoreEvent::MemberRefuted(m),
            MemberChange::Quiet => unreachable!("handled above"),
        };
        rt.event(event);
    }

    /// SWIM says `name` is alive again or new (Serf `handleNodeJoin`): a new member takes the
    /// intent buffered for it; a known one becomes alive with SWIM's address and tags.
    pub fn node_joined(&mut self, name: &str, nodes: &Nodes, rt: &mut Runtime) {
        let Some(n) = nodes.get(name) else {
            return;
        };
        let tags = decode_meta(&n.meta);
        match self.by_name.get_mut(name) {
            None => {
                let mut m = SerfMember {
                    name: name.to_string(),
                    addr: n.addr,
                    port: n.port,
                    tags,
                    vsn: n.vsn,
                    status: MemberStatus::Alive,
                    status_ltime: 0,
                    leave_time: None,
                };
                if let Some(i) = self.intents.remove(name) {
                    m.status_ltime = i.ltime;
                    if i.leave {
                        m.status = MemberStatus::Leaving;
                    }
                }
                self.by_name.insert(name.to_string(), m);
                rt.broadcasts.set_num_members(self.by_name.len());
            }
            Some(m) => {
                m.status = MemberStatus::Alive;
                m.leave_time = None;
                m.addr = n.addr;
                m.port = n.port;
                m.tags = tags;
                m.vsn = n.vsn;
            }
        }
        let change = if name == self.me {
            MemberChange::Quiet
        } else {
            MemberChange::Joined
        };
        self.publish(name, change, nodes, rt);
    }

    /// SWIM says `name`'s meta (tags) changed (Serf `handleNodeUpdate`).
    pub fn node_updated(&mut self, name: &str, nodes: &Nodes, rt: &mut Runtime) {
        let Some(n) = nodes.get(name) else {
            return;
        };
        if let Some(m) = self.by_name.get_mut(name) {
            m.addr = n.addr;
            m.port = n.port;
            m.tags = decode_meta(&n.meta);
            m.vsn = n.vsn;
        }
        self.publish(name, MemberChange::Updated, nodes, rt);
    }

    /// SWIM says `name` is dead or left (Serf `handleNodeLeave`): a leaving member has left,
    /// an alive one failed.
    pub fn node_left(&mut self, now: Instant, name: &str, nodes: &Nodes, rt: &mut Runtime) {
        let Some(m) = self.by_name.get_mut(name) else {
            return;
        };
        let change = match m.status {
            MemberStatus::Leaving => {
                m.status = MemberStatus::Left;
                MemberChange::Left
            }
            MemberStatus::Alive => {
                m.status = MemberStatus::Failed;
                MemberChange::Failed
            }
            _ => return,
        };
        m.leave_time = Some(now);
        self.publish(name, change, nodes, rt);
    }

    /// Forgets `name` (after publishing its reap).
    pub fn remove(&mut self, name: &str, rt: &mut Runtime) {
        self.by_name.remove(name);
        rt.broadcasts.set_num_members(self.by_name.len());
    }

    /// Buffers an intent about a member not known yet (Serf `upsertIntent`); false when an
    /// intent at least as new is already buffered.
    pub fn buffer_intent(&mut self, now: Instant, name: &str, leave: bool, ltime: u64) -> bool {
        match self.intents.get(name) {
            Some(i) if i.ltime >= ltime => false,
            _ => {
                self.intents.insert(
                    name.to_string(),
                    BufferedIntent {
                        leave,
                        ltime,
                        at: now,
                    },
                );
                true
            }
        }
    }

    /// Forgets buffered intents older than Serf's `RecentIntentTimeout`.
    pub fn prune_intents(&mut self, now: Instant) {
        self.intents
            .retain(|_, i| now.duration_since(i.at) < RECENT_INTENT_TIMEOUT);
    }

    /// The intent buffered for `name` (tests).
    #[cfg(test)]
    pub fn buffered(&self, name: &str) -> Option<BufferedIntent> {
        self.intents.get(name).copied()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A member table with SWIM nodes behind it, for Serf part tests.
    use super::*;
    use crate::gossip::runtime::testing::runtime;
    use crate::gossip::swim::nodes::testing::node;

    /// Node `me` (n0) and `peers` more (n1…), all alive in SWIM and as members.
    pub fn cluster(peers: u8, now: Instant) -> (Members, Nodes, Runtime) {
        let mut rt = runtime();
        let mut nodes = Nodes::default();
        let mut members = Members::new("n0");
        for i in 0..=peers {
            nodes.insert(node(i, now), &mut rt);
            members.node_joined(&format!("n{i}"), &nodes, &mut rt);
        }
        while rt.poll_output().is_some() {}
        (members, nodes, rt)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::cluster;
    use super::*;
    use crate::gossip::output::Output;
    use crate::gossip::runtime::testing::runtime;
    use crate::gossip::swim::nodes::testing::node;
    use crate::gossip::wire::NodeStateKind;

    fn events(rt: &mut Runtime) -> Vec<CoreEvent> {
        std::iter::from_fn(|| rt.poll_output())
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_node_joins_with_its_tags_and_our_own_join_is_quiet() {
        let now = Instant::now();
        let mut rt = runtime();
        let mut nodes = Nodes::default();
        let mut me = node(0, now);
        me.meta = vec![];
        nodes.insert(me, &mut rt);
        let mut b = node(1, now);
        b.meta = super::super::tags::encode_meta(&BTreeMap::from([(
            "role".to_string(),
            "web".to_string(),
        )]))
        .unwrap();
        nodes.insert(b, &mut rt);
        let mut members = Members::new("n0");
        members.node_joined("n0", &nodes, &mut rt);
        assert!(events(&mut rt).is_empty());
        assert!(rt.take_members_dirty(), "quiet, but the list changed");
        members.node_joined("n1", &nodes, &mut rt);
        let ev = events(&mut rt);
        let [CoreEvent::MemberJoin(m)] = ev.as_slice() else {
            panic!("{ev:?}");
        };
        assert_eq!(m.tags.get("role").map(String::as_str), Some("web"));
        assert_eq!(members.alive_count(), 2);
    }

    #[test]
    fn a_dead_alive_member_failed_and_a_dead_leaving_member_left() {
        let now = Instant::now();
        let (mut members, nodes, mut rt) = cluster(2, now);
        members.get_mut("n2").unwrap().status = MemberStatus::Leaving;
        members.node_left(now, "n1", &nodes, &mut rt);
        members.node_left(now, "n2", &nodes, &mut rt);
        let ev = events(&mut rt);
        assert!(matches!(&ev[0], CoreEvent::MemberFailed(m) if m.name == "n1"));
        assert!(matches!(&ev[1], CoreEvent::MemberLeave(m) if m.name == "n2"));
        assert_eq!(members.get("n1").unwrap().leave_time, Some(now));
        members.node_left(now, "n1", &nodes, &mut rt);
        assert!(events(&mut rt).is_empty(), "already failed");
    }

    #[test]
    fn a_member_is_suspect_only_while_swim_suspects_it_and_it_is_alive() {
        let now = Instant::now();
        let (mut members, mut nodes, _rt) = cluster(1, now);
        nodes.get_mut("n1").unwrap().state = NodeStateKind::Suspect;
        assert!(members.view_of("n1", &nodes).unwrap().suspect);
        members.get_mut("n1").unwrap().status = MemberStatus::Leaving;
        assert!(!members.view_of("n1", &nodes).unwrap().suspect);
    }

    #[test]
    fn a_buffered_intent_is_applied_when_its_member_joins_and_older_ones_are_refused() {
        let now = Instant::now();
        let mut rt = runtime();
        let mut nodes = Nodes::default();
        let mut members = Members::new("n0");
        assert!(members.buffer_intent(now, "n1", true, 5));
        assert!(!members.buffer_intent(now, "n1", false, 5), "not newer");
        assert!(members.buffer_intent(now, "n1", true, 7));
        nodes.insert(node(1, now), &mut rt);
        members.node_joined("n1", &nodes, &mut rt);
        let m = members.get("n1").unwrap();
        assert_eq!((m.status, m.status_ltime), (MemberStatus::Leaving, 7));
        assert_eq!(members.buffered("n1"), None, "used up");
    }

    #[test]
    fn buffered_intents_are_forgotten_after_five_minutes() {
        let t0 = Instant::now();
        let mut members = Members::new("n0");
        members.buffer_intent(t0, "n1", false, 1);
        members.prune_intents(t0 + Duration::from_secs(299));
        assert!(members.buffered("n1").is_some());
        members.prune_intents(t0 + Duration::from_secs(300));
        assert_eq!(members.buffered("n1"), None);
    }
}
