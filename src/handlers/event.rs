//! The events handler scripts receive and exactly what a script sees of them: its
//! environment and its stdin, as serf's `cmd/serf/command/agent/invoke.go` builds them
//! (`invokeEventScript`, `memberEventStdin`, `streamPayload`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::gossip::{IncomingQuery, Member};

/// Serf's event types, named as `SERF_EVENT` and the filters spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// `member-join`.
    MemberJoin,
    /// `member-leave`.
    MemberLeave,
    /// `member-failed`.
    MemberFailed,
    /// `member-update`.
    MemberUpdate,
    /// `member-reap`.
    MemberReap,
    /// `user`.
    User,
    /// `query`.
    Query,
}

impl EventKind {
    /// Serf's `EventType.String()`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MemberJoin => "member-join",
            EventKind::MemberLeave => "member-leave",
            EventKind::MemberFailed => "member-failed",
            EventKind::MemberUpdate => "member-update",
            EventKind::MemberReap => "member-reap",
            EventKind::User => "user",
            EventKind::Query => "query",
        }
    }
}

/// One member as a member event lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLine {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: IpAddr,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Default for MemberLine {
    fn default() -> Self {
        MemberLine {
            name: String::new(),
            addr: IpAddr::from([0, 0, 0, 0]),
            tags: BTreeMap::new(),
        }
    }
}

impl From<&Member> for MemberLine {
    fn from(m: &Member) -> Self {
        MemberLine {
            name: m.name.clone(),
            addr: m.addr,
            tags: m.tags.clone(),
        }
    }
}

/// A user event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEvent {
    /// Event name.
    pub name: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Lamport time.
    pub ltime: u64,
    /// The sender allowed coalescing (`serf event -coalesce`, the default).
    pub coalesce: bool,
}

/// A query; the handlers that take it share one responder (the first non-empty output of a
/// script that exits 0 answers; later ones are too late, as serf's second `Respond` is).
#[derive(Debug, Clone)]
pub struct QueryEvent {
    /// Query name.
    pub name: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Lamport time.
    pub ltime: u64,
    /// The way back to the asker.
    pub responder: Arc<Mutex<Option<IncomingQuery>>>,
}

/// An event as handlers see it (member events may list several members once coalesced).
#[derive(Debug, Clone)]
pub enum HandlerEvent {
    /// `member-*`: the members concerned.
    Member {
        /// Which member event.
        kind: EventKind,
        /// The members, one stdin line each.
        members: Vec<MemberLine>,
    },
    /// `user`.
    User(UserEvent),
    /// `query`.
    Query(QueryEvent),
}

impl HandlerEvent {
    /// The event type.
    pub fn kind(&self) -> EventKind {
        match self {
            HandlerEvent::Member { kind, .. } => *kind,
            HandlerEvent::User(_) => EventKind::User,
            HandlerEvent::Query(_) => EventKind::Query,
        }
    }

    /// The user event's or query's name.
    pub fn name(&self) -> Option<&str> {
        match self {
            HandlerEvent::Member { .. } => None,
            HandlerEvent::User(u) => Some(&u.name),
            HandlerEvent::Query(q) => Some(&q.name),
        }
    }
}

/// This agent as the script's environment describes it (serf: `LocalMember()` when the
/// event is handled).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfMember {
    /// `SERF_SELF_NAME`.
    pub name: String,
    /// Tags: `SERF_SELF_ROLE` is `role`, each one is also `SERF_TAG_<NAME>`.
    pub tags: BTreeMap<String, String>,
}

/// Serf's tag variable name: upper-cased, every character outside `[A-Z0-9_]` replaced by
/// `_` (`sanitizeTagRegexp`).
pub fn tag_var(name: &str) -> String {
    let upper: String = name.to_uppercase();
    let clean: String = upper
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("SERF_TAG_{clean}")
}

/// The variables serf adds to the agent's own environment for one script run, in serf's
/// order.
pub fn environment(me: &SelfMember, event: &HandlerEvent) -> Vec<(String, String)> {
    let mut env = vec![
        ("SERF_EVENT".to_string(), event.kind().as_str().to_string()),
        ("SERF_SELF_NAME".to_string(), me.name.clone()),
        (
            "SERF_SELF_ROLE".to_string(),
            me.tags.get("role").cloned().unwrap_or_default(),
        ),
    ];
    for (k, v) in &me.tags {
        env.push((tag_var(k), v.clone()));
    }
    match event {
        HandlerEvent::Member { .. } => {}
        HandlerEvent::User(u) => {
            env.push(("SERF_USER_EVENT".into(), u.name.clone()));
            env.push(("SERF_USER_LTIME".into(), u.ltime.to_string()));
        }
        HandlerEvent::Query(q) => {
            env.push(("SERF_QUERY_NAME".into(), q.name.clone()));
            env.push(("SERF_QUERY_LTIME".into(), q.ltime.to_string()));
        }
    }
    env
}

/// Serf's `eventClean`: tabs and newlines escaped so a member stays one line of fields.
fn clean(v: &str) -> String {
    v.replace('\t', "\\t").replace('\n', "\\n")
}

/// What the script reads on stdin: for a member event one line per member,
/// `name\taddr\trole\ttag=value,tag=value\n` (tags sorted by name; serf writes them in Go's
/// random map order); for a user event or query its payload, with a newline added when it
/// does not end with one (nothing for an empty payload).
pub fn stdin(event: &HandlerEvent) -> Vec<u8> {
    match event {
        HandlerEvent::Member { members, .. } => {
            let mut out = String::new();
            for m in members {
                let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    clean(&m.name),
                    m.addr,
                    clean(m.tags.get("role").map(String::as_str).unwrap_or("")),
                    clean(&tags.join(","))
                ));
            }
            out.into_bytes()
        }
        HandlerEvent::User(UserEvent { payload, .. })
        | HandlerEvent::Query(QueryEvent { payload, .. }) => {
            let mut p = payload.clone();
            if p.last().is_some_and(|b| *b != b'\n') {
                p.push(b'\n');
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn member_lines_are_tab_separated_with_role_and_escaped() {
        let ev = HandlerEvent::Member {
            kind: EventKind::MemberJoin,
            members: vec![
                MemberLine {
                    name: "web1".into(),
                    addr: "10.0.0.1".parse().unwrap(),
                    tags: tags(&[("role", "web"), ("port", "80")]),
                },
                MemberLine {
                    name: "a\tb".into(),
                    addr: "::1".parse().unwrap(),
                    tags: tags(&[("x", "1\n2")]),
                },
            ],
        };
        assert_eq!(
            String::from_utf8(stdin(&ev)).unwrap(),
            "web1\t10.0.0.1\tweb\tport=80,role=web\na\\tb\t::1\t\tx=1\\n2\n"
        );
    }

    #[test]
    fn payloads_get_one_trailing_newline_and_empty_stays_empty() {
        let u = |p: &[u8]| {
            stdin(&HandlerEvent::User(UserEvent {
                name: "e".into(),
                payload: p.to_vec(),
                ltime: 1,
                coalesce: false,
            }))
        };
        assert_eq!(u(b"hi"), b"hi\n");
        assert_eq!(u(b"hi\n"), b"hi\n");
        assert_eq!(u(b""), b"");
    }

    #[test]
    fn the_environment_names_self_tags_and_the_event() {
        let me = SelfMember {
            name: "n1".into(),
            tags: tags(&[("role", "web"), ("dc-name", "east"), ("zone.id", "3")]),
        };
        let ev = HandlerEvent::User(UserEvent {
            name: "deploy".into(),
            payload: vec![],
            ltime: 7,
            coalesce: false,
        });
        let env: BTreeMap<String, String> = environment(&me, &ev).into_iter().collect();
        let want = tags(&[
            ("SERF_EVENT", "user"),
            ("SERF_SELF_NAME", "n1"),
            ("SERF_SELF_ROLE", "web"),
            ("SERF_TAG_ROLE", "web"),
            ("SERF_TAG_DC_NAME", "east"),
            ("SERF_TAG_ZONE_ID", "3"),
            ("SERF_USER_EVENT", "deploy"),
            ("SERF_USER_LTIME", "7"),
        ]);
        assert_eq!(env, want);
        let no_role = SelfMember {
            name: "n".into(),
            tags: BTreeMap::new(),
        };
        let env = environment(&no_role, &ev);
        assert!(env.contains(&("SERF_SELF_ROLE".into(), String::new())));
    }
}
