//! What happened in the cluster, as the [`Gossip`](super::api::Gossip) handle's event channel
//! delivers it; incoming queries carry their way back to the driver.

use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::error::GossipError;
use super::model::{Member, UserEventInfo};

/// A user query received from the cluster; answer it at most once with [`IncomingQuery::respond`].
#[derive(Debug)]
pub struct IncomingQuery {
    /// Query name.
    pub name: String,
    /// Query payload.
    pub payload: Vec<u8>,
    /// Originating node.
    pub source_node: String,
    /// Query Lamport time.
    pub ltime: u64,
    /// Deadline after which a response is useless.
    pub deadline: tokio::time::Instant,
    pub(crate) token: u64,
    pub(crate) tx: Option<mpsc::UnboundedSender<Command>>,
}

impl IncomingQuery {
    /// Sends the (single) response. Errors when the response is too large, was already sent
    /// or the member stopped.
    pub fn respond(&mut self, payload: &[u8]) -> Result<(), GossipError> {
        let tx = self.tx.take().ok_or(GossipError::AlreadyResponded)?;
        if tokio::time::Instant::now() > self.deadline {
            return Err(GossipError::QueryExpired);
        }
        let (done, _rx) = oneshot::channel();
        tx.send(Command::Respond {
            token: self.token,
            payload: payload.to_vec(),
            done,
        })
        .map_err(|_| GossipError::Stopped)
    }

    /// As [`IncomingQuery::respond`], and waits for the member's verdict: errors also when
    /// the encoded response exceeds `query_response_size_limit` (serf's `Respond` check).
    pub async fn respond_checked(&mut self, payload: &[u8]) -> Result<(), GossipError> {
        let tx = self.tx.take().ok_or(GossipError::AlreadyResponded)?;
        if tokio::time::Instant::now() > self.deadline {
            return Err(GossipError::QueryExpired);
        }
        let (done, rx) = oneshot::channel();
        tx.send(Command::Respond {
            token: self.token,
            payload: payload.to_vec(),
            done,
        })
        .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }
}

/// What happened in the cluster.
#[derive(Debug)]
pub enum GossipEvent {
    /// A member joined (or came back).
    MemberJoin(Member),
    /// A member's tags or address changed.
    MemberUpdate(Member),
    /// A member left gracefully.
    MemberLeave(Member),
    /// A member failed.
    MemberFailed(Member),
    /// A failed or left member was forgotten.
    MemberReap(Member),
    /// The failure detector suspects a member (it may refute).
    MemberSuspect(Member),
    /// A suspected member proved alive again.
    MemberRefuted(Member),
    /// A user event.
    User(UserEventInfo),
    /// A user query to answer.
    Query(IncomingQuery),
}
