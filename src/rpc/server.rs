//! The RPC listener: bounded connections (globally and per client IP), one task per
//! connection reading requests with [`decode_request`] (size-capped before buffering, the
//! handshake due within [`RpcLimits::handshake_timeout`]) and one writer task per connection
//! (bounded queue, write deadline). `stream`, `monitor` and `query` results are forwarded
//! by tasks that end with the connection or with `stop`; a subscriber too slow to keep up
//! loses records (serf drops them too) rather than holding the agent.
//!
//! Serf's connection rules: the first command must be `handshake` (else `Handshake
//! required` and the connection closes); with `rpc_auth` set every command but `handshake`
//! and `auth` answers `Authentication required` until `auth` succeeds; a wrong token
//! (also when no token is configured, as serf) answers `Invalid authentication token` and,
//! unlike serf, closes the connection; an unknown command
//! answers `Unsupported command` and closes. Bytes that are no request get a response
//! header with sequence 0 and an error saying why, then the connection closes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::task::AbortHandle;

use super::codec::{self, decode_request, errors, Command, RpcDecodeError, MAX_REQUEST_BYTES};
use super::events::{parse_filter, selects};
use super::handler::{self, Reply};
use super::logs::parse_level;
use super::RpcContext;

/// Limits of the RPC listener.
#[derive(Debug, Clone)]
pub struct RpcLimits {
    /// Connections open at once (the next ones are closed at accept).
    pub max_connections: usize,
    /// Connections open at once from one client IP.
    pub max_per_ip: usize,
    /// Time from accept to a complete `handshake` request.
    pub handshake_timeout: Duration,
    /// Longest a write to a client may block before the connection is dropped.
    pub write_timeout: Duration,
    /// Responses and records queued per connection.
    pub out_queue: usize,
}

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits {
            max_connections: 64,
            max_per_ip: 16,
            handshake_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            out_queue: 256,
        }
    }
}

/// Serves RPC clients on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<RpcContext>,
    limits: RpcLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "rpc: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "rpc: too many connections; closing");
            continue;
        };
        {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(peer.ip()).or_insert(0);
            if *n >= limits.max_per_ip {
                tracing::warn!(%peer, limit = limits.max_per_ip, "rpc: too many connections from this address; closing");
                continue;
            }
            *n += 1;
        }
        let (ctx, limits, per_ip) = (ctx.clone(), limits.clone(), per_ip.clone());
        tokio::spawn(async move {
            tracing::debug!(%peer, "rpc: accepted client");
            connection(stream, peer, ctx, &limits).await;
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&peer.ip());
                }
            }
            drop(permit);
        });
    }
}

/// Forwards what `rx` publishes to the connection as records of request `seq`: `encode`
/// writes a record body and says whether the item was selected. A full queue loses the
/// record (the subscriber is too slow), a closed connection ends the task.
fn forward<T: Clone + Send + 'static>(
    mut rx: broadcast::Receiver<T>,
    out: mpsc::Sender<Vec<u8>>,
    seq: u64,
    encode: impl Fn(&T, &mut Vec<u8>) -> bool + Send + 'static,
) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(item) => {
                    let mut b = Vec::new();
                    codec::encode_header(&mut b, seq, "");
                    if encode(&item, &mut b)
                        && matches!(out.try_send(b), Err(mpsc::error::TrySendError::Closed(_)))
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .abort_handle()
}

/// What to do with the connection after a request.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Conn {
    ctx: Arc<RpcContext>,
    out: mpsc::Sender<Vec<u8>>,
    handshake: bool,
    authed: bool,
    monitor: Option<(u64, AbortHandle)>,
    tasks: HashMap<u64, AbortHandle>,
}

fn frame(seq: u64, reply: &Reply) -> Vec<u8> {
    let mut b = Vec::new();
    codec::encode_header(&mut b, seq, &reply.error);
    if let Some(body) = &reply.body {
        b.extend_from_slice(body);
    }
    b
}

async fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<RpcContext>, limits: &RpcLimits) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits.out_queue);
    let write_timeout = limits.write_timeout;
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            match tokio::time::timeout(write_timeout, wr.write_all(&b)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut conn = Conn {
        authed: ctx.auth.is_none(),
        ctx,
        out: tx,
        handshake: false,
        monitor: None,
        tasks: HashMap::new(),
    };
    let handshake_deadline = tokio::time::Instant::now() + limits.handshake_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 8192];
    'conn: loop {
        // Every complete request in the buffer first.
        loop {
            match decode_request(&buf) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    if conn.handle(req.seq, req.command).await == Flow::Close {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(RpcDecodeError::UnknownCommand { seq, command }) => {
                    tracing::warn!(%peer, %command, "rpc: command not recognized; closing");
                    conn.send(seq, Reply::err(errors::UNSUPPORTED_COMMAND))
                        .await;
                    break 'conn;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "rpc: bad request; closing");
                    conn.send(0, Reply::err(e)).await;
                    break 'conn;
                }
            }
        }
        // Never more than one request's worth buffered.
        let room = (MAX_REQUEST_BYTES + 1)
            .saturating_sub(buf.len())
            .min(chunk.len());
        let read = rd.read(&mut chunk[..room.max(1)]);
        let n = if conn.handshake {
            read.await
        } else {
            match tokio::time::timeout_at(handshake_deadline, read).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(%peer, "rpc: no handshake within {:?}; closing", limits.handshake_timeout);
                    break;
                }
            }
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    for (_, t) in conn.tasks.drain() {
        t.abort();
    }
    if let Some((_, t)) = conn.monitor.take() {
        t.abort();
    }
    drop(conn);
    let _ = tokio::time::timeout(write_timeout, writer).await;
}

impl Conn {
    async fn send(&self, seq: u64, reply: Reply) {
        let _ = self.out.send(frame(seq, &reply)).await;
    }

    async fn handle(&mut self, seq: u64, command: Command) -> Flow {
        if !self.handshake && !matches!(command, Command::Handshake { .. }) {
            self.send(seq, Reply::err(errors::HANDSHAKE_REQUIRED)).await;
            return Flow::Close;
        }
        if !self.authed && !matches!(command, Command::Handshake { .. } | Command::Auth { .. }) {
            self.send(seq, Reply::err(errors::AUTH_REQUIRED)).await;
            return Flow::Continue;
        }
        let ctx = self.ctx.clone();
        let reply = match command {
            Command::Handshake { version } => {
                if version != i64::from(codec::IPC_VERSION) {
                    Reply::err(errors::UNSUPPORTED_IPC_VERSION)
                } else if self.handshake {
                    Reply::err(errors::DUPLICATE_HANDSHAKE)
                } else {
                    self.handshake = true;
                    Reply::ok()
                }
            }
            Command::Auth { key } => {
                // As serf: a token when none is configured is wrong too.
                if ctx.auth.as_deref().unwrap_or("") == key {
                    self.authed = true;
                    Reply::ok()
                } else {
                    self.send(seq, Reply::err(errors::INVALID_AUTH_TOKEN)).await;
                    return Flow::Close;
                }
            }
            Command::Members => handler::members(&ctx),
            Command::MembersFiltered { tags, status, name } => {
                handler::members_filtered(&ctx, &tags, &status, &name)
            }
            Command::Join { existing, .. } => handler::join(&ctx, &existing).await,
            Command::Event {
                name,
                payload,
                coalesce,
            } => handler::event(&ctx, &name, &payload, coalesce).await,
            Command::ForceLeave { node, prune } => handler::force_leave(&ctx, &node, prune).await,
            Command::Tags { set, delete } => handler::tags(&ctx, &set, &delete).await,
            Command::Stats => handler::stats(&ctx),
            Command::InstallKey { key } => handler::keys(&ctx, "install-key", &key).await,
            Command::UseKey { key } => handler::keys(&ctx, "use-key", &key).await,
            Command::RemoveKey { key } => handler::keys(&ctx, "remove-key", &key).await,
            Command::ListKeys => handler::keys(&ctx, "list-keys", "").await,
            Command::GetCoordinate { node } => handler::get_coordinate(&ctx, &node).await,
            Command::Respond { id, payload } => match ctx.queries.respond(id, &payload) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::err(e),
            },
            Command::Leave => {
                let r = handler::leave(&ctx).await;
                self.send(seq, r).await;
                return Flow::Close;
            }
            Command::Stop { stop } => {
                if let Some(t) = self.tasks.remove(&stop) {
                    t.abort();
                }
                if self.monitor.as_ref().is_some_and(|(s, _)| *s == stop) {
                    if let Some((_, t)) = self.monitor.take() {
                        t.abort();
                    }
                }
                Reply::ok()
            }
            Command::Stream { filter } => return self.stream(seq, &filter).await,
            Command::Monitor { level } => return self.monitor(seq, &level).await,
            Command::Query {
                filter_nodes,
                filter_tags,
                request_ack,
                relay_factor,
                timeout,
                name,
                payload,
            } => {
                let params = crate::gossip::QueryParams {
                    filter_nodes,
                    filter_tags,
                    request_ack,
                    relay_factor,
                    timeout: (!timeout.is_zero()).then_some(timeout),
                };
                return self.query(seq, &name, &payload, params).await;
            }
        };
        self.send(seq, reply).await;
        Flow::Continue
    }

    async fn stream(&mut self, seq: u64, filter: &str) -> Flow {
        let Some(filters) = parse_filter(filter) else {
            self.send(seq, Reply::err(errors::INVALID_FILTER)).await;
            return Flow::Continue;
        };
        if self.tasks.contains_key(&seq) {
            self.send(seq, Reply::err(errors::STREAM_EXISTS)).await;
            return Flow::Continue;
        }
        let rx = self.ctx.events.subscribe();
        self.send(seq, Reply::ok()).await;
        let task = forward(rx, self.out.clone(), seq, move |e, b| {
            selects(&filters, e).then(|| e.encode(b)).is_some()
        });
        self.keep(seq, task);
        Flow::Continue
    }

    async fn monitor(&mut self, seq: u64, level: &str) -> Flow {
        let Some(min) = parse_level(level) else {
            let msg = format!("Unknown log level: {}", level.to_ascii_uppercase());
            self.send(seq, Reply::err(msg)).await;
            return Flow::Continue;
        };
        if self.monitor.is_some() {
            self.send(seq, Reply::err(errors::MONITOR_EXISTS)).await;
            return Flow::Continue;
        }
        let rx = self.ctx.logs.subscribe();
        self.send(seq, Reply::ok()).await;
        let task = forward(rx, self.out.clone(), seq, move |l, b| {
            (l.level <= min)
                .then(|| codec::encode_log(b, &l.line))
                .is_some()
        });
        self.monitor = Some((seq, task));
        Flow::Continue
    }

    async fn query(
        &mut self,
        seq: u64,
        name: &str,
        payload: &[u8],
        params: crate::gossip::QueryParams,
    ) -> Flow {
        let mut answers = match self.ctx.gossip.query(name, payload, params).await {
            Ok(a) => a,
            Err(e) => {
                self.send(seq, Reply::err(e)).await;
                return Flow::Continue;
            }
        };
        self.send(seq, Reply::ok()).await;
        let out = self.out.clone();
        let task = tokio::spawn(async move {
            let record = |kind: &str, from: &str, payload: &[u8]| {
                let mut b = Vec::new();
                codec::encode_header(&mut b, seq, "");
                codec::encode_query_record(&mut b, kind, from, payload);
                b
            };
            let (mut acks_open, mut resps_open) = (true, true);
            let deadline = answers.deadline;
            while acks_open || resps_open {
                let b = tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    a = answers.acks.recv(), if acks_open => match a {
                        Some(from) => record("ack", &from, &[]),
                        None => { acks_open = false; continue }
                    },
                    r = answers.responses.recv(), if resps_open => match r {
                        Some(r) => record("response", &r.from, &r.payload),
                        None => { resps_open = false; continue }
                    },
                };
                if out.send(b).await.is_err() {
                    return;
                }
            }
            let _ = out.send(record("done", "", &[])).await;
        });
        self.keep(seq, task.abort_handle());
        Flow::Continue
    }

    /// Remembers a forwarding task (to stop it), forgetting finished ones.
    fn keep(&mut self, seq: u64, task: AbortHandle) {
        self.tasks.retain(|_, t| !t.is_finished());
        self.tasks.insert(seq, task);
    }
}
