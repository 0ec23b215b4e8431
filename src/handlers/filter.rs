//! Which events a handler script receives: Serf's `-event-handler [filter=]script` syntax,
//! parsed as `ParseEventScript`/`ParseEventFilter` in serf's
//! `cmd/serf/command/agent/event_handler.go` do, and matched as `EventFilter.Invoke` does.

use super::event::{EventKind, HandlerEvent};

/// One event class a script is registered for (`member-join`, `user:deploy`, `*`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// Serf's event type name, or `*` for every event.
    pub event: String,
    /// For `user` and `query`: only events of this name (empty: any name).
    pub name: String,
}

/// A script and one filter it runs for (a spec with `a,b=script` gives two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventScript {
    /// What the script is registered for.
    pub filter: EventFilter,
    /// Shell command, run with `/bin/sh -c`.
    pub script: String,
}

/// Event names a filter may use, as serf's `EventFilter.Valid`.
pub const VALID_EVENTS: &[&str] = &[
    "member-join",
    "member-leave",
    "member-failed",
    "member-update",
    "member-reap",
    "user",
    "query",
    "*",
];

impl EventFilter {
    /// Serf's `Valid`: a known event type or `*`.
    pub fn valid(&self) -> bool {
        VALID_EVENTS.contains(&self.event.as_str())
    }

    /// Serf's `Invoke`: does this filter take `event`?
    pub fn matches(&self, event: &HandlerEvent) -> bool {
        if self.event == "*" {
            return true;
        }
        if event.kind().as_str() != self.event {
            return false;
        }
        if self.name.is_empty() {
            return true;
        }
        match event.kind() {
            EventKind::User | EventKind::Query => event.name() == Some(self.name.as_str()),
            _ => true,
        }
    }
}

/// Parses one `-event-handler` value: `script`, or `filter[,filter…]=script` (split at the
/// first `=`; an empty filter is `*`). Errors name an unknown event type (serf refuses the
/// agent's start the same way: "Invalid event filter").
pub fn parse_event_script(spec: &str) -> Result<Vec<EventScript>, String> {
    let (filter, script) = match spec.split_once('=') {
        Some((f, s)) => (f, s),
        None => ("", spec),
    };
    let filter = if filter.is_empty() { "*" } else { filter };
    let mut out = Vec::new();
    for ev in filter.split(',') {
        let f = if let Some(name) = ev.strip_prefix("user:") {
            EventFilter {
                event: "user".into(),
                name: name.into(),
            }
        } else if let Some(name) = ev.strip_prefix("query:") {
            EventFilter {
                event: "query".into(),
                name: name.into(),
            }
        } else {
            EventFilter {
                event: ev.into(),
                name: String::new(),
            }
        };
        if !f.valid() {
            return Err(format!(
                "invalid event filter {ev:?} in {spec:?} (one of {}, user:NAME, query:NAME)",
                VALID_EVENTS.join(", ")
            ));
        }
        out.push(EventScript {
            filter: f,
            script: script.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::event::{MemberLine, UserEvent};

    fn f(event: &str, name: &str) -> EventFilter {
        EventFilter {
            event: event.into(),
            name: name.into(),
        }
    }

    #[test]
    fn specs_parse_like_serf() {
        let s = parse_event_script("handler.sh").unwrap();
        assert_eq!(
            s,
            vec![EventScript {
                filter: f("*", ""),
                script: "handler.sh".into()
            }]
        );
        let s = parse_event_script("member-join,user:deploy,query=x.sh a=b").unwrap();
        let filters: Vec<_> = s.iter().map(|s| s.filter.clone()).collect();
        assert_eq!(
            filters,
            vec![f("member-join", ""), f("user", "deploy"), f("query", "")]
        );
        assert!(
            s.iter().all(|s| s.script == "x.sh a=b"),
            "split at the first '='"
        );
        assert_eq!(parse_event_script("=x").unwrap()[0].filter, f("*", ""));
        assert_eq!(
            parse_event_script("user:=x").unwrap()[0].filter,
            f("user", "")
        );
        let e = parse_event_script("member-joined=x").unwrap_err();
        assert!(e.contains("member-joined"), "{e}");
    }

    #[test]
    fn filters_match_by_type_then_name() {
        let user = HandlerEvent::User(UserEvent {
            name: "deploy".into(),
            payload: vec![],
            ltime: 3,
            coalesce: false,
        });
        let join = HandlerEvent::Member {
            kind: EventKind::MemberJoin,
            members: vec![MemberLine::default()],
        };
        assert!(f("*", "").matches(&user));
        assert!(f("user", "").matches(&user));
        assert!(f("user", "deploy").matches(&user));
        assert!(!f("user", "other").matches(&user));
        assert!(!f("query", "").matches(&user));
        assert!(f("member-join", "").matches(&join));
        assert!(!f("member-leave", "").matches(&join));
    }
}
