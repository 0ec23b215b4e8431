//! The tokio driver: one task owns the [`Core`] and the UDP socket; the TCP side
//! ([`tcp`]: the accept loop, one task per stream, dials) feeds it through a channel. It only
//! does IO and timers: every decision is the core's.

mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use self::tcp::{accept_loop, dial, Internal, SharedKeyring, TcpCounters};
use super::command::{Command, DriverLink, QueryResponses, Shared};
use super::config::GossipConfig;
use super::core::{Core, CoreEvent, Output};
use super::error::GossipError;
use super::event::{GossipEvent, IncomingQuery};
use super::model::QueryAnswer;

/// Binds UDP and TCP on `cfg.bind` and spawns the driver task.
pub(crate) async fn start(
    cfg: GossipConfig,
) -> Result<(DriverLink, mpsc::Receiver<GossipEvent>), GossipError> {
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
) -> Result<(DriverLink, mpsc::Receiver<GossipEvent>), GossipError> {
    let core = Core::new(cfg.clone(), Instant::now())?;
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
    let link = DriverLink {
        commands: cmd_tx.clone(),
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
    Ok((link, ev_rx))
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
            Command::ForceLeave { node, prune, done } => {
                self.core.force_leave(now, &node, prune);
                let _ = done.send(Ok(()));
            }
            Command::KeyQuery { op, payload, done } => {
                let r = self.core.key_query(now, &op, &payload);
                self.query_started(r, done);
            }
            Command::Query {
                name,
                payload,
                params,
                done,
            } => {
                let r = self.core.query(now, &name, &payload, params);
                self.query_started(r, done);
            }
            Command::Coordinate { node, done } => {
                let _ = done.send(self.core.coordinate(&node));
            }
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

    /// Hands a started query's ack and response channels to the caller.
    fn query_started(
        &mut self,
        r: Result<(u64, Instant), GossipError>,
        done: oneshot::Sender<Result<QueryResponses, GossipError>>,
    ) {
        match r {
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
