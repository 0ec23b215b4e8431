//! HAProxy runtime API: an async client (unix socket or TCP, timeouts, batching, typed
//! errors) and nom parsers for `show stat`, `show servers state` and `show info`.
//!
//! See docs/haproxy.md for the user-facing side and the reference notes the design
//! follows (reply classification by text, port validation, reload detection).

pub mod client;
pub mod command;
pub mod error;
pub mod info;
pub mod servers_state;
pub mod stat;
pub mod status;

pub use client::{Client, Endpoint, Snapshot};
pub use command::{AdminState, Command};
pub use error::{ClientError, CommandError, ParseError};
pub use info::Info;
pub use servers_state::{ServerState, ServersState};
pub use stat::{RowKind, StatRow, StatTable};
pub use status::{Health, ServerStatus};
