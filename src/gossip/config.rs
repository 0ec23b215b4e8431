//! Configuration of a gossip member: identity, addresses, tags, keys, memberlist timing
//! (Serf's profiles) and the Serf timeouts and size limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::wire::Keyring;

/// memberlist timing (Serf's profiles). See gossip-wire.md §9.1.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Time between probes.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack.
    pub probe_timeout: Duration,
    /// Number of peers asked to probe indirectly.
    pub indirect_checks: usize,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Peers per gossip round.
    pub gossip_nodes: usize,
    /// How long dead nodes still receive gossip.
    pub gossip_to_the_dead: Duration,
    /// Periodic full-state exchange.
    pub push_pull_interval: Duration,
    /// Retransmissions = mult × ceil(log10(n + 1)).
    pub retransmit_mult: u32,
    /// Suspicion timeout multiplier.
    pub suspicion_mult: u32,
    /// Suspicion max timeout = this × min.
    pub suspicion_max_timeout_mult: u32,
    /// Lifeguard awareness cap (score 0..max-1).
    pub awareness_max_multiplier: u32,
    /// TCP connect/read timeout.
    pub tcp_timeout: Duration,
}

impl Timing {
    /// Serf's `lan` profile (the default).
    pub fn lan() -> Self {
        Timing {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            tcp_timeout: Duration::from_secs(10),
        }
    }

    /// Serf's `local` profile (loopback tests).
    pub fn local() -> Self {
        Timing {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            gossip_interval: Duration::from_millis(100),
            gossip_nodes: 3,
            gossip_to_the_dead: Duration::from_secs(15),
            push_pull_interval: Duration::from_secs(15),
            retransmit_mult: 2,
            suspicion_mult: 3,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            tcp_timeout: Duration::from_secs(1),
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::lan()
    }
}

/// Configuration of a gossip member.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Unique node name.
    pub node_name: String,
    /// UDP + TCP bind address.
    pub bind: SocketAddr,
    /// Address other members use (default: `bind`; must not be unspecified then).
    pub advertise: Option<SocketAddr>,
    /// This node's tags (encoded into memberlist `Meta`, ≤ 512 bytes).
    pub tags: BTreeMap<String, String>,
    /// Encryption keys (primary first). `None`: plaintext cluster.
    pub keyring: Option<Keyring>,
    /// Serf keyring file, rewritten when the key queries change the keyring.
    pub keyring_file: Option<PathBuf>,
    /// memberlist timing.
    pub timing: Timing,
    /// Failed members are forgotten after this.
    pub reconnect_timeout: Duration,
    /// Left members are forgotten after this.
    pub tombstone_timeout: Duration,
    /// How often failed/left members are reaped.
    pub reap_interval: Duration,
    /// How often a failed member is retried.
    pub reconnect_interval: Duration,
    /// LZW-compress outgoing packets (when smaller) and streams, like Serf's default.
    pub compress: bool,
    /// How long leave waits for each of its broadcasts.
    pub broadcast_timeout: Duration,
    /// Answering time kept after the leave broadcasts.
    pub leave_propagate_delay: Duration,
    /// Largest user event (name + payload and encoded message), bytes.
    pub user_event_size_limit: usize,
    /// Largest encoded query, bytes.
    pub query_size_limit: usize,
    /// Largest encoded query response, bytes.
    pub query_response_size_limit: usize,
    /// Seed of the random number generator (`None`: from the OS).
    pub seed: Option<u64>,
    /// (member, event, query) Lamport clocks restored from a snapshot: witnessed at start,
    /// and user events and queries at or before them are never delivered again (serf's
    /// `eventMinTime`/`queryMinTime` = last + 1 in `serf.go`'s snapshot replay).
    pub restored_clocks: Option<(u64, u64, u64)>,
    /// Serf's `disable_coordinates`: no Vivaldi coordinate in acks, none learned.
    pub disable_coordinates: bool,
}

impl GossipConfig {
    /// Defaults of a Serf agent (LAN profile, 24 h reconnect/tombstone timeouts).
    pub fn new(node_name: impl Into<String>, bind: SocketAddr) -> Self {
        GossipConfig {
            node_name: node_name.into(),
            bind,
            advertise: None,
            tags: BTreeMap::new(),
            keyring: None,
            keyring_file: None,
            timing: Timing::lan(),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            reap_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(30),
            compress: true,
            broadcast_timeout: Duration::from_secs(5),
            leave_propagate_delay: Duration::from_secs(1),
            user_event_size_limit: 512,
            query_size_limit: 1024,
            query_response_size_limit: 1024,
            seed: None,
            restored_clocks: None,
            disable_coordinates: false,
        }
    }

    /// The address put into alive messages.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.bind)
    }
}
