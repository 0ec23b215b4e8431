//! The library API the agent uses: the [`Gossip`] handle. The protocol logic lives in
//! [`super::core`]; the IO in the driver; what they exchange with the handle in
//! `command.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::command::{Command, DriverLink, QueryResponses};
use super::config::GossipConfig;
use super::error::GossipError;
use super::event::GossipEvent;
use super::model::{GossipStats, Member, QueryParams};

/// A running gossip member. Cheap to clone.
#[derive(Clone)]
pub struct Gossip {
    name: Arc<str>,
    link: DriverLink,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("name", &self.name).finish()
    }
}

impl Gossip {
    /// Binds UDP and TCP on `cfg.bind` and starts the member (alone until [`Gossip::join`]).
    pub async fn start(
        cfg: GossipConfig,
    ) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), GossipError> {
        let name: Arc<str> = Arc::from(cfg.node_name.as_str());
        let (link, events) = super::driver::start(cfg).await?;
        Ok((Gossip { name, link }, events))
    }

    /// Joins the cluster through these seeds (push/pull with each); returns how many answered.
    pub async fn join(&self, seeds: &[SocketAddr]) -> Result<usize, GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::Join {
                seeds: seeds.to_vec(),
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Every member known, this node included.
    pub fn members(&self) -> Vec<Member> {
        self.link
            .shared
            .lock()
            .map(|s| s.members.clone())
            .unwrap_or_default()
    }

    /// This node's name.
    pub fn local_name(&self) -> &str {
        &self.name
    }

    /// Graceful leave: leave intent, dead-from-self, propagation delay, then shutdown.
    pub async fn leave(&self) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::Leave { done })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Hard stop: closes the sockets without telling anyone.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.link.commands.send(Command::Shutdown { done }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Broadcasts a user event.
    pub async fn user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::UserEvent {
                name: name.to_string(),
                payload: payload.to_vec(),
                coalesce,
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Sends a query; acks and responses stream in until the timeout.
    pub async fn query(
        &self,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<QueryResponses, GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::Query {
                name: name.to_string(),
                payload: payload.to_vec(),
                params,
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Serf's `force-leave`: announces that `node` left (a failed member becomes `left`;
    /// with `prune` it is forgotten at once). An alive member refutes it.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::ForceLeave {
                node: node.to_string(),
                prune,
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Sends Serf's key query `op` (`install-key`, `use-key`, `remove-key`, `list-keys`)
    /// with `payload` (an encoded key request, [`super::wire::encode_key_request`]); every
    /// member's key response comes back as a query response.
    pub async fn key_query(&self, op: &str, payload: &[u8]) -> Result<QueryResponses, GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::KeyQuery {
                op: op.to_string(),
                payload: payload.to_vec(),
                done,
            })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// The network coordinate of `node` (this node's own under its name) as Serf's
    /// `GetCachedCoordinate`; `None` when none is known or coordinates are disabled.
    pub async fn coordinate(&self, node: &str) -> Option<super::coordinate::Coordinate> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::Coordinate {
                node: node.to_string(),
                done,
            })
            .ok()?;
        rx.await.ok()?
    }

    /// Replaces this node's tags (alive with a new incarnation).
    pub async fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        let (done, rx) = oneshot::channel();
        self.link
            .commands
            .send(Command::SetTags { tags, done })
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// Counters.
    pub fn stats(&self) -> GossipStats {
        self.link
            .shared
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }

    /// Whether gossip is encrypted.
    pub fn encrypted(&self) -> bool {
        self.stats().encrypted
    }
}
