//! Broadcasts: memberlist's and Serf's transmit-limited queues ([`BroadcastQueue`],
//! memberlist `queue.go`) and what decides how much of them goes out. They leave piggybacked
//! on probes and acks (`Runtime::send_msg`) and in gossip rounds (`swim/gossip.rs`),
//! memberlist messages before Serf's, each retransmitted `retransmit_mult × ceil(log10(n + 1))`
//! times. A broadcast can be awaited (memberlist's `notify` channel): the graceful leave waits
//! until its intent and its dead message are out.

use super::queue::BroadcastQueue;
use super::wire::{encode_message, Message};

/// memberlist's `UDPBufferSize`: the largest packet sent.
const UDP_BUFFER_SIZE: usize = 1400;
/// Header of a compound message (type + count).
const COMPOUND_HEADER_OVERHEAD: usize = 2;
/// Per-message length prefix inside a compound message.
pub(crate) const COMPOUND_OVERHEAD: usize = 2;
/// AES-GCM version byte, nonce and tag.
const ENCRYPT_OVERHEAD: usize = 29;
/// Serf's `MaxQueueDepth`: older Serf broadcasts beyond it are dropped.
const MAX_QUEUE_DEPTH: usize = 4096;

/// Bytes of a packet available to messages (compound header and encryption taken off).
pub(crate) fn packet_budget(encrypted: bool) -> usize {
    let mut b = UDP_BUFFER_SIZE - COMPOUND_HEADER_OVERHEAD;
    if encrypted {
        b -= ENCRYPT_OVERHEAD;
    }
    b
}

/// memberlist's `retransmitLimit`: `mult × ceil(log10(n + 1))`, at least `mult`.
pub(crate) fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let scale = ((n as f64 + 1.0).log10()).ceil().max(1.0) as u32;
    mult * scale
}

/// The memberlist and Serf broadcast pools of one member.
#[derive(Debug)]
pub(crate) struct Broadcasts {
    memberlist: BroadcastQueue,
    serf: BroadcastQueue,
    retransmit_mult: u32,
    /// Nodes in the memberlist table (memberlist's `estNumNodes`), for its retransmit limit.
    num_nodes: usize,
    /// Serf members (Serf's `NumNodes`), for its retransmit limit.
    num_members: usize,
    /// Notification id of the broadcast someone waits for.
    awaited: Option<u64>,
    /// Set when a take found the awaited broadcast gone (sent enough or replaced).
    awaited_out: bool,
}

impl Broadcasts {
    /// Empty pools with Serf's `RetransmitMult`.
    pub fn new(retransmit_mult: u32) -> Self {
        Broadcasts {
            memberlist: BroadcastQueue::default(),
            serf: BroadcastQueue::default(),
            retransmit_mult,
            num_nodes: 0,
            num_members: 0,
            awaited: None,
            awaited_out: false,
        }
    }

    /// Queues a memberlist message about node `name`; it replaces a queued one about the
    /// same node (memberlist's named invalidation).
    pub fn queue_memberlist(&mut self, name: &str, msg: &Message, notify: Option<u64>) {
        self.memberlist
            .push(Some(name.to_string()), encode_message(msg), notify);
    }

    /// Queues an encoded Serf message (wrapped in a memberlist user message); the oldest
    /// beyond Serf's queue depth are dropped.
    pub fn queue_serf(&mut self, serf: Vec<u8>, notify: Option<u64>) {
        self.serf
            .push(None, encode_message(&Message::User(serf)), notify);
        self.serf.prune(MAX_QUEUE_DEPTH);
    }

    /// Pending broadcasts that fit in `avail` bytes: memberlist first, then Serf; each one
    /// taken counts as one transmission.
    pub fn take(&mut self, avail: usize) -> Vec<Vec<u8>> {
        let ml_limit = retransmit_limit(self.retransmit_mult, self.num_nodes);
        let mut out = self.memberlist.take(COMPOUND_OVERHEAD, avail, ml_limit);
        let used: usize = out.iter().map(|m| m.len() + COMPOUND_OVERHEAD).sum();
        if avail > used {
            let serf_limit = retransmit_limit(self.retransmit_mult, self.num_members);
            let more = self.serf.take(COMPOUND_OVERHEAD, avail - used, serf_limit);
            out.extend(more);
        }
        if let Some(id) = self.awaited {
            if !self.memberlist.has_notify(id) && !self.serf.has_notify(id) {
                self.awaited_out = true;
            }
        }
        out
    }

    /// Broadcasts still queued (memberlist + Serf).
    pub fn len(&self) -> usize {
        self.memberlist.len() + self.serf.len()
    }

    /// True when both pools are empty.
    pub fn is_empty(&self) -> bool {
        self.memberlist.is_empty() && self.serf.is_empty()
    }

    /// The memberlist node count its retransmit limit scales with.
    pub fn set_num_nodes(&mut self, n: usize) {
        self.num_nodes = n;
    }

    /// The Serf member count its retransmit limit scales with.
    pub fn set_num_members(&mut self, n: usize) {
        self.num_members = n;
    }

    /// Waits for the broadcast with this notification id (`None`: for nothing). The next
    /// take that finds it no longer queued sets [`Broadcasts::awaited_out`].
    pub fn await_delivery(&mut self, notify: Option<u64>) {
        self.awaited = notify;
    }

    /// Whether a take found the awaited broadcast out.
    pub fn awaited_out(&self) -> bool {
        self.awaited_out
    }

    /// [`Broadcasts::awaited_out`], once.
    pub fn take_awaited_out(&mut self) -> bool {
        std::mem::take(&mut self.awaited_out)
    }

    /// The memberlist pool (tests).
    #[cfg(test)]
    pub fn memberlist_len(&self) -> usize {
        self.memberlist.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::wire::{decode_message, Nack};

    fn nack(seq: u32) -> Message {
        Message::Nack(Nack { seq_no: seq })
    }

    #[test]
    fn the_retransmit_limit_grows_with_the_log_of_the_cluster_size_like_memberlists() {
        // memberlist TestRetransmitLimit: mult 3 → 0, 3, 6 for 0, 1, 99 nodes (ours: never
        // below mult, so a lone node still retransmits).
        assert_eq!(retransmit_limit(3, 0), 3);
        assert_eq!(retransmit_limit(3, 1), 3);
        assert_eq!(retransmit_limit(3, 9), 3);
        assert_eq!(retransmit_limit(3, 10), 6);
        assert_eq!(retransmit_limit(3, 99), 6);
        assert_eq!(retransmit_limit(4, 1000), 16);
    }

    #[test]
    fn the_packet_budget_leaves_room_for_the_compound_header_and_encryption() {
        assert_eq!(packet_budget(false), 1398);
        assert_eq!(packet_budget(true), 1369);
    }

    #[test]
    fn memberlist_broadcasts_go_before_serf_ones_and_share_the_budget() {
        let mut b = Broadcasts::new(1);
        b.queue_serf(vec![9; 10], None);
        b.queue_memberlist("n1", &nack(1), None);
        let out = b.take(1000);
        assert_eq!(out.len(), 2);
        assert_eq!(decode_message(&out[0]).unwrap(), nack(1));
        assert!(b.is_empty(), "limit 1: each sent once");
        b.queue_memberlist("n1", &nack(2), None);
        b.queue_serf(vec![9; 10], None);
        let ml_only = b.take(out[0].len() + COMPOUND_OVERHEAD);
        assert_eq!(ml_only.len(), 1, "no room left for the Serf message");
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_newer_message_about_the_same_node_replaces_the_queued_one() {
        let mut b = Broadcasts::new(3);
        b.queue_memberlist("n1", &nack(1), None);
        b.queue_memberlist("n1", &nack(2), None);
        b.queue_memberlist("n2", &nack(3), None);
        assert_eq!(b.len(), 2);
        let seqs: Vec<Message> = b
            .take(1000)
            .iter()
            .map(|m| decode_message(m).unwrap())
            .collect();
        assert_eq!(
            seqs,
            vec![nack(3), nack(2)],
            "newest first, n1's first message gone"
        );
    }

    #[test]
    fn an_awaited_broadcast_is_out_after_its_retransmit_limit_and_only_a_take_notices() {
        let mut b = Broadcasts::new(2);
        b.set_num_members(1);
        b.queue_serf(vec![1; 8], Some(7));
        b.await_delivery(Some(7));
        b.take(1000);
        assert!(!b.awaited_out(), "sent once of twice");
        b.take(1000);
        assert!(b.awaited_out());
        assert!(b.take_awaited_out());
        assert!(!b.awaited_out(), "taken once");
    }

    #[test]
    fn an_awaited_broadcast_replaced_by_a_newer_one_counts_as_out() {
        let mut b = Broadcasts::new(4);
        b.queue_memberlist("me", &nack(1), Some(3));
        b.await_delivery(Some(3));
        b.queue_memberlist("me", &nack(2), None);
        b.take(0);
        assert!(b.awaited_out());
    }
}
