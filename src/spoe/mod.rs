//! The `haserf` SPOE agent: HAProxy asks, over SPOP 2.0, for cluster facts and gets them
//! back as variables (`txn.haserf.*`) for ACLs and headers.
//!
//! - [`codec`]: the SPOP wire format (varints, typed data, lists, frames), pure.
//! - [`conn`]: the per-connection state machine, sans IO (bytes in, bytes out).
//! - [`handler`]: which messages exist and which variables they set.
//! - [`index`]: the cluster indexed for one lookup per fact ([`index::CachedView`]).
//! - [`answer`]: an answer cut to the negotiated frame size, small facts first.
//! - [`serve`]: the thin tokio driver that moves bytes between sockets and [`conn`].
//!
//! The agent (`haserf agent --spoe-bind IP:PORT`) calls [`serve`] with a [`ClusterView`]
//! of its membership and slot table. See docs/companion.md for the HAProxy side.

pub mod answer;
pub mod codec;
pub mod conn;
pub mod handler;
pub mod index;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use codec::VarScope;
pub use index::{CachedView, ClusterIndex};
pub use server::{serve, serve_listener};

use crate::control::model::{MemberView, SlotView};

/// What the SPOE agent knows about the cluster; implemented by the agent (and by tests).
/// Called on every NOTIFY, so it should be a cheap snapshot read.
pub trait ClusterView: Send + Sync + 'static {
    /// Every known member, with status and tags.
    fn members(&self) -> Vec<MemberView>;
    /// Every slot of every managed backend.
    fn slots(&self) -> Vec<SlotView>;

    /// The view indexed for the handler. The default builds it on every call; wrap a view
    /// whose lists are costly in [`CachedView`].
    fn index(&self) -> Arc<ClusterIndex> {
        Arc::new(ClusterIndex::build(&self.members(), &self.slots()))
    }
}

/// A fixed view (tests, benchmarks, or a snapshot).
#[derive(Debug, Clone, Default)]
pub struct StaticView {
    /// Members.
    pub members: Vec<MemberView>,
    /// Slots.
    pub slots: Vec<SlotView>,
}

impl ClusterView for StaticView {
    fn members(&self) -> Vec<MemberView> {
        self.members.clone()
    }
    fn slots(&self) -> Vec<SlotView> {
        self.slots.clone()
    }
}

/// Settings of the SPOE agent.
#[derive(Debug, Clone)]
pub struct SpoeConfig {
    /// Address to listen on (`--spoe-bind`).
    pub bind: SocketAddr,
    /// Scope of the variables set (default `txn`). The middle part of their names is
    /// HAProxy's `option var-prefix` in spoe.conf (`haserf` in the shipped file).
    pub var_scope: VarScope,
    /// Upper bound for the negotiated `max-frame-size`. The agent takes what HAProxy offers
    /// in its HELLO (its `max-frame-size`, by default `tune.bufsize` − 4) up to this bound
    /// (default [`codec::MAX_FRAME_SIZE`], 1 MiB).
    pub max_frame_size: u32,
    /// A connection that has not completed HELLO within this time is closed (status 2).
    pub hello_timeout: Duration,
    /// A connection silent for this long is closed (HAProxy's own `timeout idle` is shorter
    /// in practice).
    pub idle_timeout: Duration,
    /// Connections above this number are refused (closed on accept) and counted.
    pub max_connections: usize,
    /// Counters, shared with whoever wants to read them.
    pub metrics: Arc<SpoeMetrics>,
}

impl SpoeConfig {
    /// Defaults for an agent listening on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        SpoeConfig {
            bind,
            var_scope: VarScope::Txn,
            max_frame_size: codec::MAX_FRAME_SIZE,
            hello_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            metrics: Arc::default(),
        }
    }
}

/// Counters of the SPOE agent (monotonic).
#[derive(Debug, Default)]
pub struct SpoeMetrics {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused because of `max_connections`.
    pub refused: AtomicU64,
    /// Health-check HELLOs answered.
    pub healthchecks: AtomicU64,
    /// Working HELLOs answered.
    pub hellos: AtomicU64,
    /// NOTIFY frames answered.
    pub notifies: AtomicU64,
    /// Connections closed by us with an error status (bad input, timeouts).
    pub rejected: AtomicU64,
    /// HAPROXY-DISCONNECT frames received.
    pub disconnects: AtomicU64,
    /// I/O errors on connections.
    pub io_errors: AtomicU64,
    /// ACKs whose answer was cut to fit the frame size (a list cut or a fact left out).
    pub truncated: AtomicU64,
    /// Milliseconds since the Unix epoch of the last "answer cut" log line (rate limit).
    pub(crate) truncation_logged_ms: AtomicU64,
    /// ACKs cut since that log line.
    pub(crate) truncated_unlogged: AtomicU64,
}

/// Truncations are counted one by one but logged at most this often.
pub const TRUNCATION_LOG_EVERY: Duration = Duration::from_secs(10);

impl SpoeMetrics {
    /// Counts one cut answer; returns how many were cut since the last log line when a new
    /// line is due ([`TRUNCATION_LOG_EVERY`]).
    pub(crate) fn note_truncation(&self) -> Option<u64> {
        Self::inc(&self.truncated);
        let since = self.truncated_unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.truncation_logged_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= TRUNCATION_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .truncation_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.truncated_unlogged.fetch_sub(since, Ordering::Relaxed);
            return Some(since);
        }
        None
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
