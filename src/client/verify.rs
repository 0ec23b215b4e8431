//! `haserf verify`: read HAProxy's slots once (the same nom parsers and discovery as the
//! agent) and print the slot table of every backend with `server-template` slots (or of the
//! `--backend`s given); only template slots are listed, static servers never; exit status 1
//! on any error, including a `--backend` that is missing or has no template.

use crate::control::model::{SlotState, SlotsReply};
use crate::haproxy::Client;
use crate::slots::discovery::{discover, slot_views, Observed};

use super::{Format, PLACEHOLDER};

/// What `haserf verify` is asked.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// HAProxy runtime API: unix socket path or `IP:PORT`.
    pub haproxy_socket: String,
    /// Only these backends (empty: every backend with `server-template` slots).
    pub backends: Vec<String>,
    /// Output format.
    pub format: Format,
}

/// Reads HAProxy's slots once; an old worker that is stopping after a reload is an error.
pub(super) async fn observe(socket: &str) -> Result<Observed, String> {
    let client = Client::new(socket);
    let snap = client.snapshot().await.map_err(|e| e.to_string())?;
    let obs = discover(&snap).map_err(|e| e.to_string())?;
    if obs.stopping {
        return Err(format!(
            "HAProxy worker {} is stopping (an old worker after a reload)",
            obs.pid
        ));
    }
    Ok(obs)
}

/// `haserf verify`: prints every backend's slot table as parsed; returns the exit status
/// (1 on any error, with the error on stderr).
pub fn run(req: &VerifyRequest) -> i32 {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(status) => return status,
    };
    let obs = match runtime.block_on(observe(&req.haproxy_socket)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("haserf verify: {e}");
            return 1;
        }
    };
    for b in &req.backends {
        if let Some(p) = obs.backend_problem(b) {
            eprintln!("haserf verify: {p}");
            return 1;
        }
    }
    let reply = SlotsReply {
        slots: slot_views(&obs, &req.backends, PLACEHOLDER),
    };
    match req.format {
        Format::Json => out!(
            "{}",
            serde_json::to_string(&reply).expect("slots serialise")
        ),
        Format::Text => {
            out!(
                "HAProxy pid {} up {}s, {} backend(s), {} slot(s)",
                obs.pid,
                obs.uptime_sec,
                reply
                    .slots
                    .iter()
                    .map(|s| &s.backend)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                reply.slots.len()
            );
            out!(
                "{:<16} {:<12} {:<24} {:<6} STATUS",
                "BACKEND",
                "SLOT",
                "ADDR",
                "STATE"
            );
            for s in &reply.slots {
                out!(
                    "{:<16} {:<12} {:<24} {:<6} {}",
                    s.backend,
                    s.slot,
                    s.addr.as_deref().unwrap_or("-"),
                    match s.state {
                        SlotState::Ready => "ready",
                        SlotState::Drain => "drain",
                        SlotState::Maint => "maint",
                    },
                    s.haproxy_status
                );
            }
        }
    }
    0
}
