//! Errors of the gossip API.

use std::net::SocketAddr;

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
