//! The sans-IO member: memberlist (SWIM with Lifeguard) and Serf combined in one state
//! machine. Input: packets, completed streams, dial results, commands, and the passage of
//! time (`tick(now)` whenever `next_deadline()` is reached). Output: [`Output`]s queued for
//! the driver (send UDP, dial TCP, events). It never does IO and never reads a clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use super::config::{GossipConfig, Timing};
use super::error::GossipError;
use super::model::{GossipStats, Member, QueryParams, UserEventInfo};
use super::runtime::{DialPurpose, Runtime};
use super::swim::{LocalNode, NodeChange, Swim};
use super::timer::Timer;
use super::wire::{self, *};
use crate::control::model::MemberStatus;

const EVENT_BUFFER: u64 = 512;
const QUERY_BUFFER: u64 = 512;
const RECENT_INTENT_TIMEOUT: Duration = Duration::from_secs(300);

pub use super::output::{CoreEvent, Output};

#[derive(Debug)]
struct JoinState {
    pending: usize,
    contacted: usize,
    errors: Vec<String>,
}

#[derive(Debug, Clone)]
struct SerfMember {
    name: String,
    addr: IpAddr,
    port: u16,
    tags: BTreeMap<String, String>,
    vsn: Vsn,
    status: MemberStatus,
    status_ltime: u64,
    leave_time: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntentKind {
    Join,
    Leave,
}

#[derive(Debug)]
struct Intent {
    kind: IntentKind,
    ltime: u64,
    at: Instant,
}

#[derive(Debug)]
struct OutQuery {
    ltime: u64,
    id: u32,
    acks: HashSet<String>,
    responses: HashSet<String>,
}

#[derive(Debug)]
struct InQuery {
    ltime: u64,
    id: u32,
    addr: SocketAddr,
    relay_factor: u8,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeavePhase {
    None,
    Intent,
    Dead,
    Propagate,
    Done,
}

/// The combined memberlist + Serf state machine.
pub struct Core {
    cfg: GossipConfig,
    timing: Timing,
    name: String,
    adv: SocketAddr,
    tags: BTreeMap<String, String>,
    rt: Runtime,
    // memberlist
    swim: Swim,
    joins: HashMap<u64, JoinState>,
    join_ignore: bool,
    // serf
    members: HashMap<String, SerfMember>,
    clock: u64,
    event_clock: u64,
    query_clock: u64,
    event_min_time: u64,
    query_min_time: u64,
    recent_intents: HashMap<String, Intent>,
    event_ring: HashMap<u64, RingSlot>,
    query_ring: HashMap<u64, (u64, HashSet<u32>)>,
    out_queries: HashMap<u64, OutQuery>,
    out_query_by_id: HashMap<u32, u64>,
    in_queries: HashMap<u64, InQuery>,
    // leave
    leave_phase: LeavePhase,
    leave_notify: u64,
    leave_epoch: u64,
    last_now: Instant,
    /// Name conflict vote about ourselves: (query handle, responses, matching our address).
    conflict: Option<(u64, u32, u32)>,
    stopped: bool,
}

/// Encodes tags the way Serf does (`0xff` + msgpack map), enforcing the 512-byte limit.
pub fn encode_meta(tags: &BTreeMap<String, String>) -> Result<Vec<u8>, GossipError> {
    match wire::encode_tags(tags) {
        Ok(meta) => Ok(meta),
        Err(WireError::MetaTooLarge(size)) => Err(GossipError::TagsTooLarge {
            size,
            limit: META_MAX_SIZE,
        }),
        Err(e) => Err(GossipError::Config(e.to_string())),
    }
}

impl Core {
    /// A new member, alone, with its own alive queued for the first gossip.
    pub fn new(cfg: GossipConfig, now: Instant) -> Result<Core, GossipError> {
        let adv = cfg.advertise_addr();
        if adv.ip().is_unspecified() {
            return Err(GossipError::Config(
                "the advertise address is unspecified (0.0.0.0); set --advertise".into(),
            ));
        }
        if cfg.node_name.is_empty() {
            return Err(GossipError::Config("the node name is empty".into()));
        }
        let meta = encode_meta(&cfg.tags)?;
        let seed = cfg.seed.unwrap_or_else(rand::random);
        let mut core = Core {
            timing: cfg.timing.clone(),
            rt: Runtime::new(&cfg, seed),
            name: cfg.node_name.clone(),
            adv,
            tags: cfg.tags.clone(),
            swim: Swim::new(
                LocalNode::new(
                    cfg.node_name.clone(),
                    adv,
                    meta,
                    cfg.timing.awareness_max_multiplier,
                ),
                cfg.timing.clone(),
            ),
            joins: HashMap::new(),
            join_ignore: false,
            members: HashMap::new(),
            clock: 1,
            event_clock: 1,
            query_clock: 1,
            event_min_time: 0,
            query_min_time: 0,
            recent_intents: HashMap::new(),
            event_ring: HashMap::new(),
            query_ring: HashMap::new(),
            out_queries: HashMap::new(),
            out_query_by_id: HashMap::new(),
            in_queries: HashMap::new(),
            leave_phase: LeavePhase::None,
            leave_notify: 0,
            leave_epoch: 0,
            last_now: now,
            conflict: None,
            stopped: false,
            cfg,
        };
        // memberlist setAlive: our own alive, bootstrap.
        let alive = core.swim.local.alive();
        core.apply_alive(now, alive, true);
        // Serf: the local member's status time.
        core.clock = 1;
        let t = core.timing.clone();
        core.rt.schedule(now + t.probe_interval, Timer::Probe);
        core.rt.schedule(now + t.gossip_interval, Timer::Gossip);
        core.rt
            .schedule(now + t.push_pull_interval, Timer::PushPull);
        core.rt.schedule(now + core.cfg.reap_interval, Timer::Reap);
        core.rt
            .schedule(now + core.cfg.reconnect_interval, Timer::Reconnect);
        Ok(core)
    }

    // ------------------------------------------------------------------ accessors

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current keyring (the driver uses it to read streams).
    pub fn keyring(&self) -> Option<&Keyring> {
        self.rt.keyring()
    }

    /// True once after the keyring changed.
    pub fn take_keyring_changed(&mut self) -> bool {
        self.rt.take_keyring_changed()
    }

    /// True once after the member list changed.
    pub fn take_members_dirty(&mut self) -> bool {
        self.rt.take_members_dirty()
    }

    /// Next queued output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.rt.poll_output()
    }

    /// When [`Core::tick`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        if self.rt.broadcasts.awaited_out() {
            return Some(self.last_now);
        }
        self.rt.timers.next_at()
    }

    /// Whether the member stopped (left or fatal).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Counts a dropped input under `kind`.
    pub fn count_drop(&mut self, kind: &str) {
        self.rt.count_drop(kind);
    }

    /// Counters (TCP byte counters are kept by the driver and merged in).
    pub fn stats(&self) -> GossipStats {
        let mut s = self.rt.stats.clone();
        s.health_score = self.swim.local.awareness.score();
        s.member_time = self.clock;
        s.event_time = self.event_clock;
        s.query_time = self.query_clock;
        s.members.clear();
        for m in self.members.values() {
            *s.members.entry(m.status.as_str().to_string()).or_insert(0) += 1;
        }
        let suspects = self
            .swim
            .nodes
            .iter()
            .filter(|n| n.state == NodeStateKind::Suspect)
            .count() as u64;
        s.members.insert("suspect".into(), suspects);
        s
    }

    /// Broadcasts still queued (memberlist + Serf).
    pub fn pending_broadcasts(&self) -> usize {
        self.rt.broadcasts.len()
    }

    /// How many members have status `alive` (this node included).
    pub fn alive_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.status == MemberStatus::Alive)
            .count()
    }

    /// Every member known (Serf's view), this node included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.members.values().map(|m| self.view(m)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn view(&self, m: &SerfMember) -> Member {
        let suspect = self.swim.nodes.is_suspect(&m.name);
        Member {
            name: m.name.clone(),
            addr: m.addr,
            port: m.port,
            tags: m.tags.clone(),
            status: m.status,
            suspect: suspect && m.status == MemberStatus::Alive,
            vsn: m.vsn,
        }
    }

    fn member_view(&self, name: &str) -> Option<Member> {
        self.members.get(name).map(|m| self.view(m))
    }

    // ------------------------------------------------------------------ timers

    /// Runs every timer due at `now`.
    pub fn tick(&mut self, now: Instant) {
        self.last_now = now;
        if self.rt.broadcasts.take_awaited_out() {
            self.leave_epoch += 1;
            self.leave_advance(now, false);
        }
        while !self.stopped {
            let Some(t) = self.rt.timers.pop_due(now) else {
                break;
            };
            self.fire(now, t);
        }
    }

    fn fire(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::Probe => self.swim.probe(now, &mut self.rt),
            Timer::ProbeTimeout(seq) => self.swim.probe_timeout(now, seq, &mut self.rt),
            Timer::ProbeEnd(seq) => {
                if let Some(s) = self.swim.probe_end(now, seq, &mut self.rt) {
                    self.apply_suspect(now, s);
                }
            }
            Timer::Gossip => {
                self.swim.gossip(now, &mut self.rt);
                let at = now + self.timing.gossip_interval;
                self.rt.schedule(at, Timer::Gossip);
            }
            Timer::PushPull => {
                self.periodic_push_pull(now);
                let n = self.swim.nodes.len() as f64;
                let mut iv = self.timing.push_pull_interval;
                if n > 32.0 {
                    let mult = (n.log2() - 5.0).ceil() + 1.0;
                    iv = iv.mul_f64(mult.max(1.0));
                }
                self.rt.schedule(now + iv, Timer::PushPull);
            }
            Timer::Suspicion(name, epoch) => {
                if let Some(d) = self.swim.suspicion_expired(&name, epoch) {
                    self.apply_dead(now, d, None);
                }
            }
            Timer::IndirectExpire(seq) => self.swim.indirect_expired(seq, &mut self.rt),
            Timer::Reap => {
                self.reap(now);
                let at = now + self.cfg.reap_interval;
                self.rt.schedule(at, Timer::Reap);
            }
            Timer::Reconnect => {
                self.reconnect(now);
                let at = now + self.cfg.reconnect_interval;
                self.rt.schedule(at, Timer::Reconnect);
            }
            Timer::QueryEnd(h) => {
                if let Some(q) = self.out_queries.remove(&h) {
                    self.out_query_by_id.remove(&q.id);
                }
                if let Some((ch, responses, matching)) = self.conflict {
                    if ch == h {
                        self.conflict = None;
                        let majority = responses / 2 + 1;
                        if matching >= majority {
                            tracing::info!(
                                matching,
                                responses,
                                "majority in name conflict resolution"
                            );
                        } else {
                            tracing::warn!(
                                matching,
                                responses,
                                "minority in name conflict resolution, quitting"
                            );
                            self.stopped = true;
                            self.rt.output(Output::Fatal(format!(
                                "minority in name conflict resolution [{matching} / {responses}]: another node uses the name {}",
                                self.name
                            )));
                        }
                        return;
                    }
                }
                self.rt.output(Output::QueryDone { handle: h });
            }
            Timer::IncomingQueryEnd(tok) => {
                self.in_queries.remove(&tok);
            }
            Timer::Leave(epoch) => {
                if epoch == self.leave_epoch {
                    self.leave_advance(now, true);
                }
            }
        }
    }

    // ------------------------------------------------------------------ inputs

    /// A datagram arrived from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_now = now;
        if self.stopped {
            return;
        }
        self.rt.stats.udp_packets_in += 1;
        self.rt.stats.udp_bytes_in += data.len() as u64;
        let decoded = match decode_packet(data, self.rt.keyring()) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(%from, error = %e, "dropped packet");
                self.count_drop(e.kind());
                return;
            }
        };
        if self.rt.keyring().is_some() && !decoded.encrypted {
            self.count_drop("unencrypted");
            return;
        }
        for e in &decoded.errors {
            self.count_drop(e.kind());
        }
        for m in decoded.messages {
            self.handle_message(now, from, m);
        }
    }

    fn handle_message(&mut self, now: Instant, from: SocketAddr, m: Message) {
        match m {
            Message::Ping(p) => self.swim.ping(from, p, &mut self.rt),
            Message::IndirectPing(ip) => self.swim.indirect_ping(now, from, ip, &mut self.rt),
            Message::Ack(a) => self.swim.ack(a.seq_no, &mut self.rt),
            Message::Nack(n) => self.swim.nack(n.seq_no),
            Message::Alive(a) => {
                if a.vsn
                    .is_some_and(|v| v.pmin == 0 || v.pmax == 0 || v.pmin > v.pmax)
                {
                    self.count_drop("bad_vsn");
                    return;
                }
                self.apply_alive(now, a, false)
            }
            Message::Suspect(s) => self.apply_suspect(now, s),
            Message::Dead(d) => self.apply_dead(now, d, None),
            Message::User(b) => self.handle_serf(now, from, &b),
            Message::PushPull(_) | Message::Err(_) => self.count_drop("stream_only_message"),
        }
    }

    /// A complete inbound stream message; returns the reply bytes to write, if any.
    pub fn handle_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
    ) -> Option<Vec<u8>> {
        if self.stopped {
            return None;
        }
        self.rt.stats.tcp_streams_in += 1;
        match msg {
            Message::PushPull(pp) => {
                let reply = self.local_push_pull(pp.join);
                let bytes = self.rt.stream_bytes(&Message::PushPull(reply));
                // Refused states are logged and counted; the peer already has our reply.
                let _ = self.merge_remote(now, pp, false);
                Some(bytes)
            }
            Message::Ping(p) => self.swim.stream_ping(&p, &mut self.rt),
            Message::User(b) => {
                self.handle_serf(now, from, &b);
                None
            }
            other => {
                tracing::debug!(%from, ?other, "unexpected stream message");
                self.count_drop("unexpected_stream_message");
                Some(self.error_reply("unexpected message on a stream"))
            }
        }
    }

    /// The `err` reply for an unreadable stream.
    pub fn error_reply(&self, text: &str) -> Vec<u8> {
        self.rt.stream_bytes(&Message::Err(text.to_string()))
    }

    /// The outcome of an [`Output::Dial`].
    pub fn dial_result(&mut self, now: Instant, id: u64, result: Result<Option<Message>, String>) {
        let Some(purpose) = self.rt.take_dial(id) else {
            return;
        };
        match purpose {
            DialPurpose::Join { join_id } => {
                let ok = match result {
                    Ok(Some(Message::PushPull(pp))) => self.merge_remote(now, pp, true),
                    Ok(Some(Message::Err(e))) => Err(format!("remote error: {e}")),
                    Ok(other) => Err(format!("unexpected reply {other:?}")),
                    Err(e) => Err(e),
                };
                if let Some(j) = self.joins.get_mut(&join_id) {
                    j.pending -= 1;
                    match ok {
                        Ok(()) => j.contacted += 1,
                        Err(e) => j.errors.push(e),
                    }
                    if j.pending == 0 {
                        let j = self.joins.remove(&join_id).expect("present");
                        self.join_ignore = false;
                        if j.contacted > 0 {
                            self.broadcast_join_intent(now);
                        }
                        self.rt.output(Output::JoinDone {
                            id: join_id,
                            contacted: j.contacted,
                            errors: j.errors,
                        });
                    }
                }
            }
            DialPurpose::PushPull | DialPurpose::Reconnect => match result {
                Ok(Some(Message::PushPull(pp))) => {
                    let _ = self.merge_remote(now, pp, false);
                }
                Ok(Some(Message::Err(e))) => tracing::warn!(error = %e, "push/pull refused"),
                Ok(_) => self.count_drop("bad_push_pull_reply"),
                Err(e) => tracing::debug!(error = %e, "push/pull failed"),
            },
            DialPurpose::TcpPing { probe_seq } => self.swim.tcp_ping_result(probe_seq, &result),
        }
    }

    // ------------------------------------------------------------------ commands

    /// Starts a join through `seeds`; completes with [`Output::JoinDone`].
    pub fn join(&mut self, _now: Instant, seeds: &[SocketAddr]) -> u64 {
        let join_id = self.rt.next_id();
        if seeds.is_empty() {
            self.rt.output(Output::JoinDone {
                id: join_id,
                contacted: 0,
                errors: vec!["no seeds".into()],
            });
            return join_id;
        }
        self.joins.insert(
            join_id,
            JoinState {
                pending: seeds.len(),
                contacted: 0,
                errors: Vec::new(),
            },
        );
        self.join_ignore = true;
        for s in seeds {
            let pp = self.local_push_pull(true);
            self.rt.dial(
                *s,
                &Message::PushPull(pp),
                DialPurpose::Join { join_id },
                true,
            );
        }
        join_id
    }

    /// Replaces the tags: new meta, incarnation + 1, alive broadcast.
    pub fn set_tags(
        &mut self,
        now: Instant,
        tags: BTreeMap<String, String>,
    ) -> Result<(), GossipError> {
        let meta = encode_meta(&tags)?;
        self.tags = tags;
        let a = self.swim.local.set_meta(meta);
        self.apply_alive(now, a, true);
        Ok(())
    }

    /// Broadcasts a user event.
    pub fn user_event(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        cc: bool,
    ) -> Result<(), GossipError> {
        let limit = self.cfg.user_event_size_limit;
        let size = name.len() + payload.len();
        if size > limit {
            return Err(GossipError::TooLarge {
                what: "user event (name + payload)",
                size,
                limit,
            });
        }
        if self.leave_phase != LeavePhase::None {
            return Err(GossipError::Leaving);
        }
        let ev = UserEvent {
            ltime: self.event_clock,
            name: name.to_string(),
            payload: payload.to_vec(),
            cc,
        };
        self.event_clock += 1;
        let bytes = encode_serf_message(&SerfMessage::UserEvent(ev.clone()));
        if bytes.len() > limit {
            return Err(GossipError::TooLarge {
                what: "encoded user event",
                size: bytes.len(),
                limit,
            });
        }
        // Process locally (dedupe ring + local event), then broadcast.
        self.handle_user_event(now, ev);
        self.rt.broadcasts.queue_serf(bytes, None);
        Ok(())
    }

    fn default_query_timeout(&self) -> Duration {
        let n = self.members.len() as f64;
        let scale = ((n + 1.0).log10()).ceil().max(1.0);
        self.timing.gossip_interval.mul_f64(16.0 * scale)
    }

    /// Sends a query; returns its handle and deadline.
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<(u64, Instant), GossipError> {
        if name.starts_with("_serf_") && name != "_serf_ping" {
            return Err(GossipError::InvalidQuery(format!(
                "{name}: names starting with _serf_ are reserved"
            )));
        }
        self.query_inner(now, name, payload, params)
    }

    fn query_inner(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<(u64, Instant), GossipError> {
        if self.leave_phase != LeavePhase::None {
            return Err(GossipError::Leaving);
        }
        let mut filters = Vec::new();
        if !params.filter_nodes.is_empty() {
            filters.push(encode_query_filter(&QueryFilter::Nodes(
                params.filter_nodes.clone(),
            )));
        }
        for (tag, expr) in &params.filter_tags {
            filters.push(encode_query_filter(&QueryFilter::Tag {
                tag: tag.clone(),
                expr: expr.clone(),
            }));
        }
        let timeout = params
            .timeout
            .unwrap_or_else(|| self.default_query_timeout());
        let id: u32 = self.rt.rng.gen();
        let q = Query {
            ltime: self.query_clock,
            id,
            addr: self.adv.ip(),
            port: self.adv.port(),
            source_node: self.name.clone(),
            filters,
            flags: if params.request_ack {
                QUERY_FLAG_ACK
            } else {
                0
            },
            relay_factor: params.relay_factor,
            timeout_ns: timeout.as_nanos() as i64,
            name: name.to_string(),
            payload: payload.to_vec(),
        };
        let bytes = encode_serf_message(&SerfMessage::Query(q.clone()));
        if bytes.len() > self.cfg.query_size_limit {
            return Err(GossipError::TooLarge {
                what: "query",
                size: bytes.len(),
                limit: self.cfg.query_size_limit,
            });
        }
        self.query_clock += 1;
        let handle = self.rt.next_id();
        self.out_queries.insert(
            handle,
            OutQuery {
                ltime: q.ltime,
                id,
                acks: HashSet::new(),
                responses: HashSet::new(),
            },
        );
        self.out_query_by_id.insert(id, handle);
        let deadline = now + timeout;
        self.rt.schedule(deadline, Timer::QueryEnd(handle));
        // Process locally (like Serf: it answers itself), then broadcast.
        let from = self.adv;
        self.handle_query(now, from, q, bytes.clone());
        self.rt.broadcasts.queue_serf(bytes, None);
        Ok((handle, deadline))
    }

    /// Answers an incoming query (once).
    pub fn respond(&mut self, now: Instant, token: u64, payload: &[u8]) -> Result<(), GossipError> {
        let Some(q) = self.in_queries.remove(&token) else {
            return Err(GossipError::AlreadyResponded);
        };
        if now > q.deadline {
            return Err(GossipError::QueryExpired);
        }
        let resp = QueryResponse {
            ltime: q.ltime,
            id: q.id,
            from: self.name.clone(),
            flags: 0,
            payload: Some(payload.to_vec()),
        };
        let bytes = encode_serf_message(&SerfMessage::QueryResponse(resp));
        if bytes.len() > self.cfg.query_response_size_limit {
            return Err(GossipError::TooLarge {
                what: "query response",
                size: bytes.len(),
                limit: self.cfg.query_response_size_limit,
            });
        }
        self.send_query_response(now, q.addr, q.relay_factor, bytes);
        Ok(())
    }

    fn start_conflict_resolution(&mut self, now: Instant) {
        let name = self.name.clone();
        match self.query_inner(
            now,
            "_serf_conflict",
            name.as_bytes(),
            QueryParams::default(),
        ) {
            Ok((h, _)) => self.conflict = Some((h, 0, 0)),
            Err(e) => tracing::warn!(error = %e, "cannot start name conflict resolution"),
        }
    }

    /// Graceful leave; completes with [`Output::LeaveDone`].
    pub fn leave(&mut self, now: Instant) {
        if self.leave_phase != LeavePhase::None {
            return;
        }
        // Serf: leave intent.
        let msg = LeaveIntent {
            ltime: self.clock,
            node: self.name.clone(),
            prune: false,
        };
        self.clock += 1;
        self.leave_phase = LeavePhase::Intent;
        self.swim.local.leaving = true;
        self.handle_leave_intent(now, msg.clone());
        if self.swim.nodes.any_alive_peer(&self.name) {
            self.leave_notify = self.rt.next_id();
            self.rt.broadcasts.await_delivery(Some(self.leave_notify));
            let bytes = encode_serf_message(&SerfMessage::Leave(msg));
            self.rt
                .broadcasts
                .queue_serf(bytes, Some(self.leave_notify));
            self.leave_epoch += 1;
            let at = now + self.cfg.broadcast_timeout;
            self.rt.schedule(at, Timer::Leave(self.leave_epoch));
        } else {
            self.leave_advance(now, true);
        }
    }

    fn leave_advance(&mut self, now: Instant, _timeout: bool) {
        match self.leave_phase {
            LeavePhase::Intent => {
                // memberlist Leave: dead about ourselves, From = ourselves.
                self.leave_phase = LeavePhase::Dead;
                self.leave_notify = self.rt.next_id();
                self.rt.broadcasts.await_delivery(Some(self.leave_notify));
                let change = self.swim.leave(now, self.leave_notify, &mut self.rt);
                self.node_changed(now, change);
                self.leave_epoch += 1;
                if self.swim.nodes.any_alive_peer(&self.name) {
                    let at = now + self.cfg.broadcast_timeout;
                    self.rt.schedule(at, Timer::Leave(self.leave_epoch));
                } else {
                    self.rt.schedule(now, Timer::Leave(self.leave_epoch));
                }
            }
            LeavePhase::Dead => {
                self.leave_phase = LeavePhase::Propagate;
                self.rt.broadcasts.await_delivery(None);
                self.leave_epoch += 1;
                let at = now + self.cfg.leave_propagate_delay;
                self.rt.schedule(at, Timer::Leave(self.leave_epoch));
            }
            LeavePhase::Propagate => {
                self.leave_phase = LeavePhase::Done;
                self.stopped = true;
                self.rt.output(Output::LeaveDone);
            }
            LeavePhase::None | LeavePhase::Done => {}
        }
    }

    // ------------------------------------------------------------------ node changes

    /// An alive message, through SWIM, then to the Serf layer.
    fn apply_alive(&mut self, now: Instant, a: Alive, bootstrap: bool) {
        let change = self.swim.alive(now, a, bootstrap, &mut self.rt);
        self.node_changed(now, change);
    }

    /// A suspect message, through SWIM, then to the Serf layer.
    fn apply_suspect(&mut self, now: Instant, s: Suspect) {
        let change = self.swim.suspect(now, s, &mut self.rt);
        self.node_changed(now, change);
    }

    /// A dead message, through SWIM, then to the Serf layer.
    fn apply_dead(&mut self, now: Instant, d: Dead, notify: Option<u64>) {
        let change = self.swim.dead(now, d, notify, &mut self.rt);
        self.node_changed(now, change);
    }

    /// What SWIM changed, applied to the Serf members.
    fn node_changed(&mut self, now: Instant, change: Option<NodeChange>) {
        let Some(change) = change else {
            return;
        };
        match change {
            NodeChange::Joined(name) => self.serf_node_join(now, &name),
            NodeChange::Updated(name) => self.serf_node_update(&name),
            NodeChange::Refuted { node, updated } => {
                if updated {
                    self.serf_node_update(&node);
                }
                if let Some(m) = self.member_view(&node) {
                    self.rt.event(CoreEvent::MemberRefuted(m));
                }
            }
            NodeChange::Suspected(name) => {
                if let Some(m) = self.member_view(&name) {
                    self.rt.event(CoreEvent::MemberSuspect(m));
                }
                return;
            }
            NodeChange::Gone(name) => self.serf_node_leave(now, &name),
            NodeChange::Other => {}
            NodeChange::AddressConflict { local } => {
                if local && self.conflict.is_none() && self.leave_phase == LeavePhase::None {
                    self.start_conflict_resolution(now);
                }
                return;
            }
        }
        self.rt.members_changed();
    }

    // ------------------------------------------------------------------ gossip, push/pull

    fn periodic_push_pull(&mut self, _now: Instant) {
        let me = self.name.clone();
        let mut cands: Vec<SocketAddr> = self
            .swim
            .nodes
            .iter()
            .filter(|n| n.name != me && n.state == NodeStateKind::Alive)
            .map(|n| n.sock())
            .collect();
        cands.sort();
        if let Some(addr) = cands.choose(&mut self.rt.rng).copied() {
            let pp = self.local_push_pull(false);
            self.rt
                .dial(addr, &Message::PushPull(pp), DialPurpose::PushPull, true);
        }
    }

    fn reconnect(&mut self, _now: Instant) {
        let failed: Vec<&SerfMember> = self
            .members
            .values()
            .filter(|m| m.status == MemberStatus::Failed)
            .collect();
        if failed.is_empty() {
            return;
        }
        let alive = self
            .members
            .values()
            .filter(|m| m.status == MemberStatus::Alive)
            .count()
            .saturating_sub(1)
            .max(1);
        let prob = failed.len() as f64 / alive as f64;
        if self.rt.rng.gen::<f64>() > prob {
            return;
        }
        let mut addrs: Vec<SocketAddr> = failed
            .iter()
            .map(|m| SocketAddr::new(m.addr, m.port))
            .collect();
        addrs.sort();
        if let Some(addr) = addrs.choose(&mut self.rt.rng).copied() {
            let pp = self.local_push_pull(false);
            self.rt
                .dial(addr, &Message::PushPull(pp), DialPurpose::Reconnect, true);
        }
    }

    fn local_push_pull(&self, join: bool) -> PushPull {
        let mut nodes: Vec<PushNodeState> = self
            .swim
            .nodes
            .iter()
            .map(|n| PushNodeState {
                name: n.name.clone(),
                addr: n.addr,
                port: n.port,
                meta: n.meta.clone(),
                incarnation: n.incarnation,
                state: n.state,
                vsn: Some(n.vsn),
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let serf = SerfPushPull {
            ltime: self.clock,
            status_ltimes: self
                .members
                .values()
                .map(|m| (m.name.clone(), m.status_ltime))
                .collect(),
            left_members: {
                let mut v: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.status == MemberStatus::Left)
                    .map(|m| m.name.clone())
                    .collect();
                v.sort();
                v
            },
            event_ltime: self.event_clock,
            events: {
                let mut v: Vec<&RingSlot> = self.event_ring.values().collect();
                v.sort_by_key(|s| s.ltime);
                v.into_iter().cloned().map(Some).collect()
            },
            query_ltime: self.query_clock,
        };
        PushPull {
            join,
            nodes,
            user_state: encode_serf_message(&SerfMessage::PushPull(serf)),
        }
    }

    /// Merges a remote push/pull. Like memberlist, the whole state is refused when a node's
    /// protocol version falls outside what every alive node of both tables understands.
    fn merge_remote(&mut self, now: Instant, pp: PushPull, we_joined: bool) -> Result<(), String> {
        let local: Vec<VersionedNode<'_>> = self
            .swim
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.state, Some(n.vsn)))
            .collect();
        let remote: Vec<VersionedNode<'_>> = pp
            .nodes
            .iter()
            .map(|r| (r.name.as_str(), r.state, r.vsn))
            .collect();
        if let Err(e) = verify_protocol(&remote, &local) {
            tracing::warn!(error = %e, "push/pull refused: incompatible protocol versions");
            self.count_drop("incompatible_protocol");
            return Err(e);
        }
        for r in pp.nodes {
            match r.state {
                NodeStateKind::Alive => {
                    if r.vsn
                        .is_some_and(|v| v.pmin == 0 || v.pmax == 0 || v.pmin > v.pmax)
                    {
                        continue;
                    }
                    let a = Alive {
                        incarnation: r.incarnation,
                        node: r.name,
                        addr: r.addr,
                        port: r.port,
                        meta: r.meta,
                        vsn: r.vsn,
                    };
                    self.apply_alive(now, a, false)
                }
                NodeStateKind::Left => self.apply_dead(
                    now,
                    Dead {
                        incarnation: r.incarnation,
                        node: r.name.clone(),
                        from: r.name,
                    },
                    None,
                ),
                NodeStateKind::Dead | NodeStateKind::Suspect => self.apply_suspect(
                    now,
                    Suspect {
                        incarnation: r.incarnation,
                        node: r.name,
                        from: self.name.clone(),
                    },
                ),
            }
        }
        if pp.user_state.is_empty() {
            return Ok(());
        }
        match decode_serf_message(&pp.user_state) {
            Ok(SerfMessage::PushPull(s)) => self.merge_serf(now, s, pp.join && we_joined),
            Ok(_) => self.count_drop("bad_user_state"),
            Err(e) => self.count_drop(e.kind()),
        }
        Ok(())
    }

    fn merge_serf(&mut self, now: Instant, s: SerfPushPull, join: bool) {
        if s.ltime > 0 {
            self.witness_member(s.ltime - 1);
        }
        if s.event_ltime > 0 {
            self.event_clock = witness(self.event_clock, s.event_ltime - 1);
        }
        if s.query_ltime > 0 {
            self.query_clock = witness(self.query_clock, s.query_ltime - 1);
        }
        if join && self.join_ignore {
            self.event_min_time = self.event_min_time.max(s.event_ltime);
            self.query_min_time = self.query_min_time.max(s.query_ltime);
        }
        let left: HashSet<&String> = s.left_members.iter().collect();
        for name in &s.left_members {
            let lt = s.status_ltimes.get(name).copied().unwrap_or(0);
            self.handle_leave_intent(
                now,
                LeaveIntent {
                    ltime: lt,
                    node: name.clone(),
                    prune: false,
                },
            );
        }
        for (name, lt) in &s.status_ltimes {
            if left.contains(name) {
                continue;
            }
            self.handle_join_intent(
                now,
                JoinIntent {
                    ltime: *lt,
                    node: name.clone(),
                },
            );
        }
        for slot in s.events.into_iter().flatten() {
            for e in slot.events {
                self.handle_user_event(
                    now,
                    UserEvent {
                        ltime: slot.ltime,
                        name: e.name,
                        payload: e.payload,
                        cc: false,
                    },
                );
            }
        }
    }

    // ------------------------------------------------------------------ Serf

    fn witness_member(&mut self, v: u64) {
        self.clock = witness(self.clock, v);
    }

    fn serf_node_join(&mut self, _now: Instant, name: &str) {
        let Some(n) = self.swim.nodes.get(name).cloned() else {
            return;
        };
        let tags = decode_meta(&n.meta);
        match self.members.get_mut(name) {
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
                if let Some(i) = self.recent_intents.remove(name) {
                    m.status_ltime = i.ltime;
                    if i.kind == IntentKind::Leave {
                        m.status = MemberStatus::Leaving;
                    }
                }
                self.members.insert(name.to_string(), m);
                self.rt.broadcasts.set_num_members(self.members.len());
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
        if name == self.name {
            self.rt.members_changed();
            return;
        }
        if let Some(m) = self.member_view(name) {
            tracing::info!(node = %name, addr = %m.addr, "EventMemberJoin");
            self.rt.event(CoreEvent::MemberJoin(m));
        }
    }

    fn serf_node_update(&mut self, name: &str) {
        let Some(n) = self.swim.nodes.get(name).cloned() else {
            return;
        };
        if let Some(m) = self.members.get_mut(name) {
            m.addr = n.addr;
            m.port = n.port;
            m.tags = decode_meta(&n.meta);
            m.vsn = n.vsn;
        }
        if let Some(m) = self.member_view(name) {
            tracing::info!(node = %name, "EventMemberUpdate");
            self.rt.event(CoreEvent::MemberUpdate(m));
        }
    }

    fn serf_node_leave(&mut self, now: Instant, name: &str) {
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        let ev = match m.status {
            MemberStatus::Leaving => {
                m.status = MemberStatus::Left;
                m.leave_time = Some(now);
                true
            }
            MemberStatus::Alive => {
                m.status = MemberStatus::Failed;
                m.leave_time = Some(now);
                false
            }
            _ => return,
        };
        if let Some(v) = self.member_view(name) {
            if ev {
                tracing::info!(node = %name, "EventMemberLeave");
                self.rt.event(CoreEvent::MemberLeave(v));
            } else {
                tracing::info!(node = %name, "EventMemberFailed");
                self.rt.event(CoreEvent::MemberFailed(v));
            }
        }
    }

    fn broadcast_join_intent(&mut self, now: Instant) {
        let msg = JoinIntent {
            ltime: self.clock,
            node: self.name.clone(),
        };
        self.witness_member(msg.ltime);
        self.handle_join_intent(now, msg.clone());
        let bytes = encode_serf_message(&SerfMessage::Join(msg));
        self.rt.broadcasts.queue_serf(bytes, None);
    }

    fn upsert_intent(&mut self, now: Instant, name: &str, kind: IntentKind, ltime: u64) -> bool {
        match self.recent_intents.get(name) {
            Some(i) if i.ltime >= ltime => false,
            _ => {
                self.recent_intents.insert(
                    name.to_string(),
                    Intent {
                        kind,
                        ltime,
                        at: now,
                    },
                );
                true
            }
        }
    }

    /// Returns whether to re-broadcast.
    fn handle_join_intent(&mut self, now: Instant, j: JoinIntent) -> bool {
        self.witness_member(j.ltime);
        let Some(m) = self.members.get_mut(&j.node) else {
            return self.upsert_intent(now, &j.node, IntentKind::Join, j.ltime);
        };
        if j.ltime <= m.status_ltime {
            return false;
        }
        m.status_ltime = j.ltime;
        if m.status == MemberStatus::Leaving {
            m.status = MemberStatus::Alive;
            self.rt.members_changed();
        }
        true
    }

    /// Returns whether to re-broadcast.
    fn handle_leave_intent(&mut self, now: Instant, l: LeaveIntent) -> bool {
        self.witness_member(l.ltime);
        if l.node == self.name && self.leave_phase == LeavePhase::None {
            // Someone says we are leaving: refute with a newer join intent.
            if self
                .members
                .get(&self.name)
                .is_some_and(|m| l.ltime > m.status_ltime)
            {
                self.broadcast_join_intent(now);
            }
            return false;
        }
        let Some(m) = self.members.get_mut(&l.node) else {
            return self.upsert_intent(now, &l.node, IntentKind::Leave, l.ltime);
        };
        if l.ltime <= m.status_ltime {
            return false;
        }
        m.status_ltime = l.ltime;
        match m.status {
            MemberStatus::Alive => {
                m.status = MemberStatus::Leaving;
                self.rt.members_changed();
                true
            }
            MemberStatus::Failed => {
                m.status = MemberStatus::Left;
                let name = l.node.clone();
                if let Some(v) = self.member_view(&name) {
                    self.rt.event(CoreEvent::MemberLeave(v));
                }
                true
            }
            _ => false,
        }
    }

    fn handle_serf(&mut self, now: Instant, from: SocketAddr, raw: &[u8]) {
        let msg = match decode_serf_message(raw) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%from, error = %e, "dropped serf message");
                self.count_drop(e.kind());
                return;
            }
        };
        match msg {
            SerfMessage::Leave(l) => {
                tracing::debug!(node = %l.node, "messageLeaveType");
                if self.handle_leave_intent(now, l) {
                    self.rt.broadcasts.queue_serf(raw.to_vec(), None);
                }
            }
            SerfMessage::Join(j) => {
                tracing::debug!(node = %j.node, "messageJoinType");
                if self.handle_join_intent(now, j) {
                    self.rt.broadcasts.queue_serf(raw.to_vec(), None);
                }
            }
            SerfMessage::UserEvent(e) => {
                if self.handle_user_event(now, e) {
                    self.rt.broadcasts.queue_serf(raw.to_vec(), None);
                }
            }
            SerfMessage::Query(q) => {
                self.handle_query(now, from, q, raw.to_vec());
            }
            SerfMessage::QueryResponse(r) => self.handle_query_response(r),
            SerfMessage::Relay(r) => {
                let to = SocketAddr::new(r.dest_addr, r.dest_port);
                let msg = encode_message(&Message::User(r.inner));
                self.rt.send_raw(to, &[msg], false);
            }
            SerfMessage::PushPull(_) => self.count_drop("unexpected_serf_push_pull"),
        }
    }

    /// Returns whether to re-broadcast.
    fn handle_user_event(&mut self, _now: Instant, e: UserEvent) -> bool {
        self.event_clock = witness(self.event_clock, e.ltime);
        if e.ltime < self.event_min_time {
            return false;
        }
        let cur = self.event_clock;
        if cur > EVENT_BUFFER && e.ltime < cur - EVENT_BUFFER {
            self.count_drop("old_user_event");
            return false;
        }
        let idx = e.ltime % EVENT_BUFFER;
        let slot = self.event_ring.entry(idx).or_insert_with(|| RingSlot {
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
        self.rt.event(CoreEvent::User(UserEventInfo {
            name: e.name,
            payload: e.payload,
            ltime: e.ltime,
            coalesce: e.cc,
        }));
        true
    }

    fn handle_query(&mut self, now: Instant, _from: SocketAddr, q: Query, raw: Vec<u8>) {
        self.query_clock = witness(self.query_clock, q.ltime);
        if q.ltime < self.query_min_time {
            return;
        }
        let cur = self.query_clock;
        if cur > QUERY_BUFFER && q.ltime < cur - QUERY_BUFFER {
            self.count_drop("old_query");
            return;
        }
        let idx = q.ltime % QUERY_BUFFER;
        let slot = self
            .query_ring
            .entry(idx)
            .or_insert_with(|| (q.ltime, HashSet::new()));
        if slot.0 != q.ltime {
            *slot = (q.ltime, HashSet::new());
        }
        if !slot.1.insert(q.id) {
            return;
        }
        if q.flags & QUERY_FLAG_NO_BROADCAST == 0 && q.source_node != self.name {
            self.rt.broadcasts.queue_serf(raw, None);
        }
        if !self.should_process(&q.filters) {
            return;
        }
        let addr = SocketAddr::new(q.addr, q.port);
        if q.flags & QUERY_FLAG_ACK != 0 {
            let ack = QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: self.name.clone(),
                flags: QUERY_RESPONSE_FLAG_ACK,
                payload: None,
            };
            let bytes = encode_serf_message(&SerfMessage::QueryResponse(ack));
            self.send_query_response(now, addr, q.relay_factor, bytes);
        }
        let timeout = Duration::from_nanos(q.timeout_ns.max(0) as u64);
        let deadline = now + timeout;
        if q.name.starts_with("_serf_") {
            self.internal_query(now, &q, addr);
            return;
        }
        let token = self.rt.next_id();
        self.in_queries.insert(
            token,
            InQuery {
                ltime: q.ltime,
                id: q.id,
                addr,
                relay_factor: q.relay_factor,
                deadline,
            },
        );
        self.rt.schedule(deadline, Timer::IncomingQueryEnd(token));
        self.rt.event(CoreEvent::Query {
            token,
            name: q.name,
            payload: q.payload,
            source_node: q.source_node,
            ltime: q.ltime,
            deadline,
        });
    }

    /// Serf's filter rule: process a query only if every filter matches; an unreadable
    /// filter, a missing tag or an invalid expression means "not for us".
    fn should_process(&self, filters: &[Vec<u8>]) -> bool {
        filters.iter().all(|f| match decode_query_filter(f) {
            Ok(QueryFilter::Nodes(names)) => names.iter().any(|n| n == &self.name),
            Ok(QueryFilter::Tag { tag, expr }) => self
                .tags
                .get(&tag)
                .is_some_and(|v| tag_filter_matches(&expr, v)),
            Err(_) => false,
        })
    }

    fn send_query_response(&mut self, _now: Instant, addr: SocketAddr, relay: u8, serf: Vec<u8>) {
        let msg = encode_message(&Message::User(serf.clone()));
        self.rt.send_raw(addr, &[msg], false);
        if relay == 0 {
            return;
        }
        let me = self.name.clone();
        let mut cands: Vec<(String, SocketAddr)> = self
            .members
            .values()
            .filter(|m| m.name != me && m.status == MemberStatus::Alive && m.vsn.pmax >= 5)
            .map(|m| (m.name.clone(), SocketAddr::new(m.addr, m.port)))
            .collect();
        if self.members.len() <= relay as usize + 1 {
            return;
        }
        cands.sort();
        cands.shuffle(&mut self.rt.rng);
        for (name, to) in cands.into_iter().take(relay as usize) {
            let r = Relay {
                dest_addr: addr.ip(),
                dest_port: addr.port(),
                dest_zone: String::new(),
                dest_name: name,
                inner: serf.clone(),
            };
            let bytes = encode_serf_message(&SerfMessage::Relay(r));
            let msg = encode_message(&Message::User(bytes));
            self.rt.send_raw(to, &[msg], false);
        }
    }

    fn handle_query_response(&mut self, r: QueryResponse) {
        let Some(&handle) = self.out_query_by_id.get(&r.id) else {
            return;
        };
        let Some(q) = self.out_queries.get_mut(&handle) else {
            return;
        };
        if q.ltime != r.ltime {
            return;
        }
        if let Some((ch, responses, matching)) = self.conflict.as_mut() {
            if *ch == handle {
                if r.flags & QUERY_RESPONSE_FLAG_ACK == 0 && q.responses.insert(r.from.clone()) {
                    if let Ok(Some(m)) = decode_conflict_response(&r.payload.unwrap_or_default()) {
                        *responses += 1;
                        if m.addr == self.adv.ip() && m.port == self.adv.port() {
                            *matching += 1;
                        }
                    }
                }
                return;
            }
        }
        if r.flags & QUERY_RESPONSE_FLAG_ACK != 0 {
            if q.acks.insert(r.from.clone()) {
                self.rt.output(Output::QueryAck {
                    handle,
                    from: r.from,
                });
            }
        } else if q.responses.insert(r.from.clone()) {
            self.rt.output(Output::QueryResponse {
                handle,
                from: r.from,
                payload: r.payload.unwrap_or_default(),
            });
        }
    }

    fn internal_query(&mut self, now: Instant, q: &Query, addr: SocketAddr) {
        let payload: Option<Vec<u8>> = match q.name.as_str() {
            "_serf_ping" => None,
            "_serf_conflict" => {
                let name = String::from_utf8_lossy(&q.payload).to_string();
                if name == self.name {
                    None
                } else {
                    let cm = self.members.get(&name).map(|m| ConflictMember {
                        name: m.name.clone(),
                        addr: m.addr,
                        port: m.port,
                        tags: m.tags.clone(),
                        status: status_num(m.status),
                        vsn: m.vsn,
                    });
                    Some(encode_conflict_response(cm.as_ref()))
                }
            }
            "_serf_install-key" | "_serf_use-key" | "_serf_remove-key" | "_serf_list-keys" => {
                Some(self.key_query(&q.name, &q.payload))
            }
            other => {
                tracing::debug!(query = %other, "unknown internal query");
                None
            }
        };
        if let Some(p) = payload {
            let resp = QueryResponse {
                ltime: q.ltime,
                id: q.id,
                from: self.name.clone(),
                flags: 0,
                payload: Some(p),
            };
            let bytes = encode_serf_message(&SerfMessage::QueryResponse(resp));
            self.send_query_response(now, addr, q.relay_factor, bytes);
        }
    }

    fn key_query(&mut self, name: &str, payload: &[u8]) -> Vec<u8> {
        let mut resp = KeyResponse {
            result: false,
            message: String::new(),
            keys: None,
            primary_key: String::new(),
        };
        let Some(ring) = self.rt.keyring_mut() else {
            resp.message = if name == "_serf_list-keys" {
                "Keyring is empty (encryption not enabled)".into()
            } else {
                "No keyring to modify (encryption not enabled)".into()
            };
            return encode_key_response(&resp);
        };
        let req = match decode_key_request(payload) {
            Ok(r) => r,
            Err(e) => {
                resp.message = format!("Failed to decode key request: {e}");
                return encode_key_response(&resp);
            }
        };
        let res = match name {
            "_serf_install-key" => ring.install(req.key.clone()).map_err(|e| e.to_string()),
            "_serf_use-key" => ring.use_key(&req.key).map_err(|e| e.to_string()),
            "_serf_remove-key" => ring.remove(&req.key).map_err(|e| e.to_string()),
            _ => {
                let keys = ring.list_base64();
                resp.primary_key = keys.first().cloned().unwrap_or_default();
                resp.keys = Some(keys);
                resp.result = true;
                return encode_key_response(&resp);
            }
        };
        match res {
            Ok(()) => {
                resp.result = true;
                self.rt.keyring_changed();
                if let Err(e) = self.write_keyring_file() {
                    resp.result = false;
                    resp.message = e;
                }
            }
            Err(e) => resp.message = e,
        }
        encode_key_response(&resp)
    }

    fn write_keyring_file(&self) -> Result<(), String> {
        let (Some(path), Some(ring)) = (&self.cfg.keyring_file, self.rt.keyring()) else {
            return Ok(());
        };
        let json = serde_json::to_string(&ring.list_base64()).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("failed to write keyring file: {e}"))
    }

    fn reap(&mut self, now: Instant) {
        let rt = self.cfg.reconnect_timeout;
        let tt = self.cfg.tombstone_timeout;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| match (m.status, m.leave_time) {
                (MemberStatus::Failed, Some(t)) => now.duration_since(t) > rt,
                (MemberStatus::Left, Some(t)) => now.duration_since(t) > tt,
                _ => false,
            })
            .map(|m| m.name.clone())
            .collect();
        for name in gone {
            if let Some(v) = self.member_view(&name) {
                self.members.remove(&name);
                self.rt.broadcasts.set_num_members(self.members.len());
                tracing::info!(node = %name, "EventMemberReap");
                self.rt.event(CoreEvent::MemberReap(v));
            }
        }
        self.recent_intents
            .retain(|_, i| now.duration_since(i.at) < RECENT_INTENT_TIMEOUT);
    }
}

fn witness(cur: u64, v: u64) -> u64 {
    if v >= cur {
        v + 1
    } else {
        cur
    }
}

fn status_num(s: MemberStatus) -> i64 {
    match s {
        MemberStatus::Alive => 1,
        MemberStatus::Leaving => 2,
        MemberStatus::Left => 3,
        MemberStatus::Failed => 4,
    }
}

/// Decodes Serf tags from memberlist `Meta` (legacy: the whole meta is the `role` tag).
pub fn decode_meta(meta: &[u8]) -> BTreeMap<String, String> {
    if meta.first() == Some(&0xff) {
        decode_tags(meta).unwrap_or_default()
    } else if meta.is_empty() {
        BTreeMap::new()
    } else {
        let mut m = BTreeMap::new();
        m.insert("role".into(), String::from_utf8_lossy(meta).to_string());
        m
    }
}

/// A node's name, state and protocol versions, as [`verify_protocol`] reads them.
pub type VersionedNode<'a> = (&'a str, NodeStateKind, Option<Vsn>);

/// memberlist's `verifyProtocol`: over the alive nodes of both tables, the highest minimum
/// and the lowest maximum (memberlist and delegate protocol) must contain every node's
/// current version, remote nodes of any state included (a node without versions counts as
/// version 0, as in Go). `Err` names the first node that does not fit.
pub fn verify_protocol(
    remote: &[VersionedNode<'_>],
    local: &[VersionedNode<'_>],
) -> Result<(), String> {
    let (mut max_pmin, mut min_pmax, mut max_dmin, mut min_dmax) = (0u8, u8::MAX, 0u8, u8::MAX);
    let alive = |(_, st, _): &&VersionedNode<'_>| *st == NodeStateKind::Alive;
    for (_, _, v) in remote.iter().chain(local).filter(alive) {
        if let Some(v) = v {
            max_pmin = max_pmin.max(v.pmin);
            min_pmax = min_pmax.min(v.pmax);
            max_dmin = max_dmin.max(v.dmin);
            min_dmax = min_dmax.min(v.dmax);
        }
    }
    for (name, _, v) in remote.iter().chain(local.iter().filter(alive)) {
        let (pcur, dcur) = v.map_or((0, 0), |v| (v.pcur, v.dcur));
        if pcur < max_pmin || pcur > min_pmax {
            return Err(format!(
                "node {name:?}: protocol version {pcur} is outside [{max_pmin}, {min_pmax}]"
            ));
        }
        if dcur < max_dmin || dcur > min_dmax {
            return Err(format!(
                "node {name:?}: delegate protocol version {dcur} is outside [{max_dmin}, {min_dmax}]"
            ));
        }
    }
    Ok(())
}

/// Go's `regexp.MatchString` for a Serf tag filter (unanchored, RE2 syntax, which the
/// `regex` crate shares); an expression that does not compile matches nothing, as in Serf.
pub fn tag_filter_matches(expr: &str, value: &str) -> bool {
    regex::Regex::new(expr).is_ok_and(|re| re.is_match(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vsn(pmin: u8, pmax: u8, pcur: u8, dmin: u8, dmax: u8, dcur: u8) -> Option<Vsn> {
        Some(Vsn {
            pmin,
            pmax,
            pcur,
            dmin,
            dmax,
            dcur,
        })
    }

    #[test]
    fn serf_nodes_of_any_supported_protocol_are_compatible_with_us() {
        let local = [("me", NodeStateKind::Alive, Some(Vsn::SERF))];
        // `serf agent -protocol 4`: memberlist 2, delegate range 2..5, speaking 4.
        let remote = [
            ("old", NodeStateKind::Alive, vsn(1, 5, 2, 2, 5, 4)),
            ("new", NodeStateKind::Alive, Some(Vsn::SERF)),
        ];
        assert_eq!(verify_protocol(&remote, &local), Ok(()));
    }

    #[test]
    fn a_node_speaking_outside_the_common_range_refuses_the_push_pull() {
        let local = [("me", NodeStateKind::Alive, Some(Vsn::SERF))];
        let too_new = [("future", NodeStateKind::Alive, vsn(1, 9, 6, 2, 5, 5))];
        let err = verify_protocol(&too_new, &local).unwrap_err();
        assert!(
            err.contains("\"future\"") && err.contains("protocol version 6"),
            "{err}"
        );
        let narrow = [("narrow", NodeStateKind::Alive, vsn(1, 5, 2, 5, 5, 5))];
        let err = verify_protocol(
            &narrow,
            &[("old", NodeStateKind::Alive, vsn(1, 5, 2, 2, 4, 4))],
        )
        .unwrap_err();
        assert!(err.contains("delegate protocol version"), "{err}");
    }

    #[test]
    fn dead_local_nodes_do_not_narrow_the_range_but_remote_ones_are_still_checked() {
        let local = [
            ("me", NodeStateKind::Alive, Some(Vsn::SERF)),
            ("gone", NodeStateKind::Dead, vsn(3, 3, 3, 5, 5, 5)),
        ];
        assert_eq!(verify_protocol(&[], &local), Ok(()));
        let remote = [("versionless", NodeStateKind::Left, None)];
        assert!(
            verify_protocol(&remote, &local).is_err(),
            "Go counts a missing Vsn as 0"
        );
    }

    #[test]
    fn the_tag_filter_matcher_handles_serf_style_expressions() {
        assert!(tag_filter_matches("web", "web"));
        assert!(tag_filter_matches("^db$", "db"));
        assert!(!tag_filter_matches("^db$", "db2"));
        assert!(
            tag_filter_matches("w.*", "awx"),
            "unanchored, like Go's MatchString"
        );
        assert!(tag_filter_matches("^(web|db)$", "db"));
        assert!(tag_filter_matches("^web[0-9]+$", "web12"));
        assert!(!tag_filter_matches("^cache", "web"));
        assert!(
            !tag_filter_matches("(", "("),
            "an invalid expression matches nothing"
        );
    }

    #[test]
    fn query_filters_decide_whether_a_query_is_processed() {
        let mut c = core("n1", 1);
        c.tags.insert("role".into(), "web".into());
        let nodes = |n: &[&str]| {
            encode_query_filter(&QueryFilter::Nodes(
                n.iter().map(|s| s.to_string()).collect(),
            ))
        };
        let tag = |t: &str, e: &str| {
            encode_query_filter(&QueryFilter::Tag {
                tag: t.into(),
                expr: e.into(),
            })
        };
        assert!(c.should_process(&[]));
        assert!(c.should_process(&[nodes(&["n0", "n1"]), tag("role", "^w")]));
        assert!(!c.should_process(&[nodes(&["n2"])]));
        assert!(!c.should_process(&[tag("role", "^db$")]));
        assert!(
            !c.should_process(&[tag("zone", ".*")]),
            "a missing tag never matches"
        );
        assert!(
            !c.should_process(&[vec![7, 0x90]]),
            "an unknown filter type is not for us"
        );
    }

    fn core(name: &str, ip: u8) -> Core {
        let mut cfg = GossipConfig::new(name, SocketAddr::from(([10, 0, 0, ip], 7946)));
        cfg.seed = Some(ip as u64);
        cfg.compress = false;
        Core::new(cfg, Instant::now()).expect("core")
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 9], 7946))
    }

    #[test]
    fn tags_over_serfs_meta_limit_are_refused_with_a_clear_error() {
        let mut tags = BTreeMap::new();
        tags.insert("big".to_string(), "x".repeat(600));
        let err = encode_meta(&tags).unwrap_err();
        assert!(
            matches!(err, GossipError::TagsTooLarge { limit: 512, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("512"));
    }

    #[test]
    fn garbage_and_truncated_packets_are_dropped_and_counted_never_a_panic() {
        let mut c = core("a", 1);
        let now = Instant::now();
        let inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 3],
            vec![7, 3, 0, 9],
            vec![12, 1, 2, 3, 4, 0],
            vec![0, 0x85, 0xa4],
            vec![9, 0x82, 0xa4, b'A', b'l', b'g', b'o', 1],
        ];
        for b in &inputs {
            c.handle_packet(now, peer(), b);
        }
        let dropped: u64 = c.stats().dropped.values().sum();
        assert!(
            dropped >= inputs.len() as u64 - 1,
            "{:?}",
            c.stats().dropped
        );
    }

    #[test]
    fn an_alive_about_a_new_node_emits_a_join_event_and_is_regossiped() {
        let mut c = core("a", 1);
        let now = Instant::now();
        let alive = encode_message(&Message::Alive(Alive {
            incarnation: 1,
            node: "b".into(),
            addr: IpAddr::from([10, 0, 0, 2]),
            port: 7946,
            meta: encode_tags(&BTreeMap::from([("role".to_string(), "web".to_string())])).unwrap(),
            vsn: Some(Vsn::SERF),
        }));
        c.handle_packet(now, peer(), &alive);
        let mut joined = false;
        while let Some(o) = c.poll_output() {
            if let Output::Event(CoreEvent::MemberJoin(m)) = o {
                joined = m.name == "b" && m.tags.get("role").map(String::as_str) == Some("web");
            }
        }
        assert!(joined);
        assert!(
            c.rt.broadcasts.memberlist_len() >= 2,
            "own alive + b's alive queued"
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_the_core(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut c = core("a", 1);
            let now = Instant::now();
            c.handle_packet(now, peer(), &data);
            // Also as a stream message, if it decodes as one.
            if let Ok(Some((m, _))) = decode_stream(&data, None) {
                let _ = c.handle_stream(now, peer(), m);
            }
            c.tick(now + Duration::from_secs(5));
            while c.poll_output().is_some() {}
        }

        #[test]
        fn mutated_valid_packets_never_panic_the_core(flip in 0usize..200, byte in proptest::prelude::any::<u8>()) {
            let mut c = core("a", 1);
            let alive = encode_message(&Message::Alive(Alive {
                incarnation: 3,
                node: "b".into(),
                addr: IpAddr::from([10, 0, 0, 2]),
                port: 7946,
                meta: vec![0xff, 0x81, 0xa1, b'k', 0xa1, b'v'],
                vsn: Some(Vsn::SERF),
            }));
            let join = encode_message(&Message::User(encode_serf_message(&SerfMessage::Join(JoinIntent { ltime: 4, node: "b".into() }))));
            let mut pkt = encode_packet(&[alive, join], &PacketOptions { keyring: None, crc: false, compress: true, label: None });
            let i = flip % pkt.len();
            pkt[i] = byte;
            c.handle_packet(Instant::now(), peer(), &pkt);
            while c.poll_output().is_some() {}
        }
    }

    #[test]
    fn a_lamport_witness_moves_past_the_seen_value() {
        assert_eq!(witness(1, 5), 6);
        assert_eq!(witness(7, 5), 7);
    }
}
