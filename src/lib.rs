//! haserf: a Serf-compatible cluster member that keeps HAProxy `server-template`
//! slots filled with the live members, through the runtime API, with zero reloads.
//!
//! Layout (see README "Architecture"); arrows point down, and nothing here knows the command
//! line (clap lives in the binary: `src/main.rs` + `src/cli.rs`):
//! - the agent side: [`agent`] (lifecycle, signals, status-socket answers) over [`manager`]
//!   (membership → [`policy`] → [`slots`]), configured by [`config`];
//! - the client side: [`client`] (`members`, `slots`, `status`, `leave`, `plan`, `verify`);
//! - below both: [`gossip`] (Serf + memberlist wire codecs, sans-IO SWIM and Serf state
//!   machines, tokio driver), [`slots`] (discovery, planner, reconcile loop), [`policy`],
//!   [`haproxy`] (runtime API client and nom parsers), [`control`] (the status socket's JSON
//!   shapes and server), [`metrics`] (the Prometheus registry every component registers
//!   its families in, and the `/metrics` listener), [`spoe`] (SPOP codec and agent),
//!   [`maps`] (HAProxy maps the agent keeps: slot → member, member → status/tags),
//!   [`keygen`];
//! - serf agent compatibility: [`handlers`] (event handler scripts with serf's contract),
//!   [`snapshot`] (serf's snapshot file), `config::serf_compat` (serf's config keys).
#![forbid(unsafe_code)]

pub mod agent;
pub mod client;
pub mod config;
pub mod control;
pub mod gossip;
pub mod handlers;
pub mod haproxy;
pub mod keygen;
pub mod manager;
pub mod maps;
pub mod metrics;
pub mod policy;
pub mod repeats;
pub mod rpc;
pub mod slots;
pub mod snapshot;
pub mod spoe;
