//! What the `haserf` SPOE engine answers: cluster facts as HAProxy variables.
//!
//! Messages (names as in `haproxy/spoe.conf`; unknown messages and missing arguments are
//! ignored, so an ACK is always sent):
//!
//! | message | args | variables set (below `txn.<var-prefix>.`) |
//! |---|---|---|
//! | `haserf-backend` | `backend` (string) | `backend_live` (int: alive members holding a slot), `backend_free` (int: free slots), `backend_members` (string, comma list) |
//! | `haserf-node` | `node` (string), optional `tag` (string) | `node_alive` (bool), `node_status` (`alive`, `leaving`, `left`, `failed`, `unknown`), `node_tag` (the value of `tag`, if the node has it), `node_tags` (`k=v,k=v`) |
//! | `haserf-server` | `server` (`srv_name`), optional `backend` (`be_name`), optional `tag` | `server_node` (member name), `server_node_status`, `server_tag`, `server_tags` (`k=v,…`) |
//!
//! An answer always fits the negotiated frame ([`super::answer::fit`]): the small facts
//! first (`node_*` before the others), then the lists (`node_tags`, `server_tags`,
//! `backend_members`), each cut at an item boundary when needed with
//! `<list>_truncated` set to `true`.
//!
//! The scope (`txn` by default) is [`super::SpoeConfig::var_scope`]; the middle part of the
//! name is HAProxy's `option var-prefix` in spoe.conf (`haserf`).

use std::sync::Arc;

use super::answer::{fit, Fact};
use super::codec::{Action, Message, TypedData, VarScope};
use super::conn::NotifyHandler;
use super::index::ClusterIndex;
use super::ClusterView;
use crate::control::model::MemberStatus;

/// Message name: facts about a backend.
pub const MSG_BACKEND: &str = "haserf-backend";
/// Message name: facts about a node by name.
pub const MSG_NODE: &str = "haserf-node";
/// Message name: the node behind a server (slot).
pub const MSG_SERVER: &str = "haserf-server";

/// Every variable name the engine may set (for `register-var-names`).
pub const VAR_NAMES: &[&str] = &[
    "backend_live",
    "backend_members",
    "backend_members_truncated",
    "backend_free",
    "node_alive",
    "node_status",
    "node_tags",
    "node_tags_truncated",
    "node_tag",
    "server_node",
    "server_tags",
    "server_tags_truncated",
    "server_node_status",
    "server_tag",
];

/// Answers NOTIFY frames from a [`ClusterView`].
pub struct ClusterHandler {
    view: Arc<dyn ClusterView>,
    scope: VarScope,
}

fn scalar(name: &'static str, value: TypedData) -> Fact {
    Fact::Scalar { name, value }
}

fn list(name: &'static str, items: &str) -> Fact {
    Fact::List {
        name,
        items: items.to_string(),
    }
}

fn str_arg<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.arg(name).and_then(TypedData::as_str)
}

impl ClusterHandler {
    /// A handler reading `view` and setting variables in `scope`.
    pub fn new(view: Arc<dyn ClusterView>, scope: VarScope) -> Self {
        ClusterHandler { view, scope }
    }

    /// Every fact the messages ask for, `node_*` first.
    pub fn facts(&self, messages: &[Message]) -> Vec<Fact> {
        let idx = self.view.index();
        let (mut node, mut rest) = (Vec::new(), Vec::new());
        for m in messages {
            match m.name.as_str() {
                MSG_NODE => on_node(&idx, m, &mut node),
                MSG_BACKEND => on_backend(&idx, m, &mut rest),
                MSG_SERVER => on_server(&idx, m, &mut rest),
                _ => {}
            }
        }
        node.extend(rest);
        node
    }
}

fn on_backend(idx: &ClusterIndex, m: &Message, out: &mut Vec<Fact>) {
    let Some(backend) = str_arg(m, "backend") else {
        return;
    };
    let b = idx.backend(backend).cloned().unwrap_or_default();
    out.push(scalar("backend_live", TypedData::Int32(b.live as i32)));
    out.push(scalar("backend_free", TypedData::Int32(b.free as i32)));
    out.push(list("backend_members", &b.members));
}

fn on_node(idx: &ClusterIndex, m: &Message, out: &mut Vec<Fact>) {
    let Some(node) = str_arg(m, "node") else {
        return;
    };
    match idx.member(node) {
        Some(f) => {
            out.push(scalar(
                "node_alive",
                TypedData::Bool(f.status == MemberStatus::Alive),
            ));
            out.push(scalar("node_status", TypedData::str(f.status.as_str())));
            if let Some(v) = str_arg(m, "tag").and_then(|t| f.tag.get(t)) {
                out.push(scalar("node_tag", TypedData::str(v.as_str())));
            }
            out.push(list("node_tags", &f.tags));
        }
        None => {
            out.push(scalar("node_alive", TypedData::Bool(false)));
            out.push(scalar("node_status", TypedData::str("unknown")));
        }
    }
}

fn on_server(idx: &ClusterIndex, m: &Message, out: &mut Vec<Fact>) {
    let Some(server) = str_arg(m, "server") else {
        return;
    };
    let Some(member) = idx.slot_member(str_arg(m, "backend"), server) else {
        return;
    };
    out.push(scalar("server_node", TypedData::str(member)));
    if let Some(f) = idx.member(member) {
        out.push(scalar(
            "server_node_status",
            TypedData::str(f.status.as_str()),
        ));
        if let Some(v) = str_arg(m, "tag").and_then(|t| f.tag.get(t)) {
            out.push(scalar("server_tag", TypedData::str(v.as_str())));
        }
        out.push(list("server_tags", &f.tags));
    }
}

impl NotifyHandler for ClusterHandler {
    fn handle(&self, messages: &[Message]) -> Vec<Action> {
        fit(self.facts(messages), self.scope, usize::MAX).actions
    }

    fn handle_within(&self, messages: &[Message], room: usize) -> (Vec<Action>, Vec<&'static str>) {
        let f = fit(self.facts(messages), self.scope, room);
        (f.actions, f.cut)
    }
}
