//! Plain data the core, the driver and the API share: a member as this node sees it, user
//! events, query options and answers, and the counters. No IO, no channels.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::wire::Vsn;
use crate::control::model::MemberStatus;

/// A cluster member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name.
    pub name: String,
    /// Advertised IP.
    pub addr: IpAddr,
    /// Advertised gossip port.
    pub port: u16,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Serf status.
    pub status: MemberStatus,
    /// Currently suspected by the failure detector (status stays alive).
    pub suspect: bool,
    /// Protocol versions.
    pub vsn: Vsn,
}

/// A user event received from the cluster (or sent by this node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEventInfo {
    /// Name.
    pub name: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Event Lamport time.
    pub ltime: u64,
    /// Receivers may coalesce.
    pub coalesce: bool,
}

/// Options of an outgoing query.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    /// Only these nodes process it (empty: all).
    pub filter_nodes: Vec<String>,
    /// Only nodes whose tag matches the regular expression process it (tag → regex).
    pub filter_tags: BTreeMap<String, String>,
    /// Ask for acks.
    pub request_ack: bool,
    /// Relay factor for responses.
    pub relay_factor: u8,
    /// Timeout (default: Serf's `GossipInterval × 16 × ceil(log10(n+1))`).
    pub timeout: Option<Duration>,
}

/// One answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAnswer {
    /// Responder.
    pub from: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Counters of a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GossipStats {
    /// UDP packets received.
    pub udp_packets_in: u64,
    /// UDP bytes received.
    pub udp_bytes_in: u64,
    /// UDP packets sent.
    pub udp_packets_out: u64,
    /// UDP bytes sent.
    pub udp_bytes_out: u64,
    /// TCP streams accepted or dialed.
    pub tcp_streams_in: u64,
    /// TCP streams dialed.
    pub tcp_streams_out: u64,
    /// TCP bytes received.
    pub tcp_bytes_in: u64,
    /// TCP bytes sent.
    pub tcp_bytes_out: u64,
    /// Dropped input by reason (stable labels).
    pub dropped: BTreeMap<String, u64>,
    /// Members by status (`alive`, `leaving`, `left`, `failed`, plus `suspect`).
    pub members: BTreeMap<String, u64>,
    /// Lifeguard health score (0 = healthy).
    pub health_score: u32,
    /// Whether gossip is encrypted.
    pub encrypted: bool,
    /// Member Lamport clock.
    pub member_time: u64,
    /// Event Lamport clock.
    pub event_time: u64,
    /// Query Lamport clock.
    pub query_time: u64,
}

/// How many recent change times a [`MemberSnapshot`] keeps (a reader that fell further
/// behind takes the oldest kept as its first unseen change).
pub const SNAPSHOT_HISTORY: usize = 64;

/// The member table as the gossip driver last published it, versioned: the version goes up
/// by one on every change the core makes to any member (status, address, tags, suspicion,
/// refutation, leave or join intent, reap — everything that goes through Serf's member
/// table). Readers wait on it with [`crate::gossip::Gossip::watch_members`].
#[derive(Debug, Clone, Default)]
pub struct MemberSnapshot {
    /// Bumped by one per published change; 0 before the first.
    pub version: u64,
    /// Every member, this node included, sorted by name.
    pub members: std::sync::Arc<Vec<Member>>,
    /// When each of the last [`SNAPSHOT_HISTORY`] versions was published (wall clock),
    /// oldest first; the last entry is `version`'s.
    pub changed_at: std::collections::VecDeque<std::time::SystemTime>,
}

impl MemberSnapshot {
    /// Publishes `members` as the next version, changed at `at`.
    pub fn advance(&mut self, members: Vec<Member>, at: std::time::SystemTime) {
        self.version += 1;
        self.members = std::sync::Arc::new(members);
        if self.changed_at.len() == SNAPSHOT_HISTORY {
            self.changed_at.pop_front();
        }
        self.changed_at.push_back(at);
    }

    /// When the first change after version `seen` was published: what a reader that last
    /// saw `seen` measures its latency from. `None` when nothing changed since `seen`.
    pub fn first_change_after(&self, seen: u64) -> Option<std::time::SystemTime> {
        if self.version <= seen {
            return None;
        }
        let unseen = (self.version - seen) as usize;
        let kept = self.changed_at.len();
        self.changed_at
            .get(kept.saturating_sub(unseen))
            .or(self.changed_at.front())
            .copied()
    }
}
