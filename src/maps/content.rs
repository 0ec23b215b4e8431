//! What each map should hold, from the slot table and the membership. Pure functions.
//!
//! Keys and values go through the runtime API (one command line each, arguments split on
//! spaces) and into the map file (`key value` per line, `#` starts a comment), so they are
//! checked here: a key is printable without spaces; a value is printable (spaces are
//! allowed, escaped on the command line). Neither may hold `;` or `\` (the runtime API's
//! separators and escapes). An entry that fails the check is left out and reported.

use std::collections::BTreeMap;

use super::MapKind;
use crate::control::model::{MemberView, SlotView};

/// The entries of one map: key → value, one value per key.
pub type Entries = BTreeMap<String, String>;

/// Longest key accepted (bytes).
pub const MAX_KEY: usize = 256;
/// Longest value accepted (bytes; Serf tags are at most 512 bytes together).
pub const MAX_VALUE: usize = 1024;

/// Checks a map key (also used for file paths): 1–256 printable ASCII/UTF-8 bytes, no
/// whitespace, no `;` or `\`, not starting with `#`.
pub fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty() || k.len() > MAX_KEY {
        return Err(format!("a key has 1 to {MAX_KEY} bytes"));
    }
    if k.starts_with('#') {
        return Err("a key may not start with '#'".into());
    }
    if let Some(c) = k
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, ';' | '\\'))
    {
        return Err(format!("{c:?} is not allowed in a key"));
    }
    Ok(())
}

/// Checks a map value: 1–1024 bytes, no control characters, no `;` or `\`, no leading or
/// trailing whitespace (HAProxy's file reader would drop it).
pub fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_VALUE {
        return Err(format!("a value has 1 to {MAX_VALUE} bytes"));
    }
    if v.trim() != v {
        return Err("a value may not start or end with whitespace".into());
    }
    if let Some(c) = v
        .chars()
        .find(|c| (c.is_control() && *c != ' ') || matches!(c, ';' | '\\'))
    {
        return Err(format!("{c:?} is not allowed in a value"));
    }
    Ok(())
}

pub use crate::control::model::tags_string;

/// The entries map `kind` should hold, and a message for every entry left out because its
/// key or value cannot be stored.
pub fn desired_entries(
    kind: &MapKind,
    slots: &[SlotView],
    members: &[MemberView],
) -> (Entries, Vec<String>) {
    let mut out = Entries::new();
    let mut refused = Vec::new();
    let mut put = |k: String, v: String| match check_key(&k).and_then(|_| check_value(&v)) {
        Ok(()) => {
            out.insert(k, v);
        }
        Err(e) => refused.push(format!("{kind} entry {k:?}: {e}")),
    };
    match kind {
        MapKind::ServedBy => {
            for s in slots {
                if let Some(m) = &s.member {
                    put(format!("{}/{}", s.backend, s.slot), m.clone());
                }
            }
        }
        MapKind::MemberStatus => {
            for m in members {
                put(m.name.clone(), m.status.as_str().to_string());
            }
        }
        MapKind::MemberTags => {
            for m in members.iter().filter(|m| !m.tags.is_empty()) {
                put(m.name.clone(), tags_string(&m.tags));
            }
        }
        MapKind::Tag(t) => {
            for m in members {
                if let Some(v) = m.tags.get(t).filter(|v| !v.is_empty()) {
                    put(m.name.clone(), v.clone());
                }
            }
        }
    }
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::{MemberStatus, SlotState};

    fn slot(backend: &str, slot: &str, member: Option<&str>) -> SlotView {
        SlotView {
            backend: backend.into(),
            slot: slot.into(),
            member: member.map(str::to_string),
            addr: member.map(|_| "10.0.0.1:80".to_string()),
            state: SlotState::Ready,
            haproxy_status: "UP".into(),
        }
    }

    fn member(name: &str, status: MemberStatus, tags: &[(&str, &str)]) -> MemberView {
        MemberView {
            name: name.into(),
            addr: "10.0.0.1".into(),
            port: 7946,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status,
            suspect: false,
        }
    }

    #[test]
    fn served_by_keys_carry_the_backend_so_equal_server_names_do_not_collide() {
        let slots = [
            slot("web", "s1", Some("a")),
            slot("api", "s1", Some("b")),
            slot("web", "s2", None),
        ];
        let (e, refused) = desired_entries(&MapKind::ServedBy, &slots, &[]);
        assert!(refused.is_empty());
        assert_eq!(e.len(), 2);
        assert_eq!(e["web/s1"], "a");
        assert_eq!(e["api/s1"], "b");
    }

    #[test]
    fn member_maps_hold_status_tags_and_one_tag() {
        let members = [
            member("a", MemberStatus::Alive, &[("zone", "x"), ("role", "web")]),
            member("b", MemberStatus::Failed, &[]),
        ];
        let (st, _) = desired_entries(&MapKind::MemberStatus, &[], &members);
        assert_eq!(st["a"], "alive");
        assert_eq!(st["b"], "failed");
        let (tags, _) = desired_entries(&MapKind::MemberTags, &[], &members);
        assert_eq!(tags["a"], "role=web,zone=x");
        assert!(!tags.contains_key("b"), "no tags, no entry");
        let (zone, _) = desired_entries(&MapKind::Tag("zone".into()), &[], &members);
        assert_eq!(zone.len(), 1);
        assert_eq!(zone["a"], "x");
    }

    #[test]
    fn entries_that_cannot_be_stored_are_left_out_and_reported() {
        let members = [
            member("has space", MemberStatus::Alive, &[]),
            member("ok", MemberStatus::Alive, &[("note", "a;b")]),
            member("nl", MemberStatus::Alive, &[("note", "a\nb")]),
            member("sp", MemberStatus::Alive, &[("note", "two words")]),
        ];
        let (st, refused) = desired_entries(&MapKind::MemberStatus, &[], &members);
        assert_eq!(st.len(), 3);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].contains("has space"), "{refused:?}");
        let (note, refused) = desired_entries(&MapKind::Tag("note".into()), &[], &members);
        assert_eq!(note.len(), 1, "{note:?}");
        assert_eq!(note["sp"], "two words", "spaces inside a value are fine");
        assert_eq!(refused.len(), 2);
    }
}
