//! How the client commands print: the output [`Format`], and status-socket replies rendered
//! for people (`--format text`: tables and `key: value` lines) or as they came
//! (`--format json`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::control::model::{MembersReply, Request, SlotsReply};

use super::table::table;

/// Output format of the client commands (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human-readable table.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Renders a reply for printing: pretty JSON or a table, always ending in a newline.
pub fn reply(req: &Request, value: &Value, format: Format) -> String {
    if format == Format::Json {
        return format!("{value}\n");
    }
    match req {
        Request::Members => match serde_json::from_value::<MembersReply>(value.clone()) {
            Ok(members) => members_table(&members),
            Err(_) => key_values(value),
        },
        Request::Slots => match serde_json::from_value::<SlotsReply>(value.clone()) {
            Ok(slots) => slots_table(&slots),
            Err(_) => key_values(value),
        },
        Request::Metrics => match value.get("metrics").and_then(Value::as_str) {
            Some(text) => text.to_string(),
            None => key_values(value),
        },
        Request::Status => super::status_text::status_text(value, std::time::SystemTime::now()),
        Request::Leave => key_values(value),
    }
}

/// `serf members`-like table: name, addr:port, status, tags.
pub fn members_table(reply: &MembersReply) -> String {
    let rows: Vec<Vec<String>> = reply
        .members
        .iter()
        .map(|m| {
            let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let status = if m.suspect && m.status.as_str() == "alive" {
                "alive (suspect)".to_string()
            } else {
                m.status.as_str().to_string()
            };
            vec![
                m.name.clone(),
                format!("{}:{}", m.addr, m.port),
                status,
                tags.join(","),
            ]
        })
        .collect();
    table(&["NAME", "ADDR", "STATUS", "TAGS"], &rows)
}

/// Slot table: backend, slot, member, addr, state, HAProxy status.
pub fn slots_table(reply: &SlotsReply) -> String {
    let rows: Vec<Vec<String>> = reply
        .slots
        .iter()
        .map(|s| {
            let state = serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vec![
                s.backend.clone(),
                s.slot.clone(),
                s.member.clone().unwrap_or_else(|| "-".into()),
                s.addr.clone().unwrap_or_else(|| "-".into()),
                state,
                s.haproxy_status.clone(),
            ]
        })
        .collect();
    table(
        &["BACKEND", "SLOT", "MEMBER", "ADDR", "STATE", "HAPROXY"],
        &rows,
    )
}

/// Nested objects flattened to `a.b.c: value` lines, in key order.
pub fn key_values(value: &Value) -> String {
    let mut out = String::new();
    flatten("", value, &mut out);
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, v, out);
            }
        }
        Value::String(s) => {
            let _ = writeln!(out, "{prefix}: {s}");
        }
        other => {
            let _ = writeln!(out, "{prefix}: {other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::{MemberStatus, MemberView, SlotState, SlotView};

    #[test]
    fn members_table_lists_name_addr_status_and_tags() {
        let reply = MembersReply {
            members: vec![MemberView {
                name: "web1".into(),
                addr: "127.0.0.11".into(),
                port: 7946,
                tags: [("role".to_string(), "web".to_string())].into(),
                status: MemberStatus::Alive,
                suspect: false,
            }],
        };
        let text = members_table(&reply);
        assert_eq!(
            text,
            "NAME  ADDR             STATUS  TAGS\nweb1  127.0.0.11:7946  alive   role=web\n"
        );
    }

    #[test]
    fn a_free_slot_shows_dashes() {
        let reply = SlotsReply {
            slots: vec![SlotView {
                backend: "web".into(),
                slot: "web1".into(),
                member: None,
                addr: None,
                state: SlotState::Maint,
                haproxy_status: "MAINT".into(),
            }],
        };
        assert!(slots_table(&reply).contains("web      web1  -       -     maint  MAINT"));
    }

    #[test]
    fn nested_status_is_flattened() {
        let v: Value = serde_json::json!({"cluster": {"members": 3}, "ready": true});
        assert_eq!(key_values(&v), "cluster.members: 3\nready: true\n");
    }
}
