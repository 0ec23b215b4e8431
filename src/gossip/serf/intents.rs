//! Join and leave intents (Serf `handleNodeJoinIntent` / `handleNodeLeaveIntent`): a member
//! announces its status changes with the member Lamport clock. A newer leave intent makes an
//! alive member leaving (and a failed one left); a newer join intent makes a leaving member
//! alive again. Intents about members not known yet are buffered until they join; a leave
//! intent about us while we are not leaving is refuted with a newer join intent. The return
//! value says whether to re-gossip the intent (it was news).

use std::time::Instant;

use super::lamport::LamportClock;
use super::members::{MemberChange, Members};
use crate::control::model::MemberStatus;
use crate::gossip::runtime::Runtime;
use crate::gossip::swim::nodes::Nodes;
use crate::gossip::wire::{encode_serf_message, JoinIntent, LeaveIntent, SerfMessage};

/// Applies a join intent; true when it was news (re-gossip it).
pub(crate) fn apply_join_intent(
    now: Instant,
    j: JoinIntent,
    members: &mut Members,
    clock: &mut LamportClock,
    nodes: &Nodes,
    rt: &mut Runtime,
) -> bool {
    clock.witness(j.ltime);
    let Some(m) = members.get_mut(&j.node) else {
        return members.buffer_intent(now, &j.node, false, j.ltime);
    };
    if j.ltime <= m.status_ltime {
        return false;
    }
    m.status_ltime = j.ltime;
    if m.status == MemberStatus::Leaving {
        m.status = MemberStatus::Alive;
        members.publish(&j.node, MemberChange::Quiet, nodes, rt);
    }
    true
}

/// Applies a leave intent; true when it was news (re-gossip it). `leaving`: our own graceful
/// leave is under way (then a leave intent about us is ours, not to refute).
pub(crate) fn apply_leave_intent(
    now: Instant,
    l: LeaveIntent,
    leaving: bool,
    members: &mut Members,
    clock: &mut LamportClock,
    nodes: &Nodes,
    rt: &mut Runtime,
) -> bool {
    clock.witness(l.ltime);
    if l.node == members.me() && !leaving {
        // Someone says we are leaving: refute with a newer join intent.
        if members
            .get(&l.node)
            .is_some_and(|m| l.ltime > m.status_ltime)
        {
            broadcast_join_intent(now, members, clock, nodes, rt);
        }
        return false;
    }
    let Some(m) = members.get_mut(&l.node) else {
        return members.buffer_intent(now, &l.node, true, l.ltime);
    };
    if l.ltime <= m.status_ltime {
        return false;
    }
    m.status_ltime = l.ltime;
    let change = match m.status {
        MemberStatus::Alive => {
            m.status = MemberStatus::Leaving;
            MemberChange::Quiet
        }
        MemberStatus::Failed => {
            m.status = MemberStatus::Left;
            MemberChange::Left
        }
        _ => return false,
    };
    members.publish(&l.node, change, nodes, rt);
    true
}

/// Our own join intent at the current member time, applied and gossiped (Serf
/// `broadcastJoin`): after a join, and to refute a leave intent about us.
pub(crate) fn broadcast_join_intent(
    now: Instant,
    members: &mut Members,
    clock: &mut LamportClock,
    nodes: &Nodes,
    rt: &mut Runtime,
) {
    let msg = JoinIntent {
        ltime: clock.time(),
        node: members.me().to_string(),
    };
    clock.witness(msg.ltime);
    apply_join_intent(now, msg.clone(), members, clock, nodes, rt);
    rt.broadcasts
        .queue_serf(encode_serf_message(&SerfMessage::Join(msg)), None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::output::{CoreEvent, Output};
    use crate::gossip::serf::members::testing::cluster;
    use crate::gossip::wire::{decode_message, decode_serf_message, Message};

    /// Members n0 (us) … n`peers`, their SWIM nodes, a runtime and the member clock at 1.
    struct World {
        members: Members,
        nodes: Nodes,
        rt: Runtime,
        clock: LamportClock,
        now: Instant,
    }

    fn world(peers: u8) -> World {
        let now = Instant::now();
        let (members, nodes, rt) = cluster(peers, now);
        World {
            members,
            nodes,
            rt,
            clock: LamportClock::new(1),
            now,
        }
    }

    impl World {
        /// A leave intent about `node` at `ltime`; `leaving`: ours is under way.
        fn leave(&mut self, node: &str, ltime: u64, leaving: bool) -> bool {
            let l = LeaveIntent {
                ltime,
                node: node.into(),
                prune: false,
            };
            let w = self;
            apply_leave_intent(
                w.now,
                l,
                leaving,
                &mut w.members,
                &mut w.clock,
                &w.nodes,
                &mut w.rt,
            )
        }

        /// A join intent about `node` at `ltime`.
        fn join(&mut self, node: &str, ltime: u64) -> bool {
            let j = JoinIntent {
                ltime,
                node: node.into(),
            };
            let w = self;
            apply_join_intent(w.now, j, &mut w.members, &mut w.clock, &w.nodes, &mut w.rt)
        }

        fn status(&self, node: &str) -> MemberStatus {
            self.members.get(node).expect("a member").status
        }
    }

    #[test]
    fn a_newer_leave_intent_makes_an_alive_member_leaving_and_an_older_one_is_ignored() {
        let mut w = world(1);
        assert!(w.leave("n1", 5, false));
        assert_eq!(w.status("n1"), MemberStatus::Leaving);
        assert_eq!(w.clock.time(), 6, "witnessed");
        assert!(w.rt.take_members_dirty());
        assert!(!w.leave("n1", 5, false), "not news twice");
        assert!(!w.join("n1", 4), "an older join");
        assert_eq!(w.status("n1"), MemberStatus::Leaving);
        assert!(w.join("n1", 6));
        assert_eq!(w.status("n1"), MemberStatus::Alive, "a newer join wins");
    }

    #[test]
    fn a_leave_intent_about_a_failed_member_makes_it_left_with_an_event() {
        let mut w = world(1);
        w.members.get_mut("n1").unwrap().status = MemberStatus::Failed;
        assert!(w.leave("n1", 2, false));
        assert!(matches!(
            w.rt.poll_output(),
            Some(Output::Event(CoreEvent::MemberLeave(m))) if m.name == "n1"
        ));
    }

    #[test]
    fn intents_about_unknown_members_are_buffered_and_the_newest_wins() {
        let mut w = world(0);
        assert!(w.leave("n9", 3, false));
        assert!(!w.join("n9", 2), "older");
        assert!(w.join("n9", 4));
        let b = w.members.buffered("n9").unwrap();
        assert_eq!((b.leave, b.ltime), (false, 4));
    }

    #[test]
    fn a_leave_intent_about_us_is_refuted_with_a_newer_join_intent_unless_we_are_leaving() {
        let mut w = world(1);
        assert!(!w.leave("n0", 5, false));
        assert_eq!(w.status("n0"), MemberStatus::Alive);
        let ours = w.members.get("n0").unwrap().status_ltime;
        assert_eq!(ours, 6, "our join at the witnessed time");
        let out = w.rt.broadcasts.take(1000);
        assert_eq!(out.len(), 1);
        let Message::User(serf) = decode_message(&out[0]).unwrap() else {
            panic!("a Serf message");
        };
        let join = JoinIntent {
            ltime: 6,
            node: "n0".into(),
        };
        assert_eq!(decode_serf_message(&serf).unwrap(), SerfMessage::Join(join));
        assert!(w.leave("n0", 9, true), "our own leave");
        assert_eq!(w.status("n0"), MemberStatus::Leaving);
    }
}
