//! The memberlist node table (`nodeMap` + the `nodes` probe list): every node heard of with
//! its address, meta, protocol versions, incarnation and state, in a random probe order that
//! is reshuffled (and cleared of long-dead nodes) each time it is used up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::gossip::runtime::Runtime;
use crate::gossip::wire::{NodeStateKind, Vsn};

/// One node as memberlist sees it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Name.
    pub name: String,
    /// Advertised IP.
    pub addr: IpAddr,
    /// Advertised port.
    pub port: u16,
    /// memberlist `Meta`.
    pub meta: Vec<u8>,
    /// Protocol versions.
    pub vsn: Vsn,
    /// Incarnation.
    pub incarnation: u32,
    /// Alive, suspect, dead or left.
    pub state: NodeStateKind,
    /// When `state` last changed.
    pub state_change: Instant,
}

impl Node {
    /// Its gossip address.
    pub fn sock(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

/// The node table and its probe order.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    map: HashMap<String, Node>,
    order: Vec<String>,
    index: usize,
}

impl Nodes {
    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.map.get(name)
    }

    /// The node called `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.map.get_mut(name)
    }

    /// Whether `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// How many nodes are known (memberlist's `estNumNodes`).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every node, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.map.values()
    }

    /// Whether `name` is currently suspected.
    pub fn is_suspect(&self, name: &str) -> bool {
        self.map
            .get(name)
            .is_some_and(|n| n.state == NodeStateKind::Suspect)
    }

    /// Whether any node but `me` is alive.
    pub fn any_alive_peer(&self, me: &str) -> bool {
        self.map
            .values()
            .any(|n| n.name != me && n.state == NodeStateKind::Alive)
    }

    /// Adds a node at a random place of the probe order (push, then swap, like memberlist);
    /// the broadcast retransmit limit follows the new count.
    pub fn insert(&mut self, node: Node, rt: &mut Runtime) {
        let name = node.name.clone();
        self.map.insert(name.clone(), node);
        rt.broadcasts.set_num_nodes(self.map.len());
        self.order.push(name);
        let last = self.order.len() - 1;
        let pos = rt.rng.gen_range(0..=last);
        self.order.swap(pos, last);
    }

    /// The next node to probe (alive or suspect, never `me`); at the end of the list the
    /// order is reset (memberlist `resetNodes`) and reshuffled.
    pub fn next_probe_target(
        &mut self,
        me: &str,
        now: Instant,
        gossip_to_the_dead: Duration,
        rt: &mut Runtime,
    ) -> Option<String> {
        let mut checked = 0;
        let n = self.order.len();
        while checked <= n {
            if self.index >= self.order.len() {
                self.reset(me, now, gossip_to_the_dead, rt);
                self.index = 0;
                checked += 1;
                continue;
            }
            let name = self.order[self.index].clone();
            self.index += 1;
            checked += 1;
            if name == me {
                continue;
            }
            if let Some(node) = self.map.get(&name) {
                if matches!(node.state, NodeStateKind::Alive | NodeStateKind::Suspect) {
                    return Some(name);
                }
            }
        }
        None
    }

    /// Forgets nodes dead or left for longer than `gossip_to_the_dead` and shuffles.
    fn reset(&mut self, me: &str, now: Instant, gossip_to_the_dead: Duration, rt: &mut Runtime) {
        let map = &mut self.map;
        self.order.retain(|name| {
            let keep = match map.get(name) {
                Some(n) => {
                    name == me
                        || !matches!(n.state, NodeStateKind::Dead | NodeStateKind::Left)
                        || now.duration_since(n.state_change) <= gossip_to_the_dead
                }
                None => false,
            };
            if !keep {
                map.remove(name);
            }
            keep
        });
        rt.broadcasts.set_num_nodes(self.map.len());
        self.order.shuffle(&mut rt.rng);
    }

    /// Up to `k` distinct random nodes but `me` passing `keep` (memberlist `kRandomNodes`),
    /// as (address, PMax): one pass over the probe list and a partial Fisher-Yates shuffle.
    pub fn k_random(
        &self,
        me: &str,
        k: usize,
        keep: impl Fn(&Node) -> bool,
        rng: &mut StdRng,
    ) -> Vec<(SocketAddr, u8)> {
        let mut elig: Vec<(SocketAddr, u8)> = self
            .order
            .iter()
            .filter_map(|name| self.map.get(name))
            .filter(|n| n.name != me && keep(n))
            .map(|n| (n.sock(), n.vsn.pmax))
            .collect();
        let len = elig.len();
        for i in 0..k.min(len) {
            let j = rng.gen_range(i..len);
            elig.swap(i, j);
        }
        elig.truncate(k);
        elig
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Tiny nodes for part tests.
    use super::*;

    /// Node `n<i>` at 10.0.0.i, alive at incarnation 1, Serf's versions.
    pub fn node(i: u8, now: Instant) -> Node {
        Node {
            name: format!("n{i}"),
            addr: IpAddr::from([10, 0, 0, i]),
            port: 7946,
            meta: vec![],
            vsn: Vsn::SERF,
            incarnation: 1,
            state: NodeStateKind::Alive,
            state_change: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::node;
    use super::*;
    use crate::gossip::runtime::testing::runtime;

    #[test]
    fn probing_visits_every_live_peer_once_per_round_and_skips_us_and_the_dead() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut nodes = Nodes::default();
        for i in 0..6 {
            nodes.insert(node(i, now), &mut rt);
        }
        nodes.get_mut("n5").unwrap().state = NodeStateKind::Dead;
        nodes.get_mut("n4").unwrap().state = NodeStateKind::Suspect;
        let gttd = Duration::from_secs(30);
        let mut round: Vec<String> = (0..4)
            .map(|_| nodes.next_probe_target("n0", now, gttd, &mut rt).unwrap())
            .collect();
        round.sort();
        assert_eq!(
            round,
            vec!["n1", "n2", "n3", "n4"],
            "suspects are probed too"
        );
    }

    #[test]
    fn nodes_dead_longer_than_gossip_to_the_dead_are_forgotten_at_the_next_reset() {
        let mut rt = runtime();
        let t0 = Instant::now();
        let mut nodes = Nodes::default();
        for i in 0..3 {
            nodes.insert(node(i, t0), &mut rt);
        }
        nodes.get_mut("n2").unwrap().state = NodeStateKind::Left;
        let gttd = Duration::from_secs(30);
        let later = t0 + Duration::from_secs(31);
        nodes.index = nodes.order.len(); // the round is used up: the next call resets
        assert_eq!(
            nodes
                .next_probe_target("n0", later, gttd, &mut rt)
                .as_deref(),
            Some("n1")
        );
        assert!(!nodes.contains("n2"));
        assert_eq!(nodes.len(), 2);
    }

    #[test]
    fn k_random_nodes_are_distinct_filtered_and_never_us() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut nodes = Nodes::default();
        for i in 0..10 {
            nodes.insert(node(i, now), &mut rt);
        }
        nodes.get_mut("n3").unwrap().state = NodeStateKind::Dead;
        for _ in 0..50 {
            let picked = nodes.k_random("n0", 4, |n| n.state == NodeStateKind::Alive, &mut rt.rng);
            assert_eq!(picked.len(), 4);
            let mut ips: Vec<SocketAddr> = picked.iter().map(|p| p.0).collect();
            ips.sort();
            ips.dedup();
            assert_eq!(ips.len(), 4, "distinct");
            assert!(!ips.contains(&SocketAddr::from(([10, 0, 0, 0], 7946))));
            assert!(!ips.contains(&SocketAddr::from(([10, 0, 0, 3], 7946))));
        }
        let few = nodes.k_random("n0", 20, |_| true, &mut rt.rng);
        assert_eq!(few.len(), 9, "at most every other node");
    }
}
