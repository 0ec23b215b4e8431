//! Joining and push/pull (memberlist `Join`, `pushPull`, `mergeState`, `verifyProtocol`):
//! full-state exchanges over TCP. A join pushes/pulls with every seed; the periodic
//! anti-entropy exchange picks one alive peer every push/pull interval (stretched in large
//! clusters). A remote state is refused whole when a protocol version does not fit;
//! otherwise each node in it becomes an alive, suspect or dead message to apply.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::swim::nodes::Nodes;
use super::wire::{Alive, Dead, Message, NodeStateKind, PushNodeState, Suspect, Vsn};

/// memberlist's `pushPullScaleThreshold`: above this many nodes the interval grows.
const PUSH_PULL_SCALE_THRESHOLD: f64 = 32.0;

/// memberlist `pushPullScale`: the push/pull interval for `n` nodes, `interval` times
/// `ceil(log2(n) - log2(32)) + 1` above 32 nodes.
pub(crate) fn push_pull_interval(interval: Duration, n: usize) -> Duration {
    let n = n as f64;
    if n <= PUSH_PULL_SCALE_THRESHOLD {
        return interval;
    }
    let mult = (n.log2() - PUSH_PULL_SCALE_THRESHOLD.log2()).ceil() + 1.0;
    interval.mul_f64(mult.max(1.0))
}

/// The peer of a periodic push/pull: a random alive node but `me`.
pub(crate) fn push_pull_peer(nodes: &Nodes, me: &str, rng: &mut StdRng) -> Option<SocketAddr> {
    let mut cands: Vec<SocketAddr> = nodes
        .iter()
        .filter(|n| n.name != me && n.state == NodeStateKind::Alive)
        .map(|n| n.sock())
        .collect();
    cands.sort();
    cands.choose(rng).copied()
}

/// Our node states for a push/pull, sorted by name.
pub(crate) fn local_nodes(nodes: &Nodes) -> Vec<PushNodeState> {
    let mut v: Vec<PushNodeState> = nodes
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
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
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

/// [`verify_protocol`] of a remote state against our node table.
pub(crate) fn check_versions(remote: &[PushNodeState], nodes: &Nodes) -> Result<(), String> {
    let local: Vec<VersionedNode<'_>> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state, Some(n.vsn)))
        .collect();
    let remote: Vec<VersionedNode<'_>> = remote
        .iter()
        .map(|r| (r.name.as_str(), r.state, r.vsn))
        .collect();
    verify_protocol(&remote, &local)
}

/// memberlist `mergeState`: each remote node as the message to apply — alive as alive (never
/// with impossible versions), left as its own dead, dead or suspect as our suspicion (a
/// remote death is only suspected here).
pub(crate) fn merge_messages(remote: Vec<PushNodeState>, me: &str) -> Vec<Message> {
    let mut out = Vec::with_capacity(remote.len());
    for r in remote {
        out.push(match r.state {
            NodeStateKind::Alive => {
                if r.vsn
                    .is_some_and(|v| v.pmin == 0 || v.pmax == 0 || v.pmin > v.pmax)
                {
                    continue;
                }
                Message::Alive(Alive {
                    incarnation: r.incarnation,
                    node: r.name,
                    addr: r.addr,
                    port: r.port,
                    meta: r.meta,
                    vsn: r.vsn,
                })
            }
            NodeStateKind::Left => Message::Dead(Dead {
                incarnation: r.incarnation,
                node: r.name.clone(),
                from: r.name,
            }),
            NodeStateKind::Dead | NodeStateKind::Suspect => Message::Suspect(Suspect {
                incarnation: r.incarnation,
                node: r.name,
                from: me.to_string(),
            }),
        });
    }
    out
}

/// A join in progress.
#[derive(Debug)]
struct Join {
    pending: usize,
    contacted: usize,
    errors: Vec<String>,
}

/// A finished join: how many seeds answered, and what the others said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JoinDone {
    /// Seeds whose push/pull was merged.
    pub contacted: usize,
    /// Errors of the others.
    pub errors: Vec<String>,
}

/// The joins in progress.
#[derive(Debug, Default)]
pub(crate) struct Joins {
    by_id: HashMap<u64, Join>,
    ignore_old: bool,
}

impl Joins {
    /// Join `id` pushes/pulls with `seeds` seeds; until a join ends, the events and queries
    /// older than a seed's state are not delivered (Serf's `ignoreOld`).
    pub fn begin(&mut self, id: u64, seeds: usize) {
        self.by_id.insert(
            id,
            Join {
                pending: seeds,
                contacted: 0,
                errors: Vec::new(),
            },
        );
        self.ignore_old = true;
    }

    /// Whether a join is ignoring old events and queries.
    pub fn ignore_old(&self) -> bool {
        self.ignore_old
    }

    /// A seed of join `id` answered (`Ok`: its state was merged); the join's outcome once
    /// every seed did.
    pub fn seed_done(&mut self, id: u64, result: Result<(), String>) -> Option<JoinDone> {
        let j = self.by_id.get_mut(&id)?;
        j.pending -= 1;
        match result {
            Ok(()) => j.contacted += 1,
            Err(e) => j.errors.push(e),
        }
        if j.pending > 0 {
            return None;
        }
        let j = self.by_id.remove(&id)?;
        self.ignore_old = false;
        Some(JoinDone {
            contacted: j.contacted,
            errors: j.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::runtime::testing::runtime;
    use crate::gossip::swim::nodes::testing::node;
    use std::net::IpAddr;
    use std::time::Instant;

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
    fn the_push_pull_interval_scales_like_memberlists() {
        // memberlist TestPushPullScale.
        let sec = Duration::from_secs(1);
        for n in 0..=32 {
            assert_eq!(push_pull_interval(sec, n), sec, "{n}");
        }
        for n in 33..=64 {
            assert_eq!(push_pull_interval(sec, n), 2 * sec, "{n}");
        }
        for n in 65..=128 {
            assert_eq!(push_pull_interval(sec, n), 3 * sec, "{n}");
        }
    }

    fn remote(name: &str, state: NodeStateKind, v: Option<Vsn>) -> PushNodeState {
        PushNodeState {
            name: name.into(),
            addr: IpAddr::from([10, 0, 0, 7]),
            port: 7946,
            meta: vec![],
            incarnation: 3,
            state,
            vsn: v,
        }
    }

    #[test]
    fn a_remote_state_becomes_alive_left_and_suspect_messages_like_memberlists_merge_state() {
        let msgs = merge_messages(
            vec![
                remote("a", NodeStateKind::Alive, Some(Vsn::SERF)),
                remote("bad", NodeStateKind::Alive, vsn(3, 2, 2, 2, 5, 5)),
                remote("l", NodeStateKind::Left, Some(Vsn::SERF)),
                remote("d", NodeStateKind::Dead, Some(Vsn::SERF)),
                remote("s", NodeStateKind::Suspect, Some(Vsn::SERF)),
            ],
            "me",
        );
        assert_eq!(msgs.len(), 4, "impossible versions are skipped");
        assert!(matches!(&msgs[0], Message::Alive(a) if a.node == "a" && a.incarnation == 3));
        assert!(matches!(&msgs[1], Message::Dead(d) if d.node == "l" && d.from == "l"));
        assert!(matches!(&msgs[2], Message::Suspect(s) if s.node == "d" && s.from == "me"));
        assert!(matches!(&msgs[3], Message::Suspect(s) if s.node == "s" && s.from == "me"));
    }

    #[test]
    fn our_state_lists_every_node_by_name_and_the_periodic_peer_is_alive_and_not_us() {
        let mut rt = runtime();
        let now = Instant::now();
        let mut nodes = Nodes::default();
        for i in [3, 0, 2, 1] {
            nodes.insert(node(i, now), &mut rt);
        }
        nodes.get_mut("n1").unwrap().state = NodeStateKind::Dead;
        nodes.get_mut("n2").unwrap().state = NodeStateKind::Suspect;
        let names: Vec<String> = local_nodes(&nodes).into_iter().map(|n| n.name).collect();
        assert_eq!(names, vec!["n0", "n1", "n2", "n3"]);
        for _ in 0..20 {
            assert_eq!(
                push_pull_peer(&nodes, "n0", &mut rt.rng),
                Some(SocketAddr::from(([10, 0, 0, 3], 7946)))
            );
        }
        assert!(check_versions(&local_nodes(&nodes), &nodes).is_ok());
    }

    #[test]
    fn a_join_ends_when_every_seed_answered_and_counts_those_that_did() {
        let mut j = Joins::default();
        j.begin(7, 2);
        assert!(j.ignore_old());
        assert_eq!(j.seed_done(7, Err("refused".into())), None);
        assert_eq!(
            j.seed_done(7, Ok(())),
            Some(JoinDone {
                contacted: 1,
                errors: vec!["refused".into()]
            })
        );
        assert!(!j.ignore_old());
        assert_eq!(j.seed_done(7, Ok(())), None, "over");
    }
}
