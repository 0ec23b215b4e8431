//! Reaping and reconnecting (Serf `handleReap` / `handleReconnect`): failed members are
//! forgotten after the reconnect timeout and left ones after the tombstone timeout; until
//! then a failed member is retried now and then with a push/pull, with a probability that
//! grows with the share of failed members.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::members::{MemberChange, Members};
use crate::control::model::MemberStatus;
use crate::gossip::runtime::Runtime;
use crate::gossip::swim::nodes::Nodes;

/// Forgets members failed longer than `reconnect_timeout` or left longer than
/// `tombstone_timeout` (each with a `MemberReap`), and old buffered intents.
pub(crate) fn reap(
    now: Instant,
    members: &mut Members,
    reconnect_timeout: Duration,
    tombstone_timeout: Duration,
    nodes: &Nodes,
    rt: &mut Runtime,
) {
    let gone: Vec<String> = members
        .iter()
        .filter(|m| match (m.status, m.leave_time) {
            (MemberStatus::Failed, Some(t)) => now.duration_since(t) > reconnect_timeout,
            (MemberStatus::Left, Some(t)) => now.duration_since(t) > tombstone_timeout,
            _ => false,
        })
        .map(|m| m.name.clone())
        .collect();
    for name in gone {
        members.publish(&name, MemberChange::Reaped, nodes, rt);
        members.remove(&name, rt);
    }
    members.prune_intents(now);
}

/// A failed member to retry now, or none: with probability failed / (alive - 1), one of
/// the failed members at random.
pub(crate) fn reconnect_target(members: &Members, rng: &mut StdRng) -> Option<SocketAddr> {
    let failed: Vec<_> = members
        .iter()
        .filter(|m| m.status == MemberStatus::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let alive = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count()
        .saturating_sub(1)
        .max(1);
    let prob = failed.len() as f64 / alive as f64;
    if rng.gen::<f64>() > prob {
        return None;
    }
    let mut addrs: Vec<SocketAddr> = failed
        .iter()
        .map(|m| SocketAddr::new(m.addr, m.port))
        .collect();
    addrs.sort();
    addrs.choose(rng).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::output::{CoreEvent, Output};
    use crate::gossip::serf::members::testing::cluster;

    #[test]
    fn failed_and_left_members_are_reaped_after_their_timeouts() {
        let t0 = Instant::now();
        let (mut members, nodes, mut rt) = cluster(3, t0);
        members.node_left(t0, "n1", &nodes, &mut rt); // failed
        members.get_mut("n2").unwrap().status = MemberStatus::Leaving;
        members.node_left(t0, "n2", &nodes, &mut rt); // left
        while rt.poll_output().is_some() {}
        let (rto, tto) = (Duration::from_secs(10), Duration::from_secs(20));
        reap(
            t0 + Duration::from_secs(10),
            &mut members,
            rto,
            tto,
            &nodes,
            &mut rt,
        );
        assert_eq!(members.len(), 4, "not yet");
        reap(
            t0 + Duration::from_secs(11),
            &mut members,
            rto,
            tto,
            &nodes,
            &mut rt,
        );
        assert!(members.get("n1").is_none());
        assert!(
            matches!(rt.poll_output(), Some(Output::Event(CoreEvent::MemberReap(m))) if m.name == "n1")
        );
        reap(
            t0 + Duration::from_secs(21),
            &mut members,
            rto,
            tto,
            &nodes,
            &mut rt,
        );
        assert!(members.get("n2").is_none());
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn a_reconnect_is_tried_only_with_failed_members_and_mostly_when_many_failed() {
        let t0 = Instant::now();
        let (mut members, nodes, mut rt) = cluster(10, t0);
        assert_eq!(reconnect_target(&members, &mut rt.rng), None);
        members.node_left(t0, "n1", &nodes, &mut rt);
        let tries = (0..1000)
            .filter(|_| reconnect_target(&members, &mut rt.rng).is_some())
            .count();
        // 1 failed of 10 alive: probability 1/9.
        assert!((60..170).contains(&tries), "{tries}");
        assert_eq!(
            reconnect_target(&members, &mut rt.rng)
                .or_else(|| { (0..100).find_map(|_| reconnect_target(&members, &mut rt.rng)) }),
            Some(SocketAddr::from(([10, 0, 0, 1], 7946)))
        );
    }
}
