//! What passes between the [`Gossip`](super::api::Gossip) handles and the driver task: requests
//! ([`Command`]) one way; the published snapshot ([`Shared`]) and the query answers
//! ([`QueryResponses`]) the other. Neither side needs the other's internals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::coordinate::Coordinate;
use super::error::GossipError;
use super::model::{GossipStats, Member, QueryAnswer, QueryParams};

/// Requests from the [`Gossip`](super::api::Gossip) handles (and [`IncomingQuery::respond`](super::event::IncomingQuery::respond)) to the driver task.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        seeds: Vec<SocketAddr>,
        done: oneshot::Sender<Result<usize, GossipError>>,
    },
    Leave {
        done: oneshot::Sender<Result<(), GossipError>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
    UserEvent {
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
    Query {
        name: String,
        payload: Vec<u8>,
        params: QueryParams,
        done: oneshot::Sender<Result<QueryResponses, GossipError>>,
    },
    SetTags {
        tags: BTreeMap<String, String>,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
    ForceLeave {
        node: String,
        prune: bool,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
    KeyQuery {
        op: String,
        payload: Vec<u8>,
        done: oneshot::Sender<Result<QueryResponses, GossipError>>,
    },
    Coordinate {
        node: String,
        done: oneshot::Sender<Option<Coordinate>>,
    },
    Respond {
        token: u64,
        payload: Vec<u8>,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
}

/// Acks and responses of an outgoing query, streamed until its deadline.
#[derive(Debug)]
pub struct QueryResponses {
    /// Acks (responder names), if acks were requested.
    pub acks: mpsc::UnboundedReceiver<String>,
    /// Responses.
    pub responses: mpsc::UnboundedReceiver<QueryAnswer>,
    /// When collection ends.
    pub deadline: tokio::time::Instant,
}

impl QueryResponses {
    /// Waits for the deadline and returns every ack and response collected.
    pub async fn collect(mut self) -> (Vec<String>, Vec<QueryAnswer>) {
        let mut acks = Vec::new();
        let mut resps = Vec::new();
        let mut acks_open = true;
        let mut resps_open = true;
        while acks_open || resps_open {
            tokio::select! {
                a = self.acks.recv(), if acks_open => match a { Some(a) => acks.push(a), None => acks_open = false },
                r = self.responses.recv(), if resps_open => match r { Some(r) => resps.push(r), None => resps_open = false },
            }
        }
        (acks, resps)
    }
}

/// Snapshot the driver publishes after every step (members only when they changed).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub members: Vec<Member>,
    pub stats: GossipStats,
}

/// The ends of a running driver that a [`Gossip`](super::api::Gossip) handle holds.
#[derive(Debug, Clone)]
pub(crate) struct DriverLink {
    /// Requests to the driver task.
    pub commands: mpsc::UnboundedSender<Command>,
    /// What the driver publishes.
    pub shared: Arc<Mutex<Shared>>,
}
