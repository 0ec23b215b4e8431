//! `haserf verify` and `haserf plan`: one-shot commands against a live HAProxy.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{Format, PlanArgs, VerifyArgs};
use crate::control::model::{MembersReply, Request, SlotsReply};
use crate::haproxy::Client;
use crate::policy::{BackendSelector, MemberFacts, Policy, PolicyConfig};

use super::book::Book;
use super::discovery::{discover, slot_views, template_port, Observed};
use super::planner::{plan, PlanContext};

const PLACEHOLDER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `println!` that ignores a closed stdout (e.g. `| head`).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn observe(socket: &str) -> Result<Observed, String> {
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

/// `haserf verify`: prints every backend's slot table as parsed; non-zero on any error.
pub fn verify(args: &VerifyArgs) -> i32 {
    let obs = match runtime().block_on(observe(&args.haproxy_socket)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("haserf verify: {e}");
            return 1;
        }
    };
    let reply = SlotsReply {
        slots: slot_views(&obs, &[], PLACEHOLDER),
    };
    match args.format {
        Format::Json => out!(
            "{}",
            serde_json::to_string(&reply).expect("slots serialise")
        ),
        Format::Text => {
            out!(
                "HAProxy pid {} up {}s, {} backend(s), {} slot(s)",
                obs.pid,
                obs.uptime_sec,
                obs.backends.len(),
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
                        crate::control::model::SlotState::Ready => "ready",
                        crate::control::model::SlotState::Drain => "drain",
                        crate::control::model::SlotState::Maint => "maint",
                    },
                    s.haproxy_status
                );
            }
        }
    }
    0
}

/// What `haserf plan --format json` prints.
#[derive(Debug, Serialize)]
struct PlanReply {
    commands: Vec<String>,
    queue: BTreeMap<String, Vec<String>>,
    refused: Vec<crate::policy::Refusal>,
}

/// `haserf plan`: the runtime commands a membership would send, without sending them.
pub fn plan_cmd(args: &PlanArgs) -> i32 {
    match runtime().block_on(plan_inner(args)) {
        Ok(reply) => {
            match args.format {
                Format::Json => out!(
                    "{}",
                    serde_json::to_string(&reply).expect("plan serialises")
                ),
                Format::Text => {
                    for c in &reply.commands {
                        out!("{c}");
                    }
                    for (b, q) in &reply.queue {
                        if !q.is_empty() {
                            eprintln!(
                                "# backend {b}: {} member(s) queued: {}",
                                q.len(),
                                q.join(", ")
                            );
                        }
                    }
                    for r in &reply.refused {
                        eprintln!("# {} refused for {}: {}", r.member, r.backend, r.reason);
                    }
                }
            }
            0
        }
        Err(e) => {
            eprintln!("haserf plan: {e}");
            1
        }
    }
}

async fn plan_inner(args: &PlanArgs) -> Result<PlanReply, String> {
    if args.backends.is_empty() {
        return Err("give at least one --backend NAME[=KEY=VALUE,...]".into());
    }
    let selectors = args
        .backends
        .iter()
        .map(|b| BackendSelector::parse(b).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let members: MembersReply = match &args.members {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => {
            let v = crate::control::client::request(&args.status_socket, &Request::Members)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::from_value(v).map_err(|e| format!("agent's members reply: {e}"))?
        }
    };
    let mut facts = Vec::new();
    for m in &members.members {
        let addr: IpAddr = m
            .addr
            .parse()
            .map_err(|_| format!("member {}: bad address {:?}", m.name, m.addr))?;
        facts.push(MemberFacts {
            name: m.name.clone(),
            addr,
            tags: m.tags.clone(),
            status: m.status,
            suspect: m.suspect,
        });
    }
    let mut policy = Policy::new(PolicyConfig {
        backends: selectors,
        allow_cidrs: Vec::new(),
        suspicion_drain: true,
        guard: crate::policy::GuardConfig {
            share: 1.0,
            ..Default::default()
        },
    });
    let eval = policy.evaluate(Instant::now(), &facts);
    let obs = observe(&args.haproxy_socket).await?;
    let mut reply = PlanReply {
        commands: Vec::new(),
        queue: BTreeMap::new(),
        refused: policy.refusals().cloned().collect(),
    };
    for (backend, placements) in &eval.placements {
        let slots = obs
            .backends
            .get(backend)
            .ok_or_else(|| format!("backend {backend:?} has no servers in HAProxy"))?;
        let tport = template_port(slots, PLACEHOLDER);
        let mut book = Book::new();
        book.update(
            placements,
            slots,
            PLACEHOLDER,
            tport,
            Instant::now(),
            Duration::from_secs(30),
        );
        let tport = tport.ok_or_else(|| format!("backend {backend}: no template port"))?;
        let ctx = PlanContext {
            placeholder: PLACEHOLDER,
            template_port: tport,
        };
        let cmds = plan(backend, &book.targets(slots), slots, &ctx);
        reply.commands.extend(cmds.iter().map(|c| c.to_string()));
        reply.queue.insert(backend.clone(), book.queue().to_vec());
    }
    Ok(reply)
}
