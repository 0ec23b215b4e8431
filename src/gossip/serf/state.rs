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
        Serf {
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
        }
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
        // Every accepted change marks the member list changed, as memberlist's node state
        // is part of what users see (the suspect flag).
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
        let leaving = self.leave.is_leaving();
        let news = match msg {
            SerfMessage::Leave(l) => {
                tracing::debug!(node = %l.node, "messageLeaveType");
                apply_leave_intent(
                    now,
                    l,
                    leaving,
                    &mut self.members,
                    &mut self.clock,
                    nodes,
                    rt,
                )
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
        apply_leave_intent(
            now,
            msg.clone(),
            true,
            &mut self.members,
            &mut self.clock,
            &swim.nodes,
            rt,
        );
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
        let leaving = self.leave.is_leaving();
        let left: HashSet<&String> = s.left_members.iter().collect();
        for name in &s.left_members {
            let ltime = s.status_ltimes.get(name).copied().unwrap_or(0);
            let l = LeaveIntent {
                ltime,
                node: name.clone(),
                prune: false,
            };
            apply_leave_intent(
                now,
                l,
                leaving,
                &mut self.members,
                &mut self.clock,
                nodes,
                rt,
            );
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
