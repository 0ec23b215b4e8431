//! What the request/response commands do (serf's `ipc.go` `handle*` and the agent methods
//! they call): each takes the shared [`RpcContext`] and returns a [`Reply`], the error
//! string serf would put in the response header and the body serf sends (serf sends the
//! body of `join` and the key commands even with an error, and clients decode it).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;

use super::codec::{self, KeyReport, RpcCoordinate, RpcMember};
use super::RpcContext;
use crate::client::filter::MemberFilter;
use crate::control::model::MemberStatus;
use crate::gossip::wire::{decode_key_response, encode_key_request, KeyRequest};
use crate::gossip::Member;

/// A command's outcome: serf's error string ("" = success) and its body, if it has one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// Error string for the response header.
    pub error: String,
    /// msgpack body after the header.
    pub body: Option<Vec<u8>>,
}

impl Reply {
    /// Success without a body.
    pub fn ok() -> Reply {
        Reply::default()
    }

    /// An error without a body.
    pub fn err(e: impl ToString) -> Reply {
        Reply {
            error: e.to_string(),
            body: None,
        }
    }

    fn from_result(r: Result<(), String>) -> Reply {
        match r {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::err(e),
        }
    }

    fn body(error: String, encode: impl FnOnce(&mut Vec<u8>)) -> Reply {
        let mut b = Vec::new();
        encode(&mut b);
        Reply {
            error,
            body: Some(b),
        }
    }
}

/// A gossip member as serf's IPC `Member`.
pub fn rpc_member(m: &Member) -> RpcMember {
    RpcMember {
        name: m.name.clone(),
        addr: m.addr,
        port: m.port,
        tags: m.tags.clone(),
        status: m.status.as_str().to_string(),
        protocol: [
            m.vsn.pmin, m.vsn.pmax, m.vsn.pcur, m.vsn.dmin, m.vsn.dmax, m.vsn.dcur,
        ],
    }
}

/// `members`.
pub fn members(ctx: &RpcContext) -> Reply {
    let list: Vec<RpcMember> = ctx.gossip.members().iter().map(rpc_member).collect();
    Reply::body(String::new(), |b| codec::encode_members(b, &list))
}

/// `members-filtered`: serf's `filterMembers` (anchored regular expressions; a missing tag
/// matches as ""). A bad expression is serf's `Failed to compile regex` with no members.
pub fn members_filtered(
    ctx: &RpcContext,
    tags: &BTreeMap<String, String>,
    status: &str,
    name: &str,
) -> Reply {
    let tag_args: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let filter = match MemberFilter::new(Some(status), Some(name), &tag_args) {
        Ok(f) => f,
        Err(e) => {
            return Reply::body(format!("Failed to compile regex: {e}"), |b| {
                codec::encode_members(b, &[])
            })
        }
    };
    let list: Vec<RpcMember> = ctx
        .gossip
        .members()
        .iter()
        .filter(|m| filter.matches(&crate::manager::member_view(m)))
        .map(rpc_member)
        .collect();
    Reply::body(String::new(), |b| codec::encode_members(b, &list))
}

/// `join`: push/pull with each address (`IP`, `IP:PORT` or `HOST:PORT`; port 7946 by
/// default); `Num` is how many answered. `Replay` is accepted; old events are not replayed.
pub async fn join(ctx: &RpcContext, existing: &[String]) -> Reply {
    let mut addrs = Vec::new();
    let mut errors = Vec::new();
    for a in existing {
        match crate::config::parse_gossip_addr("join", a) {
            Ok(sa) => addrs.push(sa),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let (num, error) = if addrs.is_empty() {
        (0, format!("No addresses to join: {}", errors.join("; ")))
    } else {
        match ctx.gossip.join(&addrs).await {
            Ok(n) => (n, String::new()),
            Err(e) => (0, e.to_string()),
        }
    };
    Reply::body(error, |b| codec::encode_join(b, num))
}

/// `event`: a user event broadcast.
pub async fn event(ctx: &RpcContext, name: &str, payload: &[u8], coalesce: bool) -> Reply {
    Reply::from_result(
        ctx.gossip
            .user_event(name, payload, coalesce)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// `force-leave`: a leave intent about `node` (failed → left; `prune` forgets it).
pub async fn force_leave(ctx: &RpcContext, node: &str, prune: bool) -> Reply {
    Reply::from_result(
        ctx.gossip
            .force_leave(node, prune)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// `tags`: this node's tags with `delete` removed and `set` added (serf's `handleTags`).
pub async fn tags(ctx: &RpcContext, set: &BTreeMap<String, String>, delete: &[String]) -> Reply {
    let me = ctx.gossip.local_name().to_string();
    let mut tags = ctx
        .gossip
        .members()
        .into_iter()
        .find(|m| m.name == me)
        .map(|m| m.tags)
        .unwrap_or_default();
    tags.retain(|k, _| !delete.contains(k));
    tags.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    Reply::from_result(ctx.gossip.set_tags(tags).await.map_err(|e| e.to_string()))
}

/// `stats` (`serf info`): the sections serf's agent reports (`agent`, `runtime`, `serf`,
/// `tags`, `event_handlers`) with serf's key names.
pub fn stats(ctx: &RpcContext) -> Reply {
    let s = ctx.gossip.stats();
    let me = ctx.gossip.local_name().to_string();
    let members = ctx.gossip.members();
    let local_tags = members
        .iter()
        .find(|m| m.name == me)
        .map(|m| m.tags.clone())
        .unwrap_or_default();
    let count = |st: MemberStatus| members.iter().filter(|m| m.status == st).count();
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    out.insert("agent".into(), BTreeMap::from([("name".into(), me)]));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    out.insert(
        "runtime".into(),
        BTreeMap::from([
            ("os".into(), std::env::consts::OS.into()),
            ("arch".into(), std::env::consts::ARCH.into()),
            (
                "version".into(),
                format!("haserf {}", env!("CARGO_PKG_VERSION")),
            ),
            ("cpu_count".into(), cpus.to_string()),
            ("max_procs".into(), cpus.to_string()),
        ]),
    );
    let serf: BTreeMap<String, String> = [
        ("members", members.len().to_string()),
        ("failed", count(MemberStatus::Failed).to_string()),
        ("left", count(MemberStatus::Left).to_string()),
        ("health_score", s.health_score.to_string()),
        ("member_time", s.member_time.to_string()),
        ("event_time", s.event_time.to_string()),
        ("query_time", s.query_time.to_string()),
        ("intent_queue", "0".to_string()),
        ("event_queue", "0".to_string()),
        ("query_queue", "0".to_string()),
        ("encrypted", s.encrypted.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    out.insert("serf".into(), serf);
    out.insert("tags".into(), local_tags);
    out.insert("event_handlers".into(), ctx.agent.event_handlers());
    Reply::body(String::new(), |b| codec::encode_stats(b, &out))
}

/// Serf's key commands: `op` is `install-key`, `use-key`, `remove-key` or `list-keys`;
/// the key query goes to every member and the answers are tallied as serf's `KeyManager`
/// does (an error unless every alive member answered with success).
pub async fn keys(ctx: &RpcContext, op: &str, key: &str) -> Reply {
    let mut report = KeyReport::default();
    let raw = if op == "list-keys" {
        Vec::new()
    } else {
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(k) => k,
            Err(e) => return Reply::body(e.to_string(), |b| codec::encode_keys(b, &report)),
        }
    };
    let payload = encode_key_request(&KeyRequest { key: raw });
    report.num_nodes = ctx
        .gossip
        .members()
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count() as u64;
    let mut answers = match ctx.gossip.key_query(op, &payload).await {
        Ok(a) => a,
        Err(e) => return Reply::body(e.to_string(), |b| codec::encode_keys(b, &report)),
    };
    let deadline = answers.deadline;
    while report.num_resp < report.num_nodes {
        let r = match tokio::time::timeout_at(deadline, answers.responses.recv()).await {
            Ok(Some(r)) => r,
            _ => break,
        };
        report.num_resp += 1;
        match decode_key_response(&r.payload) {
            Ok(resp) => {
                if !resp.result || !resp.message.is_empty() {
                    report.messages.insert(r.from.clone(), resp.message.clone());
                }
                if !resp.result {
                    report.num_err += 1;
                }
                for k in resp.keys.unwrap_or_default() {
                    *report.keys.entry(k).or_insert(0) += 1;
                }
            }
            Err(e) => {
                report
                    .messages
                    .insert(r.from, format!("Failed to decode key query response: {e}"));
                report.num_err += 1;
            }
        }
    }
    let error = if report.num_err != 0 {
        format!(
            "{}/{} nodes reported failure",
            report.num_err, report.num_nodes
        )
    } else if report.num_resp != report.num_nodes {
        format!(
            "{}/{} nodes reported success",
            report.num_resp, report.num_nodes
        )
    } else {
        String::new()
    };
    Reply::body(error, |b| codec::encode_keys(b, &report))
}

/// `get-coordinate`: the cached network coordinate of `node` (`Ok: false` when none).
pub async fn get_coordinate(ctx: &RpcContext, node: &str) -> Reply {
    let c = ctx.gossip.coordinate(node).await.map(|c| RpcCoordinate {
        vec: c.vec,
        error: c.error,
        adjustment: c.adjustment,
        height: c.height,
    });
    Reply::body(String::new(), |b| codec::encode_coordinate(b, c.as_ref()))
}

/// `leave`: the agent's graceful leave; answered once it is over.
pub async fn leave(ctx: &RpcContext) -> Reply {
    match tokio::time::timeout(Duration::from_secs(60), ctx.agent.leave()).await {
        Ok(r) => Reply::from_result(r),
        Err(_) => Reply::err("timed out waiting for the leave"),
    }
}
