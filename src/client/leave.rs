//! `haserf leave`: asks the agent to leave the cluster gracefully and waits until it has,
//! like `serf leave` ("Graceful leave complete"). The agent answers `{"leaving":true}` at
//! once and, on the same connection, `{"left":true}` (or `{"left":false,"error":…}`) once
//! the leave is done, just before it exits.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::io::BufReader;

use super::render::Format;
use super::socket::{connect, read_reply, send, ClientError, REPLY_TIMEOUT};
use crate::control::model::Request;

/// Default of `haserf leave --timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What `haserf leave` is asked.
#[derive(Debug, Clone)]
pub struct LeaveRequest {
    /// The agent's status socket.
    pub socket: PathBuf,
    /// Output format.
    pub format: Format,
    /// Longest wait for the leave to complete.
    pub timeout: Duration,
}

/// Why a leave did not complete.
#[derive(Debug, thiserror::Error)]
enum LeaveError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the agent did not finish leaving within {0:?}")]
    Timeout(Duration),
    #[error("the agent closed the connection before confirming the leave")]
    Closed,
    #[error("leave failed: {0}")]
    Failed(String),
}

async fn leave(req: &LeaveRequest) -> Result<Value, LeaveError> {
    let path = &req.socket;
    let (read, mut write) = connect(path).await?.into_split();
    let mut reader = BufReader::new(read);
    send(&mut write, path, &Request::Leave).await?;
    tokio::time::timeout(REPLY_TIMEOUT, read_reply(&mut reader, path))
        .await
        .map_err(|_| ClientError::Timeout(path.clone()))??
        .ok_or(LeaveError::Closed)?;
    let done = tokio::time::timeout(req.timeout, read_reply(&mut reader, path))
        .await
        .map_err(|_| LeaveError::Timeout(req.timeout))??
        .ok_or(LeaveError::Closed)?;
    if done["left"] == true {
        Ok(done)
    } else {
        let why = done["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string();
        Err(LeaveError::Failed(why))
    }
}

/// Runs `haserf leave`; returns 0 once the agent has left, 1 otherwise (reason on stderr).
pub fn run(req: &LeaveRequest) -> i32 {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(status) => return status,
    };
    match runtime.block_on(leave(req)) {
        Ok(done) => {
            match req.format {
                Format::Json => out!("{done}"),
                Format::Text => out!("Graceful leave complete"),
            }
            0
        }
        Err(e) => {
            eprintln!("haserf: {e}");
            1
        }
    }
}
