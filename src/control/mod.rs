//! The status socket: JSON lines in and out (server and client), the shared view model,
//! and text rendering for the client subcommands.

pub mod client;
pub mod metrics;
pub mod model;
pub mod page;
pub mod render;
pub mod server;
