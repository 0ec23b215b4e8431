//! haserf: a Serf-compatible cluster member that keeps HAProxy `server-template`
//! slots filled with the live members, through the runtime API, with zero reloads.
//!
//! Layout (see README "Architecture"):
//! - [`gossip`]: Serf + memberlist wire codecs, sans-IO SWIM and Serf state machines, tokio driver.
//! - [`haproxy`]: runtime API client and nom parsers for `show stat` / `show servers state` / `show info`.
//! - [`slots`]: planner (desired vs observed → runtime commands) and the reconcile loop.
//! - [`control`]: the status socket (JSON lines) server and client.
//! - [`spoe`]: SPOP codec and agent.
//! - [`maps`]: HAProxy maps the agent keeps (slot → member, member → status/tags).
//! - [`agent`]: wires membership → slots → HAProxy; lifecycle and signals.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod config;
pub mod control;
pub mod gossip;
pub mod haproxy;
pub mod keygen;
pub mod manager;
pub mod maps;
pub mod policy;
pub mod slots;
pub mod spoe;
