//! The client's connection to a running agent: one JSON-lines request on its status socket,
//! one reply. `haserf metrics` is exactly that, printed ([`ask`]); `members` and `slots`
//! filter the reply ([`super::filter`]), `status` maps it to an exit status
//! ([`super::status`]), `leave` waits for a second line ([`super::leave`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use super::render::{self, Format};
use crate::control::model::Request;

/// How long a client waits for the agent's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of a status-socket request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the path.
    #[error("cannot reach the agent at {path}: {source} (is `haserf agent` running with --status-socket {path}? HASERF_STATUS_SOCKET sets the path too)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The agent did not answer in time.
    #[error("the agent at {0} did not answer within {REPLY_TIMEOUT:?}")]
    Timeout(PathBuf),
    /// The connection failed mid-request.
    #[error("status socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The reply is not a JSON object.
    #[error("the agent's reply is not valid JSON: {0}")]
    BadReply(String),
    /// The agent answered with `{"error": …}`.
    #[error("agent error: {0}")]
    Agent(String),
}

/// Connects to the agent's status socket.
pub async fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path)
        .await
        .map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })
}

/// Writes one request line.
pub async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    path: &Path,
    req: &Request,
) -> Result<(), ClientError> {
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::BadReply(e.to_string()))?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Reads one reply line: the object, an [`ClientError::Agent`] for `{"error": …}`, or
/// `Ok(None)` when the agent closed the connection first.
pub async fn read_reply(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    path: &Path,
) -> Result<Option<Value>, ClientError> {
    let mut reply = String::new();
    let n = reader
        .read_line(&mut reply)
        .await
        .map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })?;
    if n == 0 {
        return Ok(None);
    }
    let value: Value =
        serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))?;
    match value.get("error") {
        Some(err) => Err(ClientError::Agent(
            err.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| err.to_string()),
        )),
        None => Ok(Some(value)),
    }
}

/// Sends one request and returns the reply object (an `{"error"}` reply becomes an error).
pub async fn request(path: &Path, req: &Request) -> Result<Value, ClientError> {
    let exchange = async {
        let (read, mut write) = connect(path).await?.into_split();
        send(&mut write, path, req).await?;
        read_reply(&mut BufReader::new(read), path)
            .await?
            .ok_or_else(|| ClientError::BadReply("the agent closed the connection".into()))
    };
    tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Timeout(path.to_owned()))?
}

/// Runs a one-request status-socket command (`metrics`): sends `req` to
/// the agent at `status_socket`, prints the reply in `format`; returns the exit status (0,
/// or 1 with the error on stderr).
pub fn ask(status_socket: &Path, req: Request, format: Format) -> i32 {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(status) => return status,
    };
    match runtime.block_on(request(status_socket, &req)) {
        Ok(reply) => {
            print!("{}", render::reply(&req, &reply, format));
            0
        }
        Err(err) => {
            eprintln!("haserf: {err}");
            1
        }
    }
}
