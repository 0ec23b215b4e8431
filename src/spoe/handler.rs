//! What the `haserf` SPOE engine answers: cluster facts as HAProxy variables.
//!
//! Messages (names as in `haproxy/spoe.conf`; unknown messages and missing arguments are
//! ignored, so an ACK is always sent):
//!
//! | message | args | variables set (below `txn.<var-prefix>.`) |
//! |---|---|---|
//! | `haserf-backend` | `backend` (string) | `backend_live` (int: alive members holding a slot), `backend_members` (string, comma list), `backend_free` (int: free slots) |
//! | `haserf-node` | `node` (string), optional `tag` (string) | `node_alive` (bool), `node_status` (`alive`, `leaving`, `left`, `failed`, `unknown`), `node_tags` (`k=v,k=v`), `node_tag` (the value of `tag`, if the node has it) |
//! | `haserf-server` | `server` (`srv_name`), optional `backend` (`be_name`), optional `tag` | `server_node` (member name), `server_tags` (`k=v,…`), `server_node_status`, `server_tag` |
//!
//! The scope (`txn` by default) is [`super::SpoeConfig::var_scope`]; the middle part of the
//! name is HAProxy's `option var-prefix` in spoe.conf (`haserf`).

use std::sync::Arc;

use super::codec::{Action, Message, TypedData, VarScope};
use super::conn::NotifyHandler;
use super::ClusterView;
use crate::control::model::{MemberStatus, MemberView};

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
    "backend_free",
    "node_alive",
    "node_status",
    "node_tags",
    "node_tag",
    "server_node",
    "server_tags",
    "server_node_status",
    "server_tag",
];

/// Answers NOTIFY frames from a [`ClusterView`].
pub struct ClusterHandler {
    view: Arc<dyn ClusterView>,
    scope: VarScope,
}

impl ClusterHandler {
    /// A handler reading `view` and setting variables in `scope`.
    pub fn new(view: Arc<dyn ClusterView>, scope: VarScope) -> Self {
        ClusterHandler { view, scope }
    }

    fn set(&self, out: &mut Vec<Action>, name: &str, value: TypedData) {
        out.push(Action::SetVar {
            scope: self.scope,
            name: name.to_string(),
            value,
        });
    }

    fn member(&self, name: &str) -> Option<MemberView> {
        self.view.members().into_iter().find(|m| m.name == name)
    }

    fn on_backend(&self, m: &Message, out: &mut Vec<Action>) {
        let Some(backend) = m.arg("backend").and_then(TypedData::as_str) else {
            return;
        };
        let members = self.view.members();
        let mut live: Vec<String> = Vec::new();
        let mut free = 0i32;
        for s in self.view.slots().iter().filter(|s| s.backend == backend) {
            match &s.member {
                None => free += 1,
                Some(name) => {
                    let alive = members
                        .iter()
                        .any(|mv| &mv.name == name && mv.status == MemberStatus::Alive);
                    if alive && !live.contains(name) {
                        live.push(name.clone());
                    }
                }
            }
        }
        live.sort();
        self.set(out, "backend_live", TypedData::Int32(live.len() as i32));
        self.set(out, "backend_members", TypedData::str(live.join(",")));
        self.set(out, "backend_free", TypedData::Int32(free));
    }

    fn on_node(&self, m: &Message, out: &mut Vec<Action>) {
        let Some(node) = m.arg("node").and_then(TypedData::as_str) else {
            return;
        };
        match self.member(node) {
            Some(mv) => {
                self.set(
                    out,
                    "node_alive",
                    TypedData::Bool(mv.status == MemberStatus::Alive),
                );
                self.set(out, "node_status", TypedData::str(mv.status.as_str()));
                self.set(out, "node_tags", TypedData::str(tags_string(&mv)));
                if let Some(v) = wanted_tag(m, &mv) {
                    self.set(out, "node_tag", TypedData::str(v));
                }
            }
            None => {
                self.set(out, "node_alive", TypedData::Bool(false));
                self.set(out, "node_status", TypedData::str("unknown"));
            }
        }
    }

    fn on_server(&self, m: &Message, out: &mut Vec<Action>) {
        let Some(server) = m.arg("server").and_then(TypedData::as_str) else {
            return;
        };
        let backend = m.arg("backend").and_then(TypedData::as_str);
        let slots = self.view.slots();
        let Some(member) = slots
            .iter()
            .find(|s| s.slot == server && backend.is_none_or(|b| s.backend == b))
            .and_then(|s| s.member.clone())
        else {
            return;
        };
        self.set(out, "server_node", TypedData::str(member.clone()));
        if let Some(mv) = self.member(&member) {
            self.set(out, "server_tags", TypedData::str(tags_string(&mv)));
            self.set(
                out,
                "server_node_status",
                TypedData::str(mv.status.as_str()),
            );
            if let Some(v) = wanted_tag(m, &mv) {
                self.set(out, "server_tag", TypedData::str(v));
            }
        }
    }
}

fn wanted_tag(m: &Message, mv: &MemberView) -> Option<String> {
    let key = m.arg("tag").and_then(TypedData::as_str)?;
    mv.tags.get(key).cloned()
}

/// Tags as `k=v,k=v`, sorted by key.
pub fn tags_string(mv: &MemberView) -> String {
    mv.tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl NotifyHandler for ClusterHandler {
    fn handle(&self, messages: &[Message]) -> Vec<Action> {
        let mut out = Vec::new();
        for m in messages {
            match m.name.as_str() {
                MSG_BACKEND => self.on_backend(m, &mut out),
                MSG_NODE => self.on_node(m, &mut out),
                MSG_SERVER => self.on_server(m, &mut out),
                _ => {}
            }
        }
        out
    }
}
