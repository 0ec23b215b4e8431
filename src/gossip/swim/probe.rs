//! Probing (memberlist `probe`/`probeNode` and the ping handlers of `net.go`): one probe round
//! per probe interval (scaled by Lifeguard awareness). The round pings the next node of the
//! probe order; without an ack by the probe timeout it asks `indirect_checks` peers to ping it
//! (indirect probes, with nacks from peers that speak protocol 4+) and tries a TCP ping; if
//! nothing answered by the end of the round the target is suspected. Also answers pings
//! (every ack is built by [`ack`]) and runs indirect probes for others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::local::LocalNode;
use super::nodes::Nodes;
use crate::gossip::config::Timing;
use crate::gossip::runtime::{DialPurpose, Runtime};
use crate::gossip::timer::Timer;
use crate::gossip::wire::{
    encode_message, Ack, IndirectPing, Message, Nack, NodeStateKind, Ping, Suspect,
};

/// The ack to ping `seq_no`, without a payload (what memberlist forwards for an indirect
/// probe).
pub(crate) fn ack(seq_no: u32) -> Ack {
    Ack {
        seq_no,
        payload: None,
    }
}

/// Our ack to a ping: with what Serf's ping delegate puts there (our Vivaldi coordinate,
/// `LocalNode::ack_payload`).
fn own_ack(seq_no: u32, local: &LocalNode) -> Ack {
    Ack {
        seq_no,
        payload: local.ack_payload.clone(),
    }
}

/// Where an ack answering a ping goes: the ping's source address when it has one (memberlist
/// 0.2+), else the packet's sender.
fn reply_addr(
    source_addr: Option<std::net::IpAddr>,
    source_port: u16,
    from: SocketAddr,
) -> SocketAddr {
    match (source_addr, source_port) {
        (Some(a), port) if port > 0 => SocketAddr::new(a, port),
        _ => from,
    }
}

/// The probe round in progress.
#[derive(Debug)]
struct Probe {
    seq: u32,
    target: String,
    start: Instant,
    acked: bool,
    expected_nacks: u32,
    nacks: u32,
    /// Dial id of the TCP fallback ping.
    tcp_pending: Option<u64>,
}

/// An indirect probe we run for a peer: where to forward the ack (or send the nack).
#[derive(Debug)]
struct IndirectProbe {
    requester: SocketAddr,
    seq: u32,
    nack: bool,
}

/// The prober: sequence numbers, the current round, indirect probes run for others.
#[derive(Debug, Default)]
pub(crate) struct Prober {
    seq_no: u32,
    probe: Option<Probe>,
    indirect: HashMap<u32, IndirectProbe>,
}

impl Prober {
    fn next_seq(&mut self) -> u32 {
        self.seq_no = self.seq_no.wrapping_add(1);
        self.seq_no
    }

    /// Starts a probe round ([`Timer::Probe`]) unless one is running.
    pub fn tick(
        &mut self,
        now: Instant,
        nodes: &mut Nodes,
        local: &LocalNode,
        timing: &Timing,
        rt: &mut Runtime,
    ) {
        if self.probe.is_some() {
            return;
        }
        let Some(target) = nodes.next_probe_target(&local.name, now, timing.gossip_to_the_dead, rt)
        else {
            rt.schedule(now + timing.probe_interval, Timer::Probe);
            return;
        };
        let node = nodes.get(&target).expect("probe target is known").clone();
        let seq = self.next_seq();
        let ping = encode_message(&Message::Ping(local.ping(&target, seq)));
        if node.state == NodeStateKind::Suspect {
            // Tell a suspect it is suspected, so it can refute at once.
            let sus = encode_message(&Message::Suspect(Suspect {
                incarnation: node.incarnation,
                node: target.clone(),
                from: local.name.clone(),
            }));
            rt.send_raw(node.sock(), &[ping, sus], node.vsn.pmax >= 5);
        } else {
            rt.send_msg(node.sock(), ping, false);
        }
        self.probe = Some(Probe {
            seq,
            target,
            start: now,
            acked: false,
            expected_nacks: 0,
            nacks: 0,
            tcp_pending: None,
        });
        rt.schedule(now + timing.probe_timeout, Timer::ProbeTimeout(seq));
        let end = now + local.awareness.scale(timing.probe_interval);
        rt.schedule(end, Timer::ProbeEnd(seq));
    }

    /// No direct ack by the probe timeout ([`Timer::ProbeTimeout`]): indirect probes through
    /// `indirect_checks` alive peers, and a TCP ping to nodes of protocol 3+.
    pub fn timeout(
        &mut self,
        now: Instant,
        seq: u32,
        nodes: &Nodes,
        local: &LocalNode,
        timing: &Timing,
        rt: &mut Runtime,
    ) {
        let Some(p) = self.probe.as_ref() else {
            return;
        };
        if p.seq != seq {
            return;
        }
        if p.acked {
            // Success: next probe one interval after the start.
            let at = p.start + timing.probe_interval;
            self.probe = None;
            rt.schedule(at.max(now), Timer::Probe);
            return;
        }
        let target = p.target.clone();
        let Some(node) = nodes.get(&target).cloned() else {
            return;
        };
        let peers = nodes.k_random(
            &local.name,
            timing.indirect_checks,
            |n| n.name != target && n.state == NodeStateKind::Alive,
            &mut rt.rng,
        );
        let mut expected = 0;
        for (addr, pmax) in peers {
            let nack = pmax >= 4;
            if nack {
                expected += 1;
            }
            let ping = local.ping(&target, seq);
            let ip = encode_message(&Message::IndirectPing(IndirectPing {
                nack,
                node: ping.node,
                port: node.port,
                seq_no: seq,
                source_addr: ping.source_addr,
                source_node: ping.source_node,
                source_port: ping.source_port,
                target: node.addr,
            }));
            rt.send_msg(addr, ip, false);
        }
        let mut tcp = None;
        if node.vsn.pmax >= 3 {
            let ping = Message::Ping(local.ping(&target, seq));
            tcp = Some(rt.dial(
                node.sock(),
                &ping,
                DialPurpose::TcpPing { probe_seq: seq },
                true,
            ));
        }
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = expected;
            p.tcp_pending = tcp;
        }
    }

    /// The round is over ([`Timer::ProbeEnd`]): schedules the next one; without an ack the
    /// health score worsens (by the missing nacks, if any were expected) and the target's
    /// suspicion is returned, to apply.
    pub fn end(
        &mut self,
        now: Instant,
        seq: u32,
        nodes: &Nodes,
        local: &mut LocalNode,
        timing: &Timing,
        rt: &mut Runtime,
    ) -> Option<Suspect> {
        if self.probe.as_ref()?.seq != seq {
            return None;
        }
        let p = self.probe.take()?;
        if let Some(id) = p.tcp_pending {
            rt.take_dial(id);
        }
        rt.schedule((p.start + timing.probe_interval).max(now), Timer::Probe);
        if p.acked {
            return None;
        }
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks) as i32
        } else {
            1
        };
        local.awareness.apply_delta(delta);
        let node = nodes.get(&p.target)?;
        tracing::info!(node = %p.target, "suspect has failed, no acks received");
        Some(Suspect {
            incarnation: node.incarnation,
            node: p.target,
            from: local.name.clone(),
        })
    }

    /// A ping: acked to its source, unless it names another node.
    pub fn handle_ping(&mut self, from: SocketAddr, p: Ping, local: &LocalNode, rt: &mut Runtime) {
        if !p.node.is_empty() && p.node != local.name {
            rt.count_drop("ping_for_other_node");
            return;
        }
        let to = reply_addr(p.source_addr, p.source_port, from);
        let ack = encode_message(&Message::Ack(own_ack(p.seq_no, local)));
        rt.send_msg(to, ack, false);
    }

    /// A ping over TCP: the ack stream to write back (`None`: it names another node).
    pub fn handle_stream_ping(
        &self,
        p: &Ping,
        local: &LocalNode,
        rt: &mut Runtime,
    ) -> Option<Vec<u8>> {
        if !p.node.is_empty() && p.node != local.name {
            rt.count_drop("ping_for_other_node");
            return None;
        }
        Some(rt.stream_bytes(&Message::Ack(own_ack(p.seq_no, local))))
    }

    /// A peer asks us to probe a node for it: we ping with our own sequence number and
    /// forward the ack, or nack after the probe timeout if it asked for nacks.
    pub fn handle_indirect(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ip: IndirectPing,
        local: &LocalNode,
        timing: &Timing,
        rt: &mut Runtime,
    ) {
        let seq = self.next_seq();
        let requester = reply_addr(ip.source_addr, ip.source_port, from);
        let port = if ip.port == 0 {
            local.adv.port()
        } else {
            ip.port
        };
        let ping = encode_message(&Message::Ping(local.ping(&ip.node, seq)));
        self.indirect.insert(
            seq,
            IndirectProbe {
                requester,
                seq: ip.seq_no,
                nack: ip.nack,
            },
        );
        rt.schedule(now + timing.probe_timeout, Timer::IndirectExpire(seq));
        rt.send_msg(SocketAddr::new(ip.target, port), ping, false);
    }

    /// An ack: it completes our probe round (and improves our health score) or an indirect
    /// probe we run for a peer (forwarded to it). A completed direct probe returns its
    /// target and round-trip time (memberlist's `NotifyPingComplete`).
    pub fn handle_ack(
        &mut self,
        now: Instant,
        seq: u32,
        local: &mut LocalNode,
        rt: &mut Runtime,
    ) -> Option<(String, std::time::Duration)> {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq && !p.acked {
                p.acked = true;
                local.awareness.apply_delta(-1);
                return Some((p.target.clone(), now.saturating_duration_since(p.start)));
            }
        }
        if let Some(ind) = self.indirect.remove(&seq) {
            let ack = encode_message(&Message::Ack(ack(ind.seq)));
            rt.send_msg(ind.requester, ack, false);
        }
        None
    }

    /// A nack from a peer probing our target for us.
    pub fn handle_nack(&mut self, seq: u32) {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == seq {
                p.nacks += 1;
            }
        }
    }

    /// An indirect probe we ran for a peer got no ack ([`Timer::IndirectExpire`]): nack it if
    /// it asked.
    pub fn indirect_expired(&mut self, seq: u32, rt: &mut Runtime) {
        if let Some(ind) = self.indirect.remove(&seq) {
            if ind.nack {
                let m = encode_message(&Message::Nack(Nack { seq_no: ind.seq }));
                rt.send_msg(ind.requester, m, false);
            }
        }
    }

    /// The TCP fallback ping of round `probe_seq` finished: an ack counts for the round.
    pub fn tcp_ping_result(&mut self, probe_seq: u32, result: &Result<Option<Message>, String>) {
        if let Some(p) = self.probe.as_mut() {
            if p.seq == probe_seq {
                p.tcp_pending = None;
                if let Ok(Some(Message::Ack(a))) = result {
                    if a.seq_no == probe_seq && !p.acked {
                        tracing::warn!(node = %p.target, "probe succeeded over TCP only; check UDP");
                        p.acked = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::output::Output;
    use crate::gossip::runtime::testing::{runtime, sent};
    use crate::gossip::swim::nodes::testing::node;
    use std::net::IpAddr;
    use std::time::Duration;

    struct World {
        rt: Runtime,
        nodes: Nodes,
        local: LocalNode,
        timing: Timing,
        prober: Prober,
        t0: Instant,
    }

    /// Us (n0) and `peers` alive nodes n1…; lan timing.
    fn world(peers: u8) -> World {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut nodes = Nodes::default();
        for i in 0..=peers {
            nodes.insert(node(i, t0), &mut rt);
        }
        let local = LocalNode::new(
            "n0".into(),
            SocketAddr::from(([10, 0, 0, 0], 7946)),
            vec![],
            8,
        );
        World {
            rt,
            nodes,
            local,
            timing: Timing::lan(),
            prober: Prober::default(),
            t0,
        }
    }

    impl World {
        fn tick(&mut self, at: Instant) {
            self.prober
                .tick(at, &mut self.nodes, &self.local, &self.timing, &mut self.rt);
        }
        fn timeout(&mut self, at: Instant, seq: u32) {
            self.prober.timeout(
                at,
                seq,
                &self.nodes,
                &self.local,
                &self.timing,
                &mut self.rt,
            );
        }
        fn end(&mut self, at: Instant, seq: u32) -> Option<Suspect> {
            self.prober.end(
                at,
                seq,
                &self.nodes,
                &mut self.local,
                &self.timing,
                &mut self.rt,
            )
        }
        /// The due timers up to `at`.
        fn due(&mut self, at: Instant) -> Vec<Timer> {
            std::iter::from_fn(|| self.rt.timers.pop_due(at)).collect()
        }
    }

    #[test]
    fn a_probe_round_pings_one_target_and_schedules_its_timeout_and_end() {
        let mut w = world(3);
        let t0 = w.t0;
        w.tick(t0);
        let out = sent(&mut w.rt);
        assert_eq!(out.len(), 1);
        let Message::Ping(p) = &out[0].1[0] else {
            panic!("a ping first: {out:?}");
        };
        assert_eq!((p.seq_no, p.source_node.as_str()), (1, "n0"));
        assert_eq!(out[0].0, w.nodes.get(&p.node).unwrap().sock());
        assert_eq!(
            w.due(t0 + Duration::from_millis(500)),
            vec![Timer::ProbeTimeout(1)]
        );
        assert_eq!(w.due(t0 + Duration::from_secs(1)), vec![Timer::ProbeEnd(1)]);
        w.tick(t0);
        assert!(sent(&mut w.rt).is_empty(), "one round at a time");
    }

    #[test]
    fn an_ack_in_time_ends_the_round_at_the_timeout_and_improves_health() {
        let mut w = world(3);
        w.local.awareness.apply_delta(2);
        w.tick(w.t0);
        assert_eq!(sent(&mut w.rt).len(), 1, "the ping");
        w.prober
            .handle_ack(Instant::now(), 1, &mut w.local, &mut w.rt);
        assert_eq!(w.local.awareness.score(), 1);
        w.timeout(w.t0 + Duration::from_millis(500), 1);
        assert!(sent(&mut w.rt).is_empty(), "no indirect probe after an ack");
        assert_eq!(
            w.end(w.t0 + Duration::from_secs(3), 1),
            None,
            "the round already ended"
        );
    }

    #[test]
    fn a_missed_ack_sends_indirect_probes_and_a_tcp_ping_then_suspects_the_target() {
        let mut w = world(5);
        let t0 = w.t0;
        w.tick(t0);
        let target = match &sent(&mut w.rt)[0].1[0] {
            Message::Ping(p) => p.node.clone(),
            other => panic!("{other:?}"),
        };
        w.timeout(t0 + Duration::from_millis(500), 1);
        let mut indirect = 0;
        let mut dials = 0;
        while let Some(o) = w.rt.poll_output() {
            match o {
                Output::Udp { data, to } => {
                    let m = crate::gossip::wire::decode_packet(&data, None)
                        .unwrap()
                        .messages;
                    let Message::IndirectPing(ip) = &m[0] else {
                        panic!("{m:?}");
                    };
                    assert_eq!((ip.node.as_str(), ip.nack), (target.as_str(), true));
                    assert_ne!(to, w.nodes.get(&target).unwrap().sock(), "through a peer");
                    indirect += 1;
                }
                Output::Dial { to, .. } => {
                    assert_eq!(to, w.nodes.get(&target).unwrap().sock());
                    dials += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            (indirect, dials),
            (3, 1),
            "lan: 3 indirect checks, one TCP ping"
        );
        // One nack of three expected: health worsens by the two missing.
        w.prober.handle_nack(1);
        let s = w.end(t0 + Duration::from_secs(1), 1).expect("suspected");
        assert_eq!(
            (s.node.as_str(), s.from.as_str(), s.incarnation),
            (target.as_str(), "n0", 1)
        );
        assert_eq!(w.local.awareness.score(), 2);
    }

    #[test]
    fn a_tcp_ack_saves_the_round_when_udp_is_blocked() {
        let mut w = world(1);
        w.tick(w.t0);
        w.timeout(w.t0 + Duration::from_millis(500), 1);
        let ack = Ok(Some(Message::Ack(ack(1))));
        w.prober.tcp_ping_result(1, &ack);
        assert_eq!(w.end(w.t0 + Duration::from_secs(1), 1), None);
    }

    #[test]
    fn an_unhealthy_node_stretches_its_probe_rounds() {
        let mut w = world(2);
        w.local.awareness.apply_delta(3);
        w.tick(w.t0);
        w.due(w.t0 + Duration::from_millis(500));
        assert!(w.due(w.t0 + Duration::from_millis(3999)).is_empty());
        assert_eq!(
            w.due(w.t0 + Duration::from_secs(4)),
            vec![Timer::ProbeEnd(1)]
        );
    }

    #[test]
    fn an_indirect_probe_for_a_peer_forwards_the_ack_or_nacks_after_the_timeout() {
        let mut w = world(2);
        let requester = SocketAddr::from(([10, 0, 0, 1], 7946));
        let ip = |seq, nack| IndirectPing {
            nack,
            node: "n2".into(),
            port: 7946,
            seq_no: seq,
            source_addr: Some(IpAddr::from([10, 0, 0, 1])),
            source_node: "n1".into(),
            source_port: 7946,
            target: IpAddr::from([10, 0, 0, 2]),
        };
        w.prober.handle_indirect(
            w.t0,
            requester,
            ip(40, true),
            &w.local,
            &w.timing,
            &mut w.rt,
        );
        let out = sent(&mut w.rt);
        let Message::Ping(p) = &out[0].1[0] else {
            panic!("{out:?}");
        };
        assert_eq!(out[0].0, SocketAddr::from(([10, 0, 0, 2], 7946)));
        w.prober
            .handle_ack(Instant::now(), p.seq_no, &mut w.local, &mut w.rt);
        let out = sent(&mut w.rt);
        assert_eq!(
            (out[0].0, &out[0].1[0]),
            (requester, &Message::Ack(ack(40)))
        );
        // A second one, unanswered: a nack when the timer fires.
        w.prober.handle_indirect(
            w.t0,
            requester,
            ip(41, true),
            &w.local,
            &w.timing,
            &mut w.rt,
        );
        let _ = sent(&mut w.rt);
        assert_eq!(
            w.due(w.t0 + Duration::from_millis(500)),
            vec![Timer::IndirectExpire(1), Timer::IndirectExpire(2)]
        );
        w.prober.indirect_expired(1, &mut w.rt);
        assert!(sent(&mut w.rt).is_empty(), "the answered one is over");
        w.prober.indirect_expired(2, &mut w.rt);
        let out = sent(&mut w.rt);
        assert_eq!(out[0].1[0], Message::Nack(Nack { seq_no: 41 }));
    }

    #[test]
    fn a_ping_for_another_node_is_dropped_and_counted() {
        let mut w = world(1);
        let ping = Ping {
            node: "someone-else".into(),
            seq_no: 7,
            ..Ping::default()
        };
        w.prober.handle_ping(
            SocketAddr::from(([10, 0, 0, 9], 7946)),
            ping.clone(),
            &w.local,
            &mut w.rt,
        );
        assert!(sent(&mut w.rt).is_empty());
        assert_eq!(
            w.prober.handle_stream_ping(&ping, &w.local, &mut w.rt),
            None
        );
        assert_eq!(w.rt.stats.dropped.get("ping_for_other_node"), Some(&2));
    }

    #[test]
    fn a_ping_is_acked_to_its_source_address() {
        let mut w = world(1);
        let ping = Ping {
            node: "n0".into(),
            seq_no: 7,
            source_addr: Some(IpAddr::from([10, 0, 0, 5])),
            source_node: "b".into(),
            source_port: 7000,
        };
        w.prober.handle_ping(
            SocketAddr::from(([10, 0, 0, 9], 7946)),
            ping,
            &w.local,
            &mut w.rt,
        );
        let out = sent(&mut w.rt);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, SocketAddr::from(([10, 0, 0, 5], 7000)));
        assert!(matches!(&out[0].1[0], Message::Ack(a) if a.seq_no == 7));
    }
}
