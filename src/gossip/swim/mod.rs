//! SWIM with Lifeguard, as memberlist runs it: the failure detector and membership
//! dissemination below the Serf layer.
//!
//! - [`state`]: the [`Swim`] layer; alive, suspect and dead messages (`state.go`).
//! - [`probe`]: probe rounds, indirect probes, TCP fallback, acks and nacks.
//! - [`suspicion`]: suspicion timeouts with confirmations (`suspicion.go`).
//! - [`awareness`]: the local health score (`awareness.go`).
//! - [`gossip`]: the gossip round that sends pending broadcasts.
//! - [`nodes`]: the node table and the probe order.
//! - [`local`]: this node: identity, incarnation, refutation.

pub(crate) mod awareness;
pub(crate) mod gossip;
pub(crate) mod local;
pub(crate) mod nodes;
pub(crate) mod probe;
pub(crate) mod state;
pub(crate) mod suspicion;

pub(crate) use local::LocalNode;
pub(crate) use state::{NodeChange, Swim};
