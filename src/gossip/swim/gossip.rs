//! The gossip round (memberlist `gossip`): every gossip interval, pending broadcasts go to
//! `gossip_nodes` random peers — alive or suspect ones, and dead ones for
//! `gossip_to_the_dead` so they can learn of their death and refute — as full packets, with a
//! CRC for peers of protocol 5+.

use std::time::Instant;

use super::nodes::Nodes;
use crate::gossip::config::Timing;
use crate::gossip::runtime::Runtime;
use crate::gossip::wire::NodeStateKind;

/// One gossip round ([`Timer::Gossip`](crate::gossip::timer::Timer::Gossip)).
pub(crate) fn gossip(now: Instant, nodes: &Nodes, me: &str, timing: &Timing, rt: &mut Runtime) {
    if rt.broadcasts.is_empty() {
        return;
    }
    let gttd = timing.gossip_to_the_dead;
    let peers = nodes.k_random(
        me,
        timing.gossip_nodes,
        |n| match n.state {
            NodeStateKind::Alive | NodeStateKind::Suspect => true,
            NodeStateKind::Dead => now.duration_since(n.state_change) <= gttd,
            NodeStateKind::Left => false,
        },
        &mut rt.rng,
    );
    for (addr, pmax) in peers {
        let budget = rt.packet_budget();
        let msgs = rt.broadcasts.take(budget);
        if msgs.is_empty() {
            return;
        }
        rt.send_raw(addr, &msgs, pmax >= 5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::runtime::testing::{runtime, sent};
    use crate::gossip::swim::nodes::testing::node;
    use crate::gossip::wire::{Message, Nack};
    use std::collections::BTreeSet;
    use std::time::Duration;

    #[test]
    fn a_round_sends_pending_broadcasts_to_gossip_nodes_peers_including_the_recently_dead() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut nodes = Nodes::default();
        for i in 0..6 {
            nodes.insert(node(i, t0), &mut rt);
        }
        nodes.get_mut("n1").unwrap().state = NodeStateKind::Left;
        nodes.get_mut("n2").unwrap().state = NodeStateKind::Dead;
        nodes.get_mut("n3").unwrap().state = NodeStateKind::Dead;
        nodes.get_mut("n3").unwrap().state_change = t0 - Duration::from_secs(60);
        let mut timing = Timing::lan();
        timing.gossip_nodes = 5;
        let now = t0 + Duration::from_secs(1);
        gossip(now, &nodes, "n0", &timing, &mut rt);
        assert!(sent(&mut rt).is_empty(), "nothing pending: no packet");
        rt.broadcasts.set_num_nodes(1000); // enough retransmissions for every peer
        rt.broadcasts
            .queue_memberlist("x", &Message::Nack(Nack { seq_no: 1 }), None);
        gossip(now, &nodes, "n0", &timing, &mut rt);
        let to: BTreeSet<String> = sent(&mut rt).iter().map(|(a, _)| a.to_string()).collect();
        let want: BTreeSet<String> = ["10.0.0.2:7946", "10.0.0.4:7946", "10.0.0.5:7946"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(to, want, "not us, not the left, not the long dead");
    }

    #[test]
    fn a_round_stops_when_the_queue_runs_dry() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut nodes = Nodes::default();
        for i in 0..5 {
            nodes.insert(node(i, t0), &mut rt);
        }
        rt.broadcasts.set_num_nodes(0); // limit 4 × 1: four transmissions
        rt.broadcasts
            .queue_memberlist("x", &Message::Nack(Nack { seq_no: 1 }), None);
        let mut timing = Timing::lan();
        timing.gossip_nodes = 4;
        gossip(t0, &nodes, "n0", &timing, &mut rt);
        assert_eq!(sent(&mut rt).len(), 4);
        gossip(t0, &nodes, "n0", &timing, &mut rt);
        assert!(sent(&mut rt).is_empty());
    }
}
