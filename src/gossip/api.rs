//! The library API the agent uses: configuration, the [`Gossip`] handle, members, events,
//! queries and statistics. The protocol logic lives in [`super::core`]; the IO in
//! [`super::driver`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::wire::{Keyring, Vsn};
use crate::control::model::MemberStatus;

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
        }
    }

    /// The address put into alive messages.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.bind)
    }
}

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

/// A user query received from the cluster; answer it at most once with [`IncomingQuery::respond`].
#[derive(Debug)]
pub struct IncomingQuery {
    /// Query name.
    pub name: String,
    /// Query payload.
    pub payload: Vec<u8>,
    /// Originating node.
    pub source_node: String,
    /// Query Lamport time.
    pub ltime: u64,
    /// Deadline after which a response is useless.
    pub deadline: tokio::time::Instant,
    pub(crate) token: u64,
    pub(crate) tx: Option<mpsc::UnboundedSender<super::driver::Command>>,
}

impl IncomingQuery {
    /// Sends the (single) response. Errors when the response is too large, was already sent
    /// or the member stopped.
    pub fn respond(&mut self, payload: &[u8]) -> Result<(), GossipError> {
        let tx = self.tx.take().ok_or(GossipError::AlreadyResponded)?;
        if tokio::time::Instant::now() > self.deadline {
            return Err(GossipError::QueryExpired);
        }
        let (done, _rx) = oneshot::channel();
        tx.send(super::driver::Command::Respond {
            token: self.token,
            payload: payload.to_vec(),
            done,
        })
        .map_err(|_| GossipError::Stopped)
    }
}

/// What happened in the cluster.
#[derive(Debug)]
pub enum GossipEvent {
    /// A member joined (or came back).
    MemberJoin(Member),
    /// A member's tags or address changed.
    MemberUpdate(Member),
    /// A member left gracefully.
    MemberLeave(Member),
    /// A member failed.
    MemberFailed(Member),
    /// A failed or left member was forgotten.
    MemberReap(Member),
    /// The failure detector suspects a member (it may refute).
    MemberSuspect(Member),
    /// A suspected member proved alive again.
    MemberRefuted(Member),
    /// A user event.
    User(UserEventInfo),
    /// A user query to answer.
    Query(IncomingQuery),
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

/// Acks and responses of an outgoing query, streamed until its deadline.
#[derive(Debug)]
pub struct QueryResponses {
    /// Acks (responder names), if acks were requested.
    pub acks: mpsc::UnboundedReceiver<String>,
    /// Responses.
    pub responses: mpsc::UnboundedReceiver<QueryAnswer>,
    /// When collection ends.
    pub deadline: tokio::time::Instant,
}

impl QueryResponses {
    /// Waits for the deadline and returns every ack and response collected.
    pub async fn collect(mut self) -> (Vec<String>, Vec<QueryAnswer>) {
        let mut acks = Vec::new();
        let mut resps = Vec::new();
        let mut acks_open = true;
        let mut resps_open = true;
        while acks_open || resps_open {
            tokio::select! {
                a = self.acks.recv(), if acks_open => match a { Some(a) => acks.push(a), None => acks_open = false },
                r = self.responses.recv(), if resps_open => match r { Some(r) => resps.push(r), None => resps_open = false },
            }
        }
        (acks, resps)
    }
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

/// Errors of the gossip API.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// Binding the sockets failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad configuration.
    #[error("invalid gossip configuration: {0}")]
    Config(String),
    /// Tags too large for memberlist's 512-byte meta.
    #[error("tags encode to {size} bytes of metadata; Serf's limit is {limit} bytes")]
    TagsTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit (512).
        limit: usize,
    },
    /// Joining failed for every seed.
    #[error("join failed: no seed answered ({0})")]
    JoinFailed(String),
    /// A user event or query is over the size limit.
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Invalid query (e.g. reserved name).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A query response was already sent.
    #[error("the query was already answered")]
    AlreadyResponded,
    /// The query deadline passed.
    #[error("the query deadline has passed")]
    QueryExpired,
    /// The member has stopped.
    #[error("the gossip member has stopped")]
    Stopped,
    /// The member is leaving or left.
    #[error("the member is leaving")]
    Leaving,
}

/// Shared snapshot the driver publishes after every step.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub members: Vec<Member>,
    pub stats: GossipStats,
}

/// A running gossip member. Cheap to clone.
#[derive(Clone)]
pub struct Gossip {
    pub(crate) name: Arc<str>,
    pub(crate) tx: mpsc::UnboundedSender<super::driver::Command>,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("name", &self.name).finish()
    }
}

impl Gossip {
    /// Binds UDP and TCP on `cfg.bind` and starts the member (alone until [`Gossip::join`]).
    pub async fn start(
        cfg: GossipConfig,
    ) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), GossipError> {
        super::driver::start(cfg).await
    }

    /// Joins the cluster through these seeds (push/pull with each); returns how many answered.
    pub async fn join(&self, seeds: &[SocketAddr]) -> Result<usize, GossipError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(super::driver::Command::Join {
                seeds: seeds.to_vec(),
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Every member known, this node included.
    pub fn members(&self) -> Vec<Member> {
        self.shared
            .lock()
            .map(|s| s.members.clone())
            .unwrap_or_default()
    }

    /// This node's name.
    pub fn local_name(&self) -> &str {
        &self.name
    }

    /// Graceful leave: leave intent, dead-from-self, propagation delay, then shutdown.
    pub async fn leave(&self) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(super::driver::Command::Leave { done })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Hard stop: closes the sockets without telling anyone.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self
            .tx
            .send(super::driver::Command::Shutdown { done })
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Broadcasts a user event.
    pub async fn user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(super::driver::Command::UserEvent {
                name: name.to_string(),
                payload: payload.to_vec(),
                coalesce,
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Sends a query; acks and responses stream in until the timeout.
    pub async fn query(
        &self,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<QueryResponses, GossipError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(super::driver::Command::Query {
                name: name.to_string(),
                payload: payload.to_vec(),
                params,
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Replaces this node's tags (alive with a new incarnation).
    pub async fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(super::driver::Command::SetTags { tags, done })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.shared
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }

    /// Whether gossip is encrypted.
    pub fn encrypted(&self) -> bool {
        self.stats().encrypted
    }
}
