//! The tokio driver: one task owns the [`Core`] and the UDP socket; a TCP accept task and
//! one task per stream feed it through a channel. It only does IO and timers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::api::{
    Gossip, GossipConfig, GossipError, GossipEvent, IncomingQuery, QueryAnswer, QueryParams,
    QueryResponses, Shared,
};
use super::core::{Core, CoreEvent, Output};
use super::wire::{decode_stream, Keyring, Message};

/// Largest stream accepted (memberlist's `maxPushStateBytes`).
const MAX_STREAM: usize = 20 * 1024 * 1024;

/// Requests from [`Gossip`] handles.
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
        tags: std::collections::BTreeMap<String, String>,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
    Respond {
        token: u64,
        payload: Vec<u8>,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
}

enum Internal {
    Stream {
        from: SocketAddr,
        msg: Message,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    StreamError {
        kind: &'static str,
        text: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Dial {
        id: u64,
        result: Result<Option<Message>, (Option<&'static str>, String)>,
    },
}

#[derive(Default)]
struct TcpCounters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

type SharedKeyring = Arc<RwLock<Option<Keyring>>>;

pub(crate) async fn start(
    cfg: GossipConfig,
) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), GossipError> {
    let bind = cfg.bind;
    let udp = UdpSocket::bind(bind)
        .await
        .map_err(|source| GossipError::Bind { addr: bind, source })?;
    let tcp = TcpListener::bind(bind)
        .await
        .map_err(|source| GossipError::Bind { addr: bind, source })?;
    let mut cfg = cfg;
    // Port 0: use the kernel's choice for both (tests).
    if bind.port() == 0 {
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        drop(tcp);
        let b = SocketAddr::new(bind.ip(), port);
        let tcp2 = TcpListener::bind(b)
            .await
            .map_err(|source| GossipError::Bind { addr: b, source })?;
        cfg.bind = b;
        if let Some(a) = cfg.advertise.as_mut() {
            if a.port() == 0 {
                a.set_port(port);
            }
        }
        return start_with(cfg, udp, tcp2).await;
    }
    start_with(cfg, udp, tcp).await
}

async fn start_with(
    cfg: GossipConfig,
    udp: UdpSocket,
    tcp: TcpListener,
) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), GossipError> {
    let core = Core::new(cfg.clone(), Instant::now())?;
    let name: Arc<str> = Arc::from(cfg.node_name.as_str());
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (int_tx, int_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let keyring: SharedKeyring = Arc::new(RwLock::new(core.keyring().cloned()));
    let counters = Arc::new(TcpCounters::default());
    let tcp_timeout = cfg.timing.tcp_timeout;
    let accept = tokio::spawn(accept_loop(
        tcp,
        int_tx.clone(),
        keyring.clone(),
        counters.clone(),
        tcp_timeout,
    ));
    let handle = Gossip {
        name,
        tx: cmd_tx.clone(),
        shared: shared.clone(),
    };
    let driver = Driver {
        core,
        udp,
        cmd_tx,
        int_tx,
        events: ev_tx,
        shared,
        keyring,
        counters,
        joins: HashMap::new(),
        queries: HashMap::new(),
        leave: None,
    };
    tokio::spawn(async move {
        driver.run(cmd_rx, int_rx).await;
        accept.abort();
    });
    Ok((handle, ev_rx))
}

struct Driver {
    core: Core,
    udp: UdpSocket,
    cmd_tx: mpsc::UnboundedSender<Command>,
    int_tx: mpsc::UnboundedSender<Internal>,
    events: mpsc::Sender<GossipEvent>,
    shared: Arc<Mutex<Shared>>,
    keyring: SharedKeyring,
    counters: Arc<TcpCounters>,
    joins: HashMap<u64, oneshot::Sender<Result<usize, GossipError>>>,
    queries: HashMap<
        u64,
        (
            mpsc::UnboundedSender<String>,
            mpsc::UnboundedSender<QueryAnswer>,
        ),
    >,
    leave: Option<oneshot::Sender<Result<(), GossipError>>>,
}

impl Driver {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        mut int_rx: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut buf = vec![0u8; 65536];
        self.publish(true);
        loop {
            let deadline = self
                .core
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => {
                    match r {
                        Ok((n, from)) => self.core.handle_packet(Instant::now(), from, &buf[..n]),
                        Err(e) => tracing::debug!(error = %e, "udp receive failed"),
                    }
                }
                c = cmd_rx.recv() => {
                    match c {
                        Some(Command::Shutdown { done }) => {
                            let _ = done.send(());
                            break;
                        }
                        Some(c) => self.command(c),
                        None => break,
                    }
                }
                Some(i) = int_rx.recv() => self.internal(i),
                _ = sleep => self.core.tick(Instant::now()),
            }
            if self.flush().await {
                break;
            }
        }
        self.publish(true);
        if let Some(l) = self.leave.take() {
            let _ = l.send(Ok(()));
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Join { seeds, done } => {
                let id = self.core.join(now, &seeds);
                self.joins.insert(id, done);
            }
            Command::Leave { done } => {
                self.leave = Some(done);
                self.core.leave(now);
            }
            Command::Shutdown { .. } => {}
            Command::UserEvent {
                name,
                payload,
                coalesce,
                done,
            } => {
                let _ = done.send(self.core.user_event(now, &name, &payload, coalesce));
            }
            Command::Query {
                name,
                payload,
                params,
                done,
            } => match self.core.query(now, &name, &payload, params) {
                Ok((handle, deadline)) => {
                    let (atx, arx) = mpsc::unbounded_channel();
                    let (rtx, rrx) = mpsc::unbounded_channel();
                    self.queries.insert(handle, (atx, rtx));
                    let deadline = tokio::time::Instant::from_std(deadline);
                    let _ = done.send(Ok(QueryResponses {
                        acks: arx,
                        responses: rrx,
                        deadline,
                    }));
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            },
            Command::SetTags { tags, done } => {
                let _ = done.send(self.core.set_tags(now, tags));
            }
            Command::Respond {
                token,
                payload,
                done,
            } => {
                let _ = done.send(self.core.respond(now, token, &payload));
            }
        }
    }

    fn internal(&mut self, i: Internal) {
        let now = Instant::now();
        match i {
            Internal::Stream { from, msg, reply } => {
                let r = self.core.handle_stream(now, from, msg);
                let _ = reply.send(r);
            }
            Internal::StreamError { kind, text, reply } => {
                self.core.count_drop(kind);
                let _ = reply.send(Some(self.core.error_reply(&text)));
            }
            Internal::Dial { id, result } => {
                let result = result.map_err(|(kind, text)| {
                    if let Some(kind) = kind {
                        self.core.count_drop(kind);
                    }
                    text
                });
                self.core.dial_result(now, id, result)
            }
        }
    }

    /// Performs the core's outputs; returns true when the member must stop.
    async fn flush(&mut self) -> bool {
        let mut stop = false;
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Udp { to, data } => {
                    if let Err(e) = self.udp.send_to(&data, to).await {
                        tracing::debug!(%to, error = %e, "udp send failed");
                    }
                }
                Output::Dial {
                    id,
                    to,
                    data,
                    expect_reply,
                    timeout,
                } => {
                    let tx = self.int_tx.clone();
                    let keyring = self.keyring.clone();
                    let counters = self.counters.clone();
                    tokio::spawn(async move {
                        let result =
                            dial(to, data, expect_reply, timeout, &keyring, &counters).await;
                        let _ = tx.send(Internal::Dial { id, result });
                    });
                }
                Output::Event(e) => self.emit(e),
                Output::JoinDone {
                    id,
                    contacted,
                    errors,
                } => {
                    if let Some(done) = self.joins.remove(&id) {
                        let r = if contacted > 0 {
                            Ok(contacted)
                        } else {
                            Err(GossipError::JoinFailed(errors.join("; ")))
                        };
                        let _ = done.send(r);
                    }
                }
                Output::QueryAck { handle, from } => {
                    if let Some((a, _)) = self.queries.get(&handle) {
                        let _ = a.send(from);
                    }
                }
                Output::QueryResponse {
                    handle,
                    from,
                    payload,
                } => {
                    if let Some((_, r)) = self.queries.get(&handle) {
                        let _ = r.send(QueryAnswer { from, payload });
                    }
                }
                Output::QueryDone { handle } => {
                    self.queries.remove(&handle);
                }
                Output::LeaveDone => stop = true,
                Output::Fatal(msg) => {
                    tracing::error!(error = %msg, "gossip member stopping");
                    stop = true;
                }
            }
        }
        if self.core.take_keyring_changed() {
            if let Ok(mut k) = self.keyring.write() {
                *k = self.core.keyring().cloned();
            }
        }
        let dirty = self.core.take_members_dirty();
        self.publish(dirty);
        stop
    }

    fn emit(&mut self, e: CoreEvent) {
        let ev = match e {
            CoreEvent::MemberJoin(m) => GossipEvent::MemberJoin(m),
            CoreEvent::MemberUpdate(m) => GossipEvent::MemberUpdate(m),
            CoreEvent::MemberLeave(m) => GossipEvent::MemberLeave(m),
            CoreEvent::MemberFailed(m) => GossipEvent::MemberFailed(m),
            CoreEvent::MemberReap(m) => GossipEvent::MemberReap(m),
            CoreEvent::MemberSuspect(m) => GossipEvent::MemberSuspect(m),
            CoreEvent::MemberRefuted(m) => GossipEvent::MemberRefuted(m),
            CoreEvent::User(u) => GossipEvent::User(u),
            CoreEvent::Query {
                token,
                name,
                payload,
                source_node,
                ltime,
                deadline,
            } => GossipEvent::Query(IncomingQuery {
                name,
                payload,
                source_node,
                ltime,
                deadline: tokio::time::Instant::from_std(deadline),
                token,
                tx: Some(self.cmd_tx.clone()),
            }),
        };
        if self.events.try_send(ev).is_err() {
            self.core.count_drop("event_queue_full");
        }
    }

    fn publish(&mut self, members: bool) {
        let mut stats = self.core.stats();
        stats.tcp_bytes_in = self.counters.bytes_in.load(Ordering::Relaxed);
        stats.tcp_bytes_out = self.counters.bytes_out.load(Ordering::Relaxed);
        let list = if members {
            Some(self.core.members())
        } else {
            None
        };
        if let Ok(mut s) = self.shared.lock() {
            s.stats = stats;
            if let Some(l) = list {
                s.members = l;
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::UnboundedSender<Internal>,
    keyring: SharedKeyring,
    counters: Arc<TcpCounters>,
    timeout: Duration,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(128));
    loop {
        let (sock, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let tx = tx.clone();
        let keyring = keyring.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, serve_stream(sock, from, tx, keyring, counters))
                .await;
            drop(permit);
        });
    }
}

async fn read_message(
    sock: &mut TcpStream,
    keyring: &SharedKeyring,
    counters: &TcpCounters,
) -> Result<Message, (&'static str, String)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16384];
    loop {
        let n = sock
            .read(&mut chunk)
            .await
            .map_err(|e| ("stream_io", e.to_string()))?;
        if n == 0 {
            if buf.is_empty() {
                return Err(("stream_empty", "empty stream".into()));
            }
            // Last chance: the peer closed its side.
            let ring = keyring.read().ok().and_then(|k| k.clone());
            return match decode_stream(&buf, ring.as_ref()) {
                Ok(Some((m, _))) => Ok(m),
                Ok(None) => Err(("stream_truncated", "truncated stream".into())),
                Err(e) => Err((e.kind(), e.to_string())),
            };
        }
        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_STREAM {
            return Err(("stream_too_large", "stream larger than 20 MiB".into()));
        }
        let ring = keyring.read().ok().and_then(|k| k.clone());
        match decode_stream(&buf, ring.as_ref()) {
            Ok(Some((m, _))) => return Ok(m),
            Ok(None) => continue,
            Err(e) => return Err((e.kind(), e.to_string())),
        }
    }
}

async fn serve_stream(
    mut sock: TcpStream,
    from: SocketAddr,
    tx: mpsc::UnboundedSender<Internal>,
    keyring: SharedKeyring,
    counters: Arc<TcpCounters>,
) {
    let (rtx, rrx) = oneshot::channel();
    match read_message(&mut sock, &keyring, &counters).await {
        Ok(msg) => {
            let _ = tx.send(Internal::Stream {
                from,
                msg,
                reply: rtx,
            });
        }
        Err((kind, text)) => {
            tracing::debug!(%from, error = %text, "bad stream");
            let _ = tx.send(Internal::StreamError {
                kind,
                text,
                reply: rtx,
            });
        }
    }
    if let Ok(Some(reply)) = rrx.await {
        counters
            .bytes_out
            .fetch_add(reply.len() as u64, Ordering::Relaxed);
        let _ = sock.write_all(&reply).await;
        let _ = sock.flush().await;
    }
    let _ = sock.shutdown().await;
}

async fn dial(
    to: SocketAddr,
    data: Vec<u8>,
    expect_reply: bool,
    timeout: Duration,
    keyring: &SharedKeyring,
    counters: &TcpCounters,
) -> Result<Option<Message>, (Option<&'static str>, String)> {
    let fut = async {
        let mut sock = TcpStream::connect(to)
            .await
            .map_err(|e| (None, format!("dial {to}: {e}")))?;
        sock.write_all(&data)
            .await
            .map_err(|e| (None, format!("write {to}: {e}")))?;
        counters
            .bytes_out
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if !expect_reply {
            let _ = sock.shutdown().await;
            return Ok(None);
        }
        read_message(&mut sock, keyring, counters)
            .await
            .map(Some)
            .map_err(|(kind, t)| {
                let kind = (!matches!(kind, "stream_io" | "stream_empty")).then_some(kind);
                (kind, format!("read {to}: {t}"))
            })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err((None, format!("{to}: timed out"))),
    }
}
