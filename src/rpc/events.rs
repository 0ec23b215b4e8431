//! What `stream` subscribers receive (serf's `ipc_event_stream.go`): member, user and query
//! events, selected by serf's event filter syntax (`member-join,user:deploy,query`), and
//! the queries they may answer with `respond`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gossip::IncomingQuery;

use super::codec::{self, RpcMember};

/// One cluster event as the agent publishes it to RPC streams.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// `member-join`, `member-leave`, `member-failed`, `member-update`, `member-reap`.
    Member {
        /// Serf's event name.
        event: &'static str,
        /// The members concerned.
        members: Vec<RpcMember>,
    },
    /// A user event.
    User {
        /// Lamport time.
        ltime: u64,
        /// Name.
        name: String,
        /// Payload.
        payload: Vec<u8>,
        /// Coalescable.
        coalesce: bool,
    },
    /// A user query; answer with `respond {ID}`.
    Query {
        /// Id in [`PendingQueries`].
        id: u64,
        /// Lamport time.
        ltime: u64,
        /// Name.
        name: String,
        /// Payload.
        payload: Vec<u8>,
    },
}

impl StreamEvent {
    /// Serf's event type name (`user`, `query`, `member-join`, …).
    pub fn kind(&self) -> &str {
        match self {
            StreamEvent::Member { event, .. } => event,
            StreamEvent::User { .. } => "user",
            StreamEvent::Query { .. } => "query",
        }
    }

    /// The record's msgpack body (after the response header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            StreamEvent::Member { event, members } => {
                codec::encode_member_event(out, event, members)
            }
            StreamEvent::User {
                ltime,
                name,
                payload,
                coalesce,
            } => codec::encode_user_event(out, *ltime, name, payload, *coalesce),
            StreamEvent::Query {
                id,
                ltime,
                name,
                payload,
            } => codec::encode_query_event(out, *id, *ltime, name, payload),
        }
    }
}

/// One term of an event filter (serf `EventFilter`): an event type and, for `user` and
/// `query`, an optional name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// `*`, `member-join`, `member-leave`, `member-failed`, `member-update`,
    /// `member-reap`, `user` or `query`.
    pub event: String,
    /// Name for `user:NAME` / `query:NAME` ("" = any).
    pub name: String,
}

const EVENT_TYPES: [&str; 8] = [
    "*",
    "member-join",
    "member-leave",
    "member-failed",
    "member-update",
    "member-reap",
    "user",
    "query",
];

/// Parses serf's filter syntax; `None` when a term names no event type (serf's
/// `Invalid event filter`). An empty filter means every event.
pub fn parse_filter(spec: &str) -> Option<Vec<EventFilter>> {
    let mut out = Vec::new();
    for term in spec.split(',') {
        let (event, name) = match term.split_once(':') {
            Some((e, n)) => (e, n),
            None => (term, ""),
        };
        let event = if event.is_empty() { "*" } else { event };
        if !EVENT_TYPES.contains(&event)
            || (!name.is_empty() && event != "user" && event != "query")
        {
            return None;
        }
        out.push(EventFilter {
            event: event.to_string(),
            name: name.to_string(),
        });
    }
    Some(out)
}

/// Whether any filter term selects `e`.
pub fn selects(filters: &[EventFilter], e: &StreamEvent) -> bool {
    filters.iter().any(|f| {
        if f.event == "*" {
            return true;
        }
        if f.event != e.kind() {
            return false;
        }
        match e {
            StreamEvent::User { name, .. } | StreamEvent::Query { name, .. } => {
                f.name.is_empty() || &f.name == name
            }
            StreamEvent::Member { .. } => true,
        }
    })
}

/// Queries delivered to streams, waiting for a `respond` (serf's per-client
/// `pendingQueries`); expired ones are dropped as new ones arrive. At most
/// [`PendingQueries::MAX`] are kept.
#[derive(Debug, Default)]
pub struct PendingQueries {
    inner: Mutex<(u64, HashMap<u64, IncomingQuery>)>,
}

impl PendingQueries {
    /// Most queries kept waiting for an answer.
    pub const MAX: usize = 1024;

    /// Keeps `q` and returns its id, or `None` when full.
    pub fn insert(&self, q: IncomingQuery) -> Option<u64> {
        let mut g = self.inner.lock().ok()?;
        let now = tokio::time::Instant::now();
        g.1.retain(|_, q| q.deadline > now);
        if g.1.len() >= Self::MAX {
            return None;
        }
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, q);
        Some(id)
    }

    /// Answers query `id`; serf's error strings when unknown or expired.
    pub fn respond(&self, id: u64, payload: &[u8]) -> Result<(), String> {
        let q = self.inner.lock().ok().and_then(|mut g| g.1.remove(&id));
        match q {
            Some(mut q) => q.respond(payload).map_err(|e| e.to_string()),
            None => Err(codec::errors::INVALID_QUERY_ID.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> StreamEvent {
        StreamEvent::User {
            ltime: 1,
            name: name.into(),
            payload: vec![],
            coalesce: false,
        }
    }

    #[test]
    fn filters_select_by_type_and_name_like_serf() {
        let f = parse_filter("member-join,user:deploy").unwrap();
        assert!(selects(&f, &user("deploy")));
        assert!(!selects(&f, &user("other")));
        let join = StreamEvent::Member {
            event: "member-join",
            members: vec![],
        };
        assert!(selects(&f, &join));
        assert!(selects(&parse_filter("*").unwrap(), &user("x")));
        assert!(selects(&parse_filter("").unwrap(), &join));
        assert!(selects(&parse_filter("user").unwrap(), &user("x")));
    }

    #[test]
    fn an_unknown_event_type_is_an_invalid_filter() {
        assert_eq!(parse_filter("member-explode"), None);
        assert_eq!(parse_filter("member-join:x"), None);
    }
}
