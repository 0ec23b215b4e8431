//! The Serf layer above SWIM: members with statuses and tags, Lamport-ordered intents, user
//! events and queries, as Serf runs them.
//!
//! - [`state`]: the [`Serf`] layer; routes Serf messages, push/pull state and SWIM's news.
//! - [`members`]: the member table; every visible member change goes through `publish`.
//! - [`intents`]: join and leave intents (where a leave intent is applied).
//! - [`lamport`]: Lamport clocks.
//! - [`events`]: user events.
//! - [`query`]: queries, responses, filters and relays.
//! - [`internal_query`]: Serf's own `_serf_*` queries.
//! - [`conflict`]: name conflicts.
//! - [`keymanager`]: the key queries behind `serf keys`.
//! - [`leave`]: our graceful leave.
//! - [`reap`]: forgetting and reconnecting failed and left members.
//! - [`tags`]: tags in memberlist's meta.

pub(crate) mod conflict;
pub(crate) mod events;
pub(crate) mod intents;
pub(crate) mod internal_query;
pub(crate) mod keymanager;
pub(crate) mod lamport;
pub(crate) mod leave;
pub(crate) mod members;
pub mod query;
pub(crate) mod reap;
pub(crate) mod state;
pub mod tags;

pub(crate) use state::{Serf, Stop};
