//! `haserf plan`: a dry run. The membership (a file, or the running agent's `members`) goes
//! through the same policy, assignment book and planner as the agent's, against HAProxy's
//! slots read once; the runtime commands are printed, not sent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::model::{MembersReply, Request};
use crate::policy::{BackendSelector, MemberFacts, Policy, PolicyConfig};
use crate::slots::book::Book;
use crate::slots::discovery::{template_placeholder, template_port};
use crate::slots::planner::{plan, PlanContext};

use super::verify::observe;
use super::{Format, PLACEHOLDER};

/// What `haserf plan` is asked.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// HAProxy runtime API: unix socket path or `IP:PORT`.
    pub haproxy_socket: String,
    /// Where the membership comes from.
    pub members: MembershipSource,
    /// Backends and selectors (`NAME[=KEY=VALUE,...]`), as for `haserf agent --backend`.
    pub backends: Vec<String>,
    /// Networks members must be in, as for `haserf agent --allow-cidr` (empty: any).
    pub allow_cidrs: Vec<String>,
    /// Output format.
    pub format: Format,
}

/// Where `haserf plan` reads the membership.
#[derive(Debug, Clone)]
pub enum MembershipSource {
    /// A JSON file in the `haserf members --format json` shape.
    File(PathBuf),
    /// The running agent's `members` reply, at this status socket.
    Agent(PathBuf),
}

/// What `haserf plan --format json` prints.
#[derive(Debug, Serialize)]
struct PlanReply {
    commands: Vec<String>,
    queue: BTreeMap<String, Vec<String>>,
    refused: Vec<crate::policy::Refusal>,
}

/// `haserf plan`: prints the runtime commands a membership would send, without sending
/// them (queued and refused members on stderr in text format); returns the exit status (1
/// on any error, with the error on stderr).
pub fn run(req: &PlanRequest) -> i32 {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(status) => return status,
    };
    match runtime.block_on(plan_inner(req)) {
        Ok(reply) => {
            match req.format {
                Format::Json => out!(
                    "{}",
                    serde_json::to_string(&reply).expect("plan serialises")
                ),
                Format::Text => {
                    for c in &reply.commands {
                        out!("{c}");
                    }
                    if reply.commands.is_empty() {
                        out!("no changes");
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

async fn plan_inner(req: &PlanRequest) -> Result<PlanReply, String> {
    if req.backends.is_empty() {
        return Err("give at least one --backend NAME[=KEY=VALUE,...]".into());
    }
    let selectors = req
        .backends
        .iter()
        .map(|b| BackendSelector::parse(b).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let members: MembersReply = match &req.members {
        MembershipSource::File(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        MembershipSource::Agent(status_socket) => {
            let v = super::socket::request(status_socket, &Request::Members)
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
    let allow_cidrs = req
        .allow_cidrs
        .iter()
        .map(|c| {
            c.parse::<crate::policy::Cidr>()
                .map_err(|e| format!("--allow-cidr {c}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut policy = Policy::new(PolicyConfig {
        backends: selectors,
        allow_cidrs,
        suspicion_drain: true,
        guard: crate::policy::GuardConfig {
            share: 1.0,
            ..Default::default()
        },
    });
    // the running agent has seen a `failed` member for longer than the grace time in which
    // it still drains: evaluate once more after it, so a failed member gets no slot
    let now = Instant::now();
    policy.evaluate(now, &facts);
    let eval = policy.evaluate(
        now + crate::policy::desired::FAILED_GRACE + Duration::from_millis(1),
        &facts,
    );
    let obs = observe(&req.haproxy_socket).await?;
    let mut reply = PlanReply {
        commands: Vec::new(),
        queue: BTreeMap::new(),
        refused: policy.refusals().cloned().collect(),
    };
    for (backend, placements) in &eval.placements {
        if let Some(p) = obs.backend_problem(backend) {
            return Err(p);
        }
        let slots = obs
            .backends
            .get(backend)
            .ok_or_else(|| format!("backend {backend:?} has no server-template slots"))?;
        let placeholder = template_placeholder(slots, PLACEHOLDER);
        let tport = template_port(slots, placeholder);
        let mut book = Book::new();
        book.update(
            placements,
            slots,
            placeholder,
            tport,
            Instant::now(),
            Duration::from_secs(30),
        );
        let tport = tport.ok_or_else(|| format!("backend {backend}: no template port"))?;
        let ctx = PlanContext {
            placeholder,
            template_port: tport,
        };
        let cmds = plan(backend, &book.targets(slots), slots, &ctx);
        reply.commands.extend(cmds.iter().map(|c| c.to_string()));
        reply.queue.insert(backend.clone(), book.queue().to_vec());
    }
    Ok(reply)
}
