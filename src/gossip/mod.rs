//! Serf + memberlist: wire codecs ([`wire`]), the sans-IO SWIM and Serf state machine
//! ([`core`]), the tokio driver, and the library API ([`api`]) the agent uses.

pub mod api;
pub mod core;
mod driver;
pub mod queue;
pub mod wire;

pub use api::{
    Gossip, GossipConfig, GossipError, GossipEvent, GossipStats, IncomingQuery, Member,
    QueryAnswer, QueryParams, QueryResponses, Timing, UserEventInfo,
};
pub use wire::{Keyring, Vsn};
