//! Wires membership → slots → HAProxy; lifecycle and signals.
//!
//! For now the agent is a plain cluster member: it starts the gossip member, joins the
//! seeds (retried with backoff until one answers), serves the status socket (`members`,
//! `status`, `leave`, `metrics`), answers the `haserf-status` query, and leaves gracefully
//! on SIGINT/SIGTERM or `haserf leave`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::cli::{AgentArgs, LogFormat};
use crate::config::{parse_gossip_addr, AgentConfig, Profile};
use crate::control::model::{MemberView, MembersReply, Request};
use crate::control::server::{error_value, Handler, SocketOptions, StatusServer};
use crate::gossip::{Gossip, GossipConfig, GossipEvent, Keyring, Timing};

/// Name of the query the agent answers with its status.
pub const STATUS_QUERY: &str = "haserf-status";

/// Runs `haserf agent`; returns the exit status.
pub fn run(args: &AgentArgs) -> i32 {
    let cfg = match AgentConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("haserf agent: {e}");
            return 2;
        }
    };
    init_logging(&cfg.log_level, cfg.log_format);
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
    match rt.block_on(run_agent(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "agent stopped");
            eprintln!("haserf agent: {e}");
            1
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
    leave_tx: mpsc::UnboundedSender<()>,
}

impl Handler for AgentHandler {
    fn handle(&self, request: Request) -> Value {
        match request {
            Request::Members => members_json(&self.gossip),
            Request::Status => status_json(&self.gossip),
            Request::Leave => {
                let _ = self.leave_tx.send(());
                json!({"leaving": true})
            }
            Request::Metrics => {
                let s = self.gossip.stats();
                let mut text = String::new();
                text.push_str(&format!(
                    "haserf_gossip_udp_packets_in {}\n",
                    s.udp_packets_in
                ));
                text.push_str(&format!(
                    "haserf_gossip_udp_packets_out {}\n",
                    s.udp_packets_out
                ));
                for (k, v) in &s.dropped {
                    text.push_str(&format!("haserf_gossip_dropped{{reason=\"{k}\"}} {v}\n"));
                }
                text.push_str(&format!("haserf_gossip_health_score {}\n", s.health_score));
                json!({ "metrics": text })
            }
            Request::Slots => {
                error_value("slots: no HAProxy manager in this agent (no --haproxy-socket)")
            }
        }
    }
}

/// `{"members":[…]}` for the status socket.
pub fn members_json(g: &Gossip) -> Value {
    let reply = MembersReply {
        members: g
            .members()
            .into_iter()
            .map(|m| MemberView {
                name: m.name,
                addr: m.addr.to_string(),
                port: m.port,
                tags: m.tags,
                status: m.status,
                suspect: m.suspect,
            })
            .collect(),
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

async fn run_agent(cfg: AgentConfig) -> Result<(), String> {
    let gcfg = gossip_config(&cfg)?;
    let (gossip, mut events) = Gossip::start(gcfg).await.map_err(|e| e.to_string())?;
    tracing::info!(node = %gossip.local_name(), bind = %cfg.bind, encrypted = gossip.encrypted(), "agent started");
    let (leave_tx, mut leave_rx) = mpsc::unbounded_channel();
    let server = StatusServer::bind(&SocketOptions {
        path: cfg.status_socket.clone(),
        mode: cfg.status_socket_mode,
        group: cfg.status_socket_group.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let handler: Arc<dyn Handler> = Arc::new(AgentHandler {
        gossip: gossip.clone(),
        leave_tx,
    });
    let server = Arc::new(server);
    let srv = server.clone();
    let serve = tokio::spawn(async move { srv.serve(handler).await });

    if !cfg.join.is_empty() {
        let seeds = cfg.join.clone();
        let g = gossip.clone();
        tokio::spawn(async move { join_with_backoff(g, seeds).await });
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => on_event(&gossip, ev),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: leaving gracefully");
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("terminate: leaving gracefully");
                break;
            }
            _ = leave_rx.recv() => {
                tracing::info!("leave requested on the status socket");
                break;
            }
        }
    }
    let r = gossip.leave().await;
    serve.abort();
    drop(server);
    r.map_err(|e| e.to_string())
}

async fn join_with_backoff(g: Gossip, seeds: Vec<String>) {
    let mut delay = Duration::from_secs(1);
    loop {
        let addrs: Vec<_> = seeds
            .iter()
            .filter_map(|s| parse_gossip_addr("--join", s).ok())
            .collect();
        match g.join(&addrs).await {
            Ok(n) => {
                tracing::info!(contacted = n, "joined the cluster");
                return;
            }
            Err(crate::gossip::GossipError::Stopped) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "join failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn on_event(g: &Gossip, ev: GossipEvent) {
    match ev {
        GossipEvent::Query(mut q) => {
            if q.name == STATUS_QUERY {
                let members = g.members();
                let alive = members
                    .iter()
                    .filter(|m| m.status == crate::control::model::MemberStatus::Alive)
                    .count();
                let payload =
                    json!({"node": g.local_name(), "members": members.len(), "alive": alive});
                if let Err(e) = q.respond(payload.to_string().as_bytes()) {
                    tracing::warn!(error = %e, "cannot answer {STATUS_QUERY}");
                }
            } else {
                tracing::debug!(query = %q.name, from = %q.source_node, "query (not answered)");
            }
        }
        GossipEvent::User(u) => {
            tracing::info!(name = %u.name, ltime = u.ltime, "user event");
        }
        other => tracing::debug!(event = ?other, "member event"),
    }
}
