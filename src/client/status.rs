//! `haserf status`: the agent's status, and an exit status scripts and health checks can use:
//! [`READY`] 0, [`NOT_READY`] 1, [`UNREACHABLE`] 2. With `--wait-ready[=TIMEOUT]` it asks
//! again every [`POLL`] until the agent is ready or the timeout passes (an agent that is not
//! up yet counts as "not yet", so it can follow `systemctl start`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::render::Format;
use super::socket::{request, ClientError};
use super::status_text::status_text;
use crate::control::model::Request;

/// Exit status: the agent is ready (member mode: running; with HAProxy: first reconcile done).
pub const READY: i32 = 0;
/// Exit status: the agent answers but is not ready.
pub const NOT_READY: i32 = 1;
/// Exit status: no agent answers at the status socket (or it answered with an error).
pub const UNREACHABLE: i32 = 2;
/// How often `--wait-ready` asks.
pub const POLL: Duration = Duration::from_millis(200);

/// What `haserf status` is asked.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// The agent's status socket.
    pub socket: PathBuf,
    /// Output format.
    pub format: Format,
    /// Wait up to this long for the agent to be ready.
    pub wait_ready: Option<Duration>,
}

/// The exit status for a status reply.
pub fn exit_status(reply: &Value) -> i32 {
    if reply["ready"] == true {
        READY
    } else {
        NOT_READY
    }
}

/// Runs `haserf status`; prints the (last) status and returns the exit status.
pub fn run(req: &StatusRequest) -> i32 {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(_) => return UNREACHABLE,
    };
    let deadline = Instant::now() + req.wait_ready.unwrap_or_default();
    let last: Result<Value, ClientError> = runtime.block_on(async {
        loop {
            let r = request(&req.socket, &Request::Status).await;
            let done = match &r {
                Ok(v) => exit_status(v) == READY,
                Err(ClientError::Agent(_)) => true,
                Err(_) => false,
            };
            if done || Instant::now() >= deadline {
                return r;
            }
            tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
        }
    });
    match last {
        Ok(v) => {
            match req.format {
                Format::Json => out!("{v}"),
                Format::Text => print!("{}", status_text(&v, SystemTime::now())),
            }
            let code = exit_status(&v);
            if code != READY {
                if let Some(t) = req.wait_ready {
                    eprintln!("haserf: the agent was not ready within {t:?}");
                }
            }
            code
        }
        Err(e) => {
            eprintln!("haserf: {e}");
            UNREACHABLE
        }
    }
}
