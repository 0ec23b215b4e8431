//! Serf + memberlist: wire codecs ([`wire`]), the sans-IO SWIM and Serf state machine
//! ([`core`]), the tokio driver, and the library API ([`api`]) the agent uses.

pub mod api;
mod broadcast;
mod command;
pub mod config;
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
