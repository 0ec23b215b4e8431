//! The sans-IO member: memberlist (SWIM with Lifeguard, `gossip/swim/`) under Serf
//! (`gossip/serf/`), owned and routed here. Input: packets, completed streams, dial
//! results, commands, and the passage of time (`tick(now)` whenever `next_deadline()` is
//! reached). Output: [`Output`]s queued for the driver (send UDP, dial TCP, events). It never
//! does IO and never reads a clock.
//!
//! Routing: memberlist messages go to SWIM, whose accepted changes (`NodeChange`) go to
//! Serf's member table; Serf messages go to Serf; push/pulls are merged through both
//! (`sync`); each timer goes to the part that scheduled it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::config::GossipConfig;
use super::coordinate::{Coordinate, Coordinates};
use super::error::GossipError;
use super::model::{GossipStats, Member, QueryParams};
use super::runtime::{DialPurpose, Runtime};
use super::serf::{Serf, Stop};
use super::swim::{LocalNode, Swim};
use super::sync::{self, Joins};
use super::timer::Timer;
use super::wire::*;

pub use super::output::{CoreEvent, Output};
pub use super::serf::query::tag_filter_matches;
pub use super::serf::tags::{decode_meta, encode_meta};
pub use super::sync::{verify_protocol, VersionedNode};

/// The combined memberlist + Serf member.
pub struct Core {
    cfg: GossipConfig,
    rt: Runtime,
    swim: Swim,
    serf: Serf,
    joins: Joins,
    /// Serf's Vivaldi client and coordinate cache (`None`: `disable_coordinates`).
    coords: Option<Coordinates>,
    last_now: Instant,
    stopped: bool,
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
        let mut local = LocalNode::new(
            cfg.node_name.clone(),
            adv,
            meta,
            cfg.timing.awareness_max_multiplier,
        );
        let coords = (!cfg.disable_coordinates).then(Coordinates::default);
        local.ack_payload = coords.as_ref().map(|c| c.ack_payload().to_vec());
        let mut core = Core {
            rt: Runtime::new(&cfg, seed),
            swim: Swim::new(local, cfg.timing.clone()),
            serf: Serf::new(&cfg, adv),
            joins: Joins::default(),
            coords,
            last_now: now,
            stopped: false,
            cfg,
        };
        // memberlist setAlive: our own alive, bootstrap.
        let alive = core.swim.local.alive();
        core.apply_alive(now, alive, true);
        let t = core.cfg.timing.clone();
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
        &self.swim.local.name
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
        (s.member_time, s.event_time, s.query_time) = self.serf.clocks();
        s.members.clear();
        for m in self.serf.members.iter() {
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
        self.serf.members.alive_count()
    }

    /// The network coordinate of `node` (this node's own under its name), as serf's
    /// `GetCachedCoordinate`; `None` when unknown or coordinates are disabled.
    pub fn coordinate(&self, node: &str) -> Option<Coordinate> {
        let c = self.coords.as_ref()?;
        if node == self.name() {
            Some(c.local().clone())
        } else {
            c.get(node).cloned()
        }
    }

    /// How often our coordinate was reset (`None`: coordinates disabled).
    pub fn coordinate_resets(&self) -> Option<u64> {
        self.coords.as_ref().map(Coordinates::resets)
    }

    /// A direct probe of `node` was acked after `rtt`: its coordinate updates ours (Serf's
    /// ping delegate), and our acks carry the new one.
    fn observe_coordinate(&mut self, node: &str, payload: Option<&[u8]>, rtt: std::time::Duration) {
        let (Some(c), Some(p)) = (self.coords.as_mut(), payload) else {
            return;
        };
        match c.observe(node, p, rtt, &mut self.rt.rng) {
            Ok(()) => self.swim.local.ack_payload = Some(c.ack_payload().to_vec()),
            Err(e) => {
                tracing::trace!(%node, error = %e, "coordinate rejected");
                self.rt.count_drop("bad_coordinate");
            }
        }
    }

    /// Every member known (Serf's view), this node included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.serf.members.views(&self.swim.nodes)
    }

    // ------------------------------------------------------------------ timers

    /// Runs every timer due at `now`.
    pub fn tick(&mut self, now: Instant) {
        self.last_now = now;
        if self.rt.broadcasts.take_awaited_out() {
            let stop = self
                .serf
                .leave_broadcast_out(now, &mut self.swim, &mut self.rt);
            self.stop(stop);
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
                let at = now + self.cfg.timing.gossip_interval;
                self.rt.schedule(at, Timer::Gossip);
            }
            Timer::PushPull => {
                let me = &self.swim.local.name;
                if let Some(addr) = sync::push_pull_peer(&self.swim.nodes, me, &mut self.rt.rng) {
                    let pp = self.local_push_pull(false);
                    self.rt
                        .dial(addr, &Message::PushPull(pp), DialPurpose::PushPull, true);
                }
                let iv = sync::push_pull_interval(
                    self.cfg.timing.push_pull_interval,
                    self.swim.nodes.len(),
                );
                self.rt.schedule(now + iv, Timer::PushPull);
            }
            Timer::Suspicion(name, epoch) => {
                if let Some(d) = self.swim.suspicion_expired(&name, epoch) {
                    self.apply_dead(now, d, None);
                }
            }
            Timer::IndirectExpire(seq) => self.swim.indirect_expired(seq, &mut self.rt),
            Timer::Reap => {
                self.serf.reap(now, &self.swim.nodes, &mut self.rt);
                let at = now + self.cfg.reap_interval;
                self.rt.schedule(at, Timer::Reap);
            }
            Timer::Reconnect => {
                if let Some(addr) = self.serf.reconnect_target(&mut self.rt) {
                    let pp = self.local_push_pull(false);
                    self.rt
                        .dial(addr, &Message::PushPull(pp), DialPurpose::Reconnect, true);
                }
                let at = now + self.cfg.reconnect_interval;
                self.rt.schedule(at, Timer::Reconnect);
            }
            Timer::QueryEnd(handle) => {
                let stop = self.serf.query_end(handle, &mut self.rt);
                self.stop(stop);
            }
            Timer::IncomingQueryEnd(token) => self.serf.incoming_query_end(token),
            Timer::Leave(epoch) => {
                let stop = self
                    .serf
                    .leave_timer(now, epoch, &mut self.swim, &mut self.rt);
                self.stop(stop);
            }
        }
    }

    /// The member stops: the leave is over, or we lost our name.
    fn stop(&mut self, why: Option<Stop>) {
        let Some(why) = why else {
            return;
        };
        self.stopped = true;
        self.rt.output(match why {
            Stop::Left => Output::LeaveDone,
            Stop::NameConflict(msg) => Output::Fatal(msg),
        });
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
            Message::Ack(a) => {
                if let Some((node, rtt)) = self.swim.ack(now, a.seq_no, &mut self.rt) {
                    self.observe_coordinate(&node, a.payload.as_deref(), rtt);
                }
            }
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
            Message::User(b) => {
                self.serf
                    .handle_message(now, from, &b, &self.swim.nodes, &mut self.rt)
            }
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
                self.serf
                    .handle_message(now, from, &b, &self.swim.nodes, &mut self.rt);
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
                if let Some(done) = self.joins.seed_done(join_id, ok) {
                    if done.contacted > 0 {
                        self.serf.joined(now, &self.swim.nodes, &mut self.rt);
                    }
                    self.rt.output(Output::JoinDone {
                        id: join_id,
                        contacted: done.contacted,
                        errors: done.errors,
                    });
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
        self.joins.begin(join_id, seeds.len());
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
        self.serf.set_tags(tags);
        let a = self.swim.local.set_meta(meta);
        self.apply_alive(now, a, true);
        Ok(())
    }

    /// Broadcasts a user event.
    pub fn user_event(
        &mut self,
        _now: Instant,
        name: &str,
        payload: &[u8],
        cc: bool,
    ) -> Result<(), GossipError> {
        self.serf.user_event(name, payload, cc, &mut self.rt)
    }

    /// Sends a query; returns its handle and deadline.
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<(u64, Instant), GossipError> {
        self.serf.query(now, name, payload, params, &mut self.rt)
    }

    /// Serf's `forceLeave`: a leave intent about `node` (see `serf::state`).
    pub fn force_leave(&mut self, now: Instant, node: &str, prune: bool) {
        self.serf
            .force_leave(now, node, prune, &self.swim.nodes, &mut self.rt);
    }

    /// Sends a key query (`install-key`, `use-key`, `remove-key`, `list-keys`); answers
    /// come back like a query's responses.
    pub fn key_query(
        &mut self,
        now: Instant,
        op: &str,
        payload: &[u8],
    ) -> Result<(u64, Instant), GossipError> {
        self.serf.key_query(now, op, payload, &mut self.rt)
    }

    /// Answers an incoming query (once).
    pub fn respond(&mut self, now: Instant, token: u64, payload: &[u8]) -> Result<(), GossipError> {
        self.serf.respond(now, token, payload, &mut self.rt)
    }

    /// Graceful leave; completes with [`Output::LeaveDone`].
    pub fn leave(&mut self, now: Instant) {
        let stop = self.serf.leave(now, &mut self.swim, &mut self.rt);
        self.stop(stop);
    }

    // ------------------------------------------------------------------ node changes

    /// An alive message, through SWIM, then to the Serf layer.
    fn apply_alive(&mut self, now: Instant, a: Alive, bootstrap: bool) {
        let change = self.swim.alive(now, a, bootstrap, &mut self.rt);
        self.serf
            .node_changed(now, change, &self.swim.nodes, &mut self.rt);
    }

    /// A suspect message, through SWIM, then to the Serf layer.
    fn apply_suspect(&mut self, now: Instant, s: Suspect) {
        let change = self.swim.suspect(now, s, &mut self.rt);
        self.serf
            .node_changed(now, change, &self.swim.nodes, &mut self.rt);
    }

    /// A dead message, through SWIM, then to the Serf layer.
    fn apply_dead(&mut self, now: Instant, d: Dead, notify: Option<u64>) {
        let change = self.swim.dead(now, d, notify, &mut self.rt);
        self.serf
            .node_changed(now, change, &self.swim.nodes, &mut self.rt);
    }

    // ------------------------------------------------------------------ push/pull

    /// Our state for a push/pull: every node, and Serf's state.
    fn local_push_pull(&self, join: bool) -> PushPull {
        PushPull {
            join,
            nodes: sync::local_nodes(&self.swim.nodes),
            user_state: encode_serf_message(&SerfMessage::PushPull(self.serf.local_state())),
        }
    }

    /// Merges a remote push/pull: its nodes through SWIM (memberlist `mergeState`), its Serf
    /// state through Serf. Like memberlist, the whole state is refused when a node's
    /// protocol version falls outside what every alive node of both tables understands.
    fn merge_remote(&mut self, now: Instant, pp: PushPull, we_joined: bool) -> Result<(), String> {
        if let Err(e) = sync::check_versions(&pp.nodes, &self.swim.nodes) {
            tracing::warn!(error = %e, "push/pull refused: incompatible protocol versions");
            self.count_drop("incompatible_protocol");
            return Err(e);
        }
        for m in sync::merge_messages(pp.nodes, &self.swim.local.name) {
            match m {
                Message::Alive(a) => self.apply_alive(now, a, false),
                Message::Dead(d) => self.apply_dead(now, d, None),
                Message::Suspect(s) => self.apply_suspect(now, s),
                _ => {}
            }
        }
        if pp.user_state.is_empty() {
            return Ok(());
        }
        match decode_serf_message(&pp.user_state) {
            Ok(SerfMessage::PushPull(s)) => {
                let ignore_old = pp.join && we_joined && self.joins.ignore_old();
                self.serf
                    .merge_remote_state(now, s, ignore_old, &self.swim.nodes, &mut self.rt)
            }
            Ok(_) => self.count_drop("bad_user_state"),
            Err(e) => self.count_drop(e.kind()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::MemberStatus;
    use std::net::IpAddr;
    use std::time::Duration;

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

    /// Runs `c`'s dial `out` against `peer`'s stream handler and feeds the reply back.
    fn exchange(c: &mut Core, peer: &mut Core, out: Output, now: Instant) {
        let Output::Dial { id, data, .. } = out else {
            panic!("a dial: {out:?}");
        };
        let (msg, _) = decode_stream(&data, None).unwrap().unwrap();
        let from = SocketAddr::new(c.swim.local.adv.ip(), 7946);
        let reply = peer.handle_stream(now, from, msg).expect("a reply");
        let (reply, _) = decode_stream(&reply, None).unwrap().unwrap();
        c.dial_result(now, id, Ok(Some(reply)));
    }

    fn dials(c: &mut Core) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output())
            .filter(|o| matches!(o, Output::Dial { .. }))
            .collect()
    }

    #[test]
    fn two_cores_join_through_a_push_pull_and_each_sees_the_other_alive() {
        let now = Instant::now();
        let (mut a, mut b) = (core("a", 1), core("b", 2));
        let id = b.join(now, &[SocketAddr::from(([10, 0, 0, 1], 7946))]);
        let dial = dials(&mut b).pop().expect("b dials a");
        exchange(&mut b, &mut a, dial, now);
        let done =
            std::iter::from_fn(|| b.poll_output()).find(|o| matches!(o, Output::JoinDone { .. }));
        assert!(
            matches!(&done, Some(Output::JoinDone { id: i, contacted: 1, errors }) if *i == id && errors.is_empty()),
            "{done:?}"
        );
        for (c, other) in [(&a, "b"), (&b, "a")] {
            let m = c.members().into_iter().find(|m| m.name == other);
            assert!(
                matches!(m, Some(m) if m.status == MemberStatus::Alive),
                "{} sees {other}",
                c.name()
            );
        }
        assert_eq!(
            b.stats().member_time,
            2,
            "b's join intent took a member time"
        );
    }

    #[test]
    fn a_push_pull_naming_an_unsupported_protocol_is_refused_whole_and_counted() {
        let now = Instant::now();
        let mut a = core("a", 1);
        let future = Vsn {
            pcur: 9,
            pmax: 9,
            ..Vsn::SERF
        };
        let pp = PushPull {
            join: true,
            nodes: vec![PushNodeState {
                name: "z".into(),
                addr: IpAddr::from([10, 0, 0, 26]),
                port: 7946,
                meta: vec![],
                incarnation: 1,
                state: NodeStateKind::Alive,
                vsn: Some(future),
            }],
            user_state: vec![],
        };
        assert!(
            a.handle_stream(now, peer(), Message::PushPull(pp))
                .is_some(),
            "our state is still sent"
        );
        assert_eq!(a.stats().dropped.get("incompatible_protocol"), Some(&1));
        assert_eq!(a.members().len(), 1, "z was not merged");
    }

    #[test]
    fn a_lone_member_leaves_gracefully_and_stops_after_the_propagation_delay() {
        let t0 = Instant::now();
        let mut a = core("a", 1);
        a.leave(t0);
        assert_eq!(a.members()[0].status, MemberStatus::Leaving);
        let mut now = t0;
        while !a.is_stopped() {
            now = a.next_deadline().expect("a step to come");
            assert!(now <= t0 + Duration::from_secs(2), "stuck");
            a.tick(now);
        }
        assert_eq!(now, t0 + Duration::from_secs(1), "leave_propagate_delay");
        assert!(std::iter::from_fn(|| a.poll_output()).any(|o| matches!(o, Output::LeaveDone)));
        assert_eq!(a.next_deadline(), None);
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
}
