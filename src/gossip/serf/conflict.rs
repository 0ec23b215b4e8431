//! Name conflicts (Serf `handleNodeConflict` / `resolveNodeConflict`): when another node
//! gossips our name at another address, we ask the cluster (`_serf_conflict`) what it knows
//! of our name; if fewer than a majority of the answers carry our address we are the
//! impostor and stop. The other side: answering such a query with what we know of the name.

use std::net::SocketAddr;

use super::members::Members;
use crate::control::model::MemberStatus;
use crate::gossip::wire::{decode_conflict_response, encode_conflict_response, ConflictMember};

/// The vote about our name in progress, if any.
#[derive(Debug, Default)]
pub(crate) struct NameConflict {
    /// (query handle, responses, responses with our address).
    vote: Option<(u64, u32, u32)>,
}

impl NameConflict {
    /// Whether a vote is running.
    pub fn in_progress(&self) -> bool {
        self.vote.is_some()
    }

    /// The vote runs as our query `handle`.
    pub fn begin(&mut self, handle: u64) {
        self.vote = Some((handle, 0, 0));
    }

    /// Whether `handle` is the vote's query.
    pub fn is_vote(&self, handle: u64) -> bool {
        self.vote.is_some_and(|(h, _, _)| h == handle)
    }

    /// A response to the vote: counted when it names a member, and as ours when that
    /// member has our address `adv`.
    pub fn count(&mut self, payload: &[u8], adv: SocketAddr) {
        let Some((_, responses, matching)) = self.vote.as_mut() else {
            return;
        };
        if let Ok(Some(m)) = decode_conflict_response(payload) {
            *responses += 1;
            if m.addr == adv.ip() && m.port == adv.port() {
                *matching += 1;
            }
        }
    }

    /// The query `handle` ended: `None` when it is not the vote; else `Ok` when a majority
    /// of the responses has our address, or `Err` with why we must stop.
    pub fn finish(&mut self, handle: u64, me: &str) -> Option<Result<(), String>> {
        if !self.is_vote(handle) {
            return None;
        }
        let (_, responses, matching) = self.vote.take()?;
        let majority = responses / 2 + 1;
        if matching >= majority {
            tracing::info!(matching, responses, "majority in name conflict resolution");
            Some(Ok(()))
        } else {
            tracing::warn!(
                matching,
                responses,
                "minority in name conflict resolution, quitting"
            );
            Some(Err(format!(
                "minority in name conflict resolution [{matching} / {responses}]: another node uses the name {me}"
            )))
        }
    }
}

/// Serf's status numbers in a conflict response.
fn status_num(s: MemberStatus) -> i64 {
    match s {
        MemberStatus::Alive => 1,
        MemberStatus::Leaving => 2,
        MemberStatus::Left => 3,
        MemberStatus::Failed => 4,
    }
}

/// Our answer to a `_serf_conflict` query about `name`: what we know of that member (an
/// empty answer when we do not know it); no answer when the name is ours.
pub(crate) fn answer(name: &str, members: &Members) -> Option<Vec<u8>> {
    if name == members.me() {
        return None;
    }
    let cm = members.get(name).map(|m| ConflictMember {
        name: m.name.clone(),
        addr: m.addr,
        port: m.port,
        tags: m.tags.clone(),
        status: status_num(m.status),
        vsn: m.vsn,
    });
    Some(encode_conflict_response(cm.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::serf::members::testing::cluster;
    use std::time::Instant;

    #[test]
    fn the_minority_of_a_name_conflict_must_stop_and_the_majority_stays() {
        let now = Instant::now();
        let (members, _nodes, _rt) = cluster(3, now);
        let ours = SocketAddr::from(([10, 0, 0, 1], 7946));
        let theirs = SocketAddr::from(([10, 0, 0, 99], 7946));
        let about_n1 = answer("n1", &members).expect("we know n1");
        let mut c = NameConflict::default();
        assert_eq!(c.finish(5, "n1"), None, "no vote");
        c.begin(5);
        assert!(c.in_progress() && c.is_vote(5) && !c.is_vote(6));
        c.count(&about_n1, ours);
        c.count(&about_n1, theirs);
        c.count(&about_n1, theirs);
        let r = c.finish(5, "n1").expect("the vote");
        assert!(r.unwrap_err().contains("[1 / 3]"));
        assert!(!c.in_progress());
        c.begin(6);
        c.count(&about_n1, ours);
        c.count(&about_n1, ours);
        c.count(&about_n1, theirs);
        assert_eq!(c.finish(6, "n1"), Some(Ok(())));
    }

    #[test]
    fn an_answer_about_an_unknown_name_does_not_count_and_none_is_given_about_ours() {
        let now = Instant::now();
        let (members, _nodes, _rt) = cluster(1, now);
        assert_eq!(answer("n0", &members), None);
        let unknown = answer("n7", &members).expect("an empty answer");
        let mut c = NameConflict::default();
        c.begin(1);
        c.count(&unknown, SocketAddr::from(([10, 0, 0, 0], 7946)));
        assert_eq!(c.vote, Some((1, 0, 0)));
    }
}
