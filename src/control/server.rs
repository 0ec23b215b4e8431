//! Status socket server: a unix socket speaking JSON lines. One request object per line in,
//! one reply object per line out. A bad line gets `{"error":"…"}` and the connection stays
//! open; nothing a client sends can stop the agent. A request with `"framed":true` gets its
//! reply behind a `#<length>` header line, with `"chunk":C` also cut into pieces of C bytes
//! that the client asks for one by one ([`super::model::RequestOptions::framed`]). The
//! one exception to "one line out":
//! `leave` gets `{"leaving":true}` at once and, when the agent provides it
//! ([`Handler::leave_outcome`]), `{"left":…}` once the leave is done; then the connection
//! closes.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::model::{ErrorReply, Query, Request};

/// Longest request line accepted; longer lines get an error and the connection is closed.
pub const MAX_LINE: usize = 64 * 1024;
/// Concurrent client connections served; more wait for a free place.
pub const MAX_CONNECTIONS: usize = 64;
/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a `leave` request's connection waits for the leave to complete.
pub const LEAVE_WAIT: Duration = Duration::from_secs(120);

/// Answers status-socket requests. Implemented by the agent.
pub trait Handler: Send + Sync + 'static {
    /// The reply object for one request (an [`ErrorReply`] shape on failure).
    fn handle(&self, request: Request) -> Value;

    /// The reply to a request line with its optional fields ([`super::model::RequestOptions`]:
    /// paging, used slots only). The default ignores the options; the agent pages.
    fn handle_query(&self, query: Query) -> Value {
        self.handle(query.request)
    }

    /// For `leave`: where the outcome of the leave will appear (`Some` object once done).
    /// The server then writes it as a second reply line on the connection that asked
    /// (`haserf leave` waits for it), and closes the connection. `None`: one reply only.
    fn leave_outcome(&self) -> Option<tokio::sync::watch::Receiver<Option<Value>>> {
        None
    }
}

/// Where and how to create the socket.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Socket path; its parent directory is created when missing.
    pub path: PathBuf,
    /// File mode (default 0o600).
    pub mode: u32,
    /// Group to give the socket to (name or numeric gid), if any.
    pub group: Option<String>,
}

impl SocketOptions {
    /// Default options for `path`: mode 0600, no group change.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SocketOptions {
            path: path.into(),
            mode: 0o600,
            group: None,
        }
    }
}

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process already answers on this path.
    #[error("status socket {0}: another agent is already listening there")]
    InUse(PathBuf),
    /// The group named does not exist.
    #[error("status socket group {0:?}: no such group")]
    NoSuchGroup(String),
    /// Filesystem or socket error.
    #[error("status socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// A bound status socket. The socket file is removed when this is dropped.
pub struct StatusServer {
    listener: UnixListener,
    path: PathBuf,
}

impl StatusServer {
    /// Binds the socket: removes a stale socket file left by a dead agent, refuses to steal
    /// one a live agent still answers on, then applies mode and group.
    pub async fn bind(opts: &SocketOptions) -> Result<Self, ServerError> {
        let path = opts.path.clone();
        let io_err = |source| ServerError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(ServerError::InUse(path));
            }
            std::fs::remove_file(&path).map_err(io_err)?;
        }
        let listener = UnixListener::bind(&path).map_err(io_err)?;
        let server = StatusServer {
            listener,
            path: path.clone(),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(opts.mode))
            .map_err(io_err)?;
        if let Some(group) = &opts.group {
            let gid =
                resolve_group(group).ok_or_else(|| ServerError::NoSuchGroup(group.clone()))?;
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(io_err)?;
        }
        Ok(server)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves clients until the future is dropped.
    pub async fn serve(&self, handler: Arc<dyn Handler>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "status socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(err) = serve_connection(stream, handler.as_ref()).await {
                    tracing::debug!(error = %err, "status socket client ended");
                }
                drop(permit);
            });
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Parses one request line; the error is the reply to send.
pub fn parse_request(line: &str) -> Result<Request, Value> {
    parse_query(line).map(|q| q.request)
}

/// Parses one request line with its optional fields; the error is the reply to send.
pub fn parse_query(line: &str) -> Result<Query, Value> {
    serde_json::from_str::<Query>(line.trim()).map_err(|err| {
        let msg = match serde_json::from_str::<Value>(line.trim()) {
            Err(_) => format!("invalid JSON: {err}"),
            Ok(Value::Object(obj)) => match obj.get("cmd") {
                Some(Value::String(cmd))
                    if serde_json::from_value::<Request>(Value::Object(obj.clone())).is_ok() =>
                {
                    format!("bad fields in a {cmd:?} request: {err}")
                }
                Some(Value::String(cmd)) => format!(
                    "unknown cmd {cmd:?}: expected members, slots, status, leave or metrics"
                ),
                Some(_) => "\"cmd\" must be a string".to_string(),
                None => "missing \"cmd\"".to_string(),
            },
            Ok(_) => "a request is a JSON object such as {\"cmd\":\"status\"}".to_string(),
        };
        error_value(msg)
    })
}

/// `{"error": msg}`.
pub fn error_value(msg: impl Into<String>) -> Value {
    serde_json::to_value(ErrorReply { error: msg.into() }).unwrap_or(Value::Null)
}

async fn serve_connection(stream: UnixStream, handler: &dyn Handler) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let plain = Framing::default();
    loop {
        line.clear();
        let n = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle client"))??;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            let reply = error_value(format!("request line longer than {MAX_LINE} bytes"));
            write_reply(&mut write, &mut reader, &reply, plain).await?;
            return Ok(());
        }
        let text = match std::str::from_utf8(&line) {
            Err(_) => {
                let reply = error_value("request is not UTF-8");
                write_reply(&mut write, &mut reader, &reply, plain).await?;
                continue;
            }
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => text,
        };
        let framing = Framing::asked_in(text);
        let reply = match parse_query(text) {
            Ok(query) if query.request == Request::Leave => {
                let reply = handler.handle_query(query);
                write_reply(&mut write, &mut reader, &reply, framing).await?;
                if let Some(mut outcome) = handler.leave_outcome() {
                    let done = tokio::time::timeout(LEAVE_WAIT, outcome.wait_for(Option::is_some))
                        .await
                        .ok()
                        .and_then(|r| r.ok().and_then(|v| v.clone()));
                    if let Some(done) = done {
                        write_reply(&mut write, &mut reader, &done, framing).await?;
                    }
                }
                return Ok(());
            }
            Ok(query) => handler.handle_query(query),
            Err(reply) => reply,
        };
        write_reply(&mut write, &mut reader, &reply, framing).await?;
    }
}

/// Smallest piece a chunked reply is cut into (a smaller `"chunk"` is raised to this).
pub const MIN_CHUNK: usize = 256;
/// Longest the server waits for the empty line that asks for the next piece of a chunked
/// reply; then the connection is closed.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// How one reply is written ([`super::model::RequestOptions::framed`] and `chunk`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// A `#<length>` header line before the reply.
    pub framed: bool,
    /// With `framed`: the reply after the header goes out this many bytes at a time, each
    /// piece but the first after an empty line from the client.
    pub chunk: Option<usize>,
}

impl Framing {
    /// The framing a request line asks for, read leniently so that the error reply to an
    /// otherwise bad request is framed too.
    pub fn asked_in(text: &str) -> Framing {
        let Ok(v) = serde_json::from_str::<Value>(text.trim()) else {
            return Framing::default();
        };
        let framed = v.get("framed").and_then(Value::as_bool).unwrap_or(false);
        let chunk = v
            .get("chunk")
            .and_then(Value::as_u64)
            .map(|c| usize::try_from(c).unwrap_or(usize::MAX).max(MIN_CHUNK));
        Framing {
            framed,
            chunk: chunk.filter(|_| framed),
        }
    }
}

/// One reply as written on the socket: the JSON line, behind a `#<length>` header line when
/// `framed` (the length counts the JSON bytes, not the newline that ends them).
pub fn reply_bytes(reply: &Value, framed: bool) -> Vec<u8> {
    let json = serde_json::to_vec(reply).unwrap_or_else(|_| b"null".to_vec());
    let mut bytes = Vec::with_capacity(json.len() + 24);
    if framed {
        bytes.extend_from_slice(format!("#{}\n", json.len()).as_bytes());
    }
    bytes.extend_from_slice(&json);
    bytes.push(b'\n');
    bytes
}

async fn write_reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    reply: &Value,
    framing: Framing,
) -> io::Result<()> {
    let bytes = reply_bytes(reply, framing.framed);
    let Some(chunk) = framing.chunk else {
        return write.write_all(&bytes).await;
    };
    let header_end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (header, body) = bytes.split_at(header_end);
    write.write_all(header).await?;
    for (i, piece) in body.chunks(chunk).enumerate() {
        if i > 0 {
            wait_for_ack(reader).await?;
        }
        write.write_all(piece).await?;
    }
    Ok(())
}

/// Reads the empty line that asks for the next piece of a chunked reply.
async fn wait_for_ack(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> io::Result<()> {
    let mut ack = Vec::new();
    let n = tokio::time::timeout(
        ACK_TIMEOUT,
        reader.take(MAX_LINE as u64).read_until(b'\n', &mut ack),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no acknowledgement of a piece"))??;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if !ack.iter().all(u8::is_ascii_whitespace) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a chunked reply's piece acknowledged with something else than an empty line",
        ));
    }
    Ok(())
}

fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let gid = fields.nth(1)?;
        (name == group).then(|| gid.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_command_parses() {
        assert_eq!(parse_request(r#"{"cmd":"slots"}"#), Ok(Request::Slots));
    }

    #[test]
    fn optional_fields_ride_along_and_a_plain_line_has_none() {
        let q = parse_query(r#"{"cmd":"slots","used":true,"offset":5,"max_bytes":8000}"#).unwrap();
        assert_eq!(q.request, Request::Slots);
        assert!(q.options.used);
        assert_eq!(q.options.offset, Some(5));
        assert_eq!(q.options.max_bytes, Some(8000));
        let q = parse_query(r#"{"cmd":"members"}"#).unwrap();
        assert_eq!(q, Query::from(Request::Members));
        let err = parse_query(r#"{"cmd":"slots","offset":-1}"#).unwrap_err();
        assert!(
            err["error"].as_str().unwrap().starts_with("bad fields"),
            "{err}"
        );
    }

    #[test]
    fn a_framed_request_gets_a_length_header_before_its_reply_line() {
        let q = parse_query(r#"{"cmd":"members","framed":true}"#).unwrap();
        assert!(q.options.framed);
        let framed = |t| Framing::asked_in(t).framed;
        assert!(framed(r#"{"cmd":"members","framed":true}"#));
        assert!(framed(r#"{"cmd":"nope","framed":true}"#));
        assert!(!framed(r#"{"cmd":"members"}"#));
        assert!(!framed("{nope"));
        let f = Framing::asked_in(r#"{"cmd":"members","framed":true,"chunk":4096}"#);
        assert_eq!(f.chunk, Some(4096));
        let f = Framing::asked_in(r#"{"cmd":"members","framed":true,"chunk":1}"#);
        assert_eq!(f.chunk, Some(MIN_CHUNK));
        let f = Framing::asked_in(r#"{"cmd":"members","chunk":4096}"#);
        assert_eq!(f, Framing::default(), "chunks only within a frame");
        let reply = serde_json::json!({"members":[]});
        assert_eq!(reply_bytes(&reply, true), b"#14\n{\"members\":[]}\n");
        assert_eq!(reply_bytes(&reply, false), b"{\"members\":[]}\n");
    }

    #[test]
    fn garbage_gets_an_invalid_json_error() {
        let err = parse_request("{nope").unwrap_err();
        assert!(err["error"].as_str().unwrap().starts_with("invalid JSON"));
    }

    #[test]
    fn an_unknown_command_is_named_in_the_error() {
        let err = parse_request(r#"{"cmd":"reboot"}"#).unwrap_err();
        assert!(err["error"].as_str().unwrap().contains("\"reboot\""));
    }

    #[test]
    fn a_request_without_cmd_says_so() {
        let err = parse_request(r#"{"x":1}"#).unwrap_err();
        assert_eq!(err["error"], "missing \"cmd\"");
    }

    #[test]
    fn root_group_resolves_to_gid_zero() {
        assert_eq!(resolve_group("root"), Some(0));
        assert_eq!(resolve_group("no-such-group-haserf"), None);
    }
}
