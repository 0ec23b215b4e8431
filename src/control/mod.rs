//! The status socket, agent side: the JSON shapes it speaks (shared with the clients, the
//! Lua companion and the SPOE agent) and the server. (Its `metrics` answer is
//! [`crate::metrics`]' exposition.) The client side of the same socket is
//! [`crate::client`].

pub mod model;
pub mod page;
pub mod server;

/// Default path of the agent's status socket (`--status-socket` of the agent and of every
/// client command).
pub const DEFAULT_STATUS_SOCKET: &str = "/run/haserf/haserf.sock";
