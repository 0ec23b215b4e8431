//! The runtime the sans-IO parts act through (foca's `Runtime`; memberlist's `net.go` send
//! path): it queues [`Output`]s for the driver — packets with piggybacked broadcasts, stream
//! dials, events — schedules [`Timer`]s, hands out ids and randomness, and counts drops. It
//! never does IO and never reads a clock; a test builds one and reads what accumulated.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::broadcast::{packet_budget, Broadcasts, COMPOUND_OVERHEAD};
use super::config::GossipConfig;
use super::model::GossipStats;
use super::output::{CoreEvent, Output};
use super::timer::{Timer, Timers};
use super::wire::{encode_packet, encode_stream, Keyring, Message, PacketOptions};

/// Why a stream was dialed: where its reply is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialPurpose {
    /// A push/pull of the join with this id (sync).
    Join {
        /// The join's id.
        join_id: u64,
    },
    /// The periodic push/pull (sync).
    PushPull,
    /// The TCP fallback ping of probe round `probe_seq` (swim/probe).
    TcpPing {
        /// The probe's sequence number.
        probe_seq: u32,
    },
    /// A push/pull with a failed member (serf/reap).
    Reconnect,
}

/// Outputs, timers, ids, randomness, counters, the keyring and the broadcast pools.
pub(crate) struct Runtime {
    outputs: VecDeque<Output>,
    /// Timers on simulated time.
    pub timers: Timers,
    /// The member's seeded random number generator (one stream for every part).
    pub rng: StdRng,
    next_id: u64,
    /// Counters (the member counts and clocks are filled in by `Core::stats`).
    pub stats: GossipStats,
    members_dirty: bool,
    keyring: Option<Keyring>,
    keyring_changed: bool,
    compress: bool,
    tcp_timeout: Duration,
    /// The memberlist and Serf broadcast pools.
    pub broadcasts: Broadcasts,
    dials: HashMap<u64, DialPurpose>,
}

impl Runtime {
    /// A runtime for `cfg`, its randomness seeded with `seed`.
    pub fn new(cfg: &GossipConfig, seed: u64) -> Self {
        let stats = GossipStats {
            encrypted: cfg.keyring.is_some(),
            ..GossipStats::default()
        };
        Runtime {
            outputs: VecDeque::new(),
            timers: Timers::default(),
            rng: StdRng::seed_from_u64(seed),
            next_id: 0,
            stats,
            members_dirty: true,
            keyring: cfg.keyring.clone(),
            keyring_changed: false,
            compress: cfg.compress,
            tcp_timeout: cfg.timing.tcp_timeout,
            broadcasts: Broadcasts::new(cfg.timing.retransmit_mult),
            dials: HashMap::new(),
        }
    }

    /// A fresh id (dials, joins, queries, notifications share one sequence).
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Schedules `t` at `at`.
    pub fn schedule(&mut self, at: Instant, t: Timer) {
        self.timers.schedule(at, t);
    }

    /// Counts a dropped input under `kind`.
    pub fn count_drop(&mut self, kind: &str) {
        *self.stats.dropped.entry(kind.to_string()).or_insert(0) += 1;
    }

    /// Queues an output for the driver.
    pub fn output(&mut self, o: Output) {
        self.outputs.push_back(o);
    }

    /// Next queued output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Reports a cluster event (the member list changed with it).
    pub fn event(&mut self, e: CoreEvent) {
        self.members_dirty = true;
        self.outputs.push_back(Output::Event(e));
    }

    /// Notes that the member list changed without an event.
    pub fn members_changed(&mut self) {
        self.members_dirty = true;
    }

    /// True once after the member list changed.
    pub fn take_members_dirty(&mut self) -> bool {
        std::mem::take(&mut self.members_dirty)
    }

    /// The current keyring.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The keyring, to change it (the key manager); the driver is told.
    pub fn keyring_mut(&mut self) -> Option<&mut Keyring> {
        self.keyring.as_mut()
    }

    /// Notes that the keyring changed.
    pub fn keyring_changed(&mut self) {
        self.keyring_changed = true;
    }

    /// True once after the keyring changed.
    pub fn take_keyring_changed(&mut self) -> bool {
        std::mem::take(&mut self.keyring_changed)
    }

    fn opts(&self, crc: bool) -> PacketOptions<'_> {
        PacketOptions {
            keyring: self.keyring.as_ref(),
            crc,
            compress: self.compress,
            label: None,
        }
    }

    /// Sends one message, piggybacking pending broadcasts when they fit (memberlist
    /// `sendMsg`).
    pub fn send_msg(&mut self, to: SocketAddr, msg: Vec<u8>, crc: bool) {
        let avail = self
            .packet_budget()
            .saturating_sub(msg.len() + COMPOUND_OVERHEAD);
        let mut msgs = vec![msg];
        if avail > 0 {
            msgs.extend(self.broadcasts.take(avail));
        }
        self.send_raw(to, &msgs, crc);
    }

    /// Sends these messages in one packet, nothing piggybacked.
    pub fn send_raw(&mut self, to: SocketAddr, msgs: &[Vec<u8>], crc: bool) {
        let data = encode_packet(msgs, &self.opts(crc));
        self.stats.udp_packets_out += 1;
        self.stats.udp_bytes_out += data.len() as u64;
        self.outputs.push_back(Output::Udp { to, data });
    }

    /// Bytes of a packet available to messages.
    pub fn packet_budget(&self) -> usize {
        packet_budget(self.keyring.is_some())
    }

    /// `msg` as stream bytes (compressed and encrypted as configured).
    pub fn stream_bytes(&self, msg: &Message) -> Vec<u8> {
        encode_stream(msg, &self.opts(false))
    }

    /// Dials `to` with `msg`; the reply comes back to `Core::dial_result` with the returned
    /// id, routed by `purpose`.
    pub fn dial(
        &mut self,
        to: SocketAddr,
        msg: &Message,
        purpose: DialPurpose,
        expect_reply: bool,
    ) -> u64 {
        let id = self.next_id();
        let data = self.stream_bytes(msg);
        self.dials.insert(id, purpose);
        self.stats.tcp_streams_out += 1;
        self.outputs.push_back(Output::Dial {
            id,
            to,
            data,
            expect_reply,
            timeout: self.tcp_timeout,
        });
        id
    }

    /// The purpose of dial `id`, once (`None`: unknown or forgotten).
    pub fn take_dial(&mut self, id: u64) -> Option<DialPurpose> {
        self.dials.remove(&id)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A runtime for part tests, and what they read back from it.
    use super::*;
    use crate::gossip::wire::decode_packet;

    /// A runtime on plaintext, uncompressed packets with a fixed seed.
    pub fn runtime() -> Runtime {
        let mut cfg = GossipConfig::new("t", SocketAddr::from(([10, 0, 0, 1], 7946)));
        cfg.compress = false;
        Runtime::new(&cfg, 1)
    }

    /// The Serf messages queued for gossip (each taken once; memberlist ones skipped).
    pub fn gossiped_serf(rt: &mut Runtime) -> Vec<Vec<u8>> {
        rt.broadcasts
            .take(1 << 30)
            .iter()
            .filter_map(|m| match crate::gossip::wire::decode_message(m) {
                Ok(Message::User(serf)) => Some(serf),
                _ => None,
            })
            .collect()
    }

    /// Every queued packet, decoded, with its destination; other outputs are dropped.
    pub fn sent(rt: &mut Runtime) -> Vec<(SocketAddr, Vec<Message>)> {
        let mut v = Vec::new();
        while let Some(o) = rt.poll_output() {
            if let Output::Udp { to, data } = o {
                v.push((to, decode_packet(&data, None).expect("packet").messages));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::gossip::wire::{encode_message, Nack};

    #[test]
    fn a_message_carries_pending_broadcasts_when_they_fit() {
        let mut rt = runtime();
        rt.broadcasts
            .queue_memberlist("n1", &Message::Nack(Nack { seq_no: 1 }), None);
        let to = SocketAddr::from(([10, 0, 0, 2], 7946));
        rt.send_msg(
            to,
            encode_message(&Message::Nack(Nack { seq_no: 2 })),
            false,
        );
        let out = sent(&mut rt);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, to);
        assert_eq!(
            out[0].1,
            vec![
                Message::Nack(Nack { seq_no: 2 }),
                Message::Nack(Nack { seq_no: 1 })
            ]
        );
        assert_eq!(rt.stats.udp_packets_out, 1);
    }

    #[test]
    fn a_dial_is_remembered_by_id_until_its_result_is_routed() {
        let mut rt = runtime();
        let to = SocketAddr::from(([10, 0, 0, 2], 7946));
        let id = rt.dial(
            to,
            &Message::Nack(Nack { seq_no: 1 }),
            DialPurpose::PushPull,
            true,
        );
        assert!(
            matches!(rt.poll_output(), Some(Output::Dial { id: i, expect_reply: true, .. }) if i == id)
        );
        assert_eq!(rt.take_dial(id), Some(DialPurpose::PushPull));
        assert_eq!(rt.take_dial(id), None, "routed once");
    }
}
