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
    use crate::gossip::wire::decode_message;

    fn leave(node: &str, ltime: u64) -> LeaveIntent {
        LeaveIntent {
            ltime,
            node: node.into(),
            prune: false,
        }
    }

    fn join(node: &str, ltime: u64) -> JoinIntent {
        JoinIntent {
            ltime,
            node: node.into(),
        }
    }

    #[test]
    fn a_newer_leave_intent_makes_an_alive_member_leaving_and_an_older_one_is_ignored() {
        let now = Instant::now();
        let (mut members, nodes, mut rt) = cluster(1, now);
        let mut clock = LamportClock::new(1);
        assert!(apply_leave_intent(
            now,
            leave("n1", 5),
            false,
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        assert_eq!(members.get("n1").unwrap().status, MemberStatus::Leaving);
        assert_eq!(clock.time(), 6, "witnessed");
        assert!(rt.take_members_dirty());
        assert!(
            !apply_leave_intent(
                now,
                leave("n1", 5),
                false,
                &mut members,
                &mut clock,
                &nodes,
                &mut rt
            ),
            "not news twice"
        );
        assert!(
            !apply_join_intent(
                now,
                join("n1", 4),
                &mut members,
                &mut clock,
                &nodes,
                &mut rt
            ),
            "older join"
        );
        assert_eq!(members.get("n1").unwrap().status, MemberStatus::Leaving);
        assert!(apply_join_intent(
            now,
            join("n1", 6),
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        assert_eq!(
            members.get("n1").unwrap().status,
            MemberStatus::Alive,
            "a newer join wins"
        );
    }

    #[test]
    fn a_leave_intent_about_a_failed_member_makes_it_left_with_an_event() {
        let now = Instant::now();
        let (mut members, nodes, mut rt) = cluster(1, now);
        members.get_mut("n1").unwrap().status = MemberStatus::Failed;
        let mut clock = LamportClock::new(1);
        assert!(apply_leave_intent(
            now,
            leave("n1", 2),
            false,
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        assert!(matches!(
            rt.poll_output(),
            Some(Output::Event(CoreEvent::MemberLeave(m))) if m.name == "n1"
        ));
    }

    #[test]
    fn intents_about_unknown_members_are_buffered_and_the_newest_wins() {
        let now = Instant::now();
        let (mut members, nodes, mut rt) = cluster(0, now);
        let mut clock = LamportClock::new(1);
        assert!(apply_leave_intent(
            now,
            leave("n9", 3),
            false,
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        assert!(
            !apply_join_intent(
                now,
                join("n9", 2),
                &mut members,
                &mut clock,
                &nodes,
                &mut rt
            ),
            "older"
        );
        assert!(apply_join_intent(
            now,
            join("n9", 4),
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        let b = members.buffered("n9").unwrap();
        assert_eq!((b.leave, b.ltime), (false, 4));
    }

    #[test]
    fn a_leave_intent_about_us_is_refuted_with_a_newer_join_intent_unless_we_are_leaving() {
        let now = Instant::now();
        let (mut members, nodes, mut rt) = cluster(1, now);
        let mut clock = LamportClock::new(1);
        assert!(!apply_leave_intent(
            now,
            leave("n0", 5),
            false,
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        assert_eq!(members.get("n0").unwrap().status, MemberStatus::Alive);
        assert_eq!(
            members.get("n0").unwrap().status_ltime,
            6,
            "our join at the witnessed time"
        );
        let out = rt.broadcasts.take(1000);
        assert_eq!(out.len(), 1);
        let crate::gossip::wire::Message::User(serf) = decode_message(&out[0]).unwrap() else {
            panic!("a Serf message");
        };
        assert_eq!(
            crate::gossip::wire::decode_serf_message(&serf).unwrap(),
            SerfMessage::Join(join("n0", 6))
        );
        // Our own leave.
        assert!(apply_leave_intent(
            now,
            leave("n0", 9),
            true,
            &mut members,
            &mut clock,
            &nodes,
            &mut rt
        ));
        assert_eq!(members.get("n0").unwrap().status, MemberStatus::Leaving);
    }
}
