//! Wires membership → slots → HAProxy; lifecycle and signals.
//!
//! The agent starts the gossip member, joins the seeds (retried with backoff until one
//! answers), serves the status socket (`members`, `slots`, `status`, `leave`, `metrics`),
//! answers the `haserf-status` query, and leaves gracefully on SIGINT/SIGTERM or
//! `haserf leave`. With `--haproxy-socket` it also runs the [`Manager`] (membership → slots);
//! with `--spoe-bind` the SPOE agent. Without `--haproxy-socket` it is a plain member
//! (backend-node mode). HAProxy keeps its slots when the agent stops: the load balancer is
//! never emptied by the agent's absence.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::{parse_gossip_addr, AgentConfig, LogFormat, Profile};
use crate::control::model::{MemberView, MembersReply, Query, Request, SlotView, SlotsReply};
use crate::control::page;
use crate::control::server::{error_value, Handler, SocketOptions, StatusServer};
use crate::gossip::{Gossip, GossipConfig, GossipEvent, Keyring, Timing};
use crate::handlers::EventHandlers;
use crate::manager::Manager;
use crate::metrics::MetricsRegistry;
use crate::rpc::{LogFanout, RpcAgent, RpcContext, StreamEvent};
use crate::snapshot::writer::SnapshotWriter;
use crate::spoe::{ClusterView, SpoeConfig};

mod collector;
mod notify;
mod scripts;

/// Without `--join`, the longest the agent waits for another member to appear before it
/// manages HAProxy with the membership it has (see `run_agent`).
pub const STANDALONE_GRACE: Duration = Duration::from_secs(35);

/// Name of the query the agent answers with its status.
pub const STATUS_QUERY: &str = "haserf-status";

/// Runs `haserf agent` with a validated configuration until it leaves (a signal or
/// `haserf leave`); returns the exit status (0, or 1 when the agent cannot start or stops
/// on an error).
pub fn run(cfg: AgentConfig) -> i32 {
    let logs = LogFanout::default();
    init_logging(&cfg.log_level, cfg.log_format, logs.clone());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("haserf agent: cannot start runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run_agent(cfg, logs)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "agent stopped");
            eprintln!("haserf agent: {e}");
            1
        }
    }
}

fn init_logging(level: &str, format: LogFormat, monitor: LogFanout) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let color = log_colors(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr);
    // `serf monitor` gets the same lines (the layer formats only while a monitor listens).
    let _ = match format {
        LogFormat::Json => {
            tracing::subscriber::set_global_default(builder.json().finish().with(monitor))
        }
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish().with(monitor)),
    };
}

/// Whether text logs carry ANSI colours: only on a terminal, and never when `NO_COLOR` is
/// set to a non-empty value (no-color.org). A file, a pipe or journald gets plain text.
pub fn log_colors(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The gossip configuration for an agent configuration.
pub fn gossip_config(cfg: &AgentConfig) -> Result<GossipConfig, String> {
    let mut g = GossipConfig::new(cfg.node_name.clone(), cfg.bind);
    g.advertise = cfg.advertise;
    if g.advertise.is_none() && cfg.bind.ip().is_unspecified() {
        g.advertise = Some(std::net::SocketAddr::new(
            local_ip().ok_or("cannot find a local IP address to advertise; set --advertise")?,
            cfg.bind.port(),
        ));
    }
    g.tags = cfg.tags.clone();
    if !cfg.keys.is_empty() {
        g.keyring = Some(Keyring::from_base64(&cfg.keys).map_err(|e| e.to_string())?);
    }
    g.keyring_file = cfg.keyring_file.clone();
    let serf = &cfg.serf;
    if let Some(v) = serf.reconnect_interval {
        g.reconnect_interval = v;
    }
    if let Some(v) = serf.reconnect_timeout {
        g.reconnect_timeout = v;
    }
    if let Some(v) = serf.tombstone_timeout {
        g.tombstone_timeout = v;
    }
    if let Some(v) = serf.broadcast_timeout {
        g.broadcast_timeout = v;
    }
    if let Some(v) = serf.query_response_size_limit {
        g.query_response_size_limit = v;
    }
    if let Some(v) = serf.query_size_limit {
        g.query_size_limit = v;
    }
    if let Some(v) = serf.user_event_size_limit {
        g.user_event_size_limit = v;
    }
    if let Some(v) = serf.enable_compression {
        g.compress = v;
    }
    g.disable_coordinates = cfg.disable_coordinates;
    g.timing = match cfg.profile {
        Profile::Lan => Timing::lan(),
        Profile::Local => Timing::local(),
        Profile::Wan => Timing {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            indirect_checks: 3,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            gossip_to_the_dead: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(60),
            retransmit_mult: 4,
            suspicion_mult: 6,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            tcp_timeout: Duration::from_secs(30),
        },
    };
    Ok(g)
}

fn local_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

struct AgentHandler {
    gossip: Gossip,
    manager: Option<Manager>,
    metrics: MetricsRegistry,
    leave_tx: mpsc::UnboundedSender<()>,
    left: Arc<tokio::sync::watch::Sender<Option<Value>>>,
}

impl Handler for AgentHandler {
    fn leave_outcome(&self) -> Option<tokio::sync::watch::Receiver<Option<Value>>> {
        Some(self.left.subscribe())
    }

    fn handle_query(&self, q: Query) -> Value {
        match (&q.request, &self.manager) {
            (Request::Members, _) => page::members_reply(&member_views(&self.gossip), &q.options),
            (Request::Slots, Some(m)) => page::slots_reply(&m.slots(), &q.options),
            (Request::Status, _) => page::bounded(self.handle(Request::Status), &q.options),
            _ => self.handle(q.request),
        }
    }

    fn handle(&self, request: Request) -> Value {
        match request {
            Request::Members => members_json(&self.gossip),
            Request::Status => {
                let mut status = status_json(&self.gossip);
                status["ready"] = json!(self.manager.as_ref().is_none_or(Manager::ready));
                status["mode"] = json!(if self.manager.is_some() {
                    "load-balancer"
                } else {
                    "member"
                });
                if let Some(m) = &self.manager {
                    status["haproxy"] = m.status_json();
                }
                status
            }
            Request::Leave => {
                let _ = self.leave_tx.send(());
                json!({"leaving": true})
            }
            Request::Metrics => json!({ "metrics": self.metrics.encode() }),
            Request::Slots => match &self.manager {
                Some(m) => {
                    serde_json::to_value(SlotsReply { slots: m.slots() }).unwrap_or(Value::Null)
                }
                None => {
                    error_value("slots: no HAProxy manager in this agent (no --haproxy-socket)")
                }
            },
        }
    }
}

/// What the SPOE agent sees: live membership and the slot table.
struct AgentView {
    gossip: Gossip,
    manager: Option<Manager>,
}

impl ClusterView for AgentView {
    fn members(&self) -> Vec<MemberView> {
        member_views(&self.gossip)
    }
    fn slots(&self) -> Vec<SlotView> {
        self.manager
            .as_ref()
            .map(Manager::slots)
            .unwrap_or_default()
    }
}

fn member_views(g: &Gossip) -> Vec<MemberView> {
    g.members()
        .iter()
        .map(crate::manager::member_view)
        .collect()
}

/// `{"members":[…]}` for the status socket.
pub fn members_json(g: &Gossip) -> Value {
    let reply = MembersReply {
        members: member_views(g),
    };
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

/// The `status` reply: node, cluster counts, gossip counters (drops by reason).
pub fn status_json(g: &Gossip) -> Value {
    let s = g.stats();
    json!({
        "node": g.local_name(),
        "members": s.members,
        "gossip": s,
    })
}

async fn run_agent(cfg: AgentConfig, logs: LogFanout) -> Result<(), String> {
    for w in &cfg.serf.warnings {
        tracing::warn!("{w}");
    }
    if let Some(path) = &cfg.serf.tags_file {
        // serf keeps the tags in effect in the file (0600)
        let text = serde_json::to_string_pretty(&cfg.tags).map_err(|e| e.to_string())?;
        std::fs::write(path, text)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            })
            .map_err(|e| format!("tags_file {}: {e}", path.display()))?;
    }
    // The status socket first: a second agent on the same socket fails before it gossips.
    let server = StatusServer::bind(&SocketOptions {
        path: cfg.status_socket.clone(),
        mode: cfg.status_socket_mode,
        group: cfg.status_socket_group.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let spoe_listener = match cfg.spoe_bind {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--spoe-bind {addr}: {e}"))?,
        ),
        None => None,
    };
    let metrics_listener = match cfg.metrics_bind {
        Some(addr) => Some(crate::metrics::http::bind(addr).await?),
        None => None,
    };
    let rpc_listener = match cfg.rpc_addr {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            // Serf's default address may be taken by a serf agent on the same host.
            Err(e) if cfg.rpc_addr_default => {
                tracing::warn!(%addr, error = %e, "Serf RPC off: the default address is not available; set --rpc-addr");
                None
            }
            Err(e) => return Err(format!("--rpc-addr {addr}: {e}")),
        },
        None => None,
    };
    let mut gcfg = gossip_config(&cfg)?;
    let local_addr = gcfg.advertise_addr().ip();
    let opened = match &cfg.serf.snapshot_path {
        Some(path) => Some(
            crate::snapshot::writer::open(path, cfg.serf.rejoin_after_leave)
                .map_err(|e| format!("snapshot_path {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut previous = Vec::new();
    if let Some(o) = &opened {
        let p = &o.previous;
        for line in &p.unrecognized {
            tracing::warn!(%line, "unrecognized snapshot line");
        }
        gcfg.restored_clocks = Some((p.clock, p.event_clock, p.query_clock));
        previous = p
            .alive
            .iter()
            .filter(|(name, _)| **name != cfg.node_name)
            .map(|(name, addr)| (name.clone(), addr.clone()))
            .collect();
        tracing::info!(
            members = previous.len(),
            clock = p.clock,
            event_clock = p.event_clock,
            query_clock = p.query_clock,
            "snapshot replayed"
        );
    }
    let (gossip, mut events) = Gossip::start(gcfg).await.map_err(|e| e.to_string())?;
    let snapshot = opened.map(|o| {
        let g = gossip.clone();
        SnapshotWriter::start(o, move || g.stats().member_time)
    });
    if !previous.is_empty() {
        tokio::spawn(rejoin(gossip.clone(), previous));
    }
    // The keys are known from the configuration; the gossip stats snapshot may not have
    // caught up with the keyring yet.
    let encrypted = !cfg.keys.is_empty();
    tracing::info!(node = %gossip.local_name(), bind = %cfg.bind, encrypted, "agent started");
    let metrics = MetricsRegistry::new();
    let handlers = scripts::start(&cfg, &gossip, local_addr);
    let manager = Manager::start(&cfg, gossip.clone(), &metrics);
    match &manager {
        Some(m) => {
            let m = m.clone();
            let socket = cfg.haproxy_socket.clone().unwrap_or_default();
            notify::status(&format!("waiting for the cluster and HAProxy at {socket}"));
            tokio::spawn(async move {
                // false when the manager stopped first: a shutdown is not "ready"
                if m.wait_ready().await {
                    tracing::info!(haproxy_socket = %socket, "ready: HAProxy read and first plan applied");
                    notify::ready(&format!("ready: managing HAProxy at {socket}"));
                }
            });
        }
        None => {
            tracing::info!("ready (member mode: no --haproxy-socket)");
            notify::ready("ready (member mode)");
        }
    }
    let spoe_metrics = spoe_listener.zip(cfg.spoe_bind).map(|(listener, addr)| {
        let scfg = SpoeConfig::new(addr);
        let metrics = scfg.metrics.clone();
        let view: Arc<dyn ClusterView> = Arc::new(crate::spoe::CachedView::new(
            AgentView {
                gossip: gossip.clone(),
                manager: manager.clone(),
            },
            Duration::from_millis(100),
        ));
        tokio::spawn(async move {
            if let Err(e) =
                crate::spoe::serve_listener(listener, scfg, view, std::future::pending()).await
            {
                tracing::error!(error = %e, "SPOE agent stopped");
            }
        });
        metrics
    });
    metrics.register_collector(Box::new(collector::AgentCollector {
        gossip: gossip.clone(),
        manager: manager.clone(),
        spoe: spoe_metrics,
        encrypted,
        handlers: handlers.as_ref().map(|h| h.counters()),
    }));
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(crate::metrics::http::serve(
            listener,
            metrics.clone(),
            crate::metrics::http::HttpLimits::default(),
            std::future::pending(),
        ));
    }
    let (leave_tx, mut leave_rx) = mpsc::unbounded_channel();
    let leave_tx_rpc = leave_tx.clone();
    let left = Arc::new(tokio::sync::watch::channel(None).0);
    let handler: Arc<dyn Handler> = Arc::new(AgentHandler {
        gossip: gossip.clone(),
        manager: manager.clone(),
        metrics,
        leave_tx,
        left: left.clone(),
    });
    let rpc = Arc::new(RpcContext::new(
        gossip.clone(),
        Arc::new(RpcLeave {
            leave_tx: leave_tx_rpc,
            left: left.subscribe(),
        }),
        cfg.rpc_auth.clone(),
        logs,
    ));
    if let Some(listener) = rpc_listener {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, auth = cfg.rpc_auth.is_some(), "serving Serf RPC");
        tokio::spawn(crate::rpc::serve(
            listener,
            rpc.clone(),
            crate::rpc::RpcLimits::default(),
            std::future::pending(),
        ));
    }
    let server = Arc::new(server);
    let srv = server.clone();
    let serve = tokio::spawn(async move { srv.serve(handler).await });

    let (join_failed_tx, mut join_failed_rx) = mpsc::unbounded_channel::<()>();
    if cfg.join.is_empty() {
        // No seeds: this agent is a seed itself. After a restart at the same address the
        // cluster does not even notice (the new process answers the probes), so nobody
        // pushes the membership to it until a periodic push-pull happens to pick it. Until
        // another member is known, the filled slots in HAProxy say where the members are:
        // try to join them on this agent's gossip port. Touch HAProxy only once another
        // member is known, or after STANDALONE_GRACE, or every filled slot would look
        // ownerless and be drained.
        if let Some(m) = &manager {
            let (m, g) = (m.clone(), gossip.clone());
            let port = cfg.bind.port();
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                let mut tried = std::collections::BTreeSet::new();
                while g.members().len() < 2 && start.elapsed() < STANDALONE_GRACE {
                    let seeds: Vec<std::net::SocketAddr> = m
                        .slots()
                        .iter()
                        .filter(|s| s.state != crate::control::model::SlotState::Maint)
                        .filter_map(|s| s.addr.as_deref()?.parse::<std::net::SocketAddr>().ok())
                        .map(|a| std::net::SocketAddr::new(a.ip(), port))
                        .filter(|a| tried.insert(*a))
                        .collect();
                    if !seeds.is_empty() {
                        match g.join(&seeds).await {
                            Ok(n) => tracing::info!(
                                contacted = n,
                                "rejoined through the members HAProxy serves"
                            ),
                            Err(e) => {
                                tracing::debug!(error = %e, "no member answered at the served addresses")
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                m.membership_synced();
            });
        }
    } else {
        let seeds = cfg.join.clone();
        let g = gossip.clone();
        let m = manager.clone();
        let retry = JoinRetry {
            interval: cfg.serf.retry_interval,
            max_attempts: cfg.serf.retry_max_attempts,
        };
        let gave_up = join_failed_tx.clone();
        tokio::spawn(async move {
            if join_with_backoff(g, seeds, retry).await {
                if let Some(m) = m {
                    m.membership_synced();
                }
            } else {
                let _ = gave_up.send(());
            }
        });
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    // serf's skip_leave_on_interrupt / leave_on_terminate; haserf leaves on SIGTERM unless
    // leave_on_terminate is false (systemd stops services with SIGTERM)
    let mut leave = true;
    let mut join_failed = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => {
                    if let Some(w) = &snapshot {
                        record(w, &ev);
                    }
                    on_event(&gossip, manager.as_ref(), handlers.as_ref(), &rpc, ev)
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                leave = !cfg.serf.skip_leave_on_interrupt;
                tracing::info!(leave, "interrupt: {}", if leave { "leaving gracefully" } else { "stopping without leaving (skip_leave_on_interrupt)" });
                break;
            }
            _ = sigterm.recv() => {
                leave = cfg.serf.leave_on_terminate.unwrap_or(true);
                tracing::info!(leave, "terminate: {}", if leave { "leaving gracefully" } else { "stopping without leaving (leave_on_terminate is false)" });
                break;
            }
            Some(()) = join_failed_rx.recv() => {
                tracing::error!(attempts = cfg.serf.retry_max_attempts, "could not join the cluster: giving up (retry_max_attempts)");
                leave = false;
                join_failed = true;
                break;
            }
            _ = leave_rx.recv() => {
                tracing::info!("leave requested on the status socket");
                break;
            }
        }
    }
    // HAProxy keeps its slots as they are: stop managing first, then leave the cluster.
    notify::stopping();
    if let Some(m) = &manager {
        m.shutdown().await;
    }
    if !leave {
        gossip.shutdown().await;
        serve.abort();
        drop(server);
        return if join_failed {
            Err("could not join the cluster (retry_max_attempts reached)".into())
        } else {
            Ok(())
        };
    }
    if let Some(w) = &snapshot {
        w.leave().await;
    }
    let r = gossip.leave().await;
    let outcome = match &r {
        Ok(()) => {
            tracing::info!("left the cluster gracefully");
            json!({"left": true, "node": gossip.local_name()})
        }
        Err(e) => json!({"left": false, "error": e.to_string()}),
    };
    // `haserf leave` clients wait on their connection for this line: give them a moment to
    // write it before the process exits.
    left.send_replace(Some(outcome));
    let _ = tokio::time::timeout(Duration::from_secs(1), left.closed()).await;
    serve.abort();
    drop(server);
    r.map_err(|e| e.to_string())
}

/// What the snapshot records of an event (serf's snapshotter sees the same stream).
fn record(w: &SnapshotWriter, ev: &GossipEvent) {
    use crate::snapshot::writer::Record;
    match ev {
        GossipEvent::MemberJoin(m) => w.record(Record::Alive {
            name: m.name.clone(),
            addr: std::net::SocketAddr::new(m.addr, m.port),
        }),
        GossipEvent::MemberLeave(m) | GossipEvent::MemberFailed(m) => {
            w.record(Record::NotAlive(m.name.clone()))
        }
        GossipEvent::User(u) => w.record(Record::UserEvent(u.ltime)),
        GossipEvent::Query(q) => w.record(Record::Query(q.ltime)),
        _ => {}
    }
}

/// Serf's `handleRejoin`: tries the members the snapshot knew, in random order, one at a
/// time, until one answers.
async fn rejoin(g: Gossip, mut previous: Vec<(String, String)>) {
    use rand::seq::SliceRandom as _;
    previous.shuffle(&mut rand::thread_rng());
    for (name, addr) in previous {
        let Ok(sa) = parse_gossip_addr("snapshot", &addr) else {
            tracing::warn!(%name, %addr, "snapshot member with a bad address");
            continue;
        };
        tracing::info!(%name, %addr, "attempting re-join to previously known node");
        match g.join(&[sa]).await {
            Ok(_) => {
                tracing::info!(%name, %addr, "re-joined to previously known node");
                return;
            }
            Err(crate::gossip::GossipError::Stopped) => return,
            Err(e) => tracing::debug!(%name, error = %e, "re-join failed"),
        }
    }
    tracing::warn!("failed to re-join any previously known node");
}

/// How joins are retried: serf's `retry_interval` (fixed) and `retry_max_attempts`.
#[derive(Debug, Clone, Copy)]
struct JoinRetry {
    /// Fixed interval; `None`: haserf's backoff, 1 s doubling to 30 s.
    interval: Option<Duration>,
    /// Attempts before giving up; 0: forever.
    max_attempts: u32,
}

/// Joins through `seeds`, retrying; true once joined, false if the member stopped first or
/// the attempts ran out.
async fn join_with_backoff(g: Gossip, seeds: Vec<String>, retry: JoinRetry) -> bool {
    let mut delay = retry.interval.unwrap_or(Duration::from_secs(1));
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let addrs: Vec<_> = seeds
            .iter()
            .filter_map(|s| parse_gossip_addr("--join", s).ok())
            .collect();
        match g.join(&addrs).await {
            Ok(n) => {
                tracing::info!(contacted = n, "joined the cluster");
                return true;
            }
            Err(crate::gossip::GossipError::Stopped) => return false,
            Err(e) => {
                if retry.max_attempts > 0 && attempts >= retry.max_attempts {
                    tracing::warn!(error = %e, attempts, "join failed");
                    return false;
                }
                tracing::warn!(error = %e, retry_in = ?delay, "join failed");
                tokio::time::sleep(delay).await;
                if retry.interval.is_none() {
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

fn on_event(
    g: &Gossip,
    manager: Option<&Manager>,
    handlers: Option<&EventHandlers>,
    rpc: &RpcContext,
    ev: GossipEvent,
) {
    if let (Some(h), Some(e)) = (handlers, scripts::handler_event(&ev)) {
        h.dispatch(e);
    }
    match ev {
        GossipEvent::Query(mut q) => {
            if q.name == STATUS_QUERY {
                let payload = status_query_answer(g, manager);
                if let Err(e) = q.respond(payload.as_bytes()) {
                    tracing::warn!(error = %e, "cannot answer {STATUS_QUERY}");
                }
            } else if let Some(h) = handlers.filter(|h| h.takes_query(&q.name)) {
                h.dispatch(scripts::query_event(q));
            } else if rpc.has_streams() {
                // Serf RPC `stream` subscribers may answer it with `respond`.
                let (name, payload, ltime) = (q.name.clone(), q.payload.clone(), q.ltime);
                if let Some(id) = rpc.queries.insert(q) {
                    rpc.publish(StreamEvent::Query {
                        id,
                        ltime,
                        name,
                        payload,
                    });
                }
            } else {
                tracing::debug!(query = %q.name, from = %q.source_node, "query (not answered)");
            }
        }
        GossipEvent::User(u) => {
            tracing::info!(name = %u.name, ltime = u.ltime, "user event");
            rpc.publish(StreamEvent::User {
                ltime: u.ltime,
                name: u.name,
                payload: u.payload,
                coalesce: u.coalesce,
            });
        }
        member_event => {
            tracing::debug!(event = ?member_event, "member event");
            if let Some((event, m)) = serf_member_event(&member_event) {
                rpc.publish(StreamEvent::Member {
                    event,
                    members: vec![crate::rpc::handler::rpc_member(m)],
                });
            }
            if let Some(m) = manager {
                m.membership_changed();
            }
        }
    }
}

/// Serf's name for a member event (`member-join`, …); suspicion has none.
fn serf_member_event(ev: &GossipEvent) -> Option<(&'static str, &crate::gossip::Member)> {
    Some(match ev {
        GossipEvent::MemberJoin(m) => ("member-join", m),
        GossipEvent::MemberLeave(m) => ("member-leave", m),
        GossipEvent::MemberFailed(m) => ("member-failed", m),
        GossipEvent::MemberUpdate(m) => ("member-update", m),
        GossipEvent::MemberReap(m) => ("member-reap", m),
        _ => return None,
    })
}

/// The agent side of Serf RPC's `leave`: the same graceful leave as `haserf leave`.
struct RpcLeave {
    leave_tx: mpsc::UnboundedSender<()>,
    left: tokio::sync::watch::Receiver<Option<Value>>,
}

impl RpcAgent for RpcLeave {
    fn leave(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        let mut left = self.left.clone();
        let sent = self.leave_tx.send(());
        Box::pin(async move {
            sent.map_err(|_| "the agent is stopping".to_string())?;
            let v = left
                .wait_for(Option::is_some)
                .await
                .map_err(|_| "the agent stopped".to_string())?
                .clone();
            match v {
                Some(v) if v["left"] == json!(true) => Ok(()),
                Some(v) => Err(v["error"].as_str().unwrap_or("leave failed").to_string()),
                None => Err("leave failed".into()),
            }
        })
    }
}

/// Serf's default limit on a query response.
pub const QUERY_RESPONSE_LIMIT: usize = 1024;

/// The `haserf-status` answer: this node's view in one compact JSON line that fits Serf's
/// 1 KiB response limit (slots beyond it are counted, not listed).
pub fn status_query_answer(g: &Gossip, manager: Option<&Manager>) -> String {
    let members = g.members();
    let alive = members
        .iter()
        .filter(|m| m.status == crate::control::model::MemberStatus::Alive)
        .count();
    let mut answer = json!({
        "node": g.local_name(),
        "members": members.len(),
        "alive": alive,
    });
    let Some(m) = manager else {
        answer["mode"] = json!("member");
        return answer.to_string();
    };
    answer["ready"] = json!(m.ready());
    let slots = m.slots();
    let used: Vec<&SlotView> = slots.iter().filter(|s| s.member.is_some()).collect();
    answer["slots_used"] = json!(used.len());
    answer["slots_free"] = json!(slots.len() - used.len());
    let mut table = serde_json::Map::new();
    let mut omitted = 0;
    for s in used {
        let key = format!("{}/{}", s.backend, s.slot);
        let state = serde_json::to_value(s.state).unwrap_or(Value::Null);
        let entry = json!([s.member, state]);
        let projected = answer.to_string().len()
            + Value::Object(table.clone()).to_string().len()
            + key.len()
            + entry.to_string().len()
            + 40;
        if projected > QUERY_RESPONSE_LIMIT {
            omitted += 1;
        } else {
            table.insert(key, entry);
        }
    }
    answer["slots"] = Value::Object(table);
    if omitted > 0 {
        answer["slots_omitted"] = json!(omitted);
    }
    answer.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(log_colors(true, None));
        assert!(log_colors(true, empty), "NO_COLOR= (empty) does not count");
        assert!(!log_colors(true, set));
        assert!(!log_colors(false, None), "a file, a pipe, journald");
        assert!(!log_colors(false, set));
    }
}
