//! The Serf layer (Serf `serf.go` and `delegate.go`): owns the member table, the member
//! clock, user events, queries, the name conflict vote and the graceful leave; routes Serf
//! messages (`NotifyMsg`) and push/pull state (`LocalState` / `MergeRemoteState`) to them,
//! and turns what SWIM reports ([`NodeChange`]) into member changes.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::events::UserEvents;
use super::intents::{apply_join_intent, apply_leave_intent, broadcast_join_intent};
use super::lamport::LamportClock;
use super::leave::{Leave, LeaveStep};
use super::members::{MemberChange, Members};
use super::query::{default_timeout, Queries, Reply};
use super::{conflict::NameConflict, internal_query, reap};
use crate::control::model::MemberStatus;
use crate::gossip::config::GossipConfig;
use crate::gossip::error::GossipError;
use crate::gossip::model::QueryParams;
use crate::gossip::output::Output;
use crate::gossip::runtime::Runtime;
use crate::gossip::swim::nodes::Nodes;
use crate::gossip::swim::{NodeChange, Swim};
use crate::gossip::wire::{
    decode_serf_message, encode_message, encode_serf_message, JoinIntent, LeaveIntent, Message,
    SerfMessage, SerfPushPull,
};

/// What became of a timer or command for the member as a whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The graceful leave is over.
    Left,
    /// We lost a name conflict vote: another node has our name.
    NameConflict(String),
}

/// The Serf layer of one member.
#[derive(Debug)]
pub(crate) struct Serf {
    cfg: GossipConfig,
    adv: SocketAddr,
    tags: BTreeMap<String, String>,
    /// Every member.
    pub members: Members,
    /// The member (intent) clock.
    clock: LamportClock,
    events: UserEvents,
    queries: Queries,
    conflict: NameConflict,
    leave: Leave,
}

impl Serf {
    /// The layer of the member configured by `cfg`, advertising `adv`.
    pub fn new(cfg: &GossipConfig, adv: SocketAddr) -> Self {
        let mut serf = Serf {
            adv,
            tags: cfg.tags.clone(),
            members: Members::new(&cfg.node_name),
            clock: LamportClock::new(1),
            events: UserEvents::new(),
            queries: Queries::new(
                (cfg.node_name.clone(), adv),
                cfg.query_size_limit,
                cfg.query_response_size_limit,
            ),
            conflict: NameConflict::default(),
            leave: Leave::new(cfg.broadcast_timeout, cfg.leave_propagate_delay),
            cfg: cfg.clone(),
        };
        if let Some((member, event, query)) = cfg.restored_clocks {
            serf.clock.witness(member);
            serf.events.witness_remote(event + 1, true);
            serf.queries.witness_remote(query + 1, true);
        }
        serf
    }

    /// The (member, event, query) clocks.
    pub fn clocks(&self) -> (u64, u64, u64) {
        (self.clock.time(), self.events.clock(), self.queries.clock())
    }

    // ------------------------------------------------------------------ SWIM's news

    /// What SWIM changed, applied to the members (Serf's memberlist event delegate).
    pub fn node_changed(
        &mut self,
        now: Instant,
        change: Option<NodeChange>,
        nodes: &Nodes,
        rt: &mut Runtime,
    ) {
        let Some(change) = change else {
            return;
        };
        // Every accepted change marks the member list changed (memberlist's node state is
        // part of what users see: the suspect flag); a suspicion does so with its event.
        let name = match change {
            NodeChange::Joined(name) => {
                self.members.node_joined(&name, nodes, rt);
                name
            }
            NodeChange::Updated(name) => {
                self.members.node_updated(&name, nodes, rt);
                name
            }
            NodeChange::Refuted { node, updated } => {
                if updated {
                    self.members.node_updated(&node, nodes, rt);
                }
                self.members
                    .publish(&node, MemberChange::Refuted, nodes, rt);
                node
            }
            NodeChange::Suspected(name) => {
                self.members
                    .publish(&name, MemberChange::Suspected, nodes, rt);
                return;
            }
            NodeChange::Gone(name) => {
                self.members.node_left(now, &name, nodes, rt);
                name
            }
            NodeChange::Other(name) => name,
            NodeChange::AddressConflict { local } => {
                if local && !self.conflict.in_progress() && !self.leave.is_leaving() {
                    self.start_conflict_vote(now, rt);
                }
                return;
            }
        };
        self.members.publish(&name, MemberChange::Quiet, nodes, rt);
    }

    /// Asks the cluster who has our name (`_serf_conflict`).
    fn start_conflict_vote(&mut self, now: Instant, rt: &mut Runtime) {
        let name = self.members.me().to_string();
        match self.query_inner(
            now,
            "_serf_conflict",
            name.as_bytes(),
            QueryParams::default(),
            rt,
        ) {
            Ok((h, _)) => self.conflict.begin(h),
            Err(e) => tracing::warn!(error = %e, "cannot start name conflict resolution"),
        }
    }

    // ------------------------------------------------------------------ messages

    /// A Serf message (inside a memberlist user message) from `from` (Serf `NotifyMsg`).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        raw: &[u8],
        nodes: &Nodes,
        rt: &mut Runtime,
    ) {
        let msg = match decode_serf_message(raw) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%from, error = %e, "dropped serf message");
                rt.count_drop(e.kind());
                return;
            }
        };
        let news = match msg {
            SerfMessage::Leave(l) => {
                tracing::debug!(node = %l.node, "messageLeaveType");
                self.leave_intent(now, l, nodes, rt)
            }
            SerfMessage::Join(j) => {
                tracing::debug!(node = %j.node, "messageJoinType");
                apply_join_intent(now, j, &mut self.members, &mut self.clock, nodes, rt)
            }
            SerfMessage::UserEvent(e) => self.events.handle(e, rt),
            SerfMessage::Query(q) => {
                self.handle_query(now, q, raw.to_vec(), rt);
                false
            }
            SerfMessage::QueryResponse(r) => {
                match self.queries.handle_response(r) {
                    Some(Reply::Response {
                        handle, payload, ..
                    }) if self.conflict.is_vote(handle) => self.conflict.count(&payload, self.adv),
                    Some(Reply::Ack { handle, .. }) if self.conflict.is_vote(handle) => {}
                    Some(Reply::Ack { handle, from }) => {
                        rt.output(Output::QueryAck { handle, from })
                    }
                    Some(Reply::Response {
                        handle,
                        from,
                        payload,
                    }) => rt.output(Output::QueryResponse {
                        handle,
                        from,
                        payload,
                    }),
                    None => {}
                }
                false
            }
            SerfMessage::Relay(r) => {
                let to = SocketAddr::new(r.dest_addr, r.dest_port);
                let msg = encode_message(&Message::User(r.inner));
                rt.send_raw(to, &[msg], false);
                false
            }
            SerfMessage::PushPull(_) => {
                rt.count_drop("unexpected_serf_push_pull");
                false
            }
        };
        if news {
            rt.broadcasts.queue_serf(raw.to_vec(), None);
        }
    }

    /// A leave intent from the cluster (ours while we leave); true when it was news.
    fn leave_intent(
        &mut self,
        now: Instant,
        l: LeaveIntent,
        nodes: &Nodes,
        rt: &mut Runtime,
    ) -> bool {
        let leaving = self.leave.is_leaving();
        let (node, prune) = (l.node.clone(), l.prune);
        let news = apply_leave_intent(
            now,
            l,
            leaving,
            &mut self.members,
            &mut self.clock,
            nodes,
            rt,
        );
        // Serf `handlePrune`: a pruned member that has left is forgotten at once.
        if prune
            && node != self.members.me()
            && self
                .members
                .get(&node)
                .is_some_and(|m| m.status == MemberStatus::Left)
        {
            self.members.publish(&node, MemberChange::Reaped, nodes, rt);
            self.members.remove(&node, rt);
        }
        news
    }

    /// Serf `forceLeave` (`serf force-leave [-prune] NODE`): a leave intent about `node` at
    /// the current member time, applied here and gossiped. A failed member becomes left
    /// (and, with `prune`, is forgotten everywhere at once); an alive one refutes it.
    pub fn force_leave(
        &mut self,
        now: Instant,
        node: &str,
        prune: bool,
        nodes: &Nodes,
        rt: &mut Runtime,
    ) {
        let msg = LeaveIntent {
            ltime: self.clock.time(),
            node: node.to_string(),
            prune,
        };
        self.clock.increment();
        self.leave_intent(now, msg.clone(), nodes, rt);
        rt.broadcasts
            .queue_serf(encode_serf_message(&SerfMessage::Leave(msg)), None);
    }

    fn handle_query(
        &mut self,
        now: Instant,
        q: crate::gossip::wire::Query,
        raw: Vec<u8>,
        rt: &mut Runtime,
    ) {
        if let Some((q, addr)) = self
            .queries
            .handle(now, q, raw, &self.tags, &self.members, rt)
        {
            internal_query::answer(
                &q,
                addr,
                &self.members,
                self.cfg.keyring_file.as_deref(),
                rt,
            );
        }
    }

    // ------------------------------------------------------------------ commands

    /// Sends a user event.
    pub fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
        rt: &mut Runtime,
    ) -> Result<(), GossipError> {
        let limit = self.cfg.user_event_size_limit;
        self.events
            .send(name, payload, coalesce, limit, self.leave.is_leaving(), rt)
    }

    /// Sends a query (names starting with `_serf_` are Serf's, except `_serf_ping`); returns
    /// its handle and deadline.
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
        rt: &mut Runtime,
    ) -> Result<(u64, Instant), GossipError> {
        if name.starts_with("_serf_") && name != "_serf_ping" {
            return Err(GossipError::InvalidQuery(format!(
                "{name}: names starting with _serf_ are reserved"
            )));
        }
        self.query_inner(now, name, payload, params, rt)
    }

    /// Sends one of Serf's key queries (`_serf_install-key`, `_serf_use-key`,
    /// `_serf_remove-key`, `_serf_list-keys`; `op` without the prefix) with an encoded key
    /// request as payload, like Serf's `KeyManager`.
    pub fn key_query(
        &mut self,
        now: Instant,
        op: &str,
        payload: &[u8],
        rt: &mut Runtime,
    ) -> Result<(u64, Instant), GossipError> {
        if !matches!(op, "install-key" | "use-key" | "remove-key" | "list-keys") {
            return Err(GossipError::InvalidQuery(format!(
                "{op}: not a key operation"
            )));
        }
        let name = format!("_serf_{op}");
        self.query_inner(now, &name, payload, QueryParams::default(), rt)
    }

    fn query_inner(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
        rt: &mut Runtime,
    ) -> Result<(u64, Instant), GossipError> {
        if self.leave.is_leaving() {
            return Err(GossipError::Leaving);
        }
        let timeout = params.timeout.unwrap_or_else(|| {
            default_timeout(self.cfg.timing.gossip_interval, self.members.len())
        });
        let (handle, deadline, q, bytes) = self
            .queries
            .start(now, name, payload, params, timeout, rt)?;
        // Processed here first (like Serf: it answers itself), then gossiped.
        self.handle_query(now, q, bytes.clone(), rt);
        rt.broadcasts.queue_serf(bytes, None);
        Ok((handle, deadline))
    }

    /// Answers the incoming query `token`.
    pub fn respond(
        &mut self,
        now: Instant,
        token: u64,
        payload: &[u8],
        rt: &mut Runtime,
    ) -> Result<(), GossipError> {
        self.queries.respond(now, token, payload, &self.members, rt)
    }

    /// New tags (query filters match them); SWIM gossips them as meta.
    pub fn set_tags(&mut self, tags: BTreeMap<String, String>) {
        self.tags = tags;
    }

    /// Our join through a seed completed: our join intent goes out.
    pub fn joined(&mut self, now: Instant, nodes: &Nodes, rt: &mut Runtime) {
        broadcast_join_intent(now, &mut self.members, &mut self.clock, nodes, rt);
    }

    /// Starts the graceful leave: our leave intent is applied and gossiped. `Some` when the
    /// leave is already over (nobody to tell).
    pub fn leave(&mut self, now: Instant, swim: &mut Swim, rt: &mut Runtime) -> Option<Stop> {
        if !self.leave.begin(swim) {
            return None;
        }
        let msg = LeaveIntent {
            ltime: self.clock.time(),
            node: self.members.me().to_string(),
            prune: false,
        };
        self.clock.increment();
        self.leave_intent(now, msg.clone(), &swim.nodes, rt);
        let bytes = encode_serf_message(&SerfMessage::Leave(msg));
        let step = self.leave.announce(now, bytes, swim, rt);
        self.leave_step(now, step, swim, rt)
    }

    // ------------------------------------------------------------------ timers

    /// [`Timer::Leave`](crate::gossip::timer::Timer::Leave).
    pub fn leave_timer(
        &mut self,
        now: Instant,
        epoch: u64,
        swim: &mut Swim,
        rt: &mut Runtime,
    ) -> Option<Stop> {
        let step = self.leave.timer(now, epoch, swim, rt);
        self.leave_step(now, step, swim, rt)
    }

    /// The broadcast the leave waits for went out.
    pub fn leave_broadcast_out(
        &mut self,
        now: Instant,
        swim: &mut Swim,
        rt: &mut Runtime,
    ) -> Option<Stop> {
        let step = self.leave.broadcast_out(now, swim, rt);
        self.leave_step(now, step, swim, rt)
    }

    /// What a step of the leave did: our dead message is a node change like any other.
    fn leave_step(
        &mut self,
        now: Instant,
        step: LeaveStep,
        swim: &Swim,
        rt: &mut Runtime,
    ) -> Option<Stop> {
        match step {
            LeaveStep::Waiting => None,
            LeaveStep::Dead(change) => {
                self.node_changed(now, change, &swim.nodes, rt);
                None
            }
            LeaveStep::Done => Some(Stop::Left),
        }
    }

    /// [`Timer::QueryEnd`](crate::gossip::timer::Timer::QueryEnd): the query is over; the
    /// name conflict vote is counted.
    pub fn query_end(&mut self, handle: u64, rt: &mut Runtime) -> Option<Stop> {
        self.queries.end(handle);
        match self.conflict.finish(handle, self.members.me()) {
            Some(Ok(())) => None,
            Some(Err(why)) => Some(Stop::NameConflict(why)),
            None => {
                rt.output(Output::QueryDone { handle });
                None
            }
        }
    }

    /// [`Timer::IncomingQueryEnd`](crate::gossip::timer::Timer::IncomingQueryEnd).
    pub fn incoming_query_end(&mut self, token: u64) {
        self.queries.incoming_end(token);
    }

    /// [`Timer::Reap`](crate::gossip::timer::Timer::Reap).
    pub fn reap(&mut self, now: Instant, nodes: &Nodes, rt: &mut Runtime) {
        reap::reap(
            now,
            &mut self.members,
            self.cfg.reconnect_timeout,
            self.cfg.tombstone_timeout,
            nodes,
            rt,
        );
    }

    /// [`Timer::Reconnect`](crate::gossip::timer::Timer::Reconnect): a failed member to
    /// push/pull with, if one is to be tried now.
    pub fn reconnect_target(&self, rt: &mut Runtime) -> Option<SocketAddr> {
        reap::reconnect_target(&self.members, &mut rt.rng)
    }

    // ------------------------------------------------------------------ push/pull

    /// Our Serf state for a push/pull (Serf `LocalState`).
    pub fn local_state(&self) -> SerfPushPull {
        let mut left: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::Left)
            .map(|m| m.name.clone())
            .collect();
        left.sort();
        SerfPushPull {
            ltime: self.clock.time(),
            status_ltimes: self
                .members
                .iter()
                .map(|m| (m.name.clone(), m.status_ltime))
                .collect(),
            left_members: left,
            event_ltime: self.events.clock(),
            events: self.events.recent(),
            query_ltime: self.queries.clock(),
        }
    }

    /// A remote Serf state (Serf `MergeRemoteState`): clocks witnessed, left members' leave
    /// intents and the others' join intents applied, recent events delivered. `ignore_old`:
    /// this is our join's push/pull and it asked to ignore older events and queries.
    pub fn merge_remote_state(
        &mut self,
        now: Instant,
        s: SerfPushPull,
        ignore_old: bool,
        nodes: &Nodes,
        rt: &mut Runtime,
    ) {
        if s.ltime > 0 {
            self.clock.witness(s.ltime - 1);
        }
        self.events.witness_remote(s.event_ltime, ignore_old);
        self.queries.witness_remote(s.query_ltime, ignore_old);
        let left: HashSet<&String> = s.left_members.iter().collect();
        for name in &s.left_members {
            let ltime = s.status_ltimes.get(name).copied().unwrap_or(0);
            let l = LeaveIntent {
                ltime,
                node: name.clone(),
                prune: false,
            };
            self.leave_intent(now, l, nodes, rt);
        }
        for (name, ltime) in &s.status_ltimes {
            if left.contains(name) {
                continue;
            }
            let j = JoinIntent {
                ltime: *ltime,
                node: name.clone(),
            };
            apply_join_intent(now, j, &mut self.members, &mut self.clock, nodes, rt);
        }
        self.events.merge_remote(s.events, rt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::output::CoreEvent;
    use crate::gossip::runtime::testing::{gossiped_serf, runtime};
    use crate::gossip::swim::nodes::testing::node;
    use crate::gossip::wire::{Query, QueryResponse, Relay, RingEvent, RingSlot, UserEvent};
    use std::collections::BTreeMap;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7946))
    }

    /// n0 (us) and `peers` alive members n1…, their join events drained.
    fn serf(peers: u8) -> (Serf, Nodes, Runtime, Instant) {
        let now = Instant::now();
        let mut rt = runtime();
        let mut serf = Serf::new(&GossipConfig::new("n0", addr(0)), addr(0));
        let mut nodes = Nodes::default();
        for i in 0..=peers {
            nodes.insert(node(i, now), &mut rt);
            let joined = Some(NodeChange::Joined(format!("n{i}")));
            serf.node_changed(now, joined, &nodes, &mut rt);
        }
        while rt.poll_output().is_some() {}
        (serf, nodes, rt, now)
    }

    fn outputs(rt: &mut Runtime) -> Vec<Output> {
        std::iter::from_fn(|| rt.poll_output()).collect()
    }

    #[test]
    fn a_leave_intent_from_the_cluster_is_applied_and_regossiped_only_when_it_is_news() {
        let (mut s, nodes, mut rt, now) = serf(2);
        let raw = encode_serf_message(&SerfMessage::Leave(LeaveIntent {
            ltime: 4,
            node: "n1".into(),
            prune: false,
        }));
        s.handle_message(now, addr(1), &raw, &nodes, &mut rt);
        s.handle_message(now, addr(2), &raw, &nodes, &mut rt);
        assert_eq!(s.members.get("n1").unwrap().status, MemberStatus::Leaving);
        assert_eq!(rt.broadcasts.len(), 1, "re-gossiped once");
        assert_eq!(s.clocks().0, 5, "the member clock witnessed it");
    }

    #[test]
    fn a_serf_message_that_does_not_decode_is_dropped_and_counted() {
        let (mut s, nodes, mut rt, now) = serf(1);
        s.handle_message(now, addr(1), &[0x7f, 0x01], &nodes, &mut rt);
        assert_eq!(rt.stats.dropped.values().sum::<u64>(), 1);
        assert!(rt.poll_output().is_none());
    }

    #[test]
    fn answers_to_our_query_reach_the_asker_once_each_until_its_end() {
        let (mut s, nodes, mut rt, now) = serf(2);
        let params = QueryParams {
            request_ack: true,
            ..QueryParams::default()
        };
        let (handle, _) = s.query(now, "ask", b"?", params, &mut rt).unwrap();
        let ours = outputs(&mut rt);
        assert!(
            ours.iter().any(
                |o| matches!(o, Output::Event(CoreEvent::Query { name, .. }) if name == "ask")
            ),
            "we process our own query: {ours:?}"
        );
        let q = match decode_serf_message(&gossiped_serf(&mut rt)[0]).unwrap() {
            SerfMessage::Query(q) => q,
            other => panic!("{other:?}"),
        };
        let resp = |flags, from: &str| {
            encode_serf_message(&SerfMessage::QueryResponse(QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: from.into(),
                flags,
                payload: Some(b"yes".to_vec()),
            }))
        };
        for _ in 0..2 {
            s.handle_message(now, addr(1), &resp(1, "n1"), &nodes, &mut rt);
            s.handle_message(now, addr(1), &resp(0, "n1"), &nodes, &mut rt);
        }
        let got = outputs(&mut rt);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            matches!(&got[0], Output::QueryAck { handle: h, from } if *h == handle && from == "n1")
        );
        assert!(matches!(&got[1], Output::QueryResponse { from, .. } if from == "n1"));
        assert_eq!(s.query_end(handle, &mut rt), None);
        assert!(matches!(rt.poll_output(), Some(Output::QueryDone { handle: h }) if h == handle));
        s.handle_message(now, addr(2), &resp(0, "n2"), &nodes, &mut rt);
        assert!(rt.poll_output().is_none(), "too late");
    }

    #[test]
    fn reserved_query_names_are_refused_and_nothing_is_sent_while_leaving() {
        let (mut s, _nodes, mut rt, now) = serf(1);
        let r = s.query(now, "_serf_x", b"", QueryParams::default(), &mut rt);
        assert!(matches!(r, Err(GossipError::InvalidQuery(_))));
        let mut swim = crate::gossip::swim::Swim::new(
            crate::gossip::swim::LocalNode::new("n0".into(), addr(0), vec![], 8),
            crate::gossip::config::Timing::lan(),
        );
        s.leave(now, &mut swim, &mut rt);
        let r = s.query(now, "_serf_ping", b"", QueryParams::default(), &mut rt);
        assert!(matches!(r, Err(GossipError::Leaving)));
        assert!(matches!(
            s.user_event("e", b"", false, &mut rt),
            Err(GossipError::Leaving)
        ));
    }

    #[test]
    fn a_relay_is_forwarded_to_the_asker() {
        let (mut s, nodes, mut rt, now) = serf(1);
        let raw = encode_serf_message(&SerfMessage::Relay(Relay {
            dest_addr: addr(9).ip(),
            dest_port: 7946,
            dest_zone: String::new(),
            dest_name: "n0".into(),
            inner: vec![1, 2, 3],
        }));
        s.handle_message(now, addr(1), &raw, &nodes, &mut rt);
        assert!(matches!(rt.poll_output(), Some(Output::Udp { to, .. }) if to == addr(9)));
    }

    #[test]
    fn a_push_pull_state_applies_intents_and_delivers_recent_events() {
        let (mut s, nodes, mut rt, now) = serf(3);
        let remote = SerfPushPull {
            ltime: 10,
            status_ltimes: BTreeMap::from([
                ("n1".to_string(), 6),
                ("n2".to_string(), 7),
                ("n9".to_string(), 8),
            ]),
            left_members: vec!["n2".into()],
            event_ltime: 4,
            events: vec![Some(RingSlot {
                ltime: 3,
                events: vec![RingEvent {
                    name: "deploy".into(),
                    payload: vec![],
                }],
            })],
            query_ltime: 2,
        };
        s.merge_remote_state(now, remote, false, &nodes, &mut rt);
        assert_eq!(s.clocks(), (10, 4, 2));
        assert_eq!(s.members.get("n2").unwrap().status, MemberStatus::Leaving);
        assert_eq!(s.members.get("n1").unwrap().status_ltime, 6);
        assert!(
            s.members.get("n9").is_none(),
            "unknown: buffered for its join"
        );
        let got = outputs(&mut rt);
        assert!(
            matches!(&got[..], [Output::Event(CoreEvent::User(u))] if u.name == "deploy"),
            "{got:?}"
        );
        let ours = s.local_state();
        assert_eq!(
            ours.left_members,
            Vec::<String>::new(),
            "leaving is not left"
        );
        assert_eq!(ours.status_ltimes.get("n2"), Some(&7));
        assert_eq!(ours.events.len(), 1);
    }

    #[test]
    fn a_join_that_ignores_old_events_does_not_deliver_those_in_the_seeds_state() {
        let (mut s, nodes, mut rt, now) = serf(1);
        let remote = SerfPushPull {
            ltime: 2,
            event_ltime: 6,
            events: vec![Some(RingSlot {
                ltime: 5,
                events: vec![RingEvent {
                    name: "old".into(),
                    payload: vec![],
                }],
            })],
            ..SerfPushPull::default()
        };
        s.merge_remote_state(now, remote, true, &nodes, &mut rt);
        assert!(outputs(&mut rt).is_empty());
        let new = encode_serf_message(&SerfMessage::UserEvent(UserEvent {
            ltime: 6,
            name: "new".into(),
            payload: vec![],
            cc: false,
        }));
        s.handle_message(now, addr(1), &new, &nodes, &mut rt);
        assert_eq!(outputs(&mut rt).len(), 1);
    }

    #[test]
    fn an_address_conflict_about_us_starts_one_vote_and_losing_it_stops_us() {
        let (mut s, nodes, mut rt, now) = serf(3);
        let conflict = Some(NodeChange::AddressConflict { local: true });
        s.node_changed(now, conflict.clone(), &nodes, &mut rt);
        s.node_changed(now, conflict, &nodes, &mut rt);
        let vote: Vec<Query> = gossiped_serf(&mut rt)
            .iter()
            .filter_map(|b| match decode_serf_message(b) {
                Ok(SerfMessage::Query(q)) => Some(q),
                _ => None,
            })
            .collect();
        assert_eq!(vote.len(), 1, "one vote at a time");
        assert_eq!(
            (vote[0].name.as_str(), vote[0].payload.as_slice()),
            ("_serf_conflict", &b"n0"[..])
        );
        // Two of three say another address has our name.
        let answer = |from: &str, ip: u8| {
            let m = crate::gossip::wire::ConflictMember {
                name: "n0".into(),
                addr: addr(ip).ip(),
                port: 7946,
                tags: BTreeMap::new(),
                status: 1,
                vsn: crate::gossip::wire::Vsn::SERF,
            };
            encode_serf_message(&SerfMessage::QueryResponse(QueryResponse {
                ltime: vote[0].ltime,
                id: vote[0].id,
                from: from.into(),
                flags: 0,
                payload: Some(crate::gossip::wire::encode_conflict_response(Some(&m))),
            }))
        };
        s.handle_message(now, addr(1), &answer("n1", 0), &nodes, &mut rt);
        s.handle_message(now, addr(2), &answer("n2", 99), &nodes, &mut rt);
        s.handle_message(now, addr(3), &answer("n3", 99), &nodes, &mut rt);
        while rt.poll_output().is_some() {}
        let handle = loop {
            match rt.timers.pop_due(now + std::time::Duration::from_secs(60)) {
                Some(crate::gossip::timer::Timer::QueryEnd(h)) => break h,
                Some(_) => continue,
                None => panic!("the vote's deadline"),
            }
        };
        let stop = s.query_end(handle, &mut rt);
        assert!(matches!(stop, Some(Stop::NameConflict(why)) if why.contains("[1 / 3]")));
        assert!(rt.poll_output().is_none(), "no QueryDone for the vote");
    }
}
