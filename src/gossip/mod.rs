//! Serf + memberlist. Arrows point down: the library API ([`api`], the [`Gossip`] handle)
//! talks to the tokio driver through `command`; the driver owns the sans-IO [`core`]; the
//! core owns small parts, one concern per file, and knows neither. docs/gossip.md has the
//! whole map.
//!
//! - `swim/`: memberlist's SWIM with Lifeguard (probes, suspicion, awareness, alive/dead).
//! - `serf/`: Serf above it (members, intents, Lamport clocks, events, queries, keys, leave).
//! - `broadcast`, `sync`: the broadcast pools; joins and push/pull.
//! - `runtime`, `timer`, `output`: what the parts act through, their timers, the outputs.
//! - [`wire`]: byte codecs. [`config`], [`error`], [`model`], [`event`]: shared types.

pub mod api;
mod broadcast;
mod command;
pub mod config;
pub mod coordinate;
pub mod core;
mod driver;
pub mod error;
pub mod event;
pub mod model;
mod output;
pub mod queue;
mod runtime;
mod serf;
mod swim;
mod sync;
mod timer;
pub mod wire;

pub use api::Gossip;
pub use command::QueryResponses;
pub use config::{GossipConfig, Timing};
pub use error::GossipError;
pub use event::{GossipEvent, IncomingQuery};
pub use model::{GossipStats, Member, QueryAnswer, QueryParams, UserEventInfo};
pub use wire::{Keyring, Vsn};
