//! Serf's RPC protocol (the "IPC" of serf's `cmd/serf/command/agent/ipc.go`), so the stock
//! `serf` CLI and Serf RPC client libraries work against a haserf agent: `serf members`,
//! `event`, `query`, `tags`, `join`, `leave`, `force-leave`, `monitor`, `keys`, `info`,
//! `rtt`, `reachability`.
//!
//! - [`codec`]: the wire format, sans-IO (requests in, response bytes out).
//! - [`server`]: the TCP listener and one task per connection (limits, handshake, auth).
//! - [`handler`]: what each command does against the [`Gossip`](crate::gossip::Gossip)
//!   handle and the agent ([`RpcAgent`]).
//! - [`events`]: `stream` subscriptions (serf's event filters) and queries awaiting `respond`.
//! - [`logs`]: the log fan-out behind `monitor`.
//!
//! docs/rpc.md lists every serf command and how it behaves against haserf.

pub mod client;
pub mod codec;
pub mod events;
pub mod handler;
pub mod logs;
pub mod server;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::gossip::Gossip;

pub use events::{PendingQueries, StreamEvent};
pub use logs::LogFanout;
pub use server::{serve, RpcLimits};

/// Events buffered per `stream` subscriber before the slowest one starts losing events.
pub const EVENT_BUFFER: usize = 1024;

/// What the RPC server needs from the agent beyond the gossip handle.
pub trait RpcAgent: Send + Sync {
    /// Starts the agent's graceful leave and resolves when it is over (serf's `leave`
    /// answers after the leave, then the agent shuts down).
    fn leave(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;

    /// Configured event handlers, `filter → script` (the `event_handlers` section of
    /// `serf info`); none by default.
    fn event_handlers(&self) -> std::collections::BTreeMap<String, String> {
        Default::default()
    }
}

/// Everything the RPC connections share.
pub struct RpcContext {
    /// The gossip member.
    pub gossip: Gossip,
    /// The agent.
    pub agent: Arc<dyn RpcAgent>,
    /// `rpc_auth`: when set, every command but `handshake` and `auth` needs it first.
    pub auth: Option<String>,
    /// Cluster events for `stream` subscribers ([`RpcContext::publish`]).
    pub events: broadcast::Sender<StreamEvent>,
    /// Queries delivered to streams, waiting for `respond`.
    pub queries: PendingQueries,
    /// Log lines for `monitor`.
    pub logs: LogFanout,
}

impl RpcContext {
    /// A context for `gossip` and `agent`, with `auth` as the `rpc_auth` token.
    pub fn new(
        gossip: Gossip,
        agent: Arc<dyn RpcAgent>,
        auth: Option<String>,
        logs: LogFanout,
    ) -> RpcContext {
        RpcContext {
            gossip,
            agent,
            auth: auth.filter(|a| !a.is_empty()),
            events: broadcast::channel(EVENT_BUFFER).0,
            queries: PendingQueries::default(),
            logs,
        }
    }

    /// Publishes a cluster event to the `stream` subscribers (nothing when none listens).
    pub fn publish(&self, e: StreamEvent) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(e);
        }
    }

    /// Whether any `stream` subscriber listens (the agent then hands queries over).
    pub fn has_streams(&self) -> bool {
        self.events.receiver_count() > 0
    }
}
